"""The page's "Make it my hand": adaptation jobs run by `python -m handwriting serve`.

The page sends the lines a person wrote on its pad (the stroke JSON, each line with its text).
`AdaptJobs.start` checks them (`check_request`) and runs one job at a time in the background,
each step a child process, so that the server stays responsive and a job can be stopped (its
child terminated) at any moment:

1. `python -m handwriting adapt --model BASE --lines lines.json --out model --progress
   progress.json` (`handwriting.adapt`; the page follows `progress.json` through `status`);
2. `python -m export --model model --out export`: the adapted model exported for the page
   (served as `/my-model/`), with the writer's lines as its `styles.json` and `adapt.json`;
3. `my-hand.zip`: the export folder zipped (written atomically, last: a job is finished when
   its zip exists). Unzipped, it is what the command line's `--model` and
   `export/litert_runner.py` take.

Each job has a folder of the work folder (`serve --work`, by default
`serve.default_work_dir()`), named after the time it started:

    <work>/hand-20260102-153000-k2j4x9ab/
        lines.json      the lines sent
        log.txt         what the children printed (a failed job's message comes from it)
        progress.json   adapt's progress (`handwriting.adapt.AdaptProgress`)
        model/          the adapted model directory
        export/         its export
        my-hand.zip     the export folder, under `my-hand/`

A stopped job's folder is removed; a failed one's is kept for its log. When the server starts,
the newest finished job of the work folder is the personal model again.

Nothing here imports TensorFlow: the children do.
"""

import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile

from handwriting import files, rundir
from handwriting.alphabet import Alphabet
from handwriting.errors import SampleError
from handwriting.export_cache import child_error, exporter_environment
from handwriting.export_layout import is_previous_export
from handwriting.strokes import (
    MAX_PRIME_POINTS,
    MIN_LINE_POINTS,
    Prime,
    parse_lines,
    save_strokes_json,
)
from handwriting.text import check_text

# Lines the page asks for before it offers to adapt: adapting was measured on 5 lines
# (BENCHMARKS.md, "Style fidelity": 4 trained, 1 held out). The page reads it from `status`.
MIN_PAGE_LINES = 5
# Most lines a request may hold: every step trains on all of them at once.
MAX_PAGE_LINES = 50
# Largest request body read: MAX_PAGE_LINES lines of MAX_PRIME_POINTS points take about 5 MiB
# of JSON (about 25 bytes a point).
MAX_REQUEST_BYTES = 8 * 1024 * 1024
# The states of a job in progress (then "done", "failed" or "cancelled"; "idle": none yet).
RUNNING = ("adapting", "exporting")
# Seconds a child has to end after SIGTERM before it is killed.
STOP_SECONDS = 10.0
# A job folder's names.
JOB_PREFIX = "hand-"
LINES_FILENAME = "lines.json"
LOG_FILENAME = "log.txt"
PROGRESS_FILENAME = "progress.json"
MODEL_DIRNAME = "model"
EXPORT_DIRNAME = "export"
ZIP_FILENAME = "my-hand.zip"
# The folder the zip unpacks to.
ZIP_FOLDER = "my-hand"
# What the page's requests are called in the errors.
REQUEST_NAME = "the lines sent"


class RequestError(ValueError):
    """A request refused; `status` is its HTTP status, the message says why to the person."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclasses.dataclass(frozen=True)
class AdaptSettings:
    """Options of the jobs' `python -m handwriting adapt`; None: the command's default."""

    minutes: float | None = None  # time budget
    steps: int | None = None  # step limit
    learning_rate: float | None = None  # Adam's step size

    def arguments(self) -> list:
        """The command-line options of the settings given."""
        out = []
        for flag, value in (
            ("--minutes", self.minutes),
            ("--steps", self.steps),
            ("--learning-rate", self.learning_rate),
        ):
            if value is not None:
                out += [flag, str(value)]
        return out


@dataclasses.dataclass(frozen=True)
class PersonalModel:
    """A finished job's adapted model: its export (what the page runs) and its zip."""

    export_dir: str
    zip_path: str
    record: dict  # its `adapt.json` (empty when unreadable)


@dataclasses.dataclass
class _Job:
    folder: str
    lines: int
    started: float  # time.monotonic()
    state: str = "adapting"
    error: str | None = None
    ended: float | None = None
    process: subprocess.Popen | None = None  # the running child
    stop: bool = False  # asked to stop


class _Stopped(Exception):
    """The job was asked to stop."""


class _Failed(Exception):
    """A step of the job failed; the message says why."""


def check_request(body: bytes, alphabet: Alphabet) -> list:
    """The lines of a request to adapt: `[(text, (N, 3) float32 strokes), ...]`.

    Raises:
        RequestError: (400) not the stroke JSON, fewer than `MIN_PAGE_LINES` or more than
            `MAX_PAGE_LINES` lines, a line without text or with characters outside
            `alphabet`, or with too few or too many points; the message names the line.
    """
    try:
        lines = parse_lines(body, REQUEST_NAME)
    except SampleError as e:
        raise RequestError(str(e)) from None
    if len(lines) < MIN_PAGE_LINES:
        raise RequestError(
            f"{REQUEST_NAME}: {len(lines)} line(s); making your hand needs at least "
            f"{MIN_PAGE_LINES}: write more lines on the pad"
        )
    if len(lines) > MAX_PAGE_LINES:
        raise RequestError(
            f"{REQUEST_NAME}: {len(lines)} lines; at most {MAX_PAGE_LINES} are adapted on"
        )
    for number, (text, strokes) in enumerate(lines, start=1):
        where = f"{REQUEST_NAME}: line {number}"
        if text is None:
            raise RequestError(f"{where}: no text; each line goes with what it says")
        try:
            check_text(text, alphabet, what=where)
        except SampleError as e:
            raise RequestError(str(e)) from None
        if not MIN_LINE_POINTS <= len(strokes) <= MAX_PRIME_POINTS:
            raise RequestError(
                f"{where}: {len(strokes)} points; a line has {MIN_LINE_POINTS} to "
                f"{MAX_PRIME_POINTS}"
            )
    return lines


def zip_folder(folder, path, name: str) -> None:
    """Writes every file below `folder` into the zip `path`, under the folder `name`/,
    atomically (a reader sees no zip or the whole one)."""
    with (
        files.atomic_path(path) as tmp,
        zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive,
    ):
        for root, dirs, names in os.walk(folder):
            dirs.sort()
            for entry in sorted(names):
                source = os.path.join(root, entry)
                relative = os.path.relpath(source, folder).replace(os.sep, "/")
                archive.write(source, f"{name}/{relative}")


def latest_personal(work_dir):
    """The newest finished job's `PersonalModel` in `work_dir`, or None."""
    try:
        names = sorted(os.listdir(work_dir), reverse=True)
    except OSError:
        return None
    for name in names:
        if name.startswith(JOB_PREFIX):
            personal = _finished(os.path.join(work_dir, name))
            if personal is not None:
                return personal
    return None


def _finished(folder):
    """The `PersonalModel` of a job folder whose zip was written, else None."""
    export_dir = os.path.join(folder, EXPORT_DIRNAME)
    zip_path = os.path.join(folder, ZIP_FILENAME)
    if not (os.path.isfile(zip_path) and is_previous_export(export_dir)):
        return None
    record = _read_json(os.path.join(export_dir, rundir.ADAPT_FILENAME))
    return PersonalModel(export_dir, zip_path, record)


def _read_json(path) -> dict:
    """The JSON object of `path` (`files.read_json`); {} when missing, unreadable or another
    value: a job's progress and record are shown when they can be read."""
    try:
        obj = files.read_json(path)
    except (OSError, ValueError):  # FileNotFoundError, files.JSONFileError
        return {}
    return obj if isinstance(obj, dict) else {}


class AdaptJobs:
    """Adapts the page's model to a person's lines: one job at a time, in the background.

    Args:
        base_dir: the model the jobs start from (a model directory or an export).
        work_dir: where the jobs' folders go (created with the first job).
        alphabet: the model's `Alphabet`, which the lines' texts are checked against (None:
            unknown, every request is refused).
        settings: the options of `python -m handwriting adapt`.
        log: called with a line when a job starts and ends.
    """

    def __init__(self, base_dir, work_dir, alphabet, settings=None, log=print):
        self.base_dir = os.path.abspath(base_dir)
        self.work_dir = os.path.abspath(work_dir)
        self.alphabet = alphabet
        self.settings = settings or AdaptSettings()
        self.log = log
        self._lock = threading.Lock()
        self._job = None  # the latest job started: a _Job
        self._thread = None  # its thread
        self.personal = latest_personal(self.work_dir)  # the personal model, or None

    # -- the requests ---------------------------------------------------------------------------

    def status(self) -> dict:
        """What the page shows: the limits of a request, and the latest job's state, step,
        held-out nats per point, elapsed seconds and time budget, or error."""
        with self._lock:
            job = dataclasses.replace(self._job) if self._job else None
        out = {
            "min_lines": MIN_PAGE_LINES,
            "max_lines": MAX_PAGE_LINES,
            "min_points": MIN_LINE_POINTS,
            "max_points": MAX_PRIME_POINTS,
            "max_request_bytes": MAX_REQUEST_BYTES,
            "work_dir": self.work_dir,
            "personal": self.personal is not None,
            "state": "idle",
        }
        if job is None:
            return out
        progress = _read_json(os.path.join(job.folder, PROGRESS_FILENAME))
        step, steps = progress.get("step"), progress.get("steps")
        seconds, budget = progress.get("seconds"), progress.get("budget_seconds")
        fraction = None
        if job.state == "adapting" and steps and budget:
            fraction = min(1.0, max(step / steps, seconds / budget))
        elif job.state == "done":
            fraction = 1.0
        out.update(
            state=job.state,
            folder=None if job.state == "cancelled" else job.folder,
            lines=job.lines,
            step=step,
            steps=steps,
            held_out=progress.get("held_out"),
            held_out_before=progress.get("held_out_before"),
            best_held_out=progress.get("best_held_out"),
            elapsed=(job.ended or time.monotonic()) - job.started,
            budget=budget,
            fraction=fraction,
            error=job.error,
        )
        return out

    def start(self, body: bytes) -> dict:
        """Checks the lines of a request and starts a job on them; returns `status()`.

        Raises:
            RequestError: bad lines (400), a job already running (409), a work folder that
                cannot be written (500).
        """
        if self.alphabet is None:
            raise RequestError(f"{self.base_dir}: the model's alphabet is unknown", 500)
        lines = check_request(body, self.alphabet)
        with self._lock:
            running = self._job is not None and self._job.state in RUNNING
            if running:
                raise RequestError(
                    "an adaptation is already running; wait for it to finish or stop it", 409
                )
            problem = files.creation_problem(self.work_dir)
            if problem:
                raise RequestError(f"the folder of adapted models (serve --work): {problem}", 500)
            os.makedirs(self.work_dir, exist_ok=True)
            stamp = time.strftime("%Y%m%d-%H%M%S")
            folder = tempfile.mkdtemp(prefix=f"{JOB_PREFIX}{stamp}-", dir=self.work_dir)
            samples = [Prime(strokes=strokes, text=text) for text, strokes in lines]
            save_strokes_json(samples, os.path.join(folder, LINES_FILENAME))
            self._job = _Job(folder=folder, lines=len(lines), started=time.monotonic())
            self._thread = threading.Thread(
                target=self._run, args=(self._job,), name="adapt job", daemon=True
            )
            self._thread.start()
        self.log(f"adapting the model to {len(lines)} lines of the page in {folder}")
        return self.status()

    def cancel(self) -> dict:
        """Stops the running job and removes its folder; returns `status()`.

        Raises:
            RequestError: (409) no job is running.
        """
        with self._lock:
            job, thread = self._job, self._thread
            if job is None or job.state not in RUNNING:
                raise RequestError("no adaptation is running", 409)
            job.stop = True
            process = job.process
        if process is not None:
            _terminate(process)
        thread.join(STOP_SECONDS + 5.0)
        return self.status()

    def close(self) -> None:
        """Stops a running job (the server is shutting down)."""
        try:
            self.cancel()
        except RequestError:
            pass

    # -- the job --------------------------------------------------------------------------------

    def _run(self, job: _Job) -> None:
        model_dir = os.path.join(job.folder, MODEL_DIRNAME)
        export_dir = os.path.join(job.folder, EXPORT_DIRNAME)
        adapt = [
            *(sys.executable, "-m", "handwriting", "adapt", "--model", self.base_dir),
            *("--lines", os.path.join(job.folder, LINES_FILENAME), "--out", model_dir),
            *("--progress", os.path.join(job.folder, PROGRESS_FILENAME)),
            *self.settings.arguments(),
        ]
        export = [sys.executable, "-m", "export", "--model", model_dir, "--out", export_dir]
        try:
            self._child(job, "adapting", adapt)
            self._child(job, "exporting", export)
            # The writer's lines (styles.json) and adapt.json travel with the export.
            for name in sorted(os.listdir(model_dir)):
                if not os.path.exists(os.path.join(export_dir, name)):
                    shutil.copyfile(os.path.join(model_dir, name), os.path.join(export_dir, name))
            zip_folder(export_dir, os.path.join(job.folder, ZIP_FILENAME), ZIP_FOLDER)
            personal = _finished(job.folder)
            if personal is None:
                raise _Failed(f"{export_dir}: the export is incomplete")
        except _Stopped:
            shutil.rmtree(job.folder, ignore_errors=True)
            self._end(job, "cancelled")
            self.log(f"adaptation stopped; removed {job.folder}")
            return
        except (_Failed, OSError) as e:
            self._end(job, "failed", str(e))
            self.log(f"adaptation failed: {e}")
            return
        with self._lock:
            stopped = job.stop
            if not stopped:
                self.personal = personal
        if stopped:  # asked to stop while it zipped: stopped all the same
            shutil.rmtree(job.folder, ignore_errors=True)
            self._end(job, "cancelled")
            return
        self._end(job, "done")
        self.log(f"your hand is ready: {export_dir} (zipped: {personal.zip_path})")

    def _end(self, job: _Job, state: str, error: str | None = None) -> None:
        with self._lock:
            job.state, job.error, job.ended = state, error, time.monotonic()

    def _child(self, job: _Job, state: str, command: list) -> None:
        """Runs one step of the job as a child process; raises `_Stopped` or `_Failed`."""
        log_path = os.path.join(job.folder, LOG_FILENAME)
        cwd, env = exporter_environment()  # the `export` and `handwriting` this process has
        env = {**env, "PYTHONUNBUFFERED": "1"}
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        with self._lock:
            if job.stop:
                raise _Stopped
            job.state = state
            with open(log_path, "ab") as out:
                out.write(f"$ {' '.join(command)}\n".encode())
                out.flush()
                job.process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=cwd,
                    env=env,
                    start_new_session=True,  # the terminal's Ctrl-C reaches the server only
                )
        code = job.process.wait()
        with self._lock:
            job.process = None
            if job.stop:
                raise _Stopped
        if code != 0:
            what = "adapting" if state == "adapting" else "exporting the adapted model"
            raise _Failed(f"{what} failed: {_failure(log_path, code)}")


def _failure(log_path, code: int) -> str:
    """A failed child's message: its last `error: ...` line, else its exit status and log."""
    try:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            reason = child_error(f)
    except OSError:
        reason = None
    return reason if reason is not None else f"exit status {code}; its output is in {log_path}"


def _terminate(process: subprocess.Popen) -> None:
    """Ends a child: SIGTERM, then SIGKILL after `STOP_SECONDS`."""
    process.terminate()
    try:
        process.wait(STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
