"""Reading IAM-OnDB (or the embedded corpus, written in the same layout) into clean lines.

The source folder is what unpacking the official archives gives, or holds the archives:

    SRC/lineStrokes/a01/a01-000/a01-000u-01.xml   one line's pen points (or lineStrokes-all.tar.gz)
    SRC/ascii/a01/a01-000/a01-000u.txt            the form's transcription (or ascii-all.tar.gz)
    SRC/original/a01/a01-000/strokesu.xml         the whole form; General/Form@writerID names
                                                  the writer (optional; original-xml-all.tar.gz)
    SRC/alignment/a01/a01-000/a01-000u-01.txt     optional: character index of every point
    SRC/trainset.txt, testset_v.txt, testset_t.txt, testset_f.txt   (or SRC/task1/...)

Line k of the transcription's `CSR:` block belongs to `<form>-0k.xml` (k from 1). A line
that cannot be matched to its text with certainty, or whose file is broken or hostile, is
skipped with a reason naming the file; nothing is guessed. The per-form work runs in a
process pool; results come back in form order, so the output does not depend on the pool.

Only regular files are read, links being followed to them: a FIFO, a socket, a device or a
broken link named like an input is reported and never opened (opening a FIFO blocks). No DTD
reaches the XML parser, whatever the file's encoding (`xml_as_utf8`), and points no
whiteboard gives are refused (`clean.MAX_COORDINATE`, `clean.MAX_OFFSET`).
"""

import codecs
import concurrent.futures
import dataclasses
import hashlib
import io
import json
import multiprocessing
import os
import posixpath
import re
import stat
import tarfile

import numpy as np
from lxml import etree

from data_prep import clean

# Size caps: the real files are far smaller (a line's XML is < 200 KiB, a form's < 3 MiB).
MAX_LINE_XML_BYTES = 16 << 20
MAX_ORIGINAL_XML_BYTES = 64 << 20
MAX_TEXT_BYTES = 4 << 20  # transcriptions, split lists, alignment files
MAX_ARCHIVE_BYTES = 8 << 30  # all the members read from the archives together

KINDS = ("lineStrokes", "ascii", "original", "alignment")
ARCHIVES = {  # kind -> archive file name in SRC
    "lineStrokes": "lineStrokes-all.tar.gz",
    "ascii": "ascii-all.tar.gz",
    "original": "original-xml-all.tar.gz",
}
SPLIT_LISTS = ("trainset", "testset_v", "testset_t", "testset_f")
SPLIT_MODES = {  # mode -> split list -> split
    # Graves (2013) trained on everything but testset_v and early-stopped on testset_v.
    "graves": {
        "trainset": "train",
        "testset_t": "train",
        "testset_f": "train",
        "testset_v": "valid",
    },
    # The IAM-OnDB-t1 protocol: testset_v and testset_t validate, testset_f tests.
    "official": {
        "trainset": "train",
        "testset_v": "valid",
        "testset_t": "valid",
        "testset_f": "test",
    },
}

FORM_ID = re.compile(r"(?P<base>[a-z][0-9]{2}-[0-9]{3})(?P<suffix>[a-z]*)")
LINE_FILE = re.compile(r"(?P<form>[a-z][0-9]{2}-[0-9]{3}[a-z]*)-(?P<number>[0-9]{2})\.(?:xml|txt)")
ORIGINAL_FILE = re.compile(r"strokes(?P<suffix>[a-z]*)\.xml")
# A whole-line placeholder instead of a transcription: empty, only marks, or one bracketed note.
PLACEHOLDER = re.compile(r"[\s#*?_~.\-]*|<[^<>]*>|\[[^\[\]]*\]")
NEWLINE = re.compile(r"\r\n|\r|\n")
ABSOLUTE_WINDOWS = re.compile(r"[A-Za-z]:")  # an archive member named like C:/...


class PrepError(ValueError):
    """Input that stops the whole run; the message names the file and what is wrong."""


@dataclasses.dataclass(frozen=True)
class Skip:
    """A line (or file) left out, and why."""

    line_id: str  # the line's id, or the form's for a form-level problem
    file: str  # path relative to SRC, e.g. `lineStrokes/a01/a01-000/a01-000u-01.xml`
    reason: str  # a short category, counted in the report
    detail: str  # what exactly is wrong

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Line:
    """One clean line, ready for a shard."""

    line_id: str
    writer_id: str  # "" when the source does not name the writer
    text: str
    strokes: np.ndarray  # [T, 3] float32 (dx, dy, eos), y upwards
    alignment: np.ndarray | None  # [T] int32 character index of every point, or None
    file: str = ""  # the stroke file, relative to SRC, for messages


class LineError(Exception):
    """A line that must be skipped: `reason` is the category, the message the detail."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


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
    """Refuses coordinates no whiteboard gives (see `clean.MAX_COORDINATE`): one such point
    would overflow float32 to inf, or swamp the normalisation statistics of a whole split."""
    beyond = np.flatnonzero(np.abs(array) > clean.MAX_COORDINATE)
    if beyond.size:
        bad = int(beyond[0])
        raise LineError(
            "implausible coordinates",
            f"{name}: point {bad + 1} has {axis}={values[bad]!r}, beyond the plausible "
            f"|{axis}| <= {clean.MAX_COORDINATE:g} of a whiteboard",
        )
    step = np.diff(array)  # strokes included: a lifted pen moves on the same board
    beyond = np.flatnonzero(np.abs(step) > clean.MAX_OFFSET)
    if beyond.size:
        bad = int(beyond[0]) + 1
        raise LineError(
            "implausible coordinates",
            f"{name}: point {bad + 1} is {step[bad - 1]:g} from point {bad} in {axis}, beyond "
            f"the plausible |d{axis}| <= {clean.MAX_OFFSET:g}",
        )


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def writer_id_of(fileobj, name: str) -> tuple:
    """Reads `General/Form@writerID` from the head of a form's original XML.

    The whole file (at most `MAX_ORIGINAL_XML_BYTES`) is read and checked by `xml_as_utf8`
    first, so no DTD reaches the parser.

    Returns:
        `(writer_id, problem)`: the id, or "" with a sentence saying why there is none.
    """
    try:
        data = fileobj.read(MAX_ORIGINAL_XML_BYTES + 1)
        if len(data) > MAX_ORIGINAL_XML_BYTES:
            return "", f"{name}: larger than the limit of {MAX_ORIGINAL_XML_BYTES} bytes"
        data = xml_as_utf8(data, name)  # no DTD reaches libxml2, whatever the encoding
    except LineError as e:
        return "", str(e)
    except OSError as e:
        return "", f"{name}: {e.strerror or e}"
    try:
        context = etree.iterparse(
            io.BytesIO(data),
            events=("start",),
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            huge_tree=False,
        )
        for _, element in context:
            parent = element.getparent()
            if parent is None:  # the root
                if element.getroottree().docinfo.doctype:
                    return "", f"{name}: declares a DOCTYPE, which is refused"
                if element.tag != "WhiteboardCaptureSession":
                    return "", f"{name}: root element is <{element.tag}>"
            elif element.tag == "Form" and parent.tag == "General":
                writer = (element.get("writerID") or "").strip()
                return (writer, "") if writer else ("", f"{name}: <Form> has no writerID")
            elif element.tag == "StrokeSet":
                break
        return "", f"{name}: no General/Form element"
    except (etree.XMLSyntaxError, OSError) as e:
        return "", f"{name}: {e}"


# ----------------------------------------------------------------------------------------------
# Text files


def decode_text(data: bytes) -> str:
    """Decodes a text file: UTF-8 when it is valid UTF-8, else ISO-8859-1 (the data's own)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("iso-8859-1")


def csr_lines(text: str, name: str) -> list:
    """Returns the stripped lines of a transcription's `CSR:` block.

    Blank lines before and after the block are dropped; one inside it stays (as an empty line),
    so the numbering of the lines after it is not shifted.

    Raises:
        LineError: the file has no `CSR:` block, or more than one.
    """
    lines = [line.strip() for line in NEWLINE.split(text)]
    marks = [i for i, line in enumerate(lines) if line == "CSR:"]
    if len(marks) != 1:
        raise LineError("no transcription", f"{name}: {len(marks)} `CSR:` blocks, expected 1")
    block = lines[marks[0] + 1 :]
    while block and not block[0]:
        block.pop(0)
    while block and not block[-1]:
        block.pop()
    return block


def check_text(text: str, name: str) -> None:
    """Raises `LineError` for a placeholder or a text with a control character."""
    if PLACEHOLDER.fullmatch(text):
        raise LineError(
            "placeholder text", f"{name}: {text!r} is a placeholder, not a transcription"
        )
    bad = [c for c in text if not c.isprintable()]
    if bad:
        raise LineError("control character", f"{name}: text holds non-printable characters {bad!r}")


def read_split_list(data: bytes, name: str) -> list:
    """Returns the form ids of a split list (leading/trailing spaces and blank lines ignored)."""
    entries = []
    for number, line in enumerate(NEWLINE.split(decode_text(data)), 1):
        entry = line.strip()
        if not entry:
            continue
        if not FORM_ID.fullmatch(entry):
            raise PrepError(
                f"{name} line {number}: {entry!r} is not a form id like a01-000u or a01-000"
            )
        entries.append(entry)
    return entries


def parse_alignment(data: bytes, name: str, num_points: int, text_length: int) -> np.ndarray:
    """Parses and checks an alignment side file: one character index per point, non-decreasing."""
    if len(data) > MAX_TEXT_BYTES:
        raise LineError(
            "bad alignment", f"{name}: {len(data)} bytes, the limit is {MAX_TEXT_BYTES}"
        )
    words = decode_text(data).split()
    try:
        values = np.array(words, dtype=np.int64)
    except ValueError:
        raise LineError("bad alignment", f"{name}: holds something other than integers") from None
    if values.shape[0] != num_points:
        raise LineError(
            "bad alignment", f"{name}: {values.shape[0]} indices for {num_points} points"
        )
    if values.min() < 0 or values.max() >= text_length:
        raise LineError(
            "bad alignment",
            f"{name}: indices span [{values.min()}, {values.max()}], "
            f"the text has {text_length} characters",
        )
    if (np.diff(values) < 0).any():
        bad = int(np.flatnonzero(np.diff(values) < 0)[0])
        raise LineError("bad alignment", f"{name}: decreases after point {bad + 1}")
    return values


# ----------------------------------------------------------------------------------------------
# The source: a folder, or the archives in it


@dataclasses.dataclass
class Inventory:
    """Every input file of a source, found but not yet parsed."""

    name: str  # the source folder's base name
    files: dict  # relative path -> absolute path (str), the member's bytes (from an archive),
    # or `Refused` (found, but not a regular file: never read)
    writer_ids: dict  # form id -> writer id ("" when unknown)
    writer_notes: dict  # form id -> why its writer id is unknown
    split_lists: dict  # list name -> form ids
    problems: list  # Skip for archive members refused
    digest: str  # sha256 over every input, for "same input" checks

    def paths(self, kind: str) -> list:
        return sorted(p for p in self.files if p.startswith(kind + "/"))


@dataclasses.dataclass(frozen=True)
class Refused:
    """An input file found but never read: not a regular file (a FIFO, a device, a socket, a
    link to one or to nothing). Reading it raises `LineError(reason, detail)`."""

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


def _refusal(path: str, name: str):
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


def _open_regular(path: str, name: str):
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


def _read_file(path: str, limit: int, name: str) -> bytes:
    with _open_regular(path, name) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise LineError("file too large", f"{name}: larger than the limit of {limit} bytes")
    return data


def read_bytes(ref, limit: int, name: str) -> bytes:
    """Returns an input file's bytes; `ref` is a path, the bytes themselves, or `Refused`."""
    if isinstance(ref, bytes):
        return ref
    if isinstance(ref, Refused):
        raise LineError(ref.reason, ref.detail)
    try:
        return _read_file(ref, limit, name)
    except OSError as e:
        raise LineError("unreadable file", f"{name}: {e.strerror or e}") from None


def _kind_folder(src: str, kind: str):
    for candidate in (os.path.join(src, kind), os.path.join(src, f"{kind}-all", kind)):
        if os.path.isdir(candidate):
            return candidate
    return None


def _walk(folder: str, kind: str) -> dict:
    found = {}
    for directory, subdirs, names in os.walk(folder):
        subdirs.sort()
        rel = os.path.relpath(directory, folder).replace(os.sep, "/")
        for name in names:
            relpath = posixpath.normpath(posixpath.join(kind, rel, name))
            path = os.path.join(directory, name)
            found[relpath] = _refusal(path, relpath) or path
    return found


def _archive_members(path: str, kind: str, budget: list, problems: list, on_original=None) -> dict:
    """Reads the relevant members of one `.tar.gz`; refuses links, odd paths, huge members.

    Every unsafe member (a path that is absolute or holds `..`, a link, a device, a FIFO) is
    listed in `problems`, whatever its name; other members outside `kind` are ignored.
    """
    found = {}
    archive_name = os.path.basename(path)
    limit = MAX_ORIGINAL_XML_BYTES if kind == "original" else MAX_LINE_XML_BYTES
    try:
        with (
            _open_regular(path, archive_name) as raw,
            tarfile.open(fileobj=raw, mode="r|gz") as archive,
        ):
            for member in archive:
                name = member.name.replace("\\", "/")
                parts = [p for p in name.split("/") if p not in ("", ".")]
                label = f"{archive_name}:{member.name}"
                if name.startswith("/") or ABSOLUTE_WINDOWS.match(name) or ".." in parts:
                    reason, detail = "unsafe archive member", "path leaves the archive"
                elif not (member.isfile() or member.isdir()):
                    reason, detail = "unsafe archive member", "not a regular file (link or device)"
                else:
                    where = next((i for i, p in enumerate(parts[:2]) if p in KINDS), None)
                    if where is None or member.isdir() or parts[where] != kind:
                        continue
                    if member.size > limit:
                        reason = "file too large"
                        detail = f"{member.size} bytes, the limit is {limit}"
                    else:
                        reason = None
                if reason is not None:
                    skip_id = parts[-1] if parts else member.name
                    problems.append(Skip(skip_id, label, reason, f"{label}: {detail}"))
                    continue
                budget[0] -= member.size
                if budget[0] < 0:
                    raise PrepError(
                        f"{path}: the archives unpack to more than {MAX_ARCHIVE_BYTES} bytes"
                    )
                relpath = "/".join(parts[where:])
                data = archive.extractfile(member).read(limit + 1)
                if on_original is not None:
                    on_original(relpath, data)
                else:
                    found[relpath] = data
    except LineError as e:
        raise PrepError(str(e)) from None
    except (tarfile.TarError, OSError, EOFError) as e:
        raise PrepError(f"{path}: not a readable .tar.gz archive ({e})") from e
    return found


def _form_of_original(relpath: str):
    parts = relpath.split("/")
    match = ORIGINAL_FILE.fullmatch(parts[-1])
    if match is None or len(parts) < 2:
        return None
    form_id = parts[-2] + match["suffix"]
    return form_id if FORM_ID.fullmatch(form_id) else None


def scan_source(src) -> Inventory:
    """Finds every input file of `src` and fingerprints them.

    Raises:
        PrepError: `src` is not a folder, or lacks the strokes, the transcriptions or a split list.
    """
    src = os.fspath(src)
    if not os.path.isdir(src):
        raise PrepError(f"{src}: not a folder (expected the unpacked IAM-OnDB or its archives)")
    files, problems, writer_ids, writer_notes = {}, [], {}, {}
    budget = [MAX_ARCHIVE_BYTES]

    def note_original(relpath, data_or_path):
        form_id = _form_of_original(relpath)
        if form_id is None:
            return
        try:
            data = read_bytes(data_or_path, MAX_ORIGINAL_XML_BYTES, relpath)
        except LineError as e:
            writer, problem = "", str(e)
        else:
            writer, problem = writer_id_of(io.BytesIO(data), relpath)
        writer_ids[form_id] = writer
        if problem:
            writer_notes[form_id] = problem

    for kind in KINDS:
        folder = _kind_folder(src, kind)
        archive = os.path.join(src, ARCHIVES[kind]) if kind in ARCHIVES else None
        found = {}
        if folder is not None:
            found = _walk(folder, kind)
        elif archive is not None and os.path.lexists(archive):
            refused = _refusal(archive, ARCHIVES[kind])
            if refused is not None:
                problems.append(
                    Skip(ARCHIVES[kind], ARCHIVES[kind], refused.reason, refused.detail)
                )
            else:
                found = _archive_members(
                    archive,
                    kind,
                    budget,
                    problems,
                    on_original=note_original if kind == "original" else None,
                )
        if kind == "original":
            for relpath in sorted(found):
                note_original(relpath, found[relpath])
        else:
            files.update(found)
    if not any(p.startswith("lineStrokes/") for p in files):
        raise PrepError(f"{src}: no lineStrokes/ folder and no {ARCHIVES['lineStrokes']}")
    if not any(p.startswith("ascii/") for p in files):
        raise PrepError(f"{src}: no ascii/ folder and no {ARCHIVES['ascii']}")
    split_lists = {}
    for list_name in SPLIT_LISTS:
        candidates = [
            os.path.join(src, f"{list_name}.txt"),
            os.path.join(src, "task1", f"{list_name}.txt"),
        ]
        path = next((p for p in candidates if os.path.lexists(p)), None)
        if path is None:
            raise PrepError(f"{candidates[0]}: split list not found (nor in task1/)")
        refused = _refusal(path, path)
        if refused is not None:
            raise PrepError(refused.detail)
        relpath = os.path.relpath(path, src).replace(os.sep, "/")
        try:
            data = _read_file(path, MAX_TEXT_BYTES, relpath)
        except LineError as e:
            raise PrepError(str(e)) from None
        split_lists[list_name] = read_split_list(data, relpath)
        files[relpath] = data
    digest = _fingerprint(files, writer_ids, problems)
    return Inventory(
        name=os.path.basename(os.path.abspath(src)),
        files=files,
        writer_ids=writer_ids,
        writer_notes=writer_notes,
        split_lists=split_lists,
        problems=problems,
        digest=digest,
    )


def _fingerprint(files: dict, writer_ids: dict, problems: list) -> str:
    """sha256 over every input's path and content, the writer ids and the refused members."""
    total = hashlib.sha256()
    for relpath in sorted(files):
        ref = files[relpath]
        try:
            content = hashlib.sha256(read_bytes(ref, MAX_ORIGINAL_XML_BYTES, relpath)).hexdigest()
        except LineError as e:
            content = f"unreadable: {e}"
        total.update(f"{relpath}\0{content}\n".encode())
    total.update(json.dumps(writer_ids, sort_keys=True).encode())
    total.update(json.dumps([p.to_json() for p in problems], sort_keys=True).encode())
    return total.hexdigest()


# ----------------------------------------------------------------------------------------------
# Per-form work (runs in the worker processes)


@dataclasses.dataclass(frozen=True)
class FormTask:
    form_id: str
    writer_id: str
    ascii: tuple | None  # (relpath, ref) of the transcription, or None
    lines: tuple  # of (number, line_id, relpath, ref, alignment relpath or None, alignment ref)


def read_form(task: FormTask) -> tuple:
    """Reads one form's lines.

    Returns:
        `(lines, skips)`: the clean `Line`s in line order and a `Skip` for each line left out.
    """
    skips = []

    def skip_all(reason, detail):
        return [], [
            Skip(line_id, relpath, reason, detail) for _, line_id, relpath, *_ in task.lines
        ]

    if task.ascii is None:
        expected = f"ascii/{task.form_id[:3]}/{task.form_id[:7]}/{task.form_id}.txt"
        return skip_all("no transcription", f"{expected}: not found, the form has no transcription")
    ascii_path, ascii_ref = task.ascii
    try:
        texts = csr_lines(
            decode_text(read_bytes(ascii_ref, MAX_TEXT_BYTES, ascii_path)), ascii_path
        )
    except LineError as e:
        return skip_all(e.reason, str(e))
    numbers = [number for number, *_ in task.lines]
    if numbers != list(range(1, len(texts) + 1)):
        return skip_all(
            "line count mismatch",
            f"{ascii_path}: {len(texts)} CSR lines, but the stroke files are numbered "
            f"{', '.join(f'{n:02d}' for n in numbers)}; which text belongs to which is unknown",
        )
    lines = []
    for number, line_id, relpath, ref, align_path, align_ref in task.lines:
        text = texts[number - 1]
        at = relpath  # the file a skip names
        try:
            check_text(text, f"{ascii_path} line {number}")
            x, y, lengths = parse_line_xml(read_bytes(ref, MAX_LINE_XML_BYTES, relpath), relpath)
            alignment = None
            if align_path is not None:
                at = align_path
                data = read_bytes(align_ref, MAX_TEXT_BYTES, align_path)
                alignment = parse_alignment(data, align_path, x.shape[0], len(text))
            strokes, alignment = clean.to_stroke_array(x, y, lengths, alignment)
        except LineError as e:
            skips.append(Skip(line_id, at, e.reason, str(e)))
            continue
        lines.append(Line(line_id, task.writer_id, text, strokes, alignment, relpath))
    return lines, skips


# ----------------------------------------------------------------------------------------------
# The whole corpus


@dataclasses.dataclass
class Corpus:
    """The clean lines of every split, and what was left out."""

    splits: dict  # split name -> list of Line, sorted by line id
    skips: list  # of Skip, sorted by (line id, file)
    lines_without_writer: int  # kept lines whose writer id is unknown


def split_names(mode: str) -> tuple:
    """The splits a mode produces, in order."""
    return tuple(dict.fromkeys(SPLIT_MODES[mode].values()))


def _assign_splits(form_ids, split_lists: dict, mode: str) -> dict:
    """Returns form id -> set of splits, from the lists' exact ids and suffix-less ids."""
    exact = {name: set(ids) for name, ids in split_lists.items()}
    assigned = {}
    for form_id in form_ids:
        base = FORM_ID.fullmatch(form_id)["base"]
        assigned[form_id] = {
            SPLIT_MODES[mode][name] for name, ids in exact.items() if form_id in ids or base in ids
        }
    return assigned


def _plan_forms(inventory: Inventory, mode: str) -> tuple:
    """Groups the files per form; returns `(tasks, form_splits, skips)`."""
    skips = list(inventory.problems)
    by_form, seen = {}, {}
    for relpath in inventory.paths("lineStrokes"):
        base = relpath.rsplit("/", 1)[-1]
        match = LINE_FILE.fullmatch(base)
        if match is None or not base.endswith(".xml"):
            skips.append(
                Skip(base, relpath, "bad file name", f"{relpath}: not named like a01-000u-01.xml")
            )
            continue
        line_id = base[: -len(".xml")]
        seen.setdefault(line_id, []).append(relpath)
        by_form.setdefault(match["form"], []).append((int(match["number"]), line_id, relpath))
    duplicates = {line_id for line_id, paths in seen.items() if len(paths) > 1}
    ascii_files = {}
    for relpath in inventory.paths("ascii"):
        form_id = relpath.rsplit("/", 1)[-1].removesuffix(".txt")
        if relpath.endswith(".txt") and FORM_ID.fullmatch(form_id):
            ascii_files[form_id] = relpath
    alignments = {}
    for relpath in inventory.paths("alignment"):
        match = LINE_FILE.fullmatch(relpath.rsplit("/", 1)[-1])
        if match is not None and relpath.endswith(".txt"):
            alignments[relpath.rsplit("/", 1)[-1][: -len(".txt")]] = relpath
    for form_id in sorted(set(ascii_files) - set(by_form)):
        skips.append(
            Skip(
                form_id,
                ascii_files[form_id],
                "no stroke files",
                f"{ascii_files[form_id]}: no lineStrokes files for this form",
            )
        )
    form_splits = _assign_splits(by_form, inventory.split_lists, mode)
    tasks = []
    for form_id in sorted(by_form):
        entries = sorted(by_form[form_id])
        splits = form_splits[form_id]
        if duplicates.intersection(line_id for _, line_id, _ in entries):
            reason, detail = (
                "duplicate line id",
                f"form {form_id} has stroke files of the same name in two folders",
            )
        elif not splits:
            reason, detail = "no split", f"form {form_id} is in no split list"
        elif len(splits) > 1:
            reason, detail = (
                "split conflict",
                f"form {form_id} is listed for splits {sorted(splits)}",
            )
        else:
            reason = None
        if reason is not None:
            skips.extend(Skip(line_id, relpath, reason, detail) for _, line_id, relpath in entries)
            continue
        lines = []
        for number, line_id, relpath in entries:
            align_path = alignments.get(line_id)
            align_ref = inventory.files[align_path] if align_path else None
            lines.append(
                (number, line_id, relpath, inventory.files[relpath], align_path, align_ref)
            )
        ascii_path = ascii_files.get(form_id)
        ascii = (ascii_path, inventory.files[ascii_path]) if ascii_path else None
        tasks.append(FormTask(form_id, inventory.writer_ids.get(form_id, ""), ascii, tuple(lines)))
    return tasks, form_splits, skips


def read_corpus(inventory: Inventory, mode: str = "graves", workers: int = 1) -> Corpus:
    """Reads and cleans every line of a scanned source.

    Args:
        inventory: from `scan_source`.
        mode: `graves` or `official`, see `SPLIT_MODES`.
        workers: processes parsing forms in parallel; 1 parses in this process.
    """
    if mode not in SPLIT_MODES:
        raise ValueError(f"`mode` must be one of {sorted(SPLIT_MODES)}, received {mode!r}")
    if workers < 1:
        raise ValueError(f"`workers` must be >= 1, received {workers}")
    tasks, form_splits, skips = _plan_forms(inventory, mode)
    if workers == 1:
        results = [read_form(task) for task in tasks]
    else:
        chunk = max(1, min(16, len(tasks) // (4 * workers)))
        context = multiprocessing.get_context("spawn")  # no fork of a process that may hold threads
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            results = list(pool.map(read_form, tasks, chunksize=chunk))
    splits = {name: [] for name in split_names(mode)}
    without_writer = 0
    for task, (lines, form_skips) in zip(tasks, results, strict=True):
        (split,) = form_splits[task.form_id]
        splits[split].extend(lines)
        skips.extend(form_skips)
        without_writer += 0 if task.writer_id else len(lines)
    skips.sort(key=lambda s: (s.line_id, s.file, s.reason))
    return Corpus(splits=splits, skips=skips, lines_without_writer=without_writer)
