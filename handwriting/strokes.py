"""Stroke files: the project's stroke JSON, and style primes read from it or from IAM-OnDB XML.

The stroke JSON (`save_strokes_json` writes it, `load_prime` reads it back):

    {"format": "handwriting-strokes", "version": 1,
     "lines": [{"text": "hello", "strokes": [[dx, dy, eos], ...]}, ...]}

with offsets in the training data's units, y up, eos = 1 on the last point of each stroke.

A prime (`Prime`) is a real line of handwriting and its transcription: the network reads its
points before it writes, and writes on in its style (`handwriting.sample.generate`).
`load_prime` reads one from a file the user gives, which may be anything: only a regular file
is opened (a FIFO named as a prime is refused, not waited on), and an XML prime is read by
`handwriting.iam_xml` exactly as the data set's lines are.
"""

import dataclasses
import json
import os

import numpy as np

from handwriting import files, iam_xml
from handwriting.errors import SampleError

# Format tag of the project's stroke JSON (`save_strokes_json` / `load_prime`).
STROKES_FORMAT = "handwriting-strokes"
# Longest prime accepted, in points (IAM-OnDB lines have about 700).
MAX_PRIME_POINTS = 4000
# Largest prime file read: a line of handwriting is far smaller, in either format.
MAX_PRIME_BYTES = 64 * 1024 * 1024
# Largest stroke JSON of many lines `load_lines` reads (a few hundred lines take a few MiB).
MAX_LINES_BYTES = 256 * 1024 * 1024
# Fewest points of a line whose likelihood is measured (`handwriting.likelihood`), and so of
# a line adapting learns from: the origin and two offsets, one of them scored.
MIN_LINE_POINTS = 3


@dataclasses.dataclass(frozen=True)
class Prime:
    """A real line used to set the style: raw `(T, 3)` strokes (y up) and its transcription."""

    strokes: np.ndarray
    text: str
    source: str = ""  # where it came from, for messages


def load_prime(path, text=None) -> Prime:
    """Reads a style prime from a file: an IAM-OnDB line XML or the project's stroke JSON.

    Args:
        path: a `.xml` file (IAM-OnDB `lineStrokes` layout; its text must be given) or a
            `.json` file as `save_strokes_json` writes it (its first line is used; `text`
            overrides the transcription stored there).
        text: the transcription of the handwriting in the file.

    Raises:
        SampleError: the file is missing, not a regular file, malformed, hostile, or gives
            no transcription.
    """
    path = os.fspath(path)
    data = _read(path, MAX_PRIME_BYTES, "a prime is one line of handwriting")
    if path.lower().endswith(".xml") or data.lstrip()[:1] == b"<":
        strokes = _strokes_from_xml(data, path)
        if text is None:
            raise SampleError(f"{path}: an XML prime needs its transcription (--prime-text)")
    else:
        strokes, stored_text = _strokes_from_json(data, path)
        text = stored_text if text is None else text
        if text is None:
            raise SampleError(f"{path}: holds no `text`; give the transcription (--prime-text)")
    return check_prime(Prime(strokes=strokes, text=text, source=path))


def _read(path, limit: int, why: str) -> bytes:
    """The bytes of the regular file `path` (never a FIFO or a device), at most `limit`."""
    try:
        return iam_xml.read_regular(path, limit, path)
    except iam_xml.LineError as e:
        if e.reason == "file too large":
            raise SampleError(f"{path}: larger than {limit >> 20} MiB; {why}") from None
        raise SampleError(str(e)) from None
    except OSError as e:
        raise SampleError(f"{path}: cannot be read ({e.strerror})") from None


def check_prime(prime: Prime) -> Prime:
    """Returns `prime` with float32 strokes, or raises `SampleError` naming its source.

    A prime has 2 to `MAX_PRIME_POINTS` finite points of `(dx, dy, eos)`, eos 0 or 1.
    """
    strokes = np.asarray(prime.strokes, dtype=np.float32)
    where = prime.source or "prime"
    if strokes.ndim != 2 or strokes.shape[1] != 3 or strokes.shape[0] < 2:
        raise SampleError(f"{where}: a prime needs at least 2 points of (dx, dy, eos)")
    if strokes.shape[0] > MAX_PRIME_POINTS:
        raise SampleError(
            f"{where}: {strokes.shape[0]} points; a prime is one line (at most "
            f"{MAX_PRIME_POINTS} points)"
        )
    bad = np.flatnonzero(~np.isfinite(strokes).all(axis=1))
    if bad.size:
        raise SampleError(f"{where}: point {int(bad[0])} holds NaN or infinite values")
    if not np.isin(strokes[:, 2], (0.0, 1.0)).all():
        raise SampleError(f"{where}: eos values must be 0 or 1")
    return dataclasses.replace(prime, strokes=strokes)


def _strokes_from_xml(data, path):
    try:
        x, y, lengths = iam_xml.parse_line_xml(data, path)
    except iam_xml.LineError as e:
        raise SampleError(str(e)) from None
    strokes, _ = iam_xml.to_stroke_array(x, y, lengths)
    return strokes


def _strokes_from_json(data, path):
    try:
        obj = files.parse_json(data, path)
    except files.JSONFileError as e:
        raise SampleError(str(e)) from None
    if isinstance(obj, dict) and "lines" in obj:
        lines = obj["lines"]
        if not isinstance(lines, list) or not lines:
            raise SampleError(f"{path}: `lines` must be a non-empty list")
        obj = lines[0]
    return _line_from_json(obj, path)


def _line_from_json(obj, where):
    """`(strokes (T, 3) float32, text or None)` of one line object of the stroke JSON."""
    if not isinstance(obj, dict) or "strokes" not in obj:
        raise SampleError(
            f"{where}: expected an object with `strokes` ([[dx, dy, eos], ...]) and `text`"
        )
    try:
        values = np.asarray(obj["strokes"])
    except (TypeError, ValueError):  # ragged lists
        values = None
    # Numbers only: not strings, booleans or integers beyond 64 bits (numpy's object arrays).
    if values is None or (values.size and values.dtype.kind not in "iuf"):
        raise SampleError(f"{where}: `strokes` must be a list of [dx, dy, eos] numbers")
    if values.ndim != 2 or values.shape[1] != 3:
        raise SampleError(f"{where}: `strokes` must have shape (T, 3), received {values.shape}")
    with np.errstate(over="ignore"):  # beyond float32: inf, refused just below
        strokes = values.astype(np.float32)
    bad = np.flatnonzero(~np.isfinite(strokes).all(axis=1))
    if bad.size:
        raise SampleError(f"{where}: point {int(bad[0])} holds NaN or infinite values")
    text = obj.get("text")
    if text is not None and not isinstance(text, str):
        raise SampleError(f"{where}: `text` must be a string")
    return strokes, text


def save_strokes_json(samples, path) -> None:
    """Writes lines as the project's stroke JSON, atomically.

    Args:
        samples: the lines, each with `text` and `strokes` (`(T, 3)` `(dx, dy, eos)`, y up),
            e.g. the `handwriting.sample.Sample`s of `generate`.
        path: the file to write; `load_prime` reads it back.
    """
    obj = {
        "format": STROKES_FORMAT,
        "version": 1,
        "lines": [
            {"text": s.text, "strokes": np.round(s.strokes.astype(np.float64), 4).tolist()}
            for s in samples
        ],
    }
    files.write_text(path, json.dumps(obj, ensure_ascii=False) + "\n")


def load_lines(path) -> list:
    """Reads the project's stroke JSON (`{"lines": [{"text", "strokes"}, ...]}`), every line.

    Returns:
        A list of `(text or None, (N, 3) float32 array)`.

    Raises:
        SampleError: the file is missing or malformed; the message names the line.
    """
    path = os.fspath(path)
    return parse_lines(_read(path, MAX_LINES_BYTES, "split the lines over several files"), path)


def parse_lines(data: bytes, where: str) -> list:
    """`load_lines` of the content of a stroke JSON (`where` names it in the errors)."""
    try:
        obj = files.parse_json(data, where)
    except files.JSONFileError as e:
        raise SampleError(str(e)) from None
    lines = obj.get("lines") if isinstance(obj, dict) else None
    if not isinstance(lines, list) or not lines:
        raise SampleError(f'{where}: expected {{"lines": [{{"text", "strokes"}}, ...]}}')
    out = []
    for number, line in enumerate(lines, start=1):
        strokes, text = _line_from_json(line, f"{where}: line {number}")
        out.append((text, strokes))
    return out
