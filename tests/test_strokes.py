"""Tests of stroke files (`handwriting.strokes`): primes from IAM-OnDB XML and stroke JSON.

Priming the sampler with them: tests/test_sample.py.
"""

import os
import subprocess
import sys
import time

import pytest

from handwriting import strokes
from handwriting.errors import SampleError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = 60  # seconds for a child that imports numpy and lxml only (no TensorFlow)


IAM_LINE = """<?xml version="1.0" encoding="ISO-8859-1"?>
<WhiteboardCaptureSession>
  <WhiteboardDescription><SensorLocation corner="top_left"/></WhiteboardDescription>
  <StrokeSet>
    <Stroke colour="black" start_time="0.1" end_time="0.5">
{points_a}
    </Stroke>
    <Stroke colour="black" start_time="0.7" end_time="0.9">
{points_b}
    </Stroke>
  </StrokeSet>
</WhiteboardCaptureSession>
"""


def write_iam_line(path, count_a=7, count_b=5):
    def points(start, count):
        return "\n".join(
            f'      <Point x="{1000 + 13 * (start + i)}" y="{2000 - 4 * ((start + i) % 5)}" '
            f'time="{0.01 * (start + i):.2f}"/>'
            for i in range(count)
        )

    text = IAM_LINE.format(points_a=points(0, count_a), points_b=points(count_a, count_b))
    path.write_bytes(text.encode("iso-8859-1"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"text": "a"}', "expected an object with `strokes`"),
        (b'{"strokes": [[0, 0]], "text": "a"}', r"`strokes` must have shape \(T, 3\)"),
        (b'{"strokes": [[0, 0, 0], [1, 1, 1]]}', "holds no `text`"),
        (b'{"strokes": [[0, 0, 0], [1, NaN, 1]], "text": "a"}', "point 1 holds NaN"),
        (b"\xff\xfe", "not valid UTF-8 JSON"),
        (
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "x">]><WhiteboardCaptureSession/>',
            "DOCTYPE",
        ),
    ],
)
def test_bad_prime_files_are_named(tmp_path, content, message):
    path = tmp_path / "prime.json"
    path.write_bytes(content)
    with pytest.raises(SampleError, match=message) as info:
        strokes.load_prime(path, "t" if content.startswith(b"<?xml") else None)
    assert str(path) in str(info.value)


def test_xml_prime_needs_its_text(tmp_path):
    path = tmp_path / "line.xml"
    write_iam_line(path)
    with pytest.raises(SampleError, match=r"needs its transcription \(--prime-text\)"):
        strokes.load_prime(path)


# A child reads the prime: were the FIFO opened, it would block until a writer came, and the
# subprocess timeout would end the test instead of a hang.
READ_PRIME = """
import sys, time
from handwriting import strokes
from handwriting.errors import SampleError
for path in sys.argv[1:]:
    start = time.perf_counter()
    try:
        strokes.load_prime(path, "text")
        print("accepted", flush=True)
    except SampleError as e:
        print(f"{time.perf_counter() - start:.3f} {e}", flush=True)
"""


def test_a_fifo_prime_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "prime.json"
    os.mkfifo(fifo)
    link = tmp_path / "link.xml"
    link.symlink_to(fifo)
    folder = tmp_path / "folder.json"
    folder.mkdir()
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", READ_PRIME, str(fifo), str(link), str(folder)],
        capture_output=True,
        text=True,
        timeout=QUICK,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    outcomes = [line.split(" ", 1) for line in result.stdout.splitlines()]
    assert [message for _, message in outcomes] == [
        f"{fifo}: a FIFO, not a regular file",
        f"{link}: a FIFO, not a regular file",
        f"{folder}: a folder, not a regular file",
    ]
    assert all(float(seconds) < 1.0 for seconds, _ in outcomes)
    assert time.perf_counter() - start < QUICK
