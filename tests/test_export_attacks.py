"""What `python -m export` and the LiteRT runner do with outputs and inputs they must refuse."""

import json
import os
import shutil

import flatbuffers
import pytest
from ai_edge_litert import schema_py_generated as schema
from model_fixtures import write_tiny_model

from export import __main__ as export_main
from export import folder as export_folder
from export import litert_runner, tflite
from handwriting import rundir, sample

# Real exports and the LiteRT runner: opt out with -m "not slow".
pytestmark = pytest.mark.slow

TEXT_LENGTH = 11  # L of the exported samplers


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny model exported once into a new folder: (model dir, export dir)."""
    run = write_tiny_model(
        tmp_path_factory.mktemp("run"), seed=2, offset_mean=(0.1, 0.2), offset_std=(2.0, 3.0)
    )
    out = tmp_path_factory.mktemp("export") / "exported"
    export_folder.export(run, str(out), text_length=TEXT_LENGTH)
    return run, str(out)


def listing(directory) -> dict:
    """Every file below `directory` -> its bytes, to show that nothing changed."""
    found = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, directory)] = f.read()
    return found


def a_run_directory(exported, tmp_path):
    """A copy of the model's directory as training leaves it: checkpoints, logs, figures."""
    run = tmp_path / "demo"
    shutil.copytree(exported[0], run)
    (run / "checkpoint").mkdir()
    (run / "checkpoint" / "step-100.weights.h5").write_bytes(b"weights")
    (run / "logs").mkdir()
    (run / "logs" / "train.jsonl").write_text('{"step": 1}\n')
    (run / "samples.png").write_bytes(b"png")
    (run / "attention.png").write_bytes(b"png")
    return run


def test_export_refuses_a_folder_holding_other_files(exported, tmp_path, capsys):
    run, _ = exported
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "thesis.txt").write_text("three years of work")
    (out / "figures").mkdir()
    (out / "figures" / "plot.pdf").write_bytes(b"%PDF")
    before = listing(out)
    assert export_main.main(["--model", run, "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"error: {out} holds files that are not an export (figures, thesis.txt); "
        "choose a new or empty folder\n"
    )
    assert listing(out) == before
    assert os.listdir(tmp_path) == ["thesis"]  # no temporary folder left beside it
    # A sampler.json that is not the exporter's does not make the folder an export.
    for fake in ("not json", "[]", json.dumps({"format": "handwriting-tflite-sampler"})):
        (out / tflite.METADATA_FILENAME).write_text(fake)
        assert export_main.main(["--model", run, "--out", str(out)]) == 2
        assert "(figures, sampler.json, thesis.txt)" in capsys.readouterr().err
    assert (out / "thesis.txt").read_text() == "three years of work"
    # The folder is checked before the model is even read.
    broken = tmp_path / "broken"
    shutil.copytree(run, broken)
    (broken / rundir.MODEL_FILENAME).write_bytes(b"not a model")
    assert export_main.main(["--model", str(broken), "--out", str(out)]) == 2
    assert "holds files that are not an export (figures, sampler.json, thesis.txt)" in (
        capsys.readouterr().err
    )


def test_export_refuses_the_model_folder_and_folders_inside_it(exported, tmp_path, capsys):
    run = a_run_directory(exported, tmp_path)
    before = listing(run)
    assert export_main.main(["--model", str(run), "--out", str(run)]) == 2
    assert capsys.readouterr().err == (
        f"error: --out {run} is the --model folder; choose a new or empty folder outside it\n"
    )
    inside = run / "exported"
    assert export_main.main(["--model", str(run), "--out", str(inside)]) == 2
    assert capsys.readouterr().err == (
        f"error: --out {inside} is inside the --model folder {run}; "
        "choose a new or empty folder outside it\n"
    )
    assert not inside.exists()
    assert export_main.main(["--model", str(run), "--out", str(tmp_path)]) == 2
    assert f"error: --model {run} is inside --out {tmp_path}" in capsys.readouterr().err
    assert listing(run) == before
    assert os.listdir(tmp_path) == ["demo"]


def test_export_refuses_an_out_that_is_a_file(exported, tmp_path, capsys):
    run, _ = exported
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    assert export_main.main(["--model", run, "--out", str(notes)]) == 2
    assert capsys.readouterr().err == (f"error: {notes} is a file; choose a new or empty folder\n")
    assert export_main.main(["--model", run, "--out", f"{notes}/"]) == 2
    assert capsys.readouterr().err == f"error: {notes}/ is a file; choose a new or empty folder\n"
    below = notes / "exported"
    assert export_main.main(["--model", run, "--out", str(below)]) == 2
    assert capsys.readouterr().err == (
        f"error: {notes} is a file, so {below} cannot be created below it\n"
    )
    assert notes.read_text() == "keep me" and os.listdir(tmp_path) == ["notes.txt"]


def test_export_writes_into_an_empty_folder_or_over_a_previous_export(exported, tmp_path, capsys):
    _, out = exported
    # A new folder gets the permissions an ordinary mkdir gives, not mkdtemp's 0700.
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(out).st_mode & 0o777 == 0o777 & ~mask
    again = tmp_path / "again"
    again.mkdir(mode=0o750)
    assert export_main.main(["--model", out, "--out", str(again), "--text-length", "9"]) == 0
    assert os.stat(again).st_mode & 0o777 == 0o750  # the folder given is kept
    assert (again / tflite.INT8_FILENAME).exists()
    (again / "README.txt").write_text("my notes on this export")
    (again / "renders").mkdir()
    (again / "renders" / "hello.svg").write_text("<svg/>")
    # The export is its own --model: re-exported in place, with another text length.
    args = ["--model", str(again), "--out", str(again), "--no-int8", "--text-length", "10"]
    assert export_main.main(args) == 0, capsys.readouterr().err
    assert (again / "README.txt").read_text() == "my notes on this export"
    assert (again / "renders" / "hello.svg").read_text() == "<svg/>"
    assert not (again / tflite.INT8_FILENAME).exists()  # the exporter's, from the last export
    meta = json.loads((again / tflite.METADATA_FILENAME).read_text())
    assert meta["text_length"] == 10
    assert litert_runner.Sampler(str(again)).text_length == 10
    assert sample.load(str(again)).alphabet.size == 97
    assert os.listdir(tmp_path) == ["again"]  # no temporary folder left beside it
    written = set(export_folder.export_entries()) - {tflite.INT8_FILENAME}
    assert set(os.listdir(again)) == written | {"README.txt", "renders"}
    with pytest.raises(SystemExit):
        export_main.main(["--help"])
    help_text = capsys.readouterr().out
    assert "(replaced)" not in help_text and "previous export" in help_text


# The LiteRT runner.


def sampler_folder(exported, tmp_path, *, embedded=True) -> str:
    """A copy of the export's TFLite samplers and sampler.json; `embedded=False` strips the
    metadata out of the float32 flatbuffer, so the runner reads sampler.json."""
    folder = tmp_path / "sampler"
    folder.mkdir()
    for name in (tflite.FLOAT_FILENAME, tflite.INT8_FILENAME, tflite.METADATA_FILENAME):
        shutil.copyfile(os.path.join(exported[1], name), folder / name)
    if not embedded:
        path = folder / tflite.FLOAT_FILENAME
        model = schema.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
        model.metadata = [m for m in model.metadata if m.name != tflite.METADATA_NAME.encode()]
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        path.write_bytes(bytes(builder.Output()))
        assert tflite.read_metadata(path.read_bytes()) is None
    return str(folder)


def run_runner(folder, target, capsys, *extra):
    """Runs the runner's command line; returns (exit status, stderr)."""
    status = litert_runner.main([folder, "hi", "-o", str(target), *extra])
    return status, capsys.readouterr().err


def test_runner_refuses_an_output_it_cannot_write(exported, tmp_path, capsys):
    _, out = exported
    taken = tmp_path / "taken.svg"
    taken.mkdir()
    status, err = run_runner(out, taken, capsys)
    assert status == 2 and err == f"error: {taken}: is a folder; give a file name\n"
    # The output is checked before the sampler is read (and before any sampling).
    status, err = run_runner(str(tmp_path / "no-export"), taken, capsys)
    assert status == 2 and err.startswith(f"error: {taken}: is a folder")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    target = blocker / "hi.json"
    status, err = run_runner(out, target, capsys)
    assert status == 2 and err == f"error: {target}: {blocker} is a file, not a folder\n"
    assert blocker.read_text() == "a file" and os.listdir(taken) == []


def test_runner_names_a_truncated_sampler(exported, tmp_path, capsys):
    folder = sampler_folder(exported, tmp_path)
    path = os.path.join(folder, tflite.FLOAT_FILENAME)
    with open(path, "rb") as f:
        content = f.read()
    target = tmp_path / "hi.svg"
    for size in (0, 6, 100, len(content) // 2, len(content) - 1):
        with open(path, "wb") as f:
            f.write(content[:size])
        status, err = run_runner(folder, target, capsys)
        assert status == 2, size
        assert err.startswith(f"error: {path}: not a TFLite model, or a truncated one"), err
    # Some other file under the sampler's name.
    shutil.copyfile(os.path.join(folder, tflite.METADATA_FILENAME), path)
    status, err = run_runner(folder, target, capsys)
    assert status == 2 and err.startswith(f"error: {path}: not a TFLite model"), err
    assert not target.exists()


def test_runner_names_a_bad_sampler_json(exported, tmp_path, capsys):
    folder = sampler_folder(exported, tmp_path, embedded=False)
    path = os.path.join(folder, tflite.METADATA_FILENAME)
    with open(path, encoding="utf-8") as f:
        good = json.load(f)
    target = tmp_path / "hi.svg"
    # The stripped sampler with the good sampler.json beside it works.
    assert run_runner(folder, target, capsys)[0] == 0 and target.exists()
    target.unlink()

    def with_field(name, value):
        meta = json.loads(json.dumps(good))
        parent = meta
        *parents, last = name.split(".")
        for key in parents:
            parent = parent[key]
        if value is None:
            del parent[last]
        else:
            parent[last] = value
        return json.dumps(meta)

    cases = [
        ('{"format": "handwriting-tflite-sampler", ', "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        (with_field("alphabet", None), "field 'alphabet' is missing"),
        (with_field("alphabet.chars", 5), "field 'alphabet.chars' must be"),
        (with_field("alphabet.chars", "a"), "field 'alphabet.chars' holds 1 characters"),
        (with_field("state_widths", "abc"), "field 'state_widths' must be"),
        (with_field("state_widths", [1, 2, 3]), "field 'state_widths' sums to 6"),
        (with_field("start_point", [0.0, 1.0]), "field 'start_point' must be"),
        (with_field("normalization", None), "field 'normalization' is missing"),
        (with_field("normalization.offset_std", [0.0, 1.0]), "'normalization.offset_std'"),
        (with_field("points_per_char", "many"), "field 'points_per_char' must be"),
        (with_field("version", 1), "sampler format version 1"),
    ]
    for text, problem in cases:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        status, err = run_runner(folder, target, capsys)
        assert status == 2, text
        assert err.startswith(f"error: {path}: ") and problem in err, (problem, err)
        assert not target.exists()
    # Metadata embedded in the flatbuffer is checked the same way, and named by its file.
    float_path = os.path.join(folder, tflite.FLOAT_FILENAME)
    with open(float_path, "rb") as f:
        stripped = f.read()
    meta = dict(good)
    del meta["start_point"]
    with open(float_path, "wb") as f:
        f.write(tflite.embed_metadata(stripped, meta))
    status, err = run_runner(folder, target, capsys)
    assert status == 2
    assert err == f"error: {float_path}: field 'start_point' is missing\n", err
