"""Atomic file writes (a reader sees the old file or the new one, never a half-written one),
and JSON files read with one-sentence errors that name them."""

import contextlib
import json
import os
import re
import tempfile

# The name `atomic_path` gives its temporary files: `.<name>.<random>.tmp[<suffix>]`.
_TEMPORARY = re.compile(r"\..+\.[A-Za-z0-9_]{8}\.tmp(\..*)?")


@contextlib.contextmanager
def atomic_path(path, keep_suffix=False):
    """Yields a temporary path beside `path`; on success it is renamed onto `path`.

    The temporary file is named `.<name>.<random>.tmp`; with `keep_suffix`, `path`'s whole
    suffix follows (`….tmp.weights.h5`), for writers such as Keras that pick a format from it.
    On an exception the temporary file is removed and `path` is left as it was.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    name = os.path.basename(path)
    suffix = ".tmp" + (name[name.index(".") :] if keep_suffix and "." in name else "")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        # mkstemp creates 0600; give the file the mode an ordinary open() would.
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def umask() -> int:
    """The process' file mode creation mask (read without changing it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path, data: bytes) -> None:
    """Writes `data` to `path` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_text(path, text: str) -> None:
    """Writes `text` as UTF-8 to `path` atomically."""
    write_bytes(path, text.encode("utf-8"))


def output_problem(path) -> str | None:
    """Why a file cannot be written at `path`, in words; None when it can.

    Checked before slow work starts, so that a run does not end in a traceback: `path` must not
    be a folder, and the nearest existing folder above it must be a writable folder (missing
    folders in between are created when the file is written).
    """
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path):
        return f"{path} is a folder; give a file name"
    return creation_problem(path)


def creation_problem(path) -> str | None:
    """Why `path` (a file or a folder) cannot be created, in words; None when it can.

    The nearest existing folder above `path` must be a writable folder; the missing folders in
    between are created with it.
    """
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        return f"{parent} is a file, so {path} cannot be created below it"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{parent}: no permission to write there"
    return None


def remove_stale_temporaries(directory) -> list:
    """Removes the temporary files that `atomic_path` left in `directory` when a process died.

    Only files named as `atomic_path` names them (`.<name>.<random>.tmp[<suffix>]`) are
    removed; call it where no other process is writing. Returns the names removed.
    """
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    removed = []
    for name in names:
        path = os.path.join(directory, name)
        if _TEMPORARY.fullmatch(name) and os.path.isfile(path) and not os.path.islink(path):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
                removed.append(name)
    return removed


class JSONFileError(ValueError):
    """A file that is not JSON this project can read; the message names the file and says why."""


def parse_json(data: bytes, where: str):
    """Returns the value of a JSON document given as bytes, or raises `JSONFileError`.

    Whatever the bytes, the error is one sentence naming `where`: not UTF-8, not valid JSON
    (with its line and column), nested too deeply or holding a number too long to read.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise JSONFileError(f"{where}: not valid UTF-8 JSON: byte {e.start} is not UTF-8") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise JSONFileError(
            f"{where}: not valid JSON: line {e.lineno}, column {e.colno}: {e.msg}"
        ) from None
    except RecursionError:
        raise JSONFileError(f"{where}: not valid JSON: nested too deeply to read") from None
    except ValueError:  # an integer of more digits than Python converts
        raise JSONFileError(f"{where}: not valid JSON: a number has too many digits") from None


def read_json(path):
    """Returns the value of the JSON file `path`.

    Raises:
        FileNotFoundError: there is no such file.
        JSONFileError: it is not a regular file, cannot be read, or is not JSON (`parse_json`).
    """
    path = os.fspath(path)
    if os.path.lexists(path) and not os.path.isfile(path):
        raise JSONFileError(f"{path}: not a regular file")  # a FIFO would block, a folder fail
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise
    except OSError as e:
        raise JSONFileError(f"{path}: cannot be read ({e.strerror or e})") from None
    return parse_json(data, path)
