"""A seeded slice of `make kills` (`fuzz/kills.py`, RELIABILITY.md): `python -m data_prep` and
`train.py` killed with SIGKILL at random moments and resumed end where uninterrupted runs end;
and the harness's own checks, shown to catch what they look for."""

import dataclasses
import os

import pytest

from fuzz import kills
from handwriting import rundir
from handwriting.dataset_info import sha256_file


@pytest.mark.slow
def test_killed_and_resumed_runs_end_as_uninterrupted_ones(tmp_path):
    lines = []
    report = kills.run(prep=3, train=1, seed=1, work=str(tmp_path), log=lines.append)
    assert report["prep"]["kills"] == 3 and report["train"]["kills"] == 1
    assert report["prep"]["differing"] == 0, lines
    assert report["train"]["differing"] == 0, lines
    assert report["train"]["half_written_loaded"] == 0
    assert report["train"]["resumed_elsewhere"] == 0
    assert kills.failures(report) == 0
    assert sum(report["prep"]["moments"].values()) == 3


def _checkpoint(run_dir, step):
    """A checkpoint's files (any bytes) and a state.json naming them with their sha256."""
    directory = run_dir / rundir.CHECKPOINT_DIR
    directory.mkdir(parents=True, exist_ok=True)
    state = rundir.TrainingState(
        step,
        rundir.WEIGHTS_FILENAME.format(step=step),
        rundir.ITERATOR_PREFIX.format(step=step),
        1.0,
        None,
        0,
        0,
    )
    names = [state.weights, state.iterator + ".index", state.iterator + ".data-00000-of-00001"]
    for name in names:
        (directory / name).write_bytes(f"{name} holds these bytes".encode())
    files = {name: sha256_file(directory / name) for name in names}
    state = dataclasses.replace(state, files=files)
    state.save(run_dir)
    return directory, state


def test_the_harness_sees_a_half_written_checkpoint_that_state_json_names(tmp_path):
    directory, state = _checkpoint(tmp_path, 4)
    view = kills.checkpoint_view(str(tmp_path))
    assert view == {"step": 4, "whole": True, "moment": "between checkpoints"}
    with open(directory / state.weights, "r+b") as f:
        f.truncate(5)  # what a write cut short would leave, were it not atomic
    assert kills.checkpoint_view(str(tmp_path))["whole"] is False
    # And a resumed run would not load it: state.json's reader names the file.
    with pytest.raises(rundir.TrainingError, match=f"^{directory / state.weights}: sha256"):
        rundir.TrainingState.load(tmp_path)


def test_the_harness_tells_a_kill_mid_checkpoint(tmp_path):
    directory, _ = _checkpoint(tmp_path, 4)
    (directory / ".step-000000005.weights.h5.a1b2c3d4.tmp.weights.h5").write_bytes(b"\x89HDF")
    assert kills.checkpoint_view(str(tmp_path))["moment"] == "mid-checkpoint"
    # The same file left by an earlier kill, untouched by the run killed now: not its write.
    before = kills.checkpoint_files(str(tmp_path))
    assert kills.checkpoint_view(str(tmp_path), before)["moment"] == "between checkpoints"


def test_the_harness_tells_a_kill_mid_shard(tmp_path):
    assert kills.prep_moment(str(tmp_path / "none")) == "before the first shard"
    (tmp_path / "train-00000-of-00002.tfrecord").write_bytes(b"")
    assert kills.prep_moment(str(tmp_path)) == "between shards"
    (tmp_path / ".train-00001-of-00002.tfrecord.x1y2z3w4.tmp").write_bytes(b"")
    assert kills.prep_moment(str(tmp_path)) == "mid-shard"
    os.remove(tmp_path / ".train-00001-of-00002.tfrecord.x1y2z3w4.tmp")
    (tmp_path / "dataset.json").write_text("{}")
    assert kills.prep_moment(str(tmp_path)) == "after dataset.json"


def test_a_differing_build_is_counted(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        folder.mkdir()
        (folder / "train-00000-of-00001.tfrecord").write_bytes(b"lines")
    assert kills.listing(a) == kills.listing(b)
    (b / "train-00000-of-00001.tfrecord").write_bytes(b"linez")
    assert kills.listing(a) != kills.listing(b)
    (b / "train-00000-of-00001.tfrecord").write_bytes(b"lines")
    (b / ".dataset.json.q1w2e3r4.tmp").write_bytes(b"{")  # a file left over is a difference
    assert kills.listing(a) != kills.listing(b)
