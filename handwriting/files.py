"""Atomic file writes: a reader sees the old file or the new one, never a half-written one."""

import contextlib
import os
import tempfile


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
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def _umask() -> int:
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
