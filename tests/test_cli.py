import json
import os
import subprocess
import sys

import numpy as np
import pytest
import test_data
from lxml import etree
from model_fixtures import write_tiny_model
from PIL import Image

from handwriting import cli, rundir, sample
from handwriting.styles import load_styles

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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


def test_output_path_is_checked_before_sampling(model_dir, tmp_path, capsys):
    folder = tmp_path / "existing.svg"
    folder.mkdir()
    code, _, err = run(capsys, "abc", "-o", str(folder), "--model", model_dir)
    assert code == 2 and err == f"error: --output: {folder} is a folder; give a file name\n"
    parent = tmp_path / "file"
    parent.write_text("mine")
    target = parent / "x.svg"
    code, _, err = run(capsys, "abc", "-o", str(target), "--model", model_dir)
    assert code == 2
    assert err == f"error: --output: {parent} is a file, so {target} cannot be created below it\n"
    assert parent.read_text() == "mine" and folder.is_dir() and not any(folder.iterdir())


@pytest.mark.slow
def test_png_and_gif_are_sized_for_a_screen(model_dir, tmp_path, capsys):
    png = tmp_path / "out.png"
    assert run(capsys, "abc", "-o", str(png), "--model", model_dir, "--seed", "1")[0] == 0
    gif = tmp_path / "out.gif"
    assert run(capsys, "abc", "-o", str(gif), "--model", model_dir, "--seed", "1")[0] == 0
    big = tmp_path / "big.png"
    code = run(
        capsys, "abc", "-o", str(big), "--model", model_dir, "--seed", "1", "--height", "256"
    )[0]
    assert code == 0
    with Image.open(png) as a, Image.open(gif) as b, Image.open(big) as c:
        # One line of handwriting: its pitch is the default --height, and the GIF matches it.
        assert a.size[1] >= cli.DEFAULT_LINE_PX >= 128 and b.size == a.size
        assert c.size[1] >= 256 and c.size[0] > 1.8 * a.size[0]


def test_styles_are_listed_and_drawn(model_dir, tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name in os.listdir(model_dir):
        (run_dir / name).write_bytes(open(os.path.join(model_dir, name), "rb").read())
    synth = sample.load(str(run_dir))
    written = sample.generate(synth, ["ab cd", "xyz"], bias=1.0, seed=2)
    styles = {
        "lines": [
            {"id": "w1-calm", "text": written[0].text, "strokes": written[0].strokes.tolist()},
            {"id": "w2-quick", "text": "xyz", "strokes": written[1].strokes.tolist()},
        ]
    }
    (run_dir / rundir.STYLES_FILENAME).write_text(json.dumps(styles))
    picture = tmp_path / "styles.png"
    assert cli.main(["styles", "--model", str(run_dir), "-o", str(picture)]) == 0
    out = capsys.readouterr().out
    assert "w1-calm" in out and "ab cd" in out and "w2-quick" in out
    assert "--style ID" in out
    with Image.open(picture) as image:
        assert image.format == "PNG" and image.size[1] > 2 * 64
    # `--style list` lists them too, and an unknown id says how to find the known ones.
    code, out, _ = run(
        capsys, "abc", "-o", str(tmp_path / "x.svg"), "--model", str(run_dir), "--style", "list"
    )
    assert code == 0 and "w2-quick" in out and not (tmp_path / "x.svg").exists()
    code, _, err = run(
        capsys, "abc", "-o", str(tmp_path / "x.svg"), "--model", str(run_dir), "--style", "nobody"
    )
    assert code == 2 and "`python -m handwriting styles` lists them" in err
    # The listed style writes.
    code, _, err = run(
        capsys, "abc", "-o", str(tmp_path / "y.svg"), "--model", str(run_dir), "--style", "w2-quick"
    )
    assert code == 0, err


def test_styles_lists_the_data_set_lines(model_dir, tmp_path, capsys):
    rng = np.random.default_rng(3)
    lines = [test_data._make_line(rng, i, 6 + i) for i in range(5)]
    test_data._write_dataset(tmp_path, {"train": lines, "valid": lines[:1]}, shards_per_split=1)
    code = cli.main(["styles", "--model", model_dir, "--data", str(tmp_path), "--limit", "2"])
    out = capsys.readouterr().out
    assert code == 0
    assert "split train (5 lines, the first 2):\n  l00" in out
    assert f"  l01              {lines[1]['text']}\n" in out
    assert "split valid (1 lines):\n  l00" in out
    code = cli.main(["styles", "--model", model_dir, "--data", str(tmp_path / "none")])
    assert code == 0 and "is not here; --data DIR lists" in capsys.readouterr().out
    # --add copies data-set lines into the model's styles.json, which --style then reads.
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name in os.listdir(model_dir):
        (run_dir / name).write_bytes(open(os.path.join(model_dir, name), "rb").read())
    argv = ["styles", "--model", str(run_dir), "--data", str(tmp_path), "--add", "l03", "l01"]
    assert cli.main(argv) == 0
    assert f"wrote {run_dir / 'styles.json'} (2 styles)" in capsys.readouterr().out
    styles = load_styles(str(run_dir))
    assert sorted(styles) == ["l01", "l03"] and styles["l03"].text == lines[3]["text"]
    np.testing.assert_allclose(styles["l03"].strokes, lines[3]["strokes"], atol=1e-4)


@pytest.mark.slow
def test_stderr_holds_only_the_projects_lines(model_dir, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = ROOT
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "handwriting",
            "write",
            "abc",
            "-o",
            str(tmp_path / "a.svg"),
            "--model",
            model_dir,
            "--width",
            "1",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("wrote ")
    assert "cuda" not in result.stderr.lower() and "absl" not in result.stderr
    assert result.stderr == ""
