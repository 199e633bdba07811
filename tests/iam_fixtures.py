"""Writes folders in the exact IAM-OnDB layout, with the real data's quirks, for tests and
benchmarks.

`write_fixture(root)` writes a small corpus and returns what a correct reader must make of it;
`write_bulk_corpus(root, ...)` writes a large, clean one quickly (the benchmark's input).
"""

import dataclasses
import os
import tarfile

import numpy as np

DECLARATION = b'<?xml version="1.0" encoding="ISO-8859-1"?>'

# A line's header, as in the real lineStrokes files; the `note` carries a non-ASCII character
# so the ISO-8859-1 declaration matters.
HEADER = (
    "<WhiteboardCaptureSession>{nl}"
    "  <WhiteboardDescription>{nl}"
    '    <SensorLocation corner="top_left" note="Zürich"/>{nl}'
    '    <DiagonallyOppositeCoords x="6512" y="1376"/>{nl}'
    '    <VerticallyOppositeCoords x="966" y="1376"/>{nl}'
    '    <HorizontallyOppositeCoords x="6512" y="787"/>{nl}'
    "  </WhiteboardDescription>{nl}"
    "  <StrokeSet>{nl}"
)
FOOTER = "  </StrokeSet>{nl}</WhiteboardCaptureSession>{nl}"


def line_xml(strokes, newline="\r\n", time0=769.05) -> bytes:
    """One line's XML; `strokes` is a list of `(n, 2)` integer arrays of absolute (x, y)."""
    parts = [HEADER.format(nl=newline)]
    t = time0
    for stroke in strokes:
        start = t
        points = []
        for x, y in np.asarray(stroke).tolist():
            points.append(f'      <Point x="{x}" y="{y}" time="{t:.2f}"/>{newline}')
            t += 0.01
        parts.append(
            f'    <Stroke colour="black" start_time="{start:.2f}" end_time="{t:.2f}">{newline}'
        )
        parts.extend(points)
        parts.append(f"    </Stroke>{newline}")
        t += 0.2
    parts.append(FOOTER.format(nl=newline))
    return DECLARATION + newline.encode() + "".join(parts).encode("iso-8859-1")


def ascii_file(form_id, texts, newlines=("\r\n",), csr="CSR:  ", encoding="iso-8859-1") -> bytes:
    """A transcription: header, `OCR:` block, `CSR:` block; newlines cycle through `newlines`."""
    rows = [
        f"Document id: {form_id}",
        "Writer   : 10000",
        "",
        "OCR:",
        "",
        *texts,
        "",
        csr,
        "",
        *texts,
        "",
        "",
    ]
    out = []
    for i, row in enumerate(rows):
        out.append(row + newlines[i % len(newlines)])
    return "".join(out).encode(encoding)


def original_xml(form_id, writer_id) -> bytes:
    """A form's original XML head; without `writer_id` it has no General element (as some do)."""
    general = (
        f'<General>\n  <Form id="{form_id}" writerID="{writer_id}" saveTime="2004"/>\n'
        f"  <CaptureTime>Mon Jul 19 2004</CaptureTime>\n</General>\n"
        if writer_id
        else ""
    )
    body = f"<WhiteboardCaptureSession>\n{general}<StrokeSet>\n</StrokeSet>\n"
    body += "</WhiteboardCaptureSession>\n"
    return DECLARATION + b"\n" + body.encode("iso-8859-1")


HOSTILE = {
    "xxe": b'<?xml version="1.0"?>\n<!DOCTYPE WhiteboardCaptureSession [<!ENTITY xxe SYSTEM '
    b'"file:///etc/passwd">]>\n<WhiteboardCaptureSession><StrokeSet><Stroke><Point x="&xxe;" y="1" '
    b'time="0"/></Stroke></StrokeSet></WhiteboardCaptureSession>\n',
    "billion laughs": b'<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'.encode()
        for i in range(1, 10)
    )
    + b']>\n<WhiteboardCaptureSession><StrokeSet><Stroke><Point x="1" y="1" time="&lol9;"/>'
    b"</Stroke></StrokeSet></WhiteboardCaptureSession>\n",
    "truncated": line_xml([np.array([[10, 20], [11, 22], [12, 25]])])[:-60],
    "wrong root": DECLARATION
    + b'\n<Session><StrokeSet><Stroke><Point x="1" y="2" time="0"/></Stroke>'
    b"</StrokeSet></Session>\n",
    "non-numeric x": line_xml([np.array([[10, 20], [11, 22]])]).replace(b'x="11"', b'x="1l"'),
    "empty StrokeSet": line_xml([]),
}


@dataclasses.dataclass
class ExpectedLine:
    text: str
    strokes: list  # of (n, 2) int64 absolute (x, y), y down, as written
    writer_id: str
    graves: str  # split under --split graves
    official: str  # split under --split official
    alignment: np.ndarray | None  # (N,) per written point


@dataclasses.dataclass
class Fixture:
    root: str
    lines: dict  # line id -> ExpectedLine, for every line a reader must keep
    skips: dict  # line id (or form id) -> reason


def _random_strokes(rng, num_strokes, offset, repeats=True):
    """Random strokes at a whiteboard offset, with repeated points and one-point strokes."""
    strokes = []
    position = np.array(offset)
    for s in range(num_strokes):
        n = 1 if s % 3 == 2 else int(rng.integers(4, 9))  # every third stroke is a dot
        steps = rng.integers(-6, 7, size=(n, 2))
        steps[0] = rng.integers(5, 30, size=2)
        points = position + np.cumsum(steps, axis=0)
        if repeats and n > 2:
            at = int(rng.integers(1, n))
            points = np.insert(points, at, points[at - 1], axis=0)  # an exact repeat
            points = np.insert(points, at, points[at - 1], axis=0)  # and another
        position = points[-1]
        strokes.append(points.astype(np.int64))
    return strokes


def _write(path, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def _form_dir(kind, form_id):
    return os.path.join(kind, form_id[:3], form_id[:7])


# Forms of the fixture: id -> (texts in CSR, number of stroke files, split list entry or None).
TRAIN_TEXTS = {
    "a01-000u": ["A MOVE to stop", "  Mr. Gaitskell from  ", "café nominating"],
    "a01-000x": ["any more Labour", "life Peers is"],
}


def write_fixture(root, seed=0) -> Fixture:
    """Writes the test corpus under `root` and returns what a reader must make of it."""
    rng = np.random.default_rng(seed)
    lines, skips = {}, {}

    def add_form(
        form_id,
        texts,
        writer_id,
        graves,
        official,
        newlines=("\r\n",),
        csr="CSR:  ",
        num_xml=None,
        strokes_per_line=(3, 4, 5, 2, 6),
        xml_newline="\r\n",
        aligned=(),
    ):
        num_xml = len(texts) if num_xml is None else num_xml
        _write(
            os.path.join(root, _form_dir("ascii", form_id), form_id + ".txt"),
            ascii_file(form_id, texts, newlines=newlines, csr=csr),
        )
        if writer_id is not None:
            _write(
                os.path.join(root, _form_dir("original", form_id), f"strokes{form_id[7:]}.xml"),
                original_xml(form_id, writer_id),
            )
        for k in range(1, num_xml + 1):
            line_id = f"{form_id}-{k:02d}"
            offset = (int(rng.integers(500, 6000)), int(rng.integers(400, 1300)))
            strokes = _random_strokes(
                rng, strokes_per_line[(k - 1) % len(strokes_per_line)], offset
            )
            _write(
                os.path.join(root, _form_dir("lineStrokes", form_id), line_id + ".xml"),
                line_xml(strokes, newline=xml_newline if k % 2 else "\n"),
            )
            alignment = None
            if k in aligned:
                text = texts[k - 1].strip()
                total = sum(len(s) for s in strokes)
                alignment = np.sort(rng.integers(0, len(text), total))
                _write(
                    os.path.join(root, _form_dir("alignment", form_id), line_id + ".txt"),
                    (" ".join(map(str, alignment)) + "\n").encode(),
                )
            lines[line_id] = ExpectedLine(
                texts[k - 1].strip(), strokes, writer_id or "", graves, official, alignment
            )

    add_form("a01-000u", TRAIN_TEXTS["a01-000u"], "10000", "train", "train", aligned=(1, 2))
    add_form(
        "a01-000x", TRAIN_TEXTS["a01-000x"], "10001", "train", "train", newlines=("\n",), csr="CSR:"
    )
    add_form("a01-007u", ["Quiz 42!", "to be made"], None, "valid", "valid", newlines=("\n",))
    add_form(
        "a02-011w",
        ["at a meeting", " of Labour"],
        "10002",
        "train",
        "valid",
        newlines=("\r\n", "\n"),
    )
    add_form("a02-012w", ["M Ps tomorrow"], "", "train", "test", strokes_per_line=(7,))
    # CSR has three lines, the strokes two: no line can be matched with certainty.
    add_form("a03-020u", ["one", "two", "three"], "10004", "train", "train", num_xml=2)
    for k in (1, 2):
        del lines[f"a03-020u-{k:02d}"]
        skips[f"a03-020u-{k:02d}"] = "line count mismatch"
    # A transcription without stroke files.
    _write(
        os.path.join(root, _form_dir("ascii", "a03-021u"), "a03-021u.txt"),
        ascii_file("a03-021u", ["alone"]),
    )
    skips["a03-021u"] = "no stroke files"
    # Stroke files without a transcription.
    strokes = _random_strokes(rng, 2, (800, 900))
    _write(
        os.path.join(root, _form_dir("lineStrokes", "a03-023u"), "a03-023u-01.xml"),
        line_xml(strokes),
    )
    skips["a03-023u-01"] = "no transcription"
    # A form in no split list.
    add_form("a03-022u", ["unlisted"], "10005", "-", "-")
    del lines["a03-022u-01"]
    skips["a03-022u-01"] = "no split"
    # Hostile and broken lines, a placeholder, a control character and a bad alignment file.
    hostile_texts = [*HOSTILE, "###", "tab\there", "aligned badly"]
    form = "a04-030u"
    _write(
        os.path.join(root, _form_dir("ascii", form), form + ".txt"), ascii_file(form, hostile_texts)
    )
    reasons = {
        "xxe": "unsafe XML",
        "billion laughs": "unsafe XML",
        "truncated": "malformed XML",
        "wrong root": "unexpected XML structure",
        "non-numeric x": "bad coordinates",
        "empty StrokeSet": "no points",
    }
    for k, name in enumerate(HOSTILE, 1):
        _write(
            os.path.join(root, _form_dir("lineStrokes", form), f"{form}-{k:02d}.xml"), HOSTILE[name]
        )
        skips[f"{form}-{k:02d}"] = reasons[name]
    for k, reason in ((7, "placeholder text"), (8, "control character"), (9, "bad alignment")):
        strokes = _random_strokes(rng, 2, (1000, 1000))
        _write(
            os.path.join(root, _form_dir("lineStrokes", form), f"{form}-{k:02d}.xml"),
            line_xml(strokes),
        )
        skips[f"{form}-{k:02d}"] = reason
    _write(os.path.join(root, _form_dir("alignment", form), f"{form}-09.txt"), b"0 1 2\n")
    # Split lists: leading spaces, ids with and without the suffix, CRLF and LF.
    _write(
        os.path.join(root, "trainset.txt"),
        b"a01-000u\r\n  a01-000\r\n a03-020u\n a03-021u\n a03-023u\na04-030u\n",
    )
    _write(os.path.join(root, "testset_v.txt"), b"  a01-007\n")
    _write(os.path.join(root, "testset_t.txt"), b" a02-011w\n\n")
    _write(os.path.join(root, "testset_f.txt"), b"   a02-012\r\n")
    return Fixture(os.fspath(root), lines, skips)


def write_archives(src, dst) -> None:
    """Packs a fixture folder as the official archives: `lineStrokes-all.tar.gz`, ... in `dst`."""
    os.makedirs(dst, exist_ok=True)
    for kind, archive in (
        ("lineStrokes", "lineStrokes-all"),
        ("ascii", "ascii-all"),
        ("original", "original-xml-all"),
    ):
        with tarfile.open(os.path.join(dst, archive + ".tar.gz"), "w:gz") as tar:
            tar.add(os.path.join(src, kind), arcname=kind)
    for name in sorted(os.listdir(src)):
        path = os.path.join(src, name)
        if name.endswith(".txt") or name == "alignment":
            target = os.path.join(dst, name)
            if os.path.isdir(path):
                import shutil

                shutil.copytree(path, target)
            else:
                with open(path, "rb") as f:
                    _write(target, f.read())


def write_bulk_corpus(root, num_lines=12000, points_per_line=700, lines_per_form=8, seed=0) -> int:
    """Writes a large clean corpus (all forms in trainset but every tenth in testset_v).

    Returns the number of points written.
    """
    rng = np.random.default_rng(seed)
    words = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "Labour", "M.P.s"]
    train, valid, total = [], [], 0
    num_forms = -(-num_lines // lines_per_form)
    for f in range(num_forms):
        form_id = f"{'abcdefghijklmn'[f // 1000]}{(f // 100) % 100:02d}-{f % 100:03d}u"
        (valid if f % 10 == 0 else train).append(form_id)
        count = min(lines_per_form, num_lines - f * lines_per_form)
        texts = [" ".join(rng.choice(words, 6)) for _ in range(count)]
        _write(
            os.path.join(root, _form_dir("ascii", form_id), form_id + ".txt"),
            ascii_file(form_id, texts),
        )
        _write(
            os.path.join(root, _form_dir("original", form_id), "strokesu.xml"),
            original_xml(form_id, str(10000 + f % 200)),
        )
        for k in range(1, count + 1):
            n = int(rng.integers(points_per_line * 3 // 4, points_per_line * 5 // 4))
            xy = np.cumsum(rng.integers(-8, 9, size=(n, 2)), axis=0) + rng.integers(
                500, 5000, size=2
            )
            cuts = np.sort(rng.choice(np.arange(1, n), size=n // 30, replace=False))
            total += n
            _write(
                os.path.join(root, _form_dir("lineStrokes", form_id), f"{form_id}-{k:02d}.xml"),
                _fast_line_xml(np.split(xy, cuts)),
            )
    _write(os.path.join(root, "trainset.txt"), "".join(f" {i}\n" for i in train).encode())
    _write(os.path.join(root, "testset_v.txt"), "".join(f"{i}\n" for i in valid).encode())
    _write(os.path.join(root, "testset_t.txt"), b"")
    _write(os.path.join(root, "testset_f.txt"), b"")
    return total


def _fast_line_xml(strokes) -> bytes:
    parts = [HEADER.format(nl="\r\n")]
    for stroke in strokes:
        parts.append('    <Stroke colour="black" start_time="0.00" end_time="1.00">\r\n')
        parts.extend(f'      <Point x="{x}" y="{y}" time="0.00"/>\r\n' for x, y in stroke.tolist())
        parts.append("    </Stroke>\r\n")
    parts.append(FOOTER.format(nl="\r\n"))
    return DECLARATION + b"\r\n" + "".join(parts).encode("iso-8859-1")
