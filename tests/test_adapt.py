"""`python -m handwriting adapt`: fine-tuning on one writer's lines, and its refusals."""

import json
import os

import numpy as np
import pytest
from model_fixtures import write_tiny_model

from handwriting import adapt, cli, sample
from handwriting.alphabet import PRINTABLE_ASCII
from handwriting.strokes import STROKES_FORMAT, load_lines
from handwriting.styles import load_styles

MEAN, STD = (1.0, 0.0), (2.0, 2.0)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("m"), seed=6, offset_mean=MEAN, offset_std=STD)


def writer_lines(count, seed=0):
    """Lines of one made-up hand: every letter a fixed little stroke, plus a little noise."""
    rng = np.random.default_rng(seed)
    shapes = {c: rng.normal(0, 1.5, (5, 2)) + np.array([1.2, 0.0]) for c in "abcdefghijklmnop "}
    lines = []
    for _ in range(count):
        text = "".join(rng.choice(list("abcdefghijklmnop"), size=6)) + " fed"
        points = [np.zeros((1, 3))]
        for char in text:
            glyph = np.zeros((5, 3))
            glyph[:, :2] = shapes[char] + rng.normal(0, 0.05, (5, 2))
            glyph[-1, 2] = 1.0
            points.append(glyph)
        lines.append((text, np.concatenate(points).round(4)))
    return lines


def write_lines(path, lines):
    obj = {
        "format": STROKES_FORMAT,
        "version": 1,
        "lines": [{"text": t, "strokes": np.asarray(s).tolist()} for t, s in lines],
    }
    path.write_text(json.dumps(obj))
    return str(path)


def test_adapting_lowers_the_held_out_nll_and_writes_a_model_directory(model_dir, tmp_path, capsys):
    lines_path = write_lines(tmp_path / "mine.json", writer_lines(6))
    out = tmp_path / "adapted"
    code = cli.main(
        [
            "adapt",
            "--model",
            model_dir,
            "--lines",
            lines_path,
            "--out",
            str(out),
            "--steps",
            "60",
            "--learning-rate",
            "0.01",
            "--progress",
            str(tmp_path / "progress.json"),
        ]
    )
    logged = capsys.readouterr()
    assert code == 0, logged.err
    assert "held out" in logged.out
    record = json.loads((out / adapt.ADAPT_FILENAME).read_text())
    assert (record["lines"], record["held_out"]) == (5, 1)
    assert record["held_out_after"] < record["held_out_before"] - 0.2
    # --progress: the last step's progress, for a program following it (the page's server).
    progress = json.loads((tmp_path / "progress.json").read_text())
    assert progress["step"] == progress["steps"] == record["steps"] == 60
    assert progress["best_held_out"] == pytest.approx(record["held_out_after"])
    assert progress["held_out_before"] == pytest.approx(record["held_out_before"])
    # The figure recorded is what `nll` says of the held-out line under each model.
    held_path = write_lines(tmp_path / "held.json", load_lines(lines_path)[-1:])
    for model, key in ((model_dir, "held_out_before"), (str(out), "held_out_after")):
        assert cli.main(["nll", "--model", model, "--lines", held_path, "--json"]) == 0
        figure = json.loads(capsys.readouterr().out)["nats_per_point"]
        assert figure == pytest.approx(record[key], rel=1e-5)

    # A normal model directory: `write` takes it, and the writer's lines are its styles.
    assert sorted(os.listdir(out)) == [
        "adapt.json",
        "config.json",
        "dataset.json",
        "model.keras",
        "styles.json",
    ]
    synth = sample.load(str(out))
    assert synth.alphabet.chars == PRINTABLE_ASCII
    styles = load_styles(str(out))
    assert sorted(styles) == [f"line-{i}" for i in range(1, 7)]
    assert styles["line-2"].text == load_lines(lines_path)[1][0]
    svg = tmp_path / "out.svg"
    code = cli.main(["write", "abc fed", "-o", str(svg), "--model", str(out), "--style", "line-1"])
    assert code == 0 and svg.read_text().startswith("<svg")


def test_one_line_adapts_for_a_fixed_number_of_steps_and_keeps_the_last(
    model_dir, tmp_path, capsys
):
    lines = writer_lines(4, seed=1)
    lines_path = write_lines(tmp_path / "one.json", lines[:1])
    out = tmp_path / "adapted"
    progress_path = str(tmp_path / "p.json")
    options = ["--steps", "10", "--learning-rate", "0.01", "--progress", progress_path]
    code = cli.main(
        ["adapt", "--model", model_dir, "--lines", lines_path, "--out", str(out), *options]
    )
    logged = capsys.readouterr()
    assert code == 0, logged.err
    assert "none held out (a single line: the last step is kept)" in logged.out
    record = json.loads((out / adapt.ADAPT_FILENAME).read_text())
    assert (record["lines"], record["held_out"], record["steps"]) == (1, 0, 10)
    assert record["best_step"] == 10
    assert record["held_out_before"] is None and record["held_out_after"] is None
    progress = json.loads((tmp_path / "p.json").read_text())
    assert progress["step"] == 10 and progress["best_held_out"] is None
    # The writer's other lines, never seen, are more likely under the adapted network (3.05
    # -> 2.56 nats per point when written).
    others = write_lines(tmp_path / "others.json", lines[1:])
    figures = []
    for model in (model_dir, str(out)):
        assert cli.main(["nll", "--model", model, "--lines", others, "--json"]) == 0
        figures.append(json.loads(capsys.readouterr().out)["nats_per_point"])
    assert figures[1] < figures[0] - 0.2
    # Without --steps, a single line runs ONE_LINE_STEPS steps.
    result = adapt.adapt(model_dir, lines[:1], tmp_path / "again", log=lambda *a: None, verbose=0)
    assert result.steps == adapt.ONE_LINE_STEPS and result.held_out == 0


def test_upper_part_leaves_the_window_as_trained(model_dir, tmp_path):
    before = sample.load(model_dir).model.window_cell.get_weights()
    out = tmp_path / "upper"
    reports = []
    result = adapt.adapt(
        model_dir,
        writer_lines(3),
        out,
        steps=10,
        learning_rate=0.01,
        part="upper",
        log=lambda *a: None,
        verbose=0,
        progress=reports.append,
    )
    assert result.part == "upper" and result.held_out == 1
    # The progress callback: before the first step, then after each.
    assert [r.step for r in reports] == list(range(11))
    assert reports[0].loss is None and all(r.loss > 0 for r in reports[1:])
    assert {r.held_out for r in reports[:10]} == {result.held_out_before}  # measured at 10
    assert reports[-1].best_held_out == result.held_out_after
    assert reports[-1].budget_seconds == 60.0 * adapt.DEFAULT_MINUTES
    adapted = sample.load(str(out)).model
    for old, new in zip(before, adapted.window_cell.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)
    heads = [sample.load(d).model.head.get_weights()[1] for d in (model_dir, str(out))]
    if result.best_step:  # kept an adapted step: the head moved
        assert not np.array_equal(*heads)


@pytest.mark.parametrize(
    "lines, message",
    [
        ([("abc", [[0, 0, 0], [1, 0, 1]])], "line 1: strokes must be (N, 3) with N >= 3"),
        (
            [("abc", [[0, 0, 0], [1, 0, 0], [1, 0, 1]]), ("abc", [[0, 0, 0], [1, 0, 1]])],
            "line 2: strokes must be (N, 3) with N >= 3",
        ),
        (
            [("abc", [[0, 0, 0], [1, 0, 0], [1, 0, 1]]), ("\u00e9t\u00e9", [[0, 0, 0]] * 3)],
            "line 2 holds characters outside the model's alphabet",
        ),
        (
            [("abc", [[0, 0, 0], [1, 0, 0], [1, 0, 1]]), (None, [[0, 0, 0]] * 3)],
            "line 2: no text",
        ),
    ],
)
def test_bad_lines_get_a_clear_error(model_dir, tmp_path, capsys, lines, message):
    obj = {
        "format": STROKES_FORMAT,
        "version": 1,
        "lines": [{"strokes": s} if t is None else {"text": t, "strokes": s} for t, s in lines],
    }
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(obj))
    code = cli.main(
        ["adapt", "--model", model_dir, "--lines", str(path), "--out", str(tmp_path / "o")]
    )
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert not (tmp_path / "o").exists()


def test_refuses_an_out_folder_that_holds_files(model_dir, tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "thesis.txt").write_text("mine")
    path = write_lines(tmp_path / "mine.json", writer_lines(2))
    code = cli.main(["adapt", "--model", model_dir, "--lines", path, "--out", str(out)])
    assert code == 2
    assert "exists and is not an empty folder" in capsys.readouterr().err
    assert (out / "thesis.txt").read_text() == "mine"


def test_no_line_is_refused_before_the_model_loads(tmp_path):
    from handwriting.errors import SampleError

    with pytest.raises(SampleError, match=r"^mine\.json: no line; adapting needs at least 1 line"):
        adapt.adapt(tmp_path / "no-model", [], tmp_path / "out", source="mine.json")
