"""`--strategy multi_worker` for real: `train.py` as two worker processes on 127.0.0.1, their
cluster in TF_CONFIG, against one process with the same global batch; one worker killed with
SIGKILL mid-run, the other stopping with an error of its own, both started again with --resume.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from test_training import checkpoint_arrays, events, write_corpus

import train as train_cli
from handwriting import distribution, rundir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 8
# The tiny preset, validated (and so checkpointed) after every step: the history holds every
# step's training loss. A batch of 4 lines: 2 per worker, 4 in the one process. A prediction
# network: the same loop, checkpoints and resume as synthesis, without the sample pictures
# drawn at the end (which would take half of each run here); tests/test_training.py compares
# synthesis over two replicas with one.
SETTINGS = [
    "model.kind=prediction",
    f"train.max_steps={STEPS}",
    "train.eval_every_steps=1",
    "train.learning_rate=0.003",
    "train.seed=3",
]
KILL_AT = 3  # worker 1 is killed once the chief's checkpoint reaches this step
# The survivor must stop by then: TensorFlow's coordination service declares a worker lost
# after 10 s without its heartbeats.
LOST_WORKER_SECONDS = 60
RUN_SECONDS = 300  # a cluster still running after this long hangs
POLL_SECONDS = 0.05


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    directory = tmp_path_factory.mktemp("corpus")
    write_corpus(directory)
    return str(directory)


@pytest.fixture
def processes():
    """The worker processes a test starts; those still running at its end are killed."""
    started = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()  # SIGKILL: a worker blocked in a collective ignores SIGTERM
            process.wait()


def _arguments(corpus, run_dir):
    return [
        "--preset", "tiny", "--data", corpus, "--logdir", str(run_dir),
        "--verbose", "2", "--no-score", "--set", *SETTINGS,
    ]  # fmt: skip


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start_cluster(processes, corpus, run_dirs, logs, *extra):
    """`train.py --strategy multi_worker` as worker 0 (the chief) and worker 1, on free ports,
    each with its run directory of `run_dirs`; returns the processes and their logs' paths."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    workers, paths = [], []
    for index, run_dir in enumerate(run_dirs):
        task = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_CONFIG": json.dumps(task)}
        argv = [*_arguments(corpus, run_dir), "--strategy", "multi_worker", *extra]
        paths.append(f"{logs}-worker{index}.log")
        with open(paths[-1], "w") as log:
            workers.append(
                subprocess.Popen(
                    [sys.executable, "train.py", *argv],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        processes.append(workers[-1])
    return workers, paths


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def _wait(process, seconds, log):
    try:
        return process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {seconds} s:\n{_read(log)[-3000:]}")


def _checkpoint_step(run_dir):
    try:
        state = rundir.TrainingState.load(run_dir)
    except (rundir.TrainingError, OSError):  # read while the chief replaces its files
        return -1
    return state.step if state else -1


@pytest.mark.slow
def test_two_workers_train_as_one_process_and_resume_after_one_is_killed(
    corpus, tmp_path, processes
):
    reference = tmp_path / "one-process"
    assert train_cli.main([*_arguments(corpus, reference), "--strategy", "one_device"]) == 0

    # Both workers train; worker 1 is killed mid-run.
    run_dir = tmp_path / "cluster"
    workers, logs = _start_cluster(processes, corpus, [run_dir] * 2, tmp_path / "first")
    while _checkpoint_step(run_dir) < KILL_AT:
        assert workers[0].poll() is None, _read(logs[0])[-3000:]
        time.sleep(POLL_SECONDS)
    workers[1].send_signal(signal.SIGKILL)
    # The chief finds its peer gone and stops with an error that says what to do.
    assert _wait(workers[0], LOST_WORKER_SECONDS, logs[0]) == 1
    chief_log = _read(logs[0])
    assert "train.py: error: the cluster lost a worker" in chief_log, chief_log[-3000:]
    assert "Start every worker again with --resume" in chief_log
    kept = rundir.TrainingState.load(run_dir).step
    assert KILL_AT <= kept < STEPS  # killed mid-run

    # Worker 1 started again on a run directory of its own, which holds no run: it would start
    # from step 0 and the chief from the checkpoint. Both refuse, and nothing is written.
    elsewhere = tmp_path / "elsewhere"
    workers, logs = _start_cluster(
        processes, corpus, [run_dir, elsewhere], tmp_path / "apart", "--resume"
    )
    for worker, log in zip(workers, logs, strict=True):
        assert _wait(worker, RUN_SECONDS, log) == 1
        assert f"would start from different runs: at steps {kept}, 0" in _read(log)
    assert rundir.TrainingState.load(run_dir).step == kept
    assert not elsewhere.exists()  # a worker but the chief writes no file

    # Both started again on the run: it continues from the checkpoint and ends as one process.
    workers, logs = _start_cluster(
        processes, corpus, [run_dir] * 2, tmp_path / "resumed", "--resume"
    )
    for worker, log in zip(workers, logs, strict=True):
        assert _wait(worker, RUN_SECONDS, log) == 0, _read(log)[-3000:]
        assert f"Training from step {kept} to {STEPS}" in _read(log)
    assert f"Training ended at step {STEPS}: reached {STEPS} steps." in _read(logs[1])

    state, weights = checkpoint_arrays(str(run_dir))
    reference_state, reference_weights = checkpoint_arrays(str(reference))
    assert state.step == reference_state.step == STEPS
    assert weights["optimizer/vars/0"] == STEPS  # the optimiser's step counter
    assert sorted(weights) == sorted(reference_weights)
    for name, value in reference_weights.items():
        np.testing.assert_allclose(weights[name], value, rtol=1e-4, atol=1e-6, err_msg=name)
    assert state.best_step == reference_state.best_step
    assert state.best_val_loss == pytest.approx(reference_state.best_val_loss, rel=1e-4)

    # Every step's training loss and validation loss, as the chief logged them in both
    # sessions, is the one process's.
    for run in ("train", "validation"):
        expected = dict(events(str(reference), run)["epoch_loss"])
        logged = events(str(run_dir), run)["epoch_loss"]
        assert sorted(expected) == list(range(1, STEPS + 1))
        assert {step for step, _ in logged} == set(expected)
        for step, value in logged:
            np.testing.assert_allclose(value, expected[step], rtol=1e-4, err_msg=f"{run} {step}")


def test_every_replica_of_one_process_holds_its_values():
    strategy = tf.distribute.get_strategy()
    assert distribution.worker_count(strategy) == 1
    np.testing.assert_array_equal(distribution.every_replica(strategy, [3, 1.5]), [[3, 1.5]])
