import json
import os
import subprocess
import sys

import numpy as np
import pytest
from lxml import etree
from model_fixtures import write_tiny_model
from PIL import Image

from handwriting import cli, sample

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_tiny_model(
        tmp_path_factory.mktemp("run"), seed=3, offset_mean=(0.0, 0.0), offset_std=(3.0, 2.0)
    )


def run(capsys, *args):
    code = cli.main(["write", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_svg_png_gif_and_json(model_dir, tmp_path, capsys):
    text = "one two three four"
    svg = tmp_path / "out.svg"
    code, out, _ = run(capsys, text, "-o", str(svg), "--model", model_dir, "--width", "8")
    assert code == 0 and "3 lines" in out
    root = etree.fromstring(svg.read_bytes())
    lines = {p.get("data-line") for p in root.iter("{http://www.w3.org/2000/svg}path")}
    assert lines == {"0", "1", "2"}
    png = tmp_path / "out.png"
    code, _, _ = run(capsys, text, "-o", str(png), "--model", model_dir, "--line-height", "40")
    assert code == 0
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size[1] >= 40
    gif = tmp_path / "out.gif"
    assert run(capsys, "abc", "-o", str(gif), "--model", model_dir)[0] == 0
    with Image.open(gif) as image:
        assert image.format == "GIF" and image.n_frames > 1
    strokes = tmp_path / "out.json"
    code, _, _ = run(capsys, "abc", "-o", str(strokes), "--model", model_dir, "--seed", "4")
    assert code == 0
    written = json.loads(strokes.read_text())["lines"][0]
    synth = sample.load(model_dir)
    expected = sample.generate(synth, ["abc"], bias=1.0, seed=4)[0].strokes
    np.testing.assert_allclose(np.array(written["strokes"]), expected, atol=1e-4)


def test_prime_file_from_the_command_line(model_dir, tmp_path, capsys):
    mine = tmp_path / "mine.json"
    assert run(capsys, "abc", "-o", str(mine), "--model", model_dir)[0] == 0
    out = tmp_path / "primed.svg"
    code, _, err = run(capsys, "xyz", "-o", str(out), "--model", model_dir, "--prime", str(mine))
    assert code == 0 and out.exists(), err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "error: text is empty"),
        ("x" * 10_000, "error: text has 10000 characters; the limit is 2000"),
        ("snow \u2603", "error: text holds characters outside the model's alphabet: '\u2603'"),
        ("emoji \U0001f600", "(U+1F600, GRINNING FACE) at position 6"),
        ("bell\x07", "error: text holds the control character U+0007 (U+0007) at position 4"),
    ],
)
def test_bad_text_exits_2_with_a_message(model_dir, tmp_path, capsys, text, message):
    code, _, err = run(capsys, text, "-o", str(tmp_path / "x.svg"), "--model", model_dir)
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "x.svg").exists()


def test_bad_options(model_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["write", "abc", "-o", str(tmp_path / "x.bmp"), "--model", model_dir])
    assert info.value.code == 2
    assert "--output must end with one of .svg, .png, .gif, .json" in capsys.readouterr().err
    code, _, err = run(capsys, "abc", "-o", str(tmp_path / "x.svg"), "--model", str(tmp_path))
    assert code == 2 and "no model.keras" in err
    code, _, err = run(
        capsys, "abc", "-o", str(tmp_path / "x.svg"), "--model", model_dir, "--prime", "absent.xml"
    )
    assert code == 2 and "absent.xml: cannot be read" in err


def test_help_shows_examples(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["write", "--help"])
    assert info.value.code == 0
    assert 'python -m handwriting write "Hello world" -o hello.svg' in capsys.readouterr().out


def test_module_entry_point_without_traceback(model_dir, tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "handwriting",
            "write",
            "caf\u00e9",
            "-o",
            str(tmp_path / "a.svg"),
            "--model",
            model_dir,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "error: text holds characters outside the model's alphabet" in result.stderr
    assert "Traceback" not in result.stderr
