"""What `python -m data_prep iam-ondb` (and the XML prime) does with inputs it must refuse.

Every hostile input that could hang is handled in a child process under a timeout, so that a
regression fails the test instead of hanging the suite; the child's whole process group is
killed when the time is up.
"""

import codecs
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile

import iam_fixtures
import numpy as np
import pytest
import tensorflow as tf
from test_shards import LINES_PER_SHARD, build, folder_bytes

from data_prep import __main__ as cli
from data_prep import iam_ondb, shards
from handwriting import iam_xml, records
from handwriting.dataset_info import DatasetInfo

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = 30  # seconds for a child that imports numpy and lxml only
WITH_TF = 180  # seconds for a child that imports TensorFlow (slow on a busy 2-core machine)


def run_child(args, timeout, env=None):
    """Runs `python args...` from the repository; fails the test if it is still running after
    `timeout` seconds (and kills it with every process it started)."""
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    process = subprocess.Popen(
        [sys.executable, *args],
        cwd=REPO,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: pool workers die with it
    )
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"python {' '.join(args[:3])} still running after {timeout} s: {out}{err}")
    return subprocess.CompletedProcess(args, process.returncode, out, err)


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    return iam_fixtures.write_fixture(tmp_path_factory.mktemp("src") / "IAM-OnDB")


@pytest.fixture(scope="module")
def baseline(fixture, tmp_path_factory):
    out = tmp_path_factory.mktemp("baseline")
    info, _ = build(fixture.root, out)
    return out, info


# ----------------------------------------------------------------------------------------------
# 1. A DTD in any encoding is refused before libxml2 reads it

POINTS = (
    '<WhiteboardCaptureSession><StrokeSet><Stroke><Point x="{x}" y="1" time="0"/>'
    '<Point x="7" y="3" time="1"/></Stroke></StrokeSet></WhiteboardCaptureSession>\n'
)
# name -> (declared encoding or None, Python codec, byte order mark)
ENCODINGS = {
    "utf-8": ("UTF-8", "utf-8", b""),
    "utf-8-bom": ("UTF-8", "utf-8", codecs.BOM_UTF8),
    "undeclared-utf-8": (None, "utf-8", b""),
    "iso-8859-1": ("ISO-8859-1", "iso-8859-1", b""),
    "utf-16-le-bom": ("UTF-16", "utf-16-le", codecs.BOM_UTF16_LE),
    "utf-16-be-bom": ("UTF-16", "utf-16-be", codecs.BOM_UTF16_BE),
    "utf-16-le": ("UTF-16", "utf-16-le", b""),
    "utf-16-be": ("UTF-16", "utf-16-be", b""),
    "utf-16le-declared": ("UTF-16LE", "utf-16-le", b""),
    "undeclared-utf-16-bom": (None, "utf-16-le", codecs.BOM_UTF16_LE),
    "utf-32-le-bom": ("UTF-32", "utf-32-le", codecs.BOM_UTF32_LE),
    "utf-32-be-bom": ("UTF-32", "utf-32-be", codecs.BOM_UTF32_BE),
    "utf-32-le": ("UTF-32", "utf-32-le", b""),
    "utf-32-be": ("UTF-32", "utf-32-be", b""),
    "ebcdic": ("IBM037", "cp037", b""),
    "utf-7": ("UTF-7", "utf-7", b""),
}
# name -> DOCTYPE pointing at `{target}`, and the x of the first point
DOCTYPES = {
    "parameter entity": (
        '<!DOCTYPE WhiteboardCaptureSession [<!ENTITY % p SYSTEM "file://{target}"> %p;]>',
        "1",
    ),
    "external DTD": ('<!DOCTYPE WhiteboardCaptureSession SYSTEM "file://{target}">', "1"),
    "external entity": (
        '<!DOCTYPE WhiteboardCaptureSession [<!ENTITY e SYSTEM "file://{target}">]>',
        "&e;",
    ),
}


def encoded_xml(text: str, encoding: str) -> bytes:
    declared, codec, bom = ENCODINGS[encoding]
    head = f'<?xml version="1.0" encoding="{declared}"?>\n' if declared else ""
    return bom + (head + text).encode(codec)


def write_hostile_lines(folder, target) -> list:
    """Writes a line XML for every encoding and DOCTYPE, each pointing at `target`."""
    paths = []
    for encoding in ENCODINGS:
        for number, (doctype, x) in enumerate(DOCTYPES.values()):
            text = doctype.format(target=target) + "\n" + POINTS.format(x=x)
            path = os.path.join(folder, f"{encoding}-{number}.xml")
            with open(path, "wb") as f:
                f.write(encoded_xml(text, encoding))
            paths.append(path)
    return paths


PARSE_EACH = """
import json, sys, time
from data_prep import iam_ondb
from handwriting import iam_xml
for path in sys.argv[1:]:
    with open(path, "rb") as f:
        data = f.read()
    start = time.perf_counter()
    try:
        iam_xml.parse_line_xml(data, path)
        reason, detail = "accepted", ""
    except iam_xml.LineError as e:
        reason, detail = e.reason, str(e)
    with open(path, "rb") as f:
        writer, problem = iam_ondb.writer_id_of(f, path)
    print(json.dumps([path, reason, detail, writer, problem, time.perf_counter() - start]),
          flush=True)
"""


@pytest.mark.parametrize("target", ["fifo", "/dev/zero"])
def test_a_dtd_in_any_encoding_is_refused_without_opening_what_it_names(tmp_path, target):
    if target == "fifo":
        # Opening a FIFO for reading blocks until a writer comes: a parser that opens the
        # entity's target hangs, and the timeout catches it.
        target = str(tmp_path / "secret")
        os.mkfifo(target)
    paths = write_hostile_lines(tmp_path, target)
    result = run_child(["-c", PARSE_EACH, *paths], QUICK)
    assert result.returncode == 0, result.stderr
    outcomes = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o[0] for o in outcomes] == paths
    for path, reason, detail, writer, problem, seconds in outcomes:
        expected = "unsupported encoding" if "ebcdic" in path or "utf-7" in path else "unsafe XML"
        assert (reason, writer) == (expected, ""), (path, detail)
        assert detail.startswith(f"{path}: ") and problem.startswith(f"{path}: "), path
        assert seconds < 1.0, path


def test_a_line_in_any_unicode_encoding_reads_the_same_points():
    expected = iam_xml.parse_line_xml(POINTS.format(x=5).encode(), "plain.xml")
    for encoding in ENCODINGS:
        data = encoded_xml(POINTS.format(x=5), encoding)
        if encoding in ("ebcdic", "utf-7"):
            with pytest.raises(iam_xml.LineError, match=r"^e\.xml: .*(EBCDIC|UTF-7)"):
                iam_xml.parse_line_xml(data, "e.xml")
            continue
        got = iam_xml.parse_line_xml(data, "e.xml")
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_array_equal(a, b, err_msg=encoding)


PRIME_EACH = """
import json, sys, time
from handwriting import strokes
from handwriting.errors import SampleError
for path in sys.argv[1:]:
    start = time.perf_counter()
    try:
        strokes.load_prime(path, "text")
        outcome, detail = "accepted", ""
    except SampleError as e:
        outcome, detail = "SampleError", str(e)
    print(json.dumps([path, outcome, detail, time.perf_counter() - start]), flush=True)
"""


def test_an_xml_prime_with_a_dtd_is_refused_quickly(tmp_path):
    fifo = str(tmp_path / "secret")
    os.mkfifo(fifo)
    paths = []
    for encoding in ("utf-16-le-bom", "utf-16-be", "utf-32-le"):
        for target in (fifo, "/dev/zero"):
            doctype = DOCTYPES["parameter entity"][0].format(target=target)
            path = str(tmp_path / f"prime-{encoding}-{len(paths)}.xml")
            with open(path, "wb") as f:
                f.write(encoded_xml(doctype + "\n" + POINTS.format(x=1), encoding))
            paths.append(path)
    result = run_child(["-c", PRIME_EACH, *paths], WITH_TF)
    assert result.returncode == 0, result.stderr
    outcomes = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o[0] for o in outcomes] == paths
    for path, outcome, detail, seconds in outcomes:
        assert outcome == "SampleError" and detail.startswith(f"{path}: "), (path, detail)
        assert "DOCTYPE" in detail and seconds < 5.0, (path, detail, seconds)


# ----------------------------------------------------------------------------------------------
# 2. Only regular files are read


@pytest.mark.slow
def test_fifos_devices_and_broken_links_in_the_source_are_skipped_not_read(fixture, tmp_path):
    src = tmp_path / "IAM-OnDB"
    shutil.copytree(fixture.root, src)

    def replace(relpath, make):
        os.remove(src / relpath)
        make(src / relpath)

    fifo = src / "elsewhere" / "pipe"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    replace("lineStrokes/a01/a01-000/a01-000x-02.xml", os.mkfifo)
    replace("ascii/a02/a02-011/a02-011w.txt", os.mkfifo)
    replace("alignment/a01/a01-000/a01-000u-02.txt", lambda p: os.symlink(fifo, p))
    replace("original/a01/a01-000/strokesx.xml", os.mkfifo)
    replace("lineStrokes/a01/a01-000/a01-000u-03.xml", lambda p: os.symlink("/dev/zero", p))
    replace("lineStrokes/a02/a02-012/a02-012w-01.xml", lambda p: os.symlink(src / "gone", p))
    # A link to a regular file is followed: the line reads as if the file were there.
    moved = src / "elsewhere" / "a01-007u.txt"
    os.rename(src / "ascii/a01/a01-007/a01-007u.txt", moved)
    os.symlink(moved, src / "ascii/a01/a01-007/a01-007u.txt")
    out = tmp_path / "out"
    result = run_child(
        ["-m", "data_prep", "iam-ondb", str(src), str(out), "--workers", "2"], WITH_TF
    )
    assert result.returncode == 0, result.stderr
    info = DatasetInfo.load(out, verify=True)
    skipped = {s["line_id"]: s for s in info.skipped["lines"]}
    refused = {
        "a01-000x-02": ("lineStrokes/a01/a01-000/a01-000x-02.xml", "a FIFO"),
        "a02-011w-01": ("ascii/a02/a02-011/a02-011w.txt", "a FIFO"),
        "a02-011w-02": ("ascii/a02/a02-011/a02-011w.txt", "a FIFO"),
        "a01-000u-02": ("alignment/a01/a01-000/a01-000u-02.txt", "a link to a FIFO"),
        "a01-000u-03": ("lineStrokes/a01/a01-000/a01-000u-03.xml", "a link to a character device"),
        "a02-012w-01": ("lineStrokes/a02/a02-012/a02-012w-01.xml", "a link to nothing"),
    }
    for line_id, (file, what) in refused.items():
        skip = skipped[line_id]
        assert skip["reason"] == "not a regular file", skip
        assert skip["detail"].startswith(f"{file}: {what}"), skip
    assert info.source["writer_id_problems"]["a01-000x"].startswith(
        "original/a01/a01-000/strokesx.xml: a FIFO"
    )
    kept = {line for split in info.splits for line in _line_ids(out, info, split)}
    assert {"a01-007u-01", "a01-007u-02", "a01-000x-01", "a01-000u-01"} <= kept
    assert not kept & set(refused)


def _line_ids(out, info, split) -> list:
    dataset = tf.data.TFRecordDataset(info.shard_paths(out, split)).map(records.parse_line)
    return [example["line_id"].decode() for example in dataset.as_numpy_iterator()]


@pytest.mark.slow
def test_a_split_list_that_is_a_fifo_is_an_error_naming_it(fixture, tmp_path):
    src = tmp_path / "IAM-OnDB"
    shutil.copytree(fixture.root, src)
    os.remove(src / "testset_t.txt")
    os.mkfifo(src / "testset_t.txt")
    result = run_child(["-m", "data_prep", "iam-ondb", str(src), str(tmp_path / "out")], QUICK)
    assert result.returncode == 2
    assert result.stderr == f"error: {src / 'testset_t.txt'}: a FIFO, not a regular file\n"


# ----------------------------------------------------------------------------------------------
# 3. Coordinates no whiteboard gives


def _with_extra_line(fixture, tmp_path, split: str, x: str):
    """A copy of the fixture plus form a05-001u (in `split`) whose one line has a point at x."""
    src = tmp_path / "IAM-OnDB"
    shutil.copytree(fixture.root, src)
    form = "a05-001u"
    xml = iam_fixtures.line_xml([np.array([[1000, 900], [1004, 903], [1010, 899]])])
    xml = xml.replace(b'x="1004"', f'x="{x}"'.encode())
    relpath = f"lineStrokes/a05/a05-001/{form}-01.xml"
    for path, data in (
        (relpath, xml),
        (f"ascii/a05/a05-001/{form}.txt", iam_fixtures.ascii_file(form, ["A MOVE"])),
    ):
        os.makedirs(os.path.dirname(src / path), exist_ok=True)
        (src / path).write_bytes(data)
    listing = src / ("trainset.txt" if split == "train" else "testset_v.txt")
    listing.write_bytes(listing.read_bytes() + f"{form}\n".encode())
    return src, relpath


@pytest.mark.parametrize("split", ["train", "valid"])
@pytest.mark.parametrize("x", ["1e300", "5e38", "-3e39", "1e15", "-2000000", "150000"])
def test_implausible_coordinates_skip_the_line(fixture, baseline, tmp_path, split, x):
    src, relpath = _with_extra_line(fixture, tmp_path, split, x)
    out = tmp_path / "out"
    info, _ = build(src, out)
    (skip,) = [s for s in info.skipped["lines"] if s["line_id"] == "a05-001u-01"]
    assert skip["reason"] == "implausible coordinates" and skip["file"] == relpath
    assert skip["detail"].startswith(f"{relpath}: point 2 "), skip
    assert os.path.isfile(out / "dataset.json")
    base_out, base_info = baseline
    assert (info.offset_mean, info.offset_std) == (base_info.offset_mean, base_info.offset_std)
    shards_now = {k: v for k, v in folder_bytes(out).items() if k.endswith(".tfrecord")}
    assert shards_now == {k: v for k, v in folder_bytes(base_out).items() if k != "dataset.json"}
    for split_name in info.splits:
        dataset = tf.data.TFRecordDataset(info.shard_paths(out, split_name))
        for example in dataset.map(records.parse_line).as_numpy_iterator():
            assert np.isfinite(example["strokes"]).all()


def test_a_coordinate_inside_the_bounds_is_kept():
    bound = iam_xml.MAX_COORDINATE
    x, _, _ = iam_xml.parse_line_xml(
        iam_fixtures.line_xml([np.array([[bound, -bound], [bound - iam_xml.MAX_OFFSET, -bound]])]),
        "edge.xml",
    )
    np.testing.assert_array_equal(x, [bound, bound - iam_xml.MAX_OFFSET])


def test_statistics_that_are_not_finite_name_the_lines(tmp_path):
    strokes = np.array([[0, 0, 0], [3, 4, 0], [np.inf, 1, 1]], np.float32)
    good = iam_ondb.Line("a01-000u-01", "1", "ab", strokes[:2], None, "lineStrokes/good.xml")
    bad = iam_ondb.Line("a01-000u-02", "1", "ab", strokes, None, "lineStrokes/bad.xml")
    corpus = iam_ondb.Corpus({"train": [good, bad], "valid": []}, [], 0)
    with pytest.raises(iam_ondb.PrepError, match=r"lineStrokes/bad\.xml") as caught:
        shards.write_dataset(tmp_path, corpus, {"path": "SRC"}, "f", LINES_PER_SHARD)
    assert "good.xml" not in str(caught.value)
    assert not os.path.exists(tmp_path / "dataset.json")


# ----------------------------------------------------------------------------------------------
# 4. The same input gives the same bytes, in any process

ENCODE_ONE = """
import hashlib
import numpy as np
from handwriting import records
strokes = np.array([[0, 0, 0], [1.5, -2.25, 0], [3, 4, 1]], np.float32)
data = records.encode_line(strokes, "Ab c", [3, 4, 1, 5], "a01-000u-01", "10042", [0, 1, 3])
print(hashlib.sha256(data).hexdigest())
"""


@pytest.mark.slow
def test_a_line_encodes_to_the_same_bytes_in_separate_processes():
    hashes = {
        seed: run_child(["-c", ENCODE_ONE], WITH_TF, env={"PYTHONHASHSEED": seed})
        for seed in ("0", "1", "12345")
    }
    assert len({r.stdout for r in hashes.values()}) == 1, {k: r.stdout for k, r in hashes.items()}
    strokes = np.array([[0, 0, 0], [1.5, -2.25, 0], [3, 4, 1]], np.float32)
    here = records.encode_line(strokes, "Ab c", [3, 4, 1, 5], "a01-000u-01", "10042", [0, 1, 3])
    assert hashes["0"].stdout.strip() == hashlib.sha256(here).hexdigest()


@pytest.mark.slow
def test_two_prep_runs_in_separate_processes_write_the_same_bytes(fixture, tmp_path):
    outs = []
    for seed in ("0", "7"):
        out = tmp_path / f"out-{seed}"
        argv = ["-m", "data_prep", "iam-ondb", fixture.root, str(out), "--workers", "2"]
        result = run_child([*argv, "--lines-per-shard", "3"], WITH_TF, {"PYTHONHASHSEED": seed})
        assert result.returncode == 0, result.stderr
        outs.append(folder_bytes(out))
    assert sorted(outs[0]) == sorted(outs[1]) and "dataset.json" in outs[0]
    for name in outs[0]:
        assert outs[0][name] == outs[1][name], name


# ----------------------------------------------------------------------------------------------
# 5. An output path that cannot be a folder


def test_an_output_path_that_is_a_file_is_an_error_naming_it(fixture, tmp_path, capsys):
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    for out, message in (
        (file, f"error: {file}: exists and is not a folder\n"),
        (file / "shards", f"error: {file / 'shards'}: {file} is not a folder\n"),
    ):
        assert cli.main(["iam-ondb", fixture.root, str(out), "--workers", "1"]) == 2
        assert capsys.readouterr().err == message
    assert file.read_text() == "mine"


# ----------------------------------------------------------------------------------------------
# 6. Unsafe archive members are listed, whatever their names


def test_every_unsafe_archive_member_is_listed(fixture, tmp_path):
    src = tmp_path / "IAM-OnDB"
    iam_fixtures.write_archives(fixture.root, src)
    archive = src / "lineStrokes-all.tar.gz"
    with tarfile.open(archive, "r:gz") as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]

    def regular(name):
        info = tarfile.TarInfo(name)
        info.size = 4
        return info, b"evil"

    def special(name, kind, linkname=""):
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, linkname
        return info, None

    unsafe = [
        regular("/etc/passwd"),
        regular("/x/lineStrokes/a09/a09-000/a09-000u-01.xml"),
        regular("../outside.txt"),
        regular("docs/../../outside.txt"),
        regular("lineStrokes/../../a09-000u-02.xml"),
        special("/abs-dir", tarfile.DIRTYPE),
        special("README", tarfile.LNKTYPE, "lineStrokes/a01/a01-000/a01-000u-01.xml"),
        special("root", tarfile.SYMTYPE, "/"),
        special("zero", tarfile.CHRTYPE),
        special("disk", tarfile.BLKTYPE),
        special("pipe", tarfile.FIFOTYPE),
    ]
    with tarfile.open(archive, "w:gz") as tar:
        for member, data in members + unsafe:
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
    inventory = iam_ondb.scan_source(src)
    problems = {p.file: p for p in inventory.problems}
    assert sorted(problems) == sorted(f"lineStrokes-all.tar.gz:{m.name}" for m, _ in unsafe)
    for label, problem in problems.items():
        assert problem.reason == "unsafe archive member", problem
        assert problem.detail.startswith(f"{label}: "), problem
    assert sorted(inventory.files) == sorted(iam_ondb.scan_source(fixture.root).files)
