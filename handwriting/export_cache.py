"""The page's export cache: the export `python -m handwriting serve` serves, made once.

    export_dir = ensure_export(model_dir)

A folder `python -m export` wrote (`export_layout.is_previous_export`, with a step LiteRT.js
can run) is served as it is; a training run's folder is exported once into a cache beside it
(`<folder>.export`) or, when that cannot be written there (the shipped demo model among the
package's files, a read-only folder), into the user's cache folder
(`$XDG_CACHE_HOME/handwriting/exports`, else `~/.cache/...`). The cache records the
fingerprint of the model's files (`SOURCE_FILENAME`) and is made again when they change.

The export runs in a child process, `python -m export --model MODEL --out CACHE`: the library
never imports the exporter (the `export` package depends on the library, not the reverse),
and the TFLite converter's memory and time stay out of the server's process. The child
imports the `export` package this process would import (`exporter_environment`).
"""

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys

from handwriting import files, rundir
from handwriting.errors import SampleError, ServeError
from handwriting.export_layout import FLOAT_FILENAME, is_previous_export

# The cache's record of what it was exported from (`ensure_export`); the exporter keeps files
# it did not write, so this one survives a new export into the same folder.
SOURCE_FILENAME = "export-source.json"
# Bumped when the exporter's output changes in a way the page depends on (1: the step's
# `passed` is uint8, which LiteRT.js can read; 2: the `write` signature, three outputs, which
# the page runs faster); an older cache is exported again.
CACHE_FORMAT = 2
# The model's files whose content the cache's fingerprint covers.
FINGERPRINT_FILES = (rundir.MODEL_FILENAME, rundir.CONFIG_FILENAME, rundir.DATASET_FILENAME)
# The element types LiteRT.js reads and writes: every output of the page's step is one.
PAGE_TENSOR_TYPES = frozenset({"FLOAT32", "INT32", "UINT8"})
# The package the child process runs (`python -m export`), beside `handwriting`.
EXPORTER_PACKAGE = "export"
# Lines of a failed child's stderr quoted when it printed no `error: ...` line.
QUOTED_LINES = 3


def ensure_export(model_dir=None, *, cache_root=None, log=print) -> str:
    """Returns a folder holding a current export of `model_dir`, exporting it when needed.

    Args:
        model_dir: a training run's folder or an export's; None: the shipped demo model.
        cache_root: where caches go when the model's own folder cannot hold one (default
            `user_cache_root()`).
        log: called with a line of progress (the export takes a while) and with each line
            the exporter prints.

    Raises:
        SampleError: the model folder is missing or lacks one of `FINGERPRINT_FILES`.
        ServeError: the export failed: the cache folder cannot receive it, or the exporter
            cannot read the model; the message names the cache folder and says why.
    """
    model_dir = os.path.abspath(model_dir if model_dir is not None else rundir.DEFAULT_MODEL_DIR)
    if not os.path.isdir(model_dir):
        raise SampleError(f"--model {model_dir}: no such model folder")
    if _is_current_export(model_dir):
        return model_dir
    for name in FINGERPRINT_FILES:
        if not os.path.isfile(os.path.join(model_dir, name)):
            raise SampleError(
                f"--model {model_dir}: no {name}; give a training run's folder or an export's "
                f"(`python -m export`)"
            )
    target = cache_dir(model_dir, cache_root)
    fingerprint = model_fingerprint(model_dir)
    if not (_is_current_export(target) and _recorded_fingerprint(target) == fingerprint):
        log(f"exporting {model_dir} for the page into {target} (once; takes a minute)")
        run_exporter(model_dir, target, log=log)
        record = {"model": model_dir, "fingerprint": fingerprint, "cache_format": CACHE_FORMAT}
        files.write_text(os.path.join(target, SOURCE_FILENAME), json.dumps(record) + "\n")
    styles = os.path.join(model_dir, rundir.STYLES_FILENAME)
    if os.path.isfile(styles):  # the styles travel with the model: refreshed on every start
        shutil.copyfile(styles, os.path.join(target, rundir.STYLES_FILENAME))
    return target


def run_exporter(model_dir, out_dir, *, log=print) -> None:
    """Runs `python -m export --model model_dir --out out_dir` in a child process (samplers
    float32 and int8), each line it prints passed to `log`.

    Raises:
        ServeError: the exporter ended with an error; the message names `out_dir` and gives
            the child's `error: ...` line (a refused folder, an unreadable model), else its
            exit status and last lines of stderr.
    """
    cwd, env = exporter_environment()
    command = [sys.executable, "-m", EXPORTER_PACKAGE, "--model", model_dir, "--out", out_dir]
    done = subprocess.run(
        command,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        check=False,
    )
    for line in done.stdout.splitlines():
        log(line)
    if done.returncode != 0:
        raise ServeError(f"the page's export cache {out_dir}: {_failure(done)}")


def exporter_environment() -> tuple:
    """`(cwd, env)` in which `python -m export` imports the `export` package this process
    imports, and the library beside it.

    The child starts in the folder holding that package (`-m` puts its working folder first
    on `sys.path`), with that folder and the one holding `handwriting` first on its
    `PYTHONPATH` (the inherited entries made absolute follow).

    Raises:
        ServeError: this process finds no `export` package.
    """
    spec = importlib.util.find_spec(EXPORTER_PACKAGE)  # finds it without importing it
    if spec is None or spec.origin is None or not spec.submodule_search_locations:
        raise ServeError(
            f"no `{EXPORTER_PACKAGE}` package to export the model with; it comes with the "
            "project (`pip install -e .` in its folder)"
        )
    root = os.path.dirname(os.path.dirname(os.path.abspath(spec.origin)))
    library = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    inherited = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    path = dict.fromkeys([root, library, *(os.path.abspath(p) for p in inherited if p)])
    return root, {**os.environ, "PYTHONPATH": os.pathsep.join(path)}


def child_error(lines) -> str | None:
    """The last `error: ...` line a project command printed (what follows `error: `), or
    None: the reason a failed child gives (`python -m export`, `python -m handwriting`)."""
    for line in reversed([line.strip() for line in lines]):
        if line.startswith("error: "):
            return line[len("error: ") :]
    return None


def _failure(done: subprocess.CompletedProcess) -> str:
    """Why the exporter failed: its last `error: ...` line, else its exit status and the last
    `QUOTED_LINES` lines of its stderr."""
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    reason = child_error(lines)
    if reason is not None:
        return reason
    code = done.returncode
    status = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
    return " | ".join([f"python -m export failed ({status})", *lines[-QUOTED_LINES:]])


def cache_dir(model_dir, cache_root=None) -> str:
    """Where the export of `model_dir` is cached: `<model_dir>.export` beside it when that
    can be written (new, empty or a previous export) and the model is not one of the
    package's files; else a folder of the user's cache named after the model and a hash of
    its path."""
    model_dir = os.path.realpath(model_dir)
    beside = model_dir + ".export"
    package = os.path.dirname(os.path.abspath(__file__))
    inside_package = os.path.commonpath([model_dir, package]) == package
    if not inside_package and files.creation_problem(beside) is None:
        if not os.path.lexists(beside) or _usable_cache(beside):
            return beside
    root = os.path.abspath(cache_root or user_cache_root())
    digest = hashlib.sha256(model_dir.encode("utf-8")).hexdigest()[:12]
    return os.path.join(root, f"{os.path.basename(model_dir)}-{digest}")


def _usable_cache(directory) -> bool:
    """Whether the existing `directory` may receive the cache: a writable folder, empty or a
    previous export (a folder of the user's that happens to have the name is left alone)."""
    if os.path.islink(directory) or not os.path.isdir(directory):
        return False
    if not os.access(directory, os.W_OK | os.X_OK):
        return False
    return not os.listdir(directory) or is_previous_export(directory)


def user_cache_root() -> str:
    """`$XDG_CACHE_HOME/handwriting/exports`, else `~/.cache/handwriting/exports`."""
    return os.path.join(user_cache_home(), "exports")


def user_cache_home() -> str:
    """The project's folder of the user's cache: `$XDG_CACHE_HOME/handwriting`, else
    `~/.cache/handwriting` (the exports' cache, the page's adapted models)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "handwriting")


def model_fingerprint(model_dir) -> str:
    """sha256 over the content of the model's `FINGERPRINT_FILES` and `CACHE_FORMAT`."""
    digest = hashlib.sha256(f"cache format {CACHE_FORMAT}\n".encode())
    for name in FINGERPRINT_FILES:
        digest.update(name.encode() + b"\0")
        with open(os.path.join(model_dir, name), "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _recorded_fingerprint(directory):
    """The fingerprint the cache `directory` records, or None when it has no readable one."""
    try:
        record = files.read_json(os.path.join(directory, SOURCE_FILENAME))
    except (OSError, ValueError):  # FileNotFoundError, files.JSONFileError
        return None
    return record.get("fingerprint") if isinstance(record, dict) else None


def _is_current_export(directory) -> bool:
    """Whether `directory` holds an export whose float32 step LiteRT.js can run: its
    `sampler.json`, and a step whose every output is one of `PAGE_TENSOR_TYPES` (exports
    before `passed` became uint8 give a bool)."""
    path = os.path.join(directory, FLOAT_FILENAME)
    if not (is_previous_export(directory) and os.path.isfile(path)):
        return False
    with open(path, "rb") as f:
        content = f.read()
    return step_output_types(content) <= PAGE_TENSOR_TYPES


def step_output_types(flatbuffer: bytes) -> set:
    """The element type names of the outputs of a TFLite model's first subgraph."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(flatbuffer, 0)
    names = {code: name for name, code in vars(schema.TensorType).items() if name.isupper()}
    graph = model.Subgraphs(0)
    return {names[graph.Tensors(graph.Outputs(i)).Type()] for i in range(graph.OutputsLength())}
