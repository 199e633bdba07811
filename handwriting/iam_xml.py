"""IAM-OnDB line XML to a stroke array, read as if the file were hostile.

One line of handwriting as IAM-OnDB stores it (`lineStrokes/a01/a01-000/a01-000u-01.xml`):

    <WhiteboardCaptureSession>
      <StrokeSet>
        <Stroke ...><Point x="1073" y="1594" time="..."/> ...</Stroke> ...
      </StrokeSet>
    </WhiteboardCaptureSession>

`parse_line_xml` gives its absolute points, `to_stroke_array` the `(dx, dy, eos)` array of
`handwriting.records` (y up). The reader that builds the data set from IAM-OnDB and a style
prime (`handwriting.strokes.load_prime`) both read lines here, so a file is refused the same
way in both, with a `LineError` whose `reason` is a short category and whose message names
the file:

- Only regular files are opened (`refusal`, `open_regular`, `read_regular`), links being
  followed to them: a FIFO, a socket, a device or a broken link is refused, never opened
  (opening a FIFO blocks until someone writes to it, a device can be endless).
- No DTD reaches the XML parser, whatever the file's encoding (`xml_as_utf8`).
- Points no whiteboard gives are refused (`MAX_COORDINATE`, `MAX_OFFSET`): one would overflow
  float32 or swamp the normalisation statistics of a whole split.

The stroke array: the first row is the offset of the first point from itself, `(0, 0, eos)`.
Exact repeats of the previous point within a stroke carry no information and are dropped;
one-point strokes (dots) stay.
"""

import codecs
import dataclasses
import os
import re
import stat

import numpy as np
from lxml import etree

# Size cap of one line's XML: the real files are far smaller (< 200 KiB).
MAX_LINE_XML_BYTES = 16 << 20

# Bounds on what a pen on a whiteboard gives. IAM-OnDB's points are in the sensor's units, a
# board a few thousand units across (x about 0..10,000); the embedded corpus (6,000 lines)
# spans x 191..11,451 and y 587..5,969, with at most 3,431 between consecutive points (a pen
# lifted across the line). The bounds are about 100 and 30 times that: generous for any such
# sensor, far inside float32 (3.4e38), and a point beyond them is a broken or hostile file.
MAX_COORDINATE = 1e6  # |x|, |y| of a raw point
MAX_OFFSET = 1e5  # |dx|, |dy| between consecutive points, across strokes too


class LineError(Exception):
    """A line file that cannot be read: `reason` is a short category (the data set's report
    counts skipped lines by it), the message the detail, naming the file."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


# ----------------------------------------------------------------------------------------------
# Only regular files


@dataclasses.dataclass(frozen=True)
class Refused:
    """Why an input file is never read (`refusal`): not a regular file (a FIFO, a device, a
    socket, a link to one or to nothing) or not there. A reader raises `LineError(reason,
    detail)` for it."""

    reason: str
    detail: str


_FILE_TYPES = (  # what a path is, for messages
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _not_regular(mode: int, name: str, link: bool = False) -> str:
    what = next((text for test, text in _FILE_TYPES if test(mode)), "not a plain file")
    return f"{name}: {'a link to ' if link else ''}{what}, not a regular file"


def refusal(path: str, name: str):
    """Returns None when `path` is a regular file (or a link to one), else the `Refused` that
    says what it is. Only regular files are read: opening a FIFO blocks until someone writes
    to it, and a device can be endless. Links are followed, wherever they lead (a folder of
    links into a git-annex or another disk is a normal way to hold a data set); a link to
    anything but a regular file is refused like the thing itself."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            return Refused("not a regular file", f"{name}: a link to nothing, not a regular file")
        return Refused("unreadable file", f"{name}: not found")
    except OSError as e:
        return Refused("unreadable file", f"{name}: {e.strerror or e}")
    if stat.S_ISREG(mode):
        return None
    return Refused("not a regular file", _not_regular(mode, name, os.path.islink(path)))


def open_regular(path: str, name: str):
    """Opens a regular file for reading, or raises `LineError`. The open does not block
    (O_NONBLOCK) and `fstat` checks what was opened, so a file swapped for a FIFO after the
    scan is refused too."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise LineError("not a regular file", _not_regular(mode, name))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str, limit: int, name: str) -> bytes:
    """Returns the bytes of the regular file `path`, at most `limit` of them, or raises
    `LineError` (not a regular file; larger than `limit`) or `OSError` (cannot be opened)."""
    with open_regular(path, name) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise LineError("file too large", f"{name}: larger than the limit of {limit} bytes")
    return data


# ----------------------------------------------------------------------------------------------
# Safe XML
#
# libxml2 reads a DTD whatever the parser options say: with `load_dtd=False` and
# `resolve_entities=False` it still parses an internal subset and opens the file an external
# parameter entity there names (`<!ENTITY % p SYSTEM "file:///dev/zero"> %p;` reads forever; a
# FIFO blocks; /etc/passwd is opened). So no DTD may reach it. A search of the raw bytes for
# `<!DOCTYPE` does not do: in UTF-16 or UTF-32 those characters are other bytes. `xml_as_utf8`
# decodes the document itself (its encoding found as XML 1.0 appendix F says: byte order mark,
# first bytes, declaration), refuses every markup declaration in the decoded text, and gives
# libxml2 that very text as UTF-8 under a declaration of its own: what libxml2 parses is what
# was checked, whatever encoding the file was in. Encodings it cannot check are refused.

# No entity expansion, no network, no DTD, no huge trees; one parser per process.
_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    huge_tree=False,
    remove_blank_text=True,  # whitespace between elements: nothing to keep, cheaper to drop
    collect_ids=False,
)
# Compiled once; plain strings (not lxml's "smart" ones) are much cheaper to make.
_POINT_X = etree.XPath("StrokeSet/Stroke/Point/@x", smart_strings=False)
_POINT_Y = etree.XPath("StrokeSet/Stroke/Point/@y", smart_strings=False)
_COUNT_POINTS = etree.XPath("count(Point)")

# Encodings read (Python's names for them): the data's own ISO-8859-1, the Unicode forms, ASCII,
# the other ISO-8859 and Windows-125x sets. Others (EBCDIC, UTF-7, ...) are never in the data.
_CODE_UNIT = {  # bytes per code unit of the wide encodings; the others are 1
    "utf-16": 2,
    "utf-16-le": 2,
    "utf-16-be": 2,
    "utf-32": 4,
    "utf-32-le": 4,
    "utf-32-be": 4,
}
_READ_ENCODINGS = frozenset(
    [
        "utf-8",
        "ascii",
        *(f"iso8859-{n}" for n in range(1, 17)),
        *(f"cp125{n}" for n in range(9)),
        *_CODE_UNIT,
    ]
)
# Byte order marks, longest first (FF FE 00 00 is UTF-32LE, FF FE alone UTF-16LE).
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# The first four bytes of `<?` (or any `<`) without a mark, XML 1.0 appendix F.
_FIRST_BYTES = {
    b"<\0\0\0": "utf-32-le",
    b"\0\0\0<": "utf-32-be",
    b"<\0?\0": "utf-16-le",
    b"\0<\0?": "utf-16-be",
}
_EBCDIC = b"\x4c\x6f\xa7\x94"  # `<?xm` in EBCDIC
_DECLARATION = re.compile(
    r"<\?xml\s+version\s*=\s*([\"'])1\.[0-9]+\1"
    r"(?:\s+encoding\s*=\s*([\"'])(?P<encoding>[A-Za-z][A-Za-z0-9._-]*)\2)?"
    r"(?:\s+standalone\s*=\s*([\"'])(?:yes|no)\4)?\s*\?>"
)
_UTF8_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>'
# `<!` opens a DOCTYPE, an entity or another markup declaration, except for comments and CDATA.
_MARKUP_DECLARATION = re.compile(r"<!(?!--|\[CDATA\[)[A-Za-z]*")


def _encoding(declared: str, name: str) -> str:
    try:
        codec = codecs.lookup(declared).name
    except LookupError:
        codec = None
    if codec not in _READ_ENCODINGS:
        raise LineError(
            "unsupported encoding",
            f"{name}: declares encoding {declared!r}, which is not read "
            "(UTF-8, UTF-16, UTF-32, ASCII, ISO-8859-n and Windows-125n are)",
        )
    return codec


def xml_as_utf8(data: bytes, name: str) -> bytes:
    """Returns an XML document as UTF-8 with no DTD, or refuses it.

    The document is decoded here (byte order mark, then its first bytes, then its
    declaration), every `<!` not followed by `--` or `[CDATA[` is refused (a DOCTYPE, an
    entity, even inside a comment), and the text is returned as UTF-8 under a UTF-8
    declaration: libxml2 then parses exactly the text that was checked.

    Raises:
        LineError: `unsafe XML` (a DOCTYPE or other markup declaration), `unsupported
            encoding`, or `malformed XML` (not valid in its encoding, a broken declaration).
    """
    bom, codec = next(((b, c) for b, c in _BOMS if data.startswith(b)), (b"", None))
    if codec is None:
        codec = _FIRST_BYTES.get(data[:4])
    if codec is None and data.startswith(_EBCDIC):
        raise LineError("unsupported encoding", f"{name}: written in EBCDIC, which is not read")
    body = data[len(bom) :]
    if codec is None:  # an ASCII-compatible encoding: the declaration, if any, is ASCII
        head = _DECLARATION.match(body[: body.find(b"?>") + 2].decode("iso-8859-1"))
        declared = head["encoding"] if head is not None else None
        codec = _encoding(declared, name) if declared else "utf-8"
        if codec in _CODE_UNIT:
            raise LineError(
                "malformed XML",
                f"{name}: declares encoding {declared!r} but is written in an 8-bit encoding",
            )
    try:
        text = body.decode(codec)
    except UnicodeDecodeError as e:
        raise LineError(
            "malformed XML", f"{name}: not valid {codec} at byte {len(bom) + e.start}"
        ) from None
    declaration = _DECLARATION.match(text)
    if declaration is not None:
        declared = declaration["encoding"]
        if declared and _CODE_UNIT.get(_encoding(declared, name), 1) != _CODE_UNIT.get(codec, 1):
            raise LineError(
                "malformed XML", f"{name}: declares encoding {declared!r} but is written in {codec}"
            )
        text = text[declaration.end() :]
    elif text.startswith("<?xml") and (text[5:6] in ("", "?") or text[5:6].isspace()):
        raise LineError("malformed XML", f"{name}: unreadable XML declaration {text[:60]!r}")
    found = _MARKUP_DECLARATION.search(text)
    if found is not None:
        raise LineError(
            "unsafe XML",
            f"{name}: declares a DOCTYPE or entities (`{found[0]}`), which are refused",
        )
    return _UTF8_DECLARATION + text.encode("utf-8")


def parse_line_xml(data: bytes, name: str):
    """Parses one line's XML into absolute points.

    Args:
        data: the file's bytes.
        name: the file's name, for messages.

    Returns:
        `(x, y, stroke_lengths)`: `(N,)` float64 each for x and y (whiteboard units, y down)
        and `(S,)` int64 points per stroke.

    Raises:
        LineError: the file is hostile, broken or holds no points.
    """
    if len(data) > MAX_LINE_XML_BYTES:
        raise LineError(
            "file too large", f"{name}: {len(data)} bytes, the limit is {MAX_LINE_XML_BYTES}"
        )
    data = xml_as_utf8(data, name)
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as e:
        raise LineError("malformed XML", f"{name}: {e}") from None
    if root.getroottree().docinfo.doctype:
        raise LineError("unsafe XML", f"{name}: declares a DOCTYPE, which is refused")
    if root.tag != "WhiteboardCaptureSession":
        raise LineError(
            "unexpected XML structure",
            f"{name}: root element is <{root.tag}>, expected <WhiteboardCaptureSession>",
        )
    stroke_sets = root.findall("StrokeSet")
    if len(stroke_sets) != 1:
        raise LineError(
            "unexpected XML structure",
            f"{name}: {len(stroke_sets)} <StrokeSet> elements, expected 1",
        )
    lengths = np.array([_COUNT_POINTS(s) for s in stroke_sets[0].iterfind("Stroke")], np.int64)
    total = int(lengths.sum())
    if total == 0:
        raise LineError("no points", f"{name}: the <StrokeSet> holds no <Point>")
    coords = []
    for axis, select in (("x", _POINT_X), ("y", _POINT_Y)):
        values = select(root)
        if len(values) != total:
            raise LineError(
                "bad coordinates", f"{name}: {total - len(values)} of {total} <Point> lack `{axis}`"
            )
        try:
            array = np.array(values, dtype=np.float64)
        except ValueError:
            bad = next(i for i, v in enumerate(values) if not _is_number(v))
            raise LineError(
                "bad coordinates", f"{name}: point {bad + 1} has non-numeric {axis}={values[bad]!r}"
            ) from None
        if not np.isfinite(array).all():
            bad = int(np.flatnonzero(~np.isfinite(array))[0])
            raise LineError(
                "bad coordinates", f"{name}: point {bad + 1} has {axis}={values[bad]!r}"
            )
        _check_plausible(array, values, axis, name)
        coords.append(array)
    return coords[0], coords[1], lengths


def _check_plausible(array, values, axis: str, name: str) -> None:
    """Refuses coordinates no whiteboard gives (see `MAX_COORDINATE`): one such point
    would overflow float32 to inf, or swamp the normalisation statistics of a whole split."""
    beyond = np.flatnonzero(np.abs(array) > MAX_COORDINATE)
    if beyond.size:
        bad = int(beyond[0])
        raise LineError(
            "implausible coordinates",
            f"{name}: point {bad + 1} has {axis}={values[bad]!r}, beyond the plausible "
            f"|{axis}| <= {MAX_COORDINATE:g} of a whiteboard",
        )
    step = np.diff(array)  # strokes included: a lifted pen moves on the same board
    beyond = np.flatnonzero(np.abs(step) > MAX_OFFSET)
    if beyond.size:
        bad = int(beyond[0]) + 1
        raise LineError(
            "implausible coordinates",
            f"{name}: point {bad + 1} is {step[bad - 1]:g} from point {bad} in {axis}, beyond "
            f"the plausible |d{axis}| <= {MAX_OFFSET:g}",
        )


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


# ----------------------------------------------------------------------------------------------
# Points to a stroke array


def stroke_ids(stroke_lengths) -> np.ndarray:
    """Returns the stroke index of every point, shape `(sum(stroke_lengths),)` int64."""
    stroke_lengths = np.asarray(stroke_lengths, dtype=np.int64)
    return np.repeat(np.arange(len(stroke_lengths)), stroke_lengths)


def to_stroke_array(x, y, stroke_lengths, alignment=None):
    """Turns one line's absolute points into a stroke array.

    Args:
        x: `(N,)` absolute x of every point, strokes one after another.
        y: `(N,)` absolute y, growing downwards (the whiteboard's convention).
        stroke_lengths: `(S,)` points per stroke, summing to N; empty strokes are allowed.
        alignment: optional `(N,)` character index of every point.

    Returns:
        `(strokes, alignment)`: strokes `(T, 3)` float32 of `(dx, dy, eos)` with y growing
        upwards, T <= N after dropping repeated points; alignment `(T,)` int32 (the indices of
        the points kept) or None.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    stroke = stroke_ids(stroke_lengths)
    if not (x.shape == y.shape == stroke.shape) or x.ndim != 1:
        raise ValueError(
            f"`x` {x.shape}, `y` {y.shape} and `stroke_lengths` (sum {stroke.shape[0]}) "
            "must describe the same points"
        )
    if x.shape[0] == 0:
        raise ValueError("a line needs at least one point")
    # A point equal to its predecessor in the same stroke is a repeat.
    repeat = (stroke[1:] == stroke[:-1]) & (x[1:] == x[:-1]) & (y[1:] == y[:-1])
    keep = np.concatenate([[True], ~repeat])
    x, y, stroke = x[keep], y[keep], stroke[keep]
    eos = np.concatenate([stroke[1:] != stroke[:-1], [True]])
    # Translate so the first point is the origin, flip y so it grows upwards, take offsets.
    x = x - x[0]
    y = -(y - y[0])
    strokes = np.empty((x.shape[0], 3), dtype=np.float32)  # [T, 3]
    strokes[:, 0] = np.diff(x, prepend=0.0)
    strokes[:, 1] = np.diff(y, prepend=0.0)
    strokes[:, 2] = eos
    if alignment is not None:
        alignment = np.asarray(alignment, dtype=np.int32)[keep]
    return strokes, alignment
