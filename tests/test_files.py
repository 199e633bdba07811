"""Tests of `handwriting.files`: atomic writes, output-path checks, stale temporaries."""

import os

import pytest

from handwriting import files


def test_write_text_is_atomic_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "out.txt"
    files.write_text(path, "one")
    files.write_text(path, "two")
    assert path.read_text() == "two"
    assert os.listdir(tmp_path / "sub") == ["out.txt"]


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError), files.atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write("half")
        raise RuntimeError("killed")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_output_problem_names_what_is_wrong(tmp_path):
    assert files.output_problem(tmp_path / "new.svg") is None
    assert files.output_problem(tmp_path / "a" / "b" / "new.svg") is None  # folders are made
    (tmp_path / "dir.svg").mkdir()
    assert (
        files.output_problem(tmp_path / "dir.svg")
        == f"{tmp_path / 'dir.svg'} is a folder; give a file name"
    )
    (tmp_path / "file").write_text("x")
    problem = files.output_problem(tmp_path / "file" / "deeper" / "x.svg")
    assert problem == (
        f"{tmp_path / 'file'} is a file, so {tmp_path / 'file' / 'deeper' / 'x.svg'} "
        "cannot be created below it"
    )


def test_remove_stale_temporaries_removes_only_atomic_path_leftovers(tmp_path):
    # What a process killed inside `atomic_path` leaves behind, made by `atomic_path` itself.
    # Never left (kept referenced, so not closed): the temporaries stay, as after a SIGKILL.
    open_contexts = [
        files.atomic_path(tmp_path / name, keep_suffix=True)
        for name in ("step-000000004.weights.h5", "model.keras")
    ]
    for context in open_contexts:
        context.__enter__()
    (tmp_path / "state.json").write_text("{}")
    (tmp_path / ".hidden.tmp").write_text("a user's file")
    (tmp_path / "notes.abcdefgh.tmp").write_text("a user's file")
    stale = sorted(n for n in os.listdir(tmp_path) if n.startswith((".step", ".model")))
    assert len(stale) == 2
    assert files.remove_stale_temporaries(tmp_path) == stale
    assert sorted(os.listdir(tmp_path)) == [".hidden.tmp", "notes.abcdefgh.tmp", "state.json"]
    assert files.remove_stale_temporaries(tmp_path / "missing") == []
