"""`python -m fuzz.kills`: kills `data_prep` and `train.py` with SIGKILL at random moments,
resumes them, and checks that they end where an uninterrupted run ends.

    python -m fuzz.kills --prep 20 --train 20 [--seed 0] [--work DIR] [--report FILE]

Both programs run as child processes, as a user runs them. First the inputs: a small corpus
in the IAM-OnDB layout (`python -m data_prep synth`), and one uninterrupted run of each
program, timed. Then episodes: a fresh output folder, the program started and killed at a
moment drawn from the seed, started again (with `--resume` for training) and killed again
(`PREP_KILLS_PER_EPISODE`, `TRAIN_KILLS_PER_EPISODE` attempts; a run that ends before its
moment is no kill), then run to its end. A kill time is drawn uniformly over the
uninterrupted run's duration for half of the kills, and over its writing phase (timed from
the run's first new shard or checkpoint) for the other half, so kills land in the imports,
mid-shard and mid-checkpoint.

What is checked, for every episode:

- prep: the output folder holds exactly the uninterrupted build's files (shards and
  `dataset.json`), byte for byte, and nothing else.
- training: after each kill, the checkpoint `state.json` names is whole (every file's sha256
  is the one recorded; a half-written one would be named here); the next run starts from that
  checkpoint's step (its log says so) or refuses it naming the file (counted as loaded if it
  does neither); the finished run's weights and optimiser slots equal the uninterrupted run's
  (to float32 round-off, as tests/test_training.py compares them) at the same final step.

The report (stdout, and JSON with `--report`) counts kills by the moment they hit, the
results differing from the uninterrupted run, and half-written files loaded. Exit status 0
when nothing differs and nothing half-written was loaded, 1 otherwise.
"""

import argparse
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The corpus: lines of the embedded corpus's generator, and shards small enough that a build
# writes many of them (so that kills land mid-shard).
CORPUS_LINES = 450
CORPUS_WRITERS = 3
LINES_PER_SHARD = 10
# The training run: the tiny preset, a checkpoint after every step (so that kills land in
# checkpoint writes), validations every TRAIN_EVAL steps. A prediction network: the same
# loop, checkpoints and resume as synthesis, without the sample pictures drawn at the end
# (which would take a third of each run here).
TRAIN_STEPS = 8
TRAIN_EVAL = 4
TRAIN_SETTINGS = (
    "model.kind=prediction",
    f"train.max_steps={TRAIN_STEPS}",
    f"train.eval_every_steps={TRAIN_EVAL}",
    "train.checkpoint_every_steps=1",
    "train.learning_rate=0.003",
    "train.seed=3",
)
# Kill attempts before an episode's run is let finish (a training run costs more to start).
PREP_KILLS_PER_EPISODE = 2
TRAIN_KILLS_PER_EPISODE = 4
POLL_SECONDS = 0.02
RUN_TIMEOUT = 600  # a run still going after this long is a failure of its own


def _env() -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONHASHSEED="0")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _start(argv, log_path):
    log = open(log_path, "ab")  # closed by _finish
    process = subprocess.Popen(
        [sys.executable, *argv], cwd=ROOT, env=_env(), stdout=log, stderr=subprocess.STDOUT
    )
    return process, log


def _finish(process, log) -> int:
    try:
        return process.wait(timeout=RUN_TIMEOUT)
    finally:
        log.close()


def run_and_kill(argv, log_path, moment, snapshot):
    """Runs `argv`; kills it with SIGKILL at `moment`.

    Args:
        moment: `(seconds, anchor)`: the kill comes `seconds` after the process starts
            (`anchor` None), or after `anchor()` first holds (e.g. its first shard exists).
        snapshot: called just after the kill (or at the end): what the run left.

    Returns:
        `(killed, exit status, snapshot())`.
    """
    seconds, anchor = moment
    process, log = _start(argv, log_path)
    origin = time.monotonic() if anchor is None else None
    while process.poll() is None and (origin is None or time.monotonic() - origin < seconds):
        if origin is None and anchor():
            origin = time.monotonic()
        time.sleep(POLL_SECONDS)
    killed = process.poll() is None
    if killed:
        os.kill(process.pid, signal.SIGKILL)  # this child only, by its pid
    code = _finish(process, log)
    return killed, code, snapshot()


def timed_run(argv, log_path, watch, done):
    """Runs `argv` to its end.

    Returns:
        `(exit status, seconds, writing)`: `writing` is `(start, end)`, the seconds after the
        start when `watch()` first held (its writing began) and when `done()` first held.
    """
    process, log = _start(argv, log_path)
    start, first, last = time.monotonic(), None, None
    while process.poll() is None:
        if first is None and watch():
            first = time.monotonic() - start
        if first is not None and last is None and done():
            last = time.monotonic() - start
        time.sleep(POLL_SECONDS)
    code = _finish(process, log)
    seconds = time.monotonic() - start
    return code, seconds, (first, seconds if last is None else last)


def kill_moments(rng, duration, writing):
    """Endless kill moments, `(kind, seconds)`, the three kinds in turn: "run", drawn over the
    whole uninterrupted run's `duration`; "writing", over its writing phase (`writing`, its
    start and end); "in a write", at once when a write in progress is seen (`kill_moment`)."""
    while True:
        yield "run", rng.uniform(0.0, duration)
        yield "writing", rng.uniform(0.0, writing[1] - writing[0])
        yield "in a write", 0.0


def kill_moment(kind_and_seconds, observe, in_a_write):
    """The `run_and_kill` moment of a drawn kill: timed from the process' start ("run"), from
    the first change of `observe()` in the run ("writing"), or from the first time
    `in_a_write()` holds (a temporary shard or checkpoint file exists)."""
    kind, seconds = kind_and_seconds
    anchors = {"run": None, "writing": changed(observe), "in a write": in_a_write}
    return seconds, anchors[kind]


def changed(observe):
    """A test that holds once `observe()` returns another value than at its first call."""
    first = []

    def test() -> bool:
        value = observe()
        if not first:
            first.append(value)
        return value != first[0]

    return test


def _mtime(path):
    try:
        return os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return None


def listing(folder) -> dict:
    """File name -> bytes of every file in `folder` (none: {})."""
    if not os.path.isdir(folder):
        return {}
    out = {}
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as f:
            out[name] = f.read()
    return out


# ---------------------------------------------------------------------------------------------
# data_prep


def prep_moment(folder, before=frozenset()) -> str:
    """Where a build in `folder` was: which of its files exist (a temporary shard among
    `before`, the names when the run started, was left by an earlier kill)."""
    names = os.listdir(folder) if os.path.isdir(folder) else []
    new = [n for n in names if n not in before]
    if any(n.startswith(".") and ".tfrecord." in n and n.endswith(".tmp") for n in new):
        return "mid-shard"
    if any(n.startswith(".dataset.json.") for n in names):
        return "writing dataset.json"
    if "dataset.json" in names:
        return "after dataset.json"
    if any(n.endswith(".tfrecord") for n in names):
        return "between shards"
    return "before the first shard"


def _shard_names(out) -> frozenset:
    names = os.listdir(out) if os.path.isdir(out) else []
    return frozenset(n for n in names if ".tfrecord" in n)


def prep_argv(source, out) -> list:
    return [
        "-m",
        "data_prep",
        "iam-ondb",
        source,
        out,
        "--workers",
        "1",
        f"--lines-per-shard={LINES_PER_SHARD}",
    ]


def attack_prep(work, source, kills, rng, log) -> dict:
    reference = os.path.join(work, "prep-reference")
    code, duration, writing = timed_run(
        prep_argv(source, reference),
        os.path.join(work, "prep-reference.log"),
        changed(lambda: _shard_names(reference)),
        lambda: os.path.isfile(os.path.join(reference, "dataset.json")),
    )
    if code != 0:
        raise SystemExit(f"the uninterrupted prep run failed ({code}); see {work}")
    expected = listing(reference)
    log(
        f"prep: uninterrupted build {duration:.1f} s ({len(expected)} files; shards written "
        f"from {writing[0]:.1f} s to {writing[1]:.1f} s)"
    )
    result = {"kills": 0, "moments": {}, "differing": 0, "episodes": 0, "runs": 1}
    result["uninterrupted_seconds"] = round(duration, 1)
    times = kill_moments(rng, duration, writing)
    while result["kills"] < kills:
        episode = result["episodes"]
        out = os.path.join(work, f"prep-{episode:03d}")
        shutil.rmtree(out, ignore_errors=True)
        logfile = os.path.join(work, f"prep-{episode:03d}.log")
        for _ in range(PREP_KILLS_PER_EPISODE):
            if result["kills"] >= kills:
                break
            before = frozenset(os.listdir(out) if os.path.isdir(out) else ())
            killed, code, moment = run_and_kill(
                prep_argv(source, out),
                logfile,
                kill_moment(
                    next(times),
                    lambda o=out: _shard_names(o),
                    lambda o=out, b=before: prep_moment(o, b) == "mid-shard",
                ),
                lambda o=out, b=before: prep_moment(o, b),
            )
            result["runs"] += 1
            if not killed:
                break  # the build ended before its moment: it is the episode's last run
            result["kills"] += 1
            result["moments"][moment] = result["moments"].get(moment, 0) + 1
            log(f"prep kill {result['kills']}: {moment}")
        if killed:
            code = _finish(*_start(prep_argv(source, out), logfile))
            result["runs"] += 1
        same = code == 0 and listing(out) == expected
        result["differing"] += 0 if same else 1
        log(f"prep episode {episode}: {'same bytes' if same else 'DIFFERS'} (exit {code})")
        if same:
            shutil.rmtree(out)
        result["episodes"] += 1
    return result


# ---------------------------------------------------------------------------------------------
# train.py


def train_argv(data, run_dir, resume) -> list:
    argv = ["train.py", "--preset", "tiny", "--data", data, "--logdir", run_dir]
    argv += ["--verbose", "2", "--no-score", "--set", *TRAIN_SETTINGS]
    return argv + (["--resume"] if resume else [])


def checkpoint_files(run_dir) -> dict:
    """Name -> modification time (ns) of every entry of the run's checkpoint folder."""
    directory = os.path.join(run_dir, "checkpoint")
    names = sorted(os.listdir(directory)) if os.path.isdir(directory) else []
    return {name: _mtime(os.path.join(directory, name)) for name in names}


def checkpoint_view(run_dir, before=None) -> dict:
    """What a resumed run will find: the moment of the kill, and the checkpoint state.json
    names with whether each of its files is whole (its sha256 the one recorded).

    Args:
        before: `checkpoint_files` when the killed run started: files that a previous kill
            left, unchanged since, do not make a kill mid-checkpoint.
    """
    from handwriting.dataset_info import sha256_file

    directory = os.path.join(run_dir, "checkpoint")
    names = sorted(os.listdir(directory)) if os.path.isdir(directory) else []
    before = before or {}
    try:
        with open(os.path.join(directory, "state.json"), encoding="utf-8") as f:
            state = json.load(f)
    except (OSError, ValueError):
        state = None
    view = {"step": None, "whole": True}
    if state is not None:
        view["step"] = state["step"]
        for name, digest in state["files"].items():
            path = os.path.join(directory, name)
            if not os.path.isfile(path) or sha256_file(path) != digest:
                view["whole"] = False
    unnamed = [
        n
        for n in names
        if n != "state.json"
        and not _named(state, n)
        and before.get(n, 0) != _mtime(os.path.join(directory, n))
    ]
    if state is None and not names:
        view["moment"] = "before the first checkpoint"
    elif unnamed:
        view["moment"] = "mid-checkpoint"
    elif os.path.isfile(os.path.join(run_dir, "samples.png")) or (
        state is not None and state["step"] == TRAIN_STEPS
    ):
        view["moment"] = "after the last checkpoint"
    else:
        view["moment"] = "between checkpoints"
    return view


def _writing_checkpoint(run_dir, before) -> bool:
    """Whether a checkpoint write is in progress: its temporary weights file or the folder
    TensorFlow writes the iterator's files through exists, and is not one an earlier kill
    left (`before`: `checkpoint_files` when the run started)."""
    return any(
        (n.startswith(".step-") or n.endswith(".iterator_temp")) and before.get(n, 0) != mtime
        for n, mtime in checkpoint_files(run_dir).items()
    )


def _named(state, name) -> bool:
    return state is not None and (
        name == state["weights"] or name.startswith(state["iterator"] + ".")
    )


def final_arrays(run_dir) -> tuple:
    """`(step, {name: array})` of the checkpoint state.json names (as tests/test_training.py
    reads it)."""
    import h5py

    with open(os.path.join(run_dir, "checkpoint", "state.json"), encoding="utf-8") as f:
        state = json.load(f)
    arrays = {}
    with h5py.File(os.path.join(run_dir, "checkpoint", state["weights"]), "r") as f:
        f.visititems(
            lambda name, obj: (
                arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None
            )
        )
    return state["step"], arrays


def same_arrays(a: dict, b: dict) -> bool:
    return sorted(a) == sorted(b) and all(np.allclose(a[k], b[k], rtol=1e-5, atol=1e-6) for k in a)


def started_from(logfile, offset) -> int | None:
    """The step the run logged in `logfile` after `offset` bytes says it starts from."""
    with open(logfile, "rb") as f:
        f.seek(offset)
        text = f.read().decode("utf-8", "replace")
    for line in text.splitlines():
        if line.startswith("Training from step "):
            return int(line.split()[3])
    return None


def attack_train(work, data, kills, rng, log) -> dict:
    reference = os.path.join(work, "train-reference")
    state = os.path.join(reference, "checkpoint", "state.json")
    code, duration, writing = timed_run(
        train_argv(data, reference, False),
        os.path.join(work, "train-reference.log"),
        changed(lambda: _mtime(state)),
        lambda: False,  # its writing phase lasts to its end: checkpoints, model.keras, samples
    )
    if code != 0 or writing[0] is None:
        raise SystemExit(f"the uninterrupted training run failed ({code}); see {work}")
    step, expected = final_arrays(reference)
    log(
        f"train: uninterrupted run {duration:.1f} s (the first checkpoint after {writing[0]:.1f} s)"
    )
    result = {"kills": 0, "moments": {}, "differing": 0, "episodes": 0, "runs": 1}
    result.update(uninterrupted_seconds=round(duration, 1), half_written_loaded=0)
    result.update(half_written_named=0, resumed_elsewhere=0)
    times = kill_moments(rng, duration, writing)
    while result["kills"] < kills:
        episode = result["episodes"]
        run_dir = os.path.join(work, f"train-{episode:03d}")
        shutil.rmtree(run_dir, ignore_errors=True)
        logfile = os.path.join(work, f"train-{episode:03d}.log")
        state_path = os.path.join(run_dir, "checkpoint", "state.json")
        view = None  # what the previous kill left
        for _ in range(TRAIN_KILLS_PER_EPISODE):
            if result["kills"] >= kills:
                break
            offset = os.path.getsize(logfile) if os.path.exists(logfile) else 0
            before = checkpoint_files(run_dir)
            killed, code, after = run_and_kill(
                train_argv(data, run_dir, True),
                logfile,
                kill_moment(
                    next(times),
                    lambda p=state_path: _mtime(p),
                    lambda r=run_dir, b=before: _writing_checkpoint(r, b),
                ),
                lambda r=run_dir, b=before: checkpoint_view(r, b),
            )
            result["runs"] += 1
            _count_resume(result, view, logfile, offset)
            if killed:
                result["kills"] += 1
                moment = after["moment"]
                result["moments"][moment] = result["moments"].get(moment, 0) + 1
                if not after["whole"]:
                    result["half_written_named"] += 1
                log(f"train kill {result['kills']}: {moment}, state.json at step {after['step']}")
                view = after
                if after["step"] == TRAIN_STEPS:
                    break  # the training is done: later kills would hit only its end
            else:
                break  # the run ended before its moment: it is the episode's last run
        if killed:
            offset = os.path.getsize(logfile) if os.path.exists(logfile) else 0
            code = _finish(*_start(train_argv(data, run_dir, True), logfile))
            result["runs"] += 1
            _count_resume(result, view, logfile, offset)
        same = code == 0 and os.path.isfile(os.path.join(run_dir, "checkpoint", "state.json"))
        if same:
            final_step, arrays = final_arrays(run_dir)
            same = final_step == step and same_arrays(arrays, expected)
        result["differing"] += 0 if same else 1
        log(f"train episode {episode}: {'same weights' if same else 'DIFFERS'} (exit {code})")
        if same:
            shutil.rmtree(run_dir)
        result["episodes"] += 1
    return result


def _count_resume(result, view, logfile, offset) -> None:
    """Checks where a run after a kill started: from the step of state.json's checkpoint
    (which must then be whole), or from 0 when there was none."""
    if view is None:
        return
    start = started_from(logfile, offset)
    if start is None:  # killed before it logged a start, or refused the checkpoint
        return
    if not view["whole"]:
        result["half_written_loaded"] += 1
    if start != (view["step"] or 0):
        result["resumed_elsewhere"] += 1


# ---------------------------------------------------------------------------------------------


def make_corpus(work) -> str:
    source = os.path.join(work, "source")
    argv = ["-m", "data_prep", "synth", source, "--lines", str(CORPUS_LINES)]
    argv += ["--writers", str(CORPUS_WRITERS), "--workers", "1"]
    code = _finish(*_start(argv, os.path.join(work, "synth.log")))
    if code != 0:
        raise SystemExit(f"python -m data_prep synth failed ({code}); see {work}/synth.log")
    return source


def run(prep: int, train: int, seed: int, work: str, log=print) -> dict:
    """Runs the kills; returns the report (see the module docstring)."""
    rng = random.Random(seed)
    start = time.monotonic()
    os.makedirs(work, exist_ok=True)
    source = make_corpus(work)
    report = {"seed": seed, "command": f"python -m fuzz.kills --prep {prep} --train {train}"}
    report["prep"] = attack_prep(work, source, prep, rng, log)
    if train:
        data = os.path.join(work, "prep-reference")
        report["train"] = attack_train(work, data, train, rng, log)
    report["minutes"] = round((time.monotonic() - start) / 60, 1)
    report["machine"] = (
        f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.1f} at the end"
    )
    return report


def failures(report) -> int:
    parts = [report["prep"]] + ([report["train"]] if "train" in report else [])
    return sum(
        p["differing"] + p.get("half_written_loaded", 0) + p.get("resumed_elsewhere", 0)
        for p in parts
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.kills", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--prep", type=int, default=20, help="kills of data_prep (default 20)")
    parser.add_argument("--train", type=int, default=20, help="kills of train.py (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="draws the kill moments")
    parser.add_argument("--work", help="working folder (default: a temporary one, removed)")
    parser.add_argument("--report", help="also write the report as JSON to this file")
    args = parser.parse_args(argv)
    work = args.work or tempfile.mkdtemp(prefix="kills-")
    try:
        report = run(args.prep, args.train, args.seed, work)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(report, indent=2)
    print(text)
    if args.report:
        with open(args.report, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    bad = failures(report)
    print(f"{bad} failure(s): results differing, half-written files loaded" if bad else "all whole")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
