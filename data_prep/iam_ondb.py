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
reaches the XML parser, whatever the file's encoding, and points no whiteboard gives are
refused: a line is read by `handwriting.iam_xml`, as a style prime is.
"""

import concurrent.futures
import dataclasses
import gzip
import hashlib
import io
import json
import multiprocessing
import os
import posixpath
import re
import tarfile
import zlib

import numpy as np
from lxml import etree

from handwriting.iam_xml import (
    MAX_LINE_XML_BYTES,
    LineError,
    Refused,
    open_regular,
    parse_line_xml,
    read_regular,
    refusal,
    to_stroke_array,
    xml_as_utf8,
)

# Size caps: the real files are far smaller (a form's XML is < 3 MiB; a line's:
# `iam_xml.MAX_LINE_XML_BYTES`).
MAX_ORIGINAL_XML_BYTES = 64 << 20
MAX_TEXT_BYTES = 4 << 20  # transcriptions, split lists, alignment files
MAX_ARCHIVE_BYTES = 8 << 30  # all the archives unpack to at most this, together
# An archive is a bomb when it unpacks to more than MAX_UNPACK_RATIO times the bytes read
# from it, once BOMB_ALLOWANCE bytes are unpacked: XML and text compress about 10:1, zeros
# 1000:1, so a bomb is stopped within seconds and the real archives never are.
MAX_UNPACK_RATIO = 100
BOMB_ALLOWANCE = 64 << 20
# Entries of one archive: the official ones hold about 14,000 (files and folders); a flood of
# empty entries costs time without any bytes (50,000 take about 5 s to list).
MAX_ARCHIVE_MEMBERS = 50_000

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


# ----------------------------------------------------------------------------------------------
# The writer of a form


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
    """Decodes a text file: UTF-8 when it is valid UTF-8 (a byte order mark, as Windows
    editors write, dropped), else ISO-8859-1 (the data's own)."""
    try:
        return data.decode("utf-8-sig")
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
    except OverflowError:  # an integer beyond int64: no character index
        raise LineError("bad alignment", f"{name}: holds an integer beyond 64 bits") from None
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


def read_bytes(ref, limit: int, name: str) -> bytes:
    """Returns an input file's bytes; `ref` is a path, the bytes themselves, or `Refused`."""
    if isinstance(ref, bytes):
        return ref
    if isinstance(ref, Refused):
        raise LineError(ref.reason, ref.detail)
    try:
        return read_regular(ref, limit, name)
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
            found[relpath] = refusal(path, relpath) or path
    return found


class _Unpacked(io.RawIOBase):
    """The unpacked bytes of a `.tar.gz`, every read checked against the budget and the bomb
    ratio, whatever part of the archive `tarfile` reads them for (a member, a skipped
    member, a long-name header). `finish` reads to the end of the gzip stream, so that its
    CRC and length are checked: a flipped or missing byte is an error, never other content."""

    def __init__(self, packed, path: str, budget: list):
        self._packed = packed  # the archive file
        self._gzip = gzip.GzipFile(fileobj=packed, mode="rb")
        self._path = path
        self._budget = budget  # [bytes all archives may still unpack to]
        self._unpacked = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = self._gzip.readinto(buffer)
        self._unpacked += count
        self._budget[0] -= count
        if self._budget[0] < 0:
            raise PrepError(
                f"{self._path}: the archives unpack to more than {MAX_ARCHIVE_BYTES} bytes"
            )
        if (
            self._unpacked > BOMB_ALLOWANCE
            and self._unpacked > MAX_UNPACK_RATIO * self._packed.tell()
        ):
            raise PrepError(
                f"{self._path}: unpacks to more than {MAX_UNPACK_RATIO} times its size "
                f"({self._unpacked} bytes from {self._packed.tell()}), like a compression "
                "bomb; not read"
            )
        return count

    def finish(self) -> None:
        buffer = bytearray(1 << 20)
        while self.readinto(buffer):
            pass


def _archive_members(path: str, kind: str, budget: list, problems: list, on_original=None) -> dict:
    """Reads the relevant members of one `.tar.gz`; refuses links, odd paths, huge members.

    Every unsafe member (a path that is absolute or holds `..`, a link, a device, a FIFO) is
    listed in `problems`, whatever its name; other members outside `kind` are ignored. The
    whole archive is read through `_Unpacked`: a bomb, a corrupt or truncated archive, or
    more than `MAX_ARCHIVE_MEMBERS` entries stop the run with an error naming it.
    """
    found = {}
    archive_name = os.path.basename(path)
    limit = MAX_ORIGINAL_XML_BYTES if kind == "original" else MAX_LINE_XML_BYTES
    try:
        with open_regular(path, archive_name) as raw:
            unpacked = _Unpacked(raw, path, budget)
            archive = tarfile.open(fileobj=unpacked, mode="r|", bufsize=1 << 20)
            for count, member in enumerate(archive, 1):
                if count > MAX_ARCHIVE_MEMBERS:
                    raise PrepError(f"{path}: more than {MAX_ARCHIVE_MEMBERS} entries")
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
                relpath = "/".join(parts[where:])
                data = archive.extractfile(member).read(limit + 1)
                if on_original is not None:
                    on_original(relpath, data)
                else:
                    found[relpath] = data
            unpacked.finish()
    except LineError as e:
        raise PrepError(str(e)) from None
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
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
            refused = refusal(archive, ARCHIVES[kind])
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
        refused = refusal(path, path)
        if refused is not None:
            raise PrepError(refused.detail)
        relpath = os.path.relpath(path, src).replace(os.sep, "/")
        try:
            data = read_regular(path, MAX_TEXT_BYTES, relpath)
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
            strokes, alignment = to_stroke_array(x, y, lengths, alignment)
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
