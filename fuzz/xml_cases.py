"""IAM-OnDB line XML (`iam_xml.parse_line_xml`) and form XML (`iam_ondb.writer_id_of`).

A case is a recipe: a clean line (random strokes, some empty or one point long) and one
attack on it. Attacks whose outcome is known are checked exactly (a DOCTYPE is refused as
unsafe, a line re-encoded in UTF-16 reads the same points); random byte flips and
truncations may give anything, so there the check is the contract alone: a `LineError`
naming the file, or points that a whiteboard gives.
"""

import codecs
import dataclasses
import io
import random

import numpy as np
from hypothesis import strategies as st

from data_prep import iam_ondb
from handwriting import iam_xml

NAME = "lineStrokes/a01/a01-000/a01-000u-01.xml"
REASONS = {
    "file too large",
    "unsafe XML",
    "unsupported encoding",
    "malformed XML",
    "unexpected XML structure",
    "no points",
    "bad coordinates",
    "implausible coordinates",
}
# Encodings a line may be written in and must read the same: (declared, codec, byte order mark).
GOOD_ENCODINGS = (
    ("ISO-8859-1", "iso-8859-1", b""),
    ("UTF-8", "utf-8", b""),
    (None, "utf-8", b""),
    ("UTF-8", "utf-8", codecs.BOM_UTF8),
    ("windows-1252", "cp1252", b""),
    ("US-ASCII", "ascii", b""),
    ("UTF-16", "utf-16-le", codecs.BOM_UTF16_LE),
    ("UTF-16", "utf-16-be", codecs.BOM_UTF16_BE),
    ("UTF-16LE", "utf-16-le", b""),
    ("UTF-16BE", "utf-16-be", b""),
    ("UTF-32", "utf-32-le", codecs.BOM_UTF32_LE),
    ("UTF-32", "utf-32-be", codecs.BOM_UTF32_BE),
    (None, "utf-16-le", codecs.BOM_UTF16_LE),
)
# Encodings that are refused, declared on otherwise plain ASCII bytes.
REFUSED_ENCODINGS = ("UTF-7", "IBM037", "Shift_JIS", "EUC-JP", "x-bogus", "KOI8-R", "GB2312")
DOCTYPES = (
    '<!DOCTYPE WhiteboardCaptureSession [<!ENTITY % p SYSTEM "file:///dev/zero"> %p;]>',
    '<!DOCTYPE WhiteboardCaptureSession SYSTEM "file:///etc/passwd">',
    '<!DOCTYPE WhiteboardCaptureSession [<!ENTITY e SYSTEM "file:///etc/passwd">]>',
    '<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>',
    "<!DOCTYPE WhiteboardCaptureSession>",
    '<!ENTITY e "x">',
    "<!ELEMENT Point ANY>",
    "<!-- a comment --><!DOCTYPE x>",
    "<!doctype WhiteboardCaptureSession>",
)
# Coordinate values a line must be refused for, with the reason.
HOSTILE_VALUES = (
    ("nan", "bad coordinates"),
    ("NaN", "bad coordinates"),
    ("inf", "bad coordinates"),
    ("-Infinity", "bad coordinates"),
    ("1e309", "bad coordinates"),
    ("-1e400", "bad coordinates"),
    ("", "bad coordinates"),
    ("ten", "bad coordinates"),
    ("0x1F", "bad coordinates"),
    ("1,5", "bad coordinates"),
    ("2000001", "implausible coordinates"),
    ("-1e7", "implausible coordinates"),
    ("3.4e38", "implausible coordinates"),
    ("1e300", "implausible coordinates"),
)
TIME_VALUES = ("nan", "inf", "-1e309", "", "yesterday", "1e400", "-5", "99999999999999999999999")


@dataclasses.dataclass(frozen=True)
class Line:
    """A clean line: strokes of absolute integer points, some empty or one point long."""

    strokes: tuple  # of tuples of (x, y)

    @property
    def points(self):
        return [p for stroke in self.strokes for p in stroke]


@st.composite
def lines(draw, max_strokes=6, max_points=9):
    """Random clean lines: plausible coordinates, 1 to `max_strokes` strokes."""
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    x, y = rng.randint(0, 8000), rng.randint(0, 3000)
    strokes = []
    for _ in range(draw(st.integers(1, max_strokes))):
        count = draw(st.sampled_from([0, 1, 1, 2, 3, max_points]))
        stroke = []
        for _ in range(count):
            x += rng.randint(-40, 60)
            y += rng.randint(-40, 40)
            stroke.append((x, y))
        strokes.append(tuple(stroke))
    if not any(strokes):
        strokes[0] = ((x, y),)
    return Line(tuple(strokes))


def line_text(line: Line, newline="\n", times=None, point_attrs=None) -> str:
    """The line's XML body (no declaration) in the IAM-OnDB layout."""
    parts = [
        f"<WhiteboardCaptureSession>{newline}  <WhiteboardDescription>{newline}"
        f'    <SensorLocation corner="top_left" note="Zürich"/>{newline}'
        f"  </WhiteboardDescription>{newline}  <StrokeSet>{newline}"
    ]
    index = 0
    for stroke in line.strokes:
        parts.append(f'    <Stroke colour="black" start_time="0" end_time="1">{newline}')
        for x, y in stroke:
            time = times[index] if times else f"{index * 0.01:.2f}"
            attrs = point_attrs[index] if point_attrs else f'x="{x}" y="{y}" time="{time}"'
            parts.append(f"      <Point {attrs}/>{newline}")
            index += 1
        parts.append(f"    </Stroke>{newline}")
    parts.append(f"  </StrokeSet>{newline}</WhiteboardCaptureSession>{newline}")
    return "".join(parts)


def encode(text: str, declared, codec: str, bom: bytes = b"") -> bytes:
    head = f'<?xml version="1.0" encoding="{declared}"?>\n' if declared else ""
    # Characters the encoding lacks become character references, as an XML writer does.
    return bom + (head + text).encode(codec, "xmlcharrefreplace")


def expected(line: Line):
    """What `parse_line_xml` must give for a clean line."""
    points = np.array(line.points, np.float64).reshape(-1, 2)
    return points[:, 0], points[:, 1], np.array([len(s) for s in line.strokes], np.int64)


# ----------------------------------------------------------------------------------------------
# Attacks: each returns (bytes, expectation); the expectation is "same" (the clean line's
# points), a reason the line must be refused for, or None (any outcome within the contract).

ATTACKS = (
    "none",
    "encoding",
    "whitespace",
    "time",
    "flip",
    "truncate",
    "duplicate attribute",
    "missing attribute",
    "coordinate",
    "offset",
    "no points",
    "nesting",
    "doctype",
    "refused encoding",
    "encoding lie",
    "structure",
    "large",
    "junk",
)


@dataclasses.dataclass(frozen=True)
class LineCase:
    line: Line
    attack: str
    seed: int

    def build(self):
        return _BUILDERS[self.attack](self.line, random.Random(self.seed))


@st.composite
def line_cases(draw, attacks=ATTACKS):
    """Cases of every attack; `large` ones (megabytes each) are one in 200."""
    common = [a for a in attacks if a != "large"]
    seed = draw(st.integers(0, 2**32 - 1))
    # Drawn from the seed, not by Hypothesis, which favours the ends of a range.
    large = "large" in attacks and (not common or random.Random(seed).random() < 0.005)
    attack = "large" if large else draw(st.sampled_from(common))
    return LineCase(draw(lines()), attack, seed)


def _plain(line, rng):
    return encode(line_text(line), "ISO-8859-1", "iso-8859-1"), "same"


def _encoding(line, rng):
    declared, codec, bom = rng.choice(GOOD_ENCODINGS)
    newline = rng.choice(["\n", "\r\n", "\r"])
    return encode(line_text(line, newline), declared, codec, bom), "same"


def _whitespace(line, rng):
    text = line_text(line)
    pieces = text.split(">")
    fillers = [" ", "\t", "\r\n", "<!-- comment -->", "<![CDATA[ ]]>", "\n\n"]
    out = []
    for i, piece in enumerate(pieces[:-1]):
        out.append(piece + ">")
        if i < len(pieces) - 2 and rng.random() < 0.3:  # not after the root's end tag
            out.append(rng.choice(fillers))
    out.append(pieces[-1])
    data = "".join(out)
    # CDATA directly inside <StrokeSet> or a <Stroke> is text, which the reader ignores.
    return encode(data, "UTF-8", "utf-8"), "same"


def _time(line, rng):
    times = [rng.choice(TIME_VALUES) for _ in line.points]
    return encode(line_text(line, times=times), "UTF-8", "utf-8"), "same"


def _flip(line, rng):
    data = bytearray(_encoding(line, rng)[0])
    for _ in range(rng.randint(1, 12)):
        at = rng.randrange(len(data))
        data[at] = rng.randrange(256) if rng.random() < 0.5 else data[at] ^ (1 << rng.randrange(8))
    return bytes(data), None


def _truncate(line, rng):
    data = _encoding(line, rng)[0]
    return data[: rng.randrange(len(data))], None


def _point_attrs(line, rng, change):
    """Point attributes with `change(index, x, y) -> attrs` applied to one random point."""
    attrs = [f'x="{x}" y="{y}" time="0"' for x, y in line.points]
    at = rng.randrange(len(attrs))
    x, y = line.points[at]
    attrs[at] = change(at, x, y)
    return attrs


def _duplicate_attribute(line, rng):
    name = rng.choice(["x", "y", "time"])
    attrs = _point_attrs(line, rng, lambda i, x, y: f'x="{x}" y="{y}" time="0" {name}="7"')
    return encode(line_text(line, point_attrs=attrs), "UTF-8", "utf-8"), "malformed XML"


def _missing_attribute(line, rng):
    drop = rng.choice(["x", "y", "both"])
    kept = {"x": 'y="{y}"', "y": 'x="{x}"', "both": 'time="1"'}[drop]
    attrs = _point_attrs(line, rng, lambda i, x, y: kept.format(x=x, y=y))
    return encode(line_text(line, point_attrs=attrs), "UTF-8", "utf-8"), "bad coordinates"


def _coordinate(line, rng):
    value, reason = rng.choice(HOSTILE_VALUES)
    axis = rng.choice(["x", "y"])
    attrs = _point_attrs(
        line,
        rng,
        lambda i, x, y: f'x="{value}" y="{y}"' if axis == "x" else f'x="{x}" y="{value}"',
    )
    return encode(line_text(line, point_attrs=attrs), "UTF-8", "utf-8"), reason


def _offset(line, rng):
    """A jump between points beyond `MAX_OFFSET` (both points inside `MAX_COORDINATE`)."""
    points = line.points
    if len(points) < 2:
        line = Line((*line.strokes, ((points[0][0] + 1, points[0][1]),)))
        points = line.points
    at = rng.randrange(1, len(points))
    jump = int(iam_xml.MAX_OFFSET) + rng.randint(1, 50000)
    attrs = [f'x="{x}" y="{y}"' for x, y in points]
    x, y = points[at]
    attrs[at] = f'x="{x + jump}" y="{y}"' if rng.random() < 0.5 else f'x="{x}" y="{y - jump}"'
    return encode(line_text(line, point_attrs=attrs), "UTF-8", "utf-8"), "implausible coordinates"


def _no_points(line, rng):
    empty = Line(tuple(() for _ in range(rng.randint(0, 4))))
    return encode(line_text(empty), "UTF-8", "utf-8"), "no points"


def _nesting(line, rng):
    depth = rng.choice([1, 5, 100, 300, 5000, 100000])
    text = line_text(line)
    where = rng.choice(["around", "inside"])
    if where == "around":  # StrokeSet no longer a child of the root
        text = text.replace("<StrokeSet>", "<a>" * depth + "<StrokeSet>", 1)
        text = text.replace("</StrokeSet>", "</StrokeSet>" + "</a>" * depth, 1)
        reason = "malformed XML" if depth >= 250 else "unexpected XML structure"
    else:  # elements inside a Point, which the reader ignores
        at = text.index("/>", text.index("<Point "))
        text = text[:at] + ">" + "<a>" * depth + "</a>" * depth + "</Point>" + text[at + 2 :]
        reason = "malformed XML" if depth >= 250 else "same"
    return encode(text, "UTF-8", "utf-8"), reason


def _doctype(line, rng):
    declared, codec, bom = rng.choice(GOOD_ENCODINGS)
    text = rng.choice(DOCTYPES) + "\n" + line_text(line)
    return encode(text, declared, codec, bom), "unsafe XML"


def _refused_encoding(line, rng):
    return encode(line_text(line), rng.choice(REFUSED_ENCODINGS), "ascii"), "unsupported encoding"


def _encoding_lie(line, rng):
    """Declared one encoding, written in another: refused, or read the same when the bytes
    mean the same in both."""
    declared = rng.choice(["UTF-16", "UTF-32", "UTF-8", "ISO-8859-1", "UTF-16BE"])
    _, codec, bom = rng.choice(GOOD_ENCODINGS)
    data = encode(line_text(line), declared, codec, bom)
    return data, None


def _structure(line, rng):
    text = line_text(line)
    kind = rng.choice(["root", "two sets", "no set", "points outside strokes"])
    if kind == "root":
        text = text.replace("WhiteboardCaptureSession", "Session")
        return encode(text, "UTF-8", "utf-8"), "unexpected XML structure"
    if kind == "two sets":
        text = text.replace("</StrokeSet>", "</StrokeSet><StrokeSet/>", 1)
        return encode(text, "UTF-8", "utf-8"), "unexpected XML structure"
    if kind == "no set":
        text = text.replace("<StrokeSet>", "<Strokes>").replace("</StrokeSet>", "</Strokes>")
        return encode(text, "UTF-8", "utf-8"), "unexpected XML structure"
    # A <Point> directly in <StrokeSet> belongs to no stroke: not read.
    text = text.replace("<StrokeSet>", '<StrokeSet><Point x="1" y="2"/>', 1)
    return encode(text, "UTF-8", "utf-8"), "same"


def _large(line, rng):
    kind = rng.choice(["padding", "many points"])
    if kind == "padding":  # beyond the size cap: refused before it is parsed
        text = line_text(line).replace(
            "<StrokeSet>", "<!--" + " " * (iam_xml.MAX_LINE_XML_BYTES + 1) + "--><StrokeSet>", 1
        )
        return encode(text, "UTF-8", "utf-8"), "file too large"
    count = rng.randint(20000, 120000)  # inside the cap: read, all of them
    xs = np.cumsum(np.array([rng.randint(-3, 4) for _ in range(64)] * (count // 64 + 1)))[:count]
    stroke = tuple((int(v) + 5000, 1000 + i % 7) for i, v in enumerate(xs.tolist()))
    big = Line((stroke,))
    return encode(line_text(big), "UTF-8", "utf-8"), ("same", big)


def _junk(line, rng):
    kind = rng.choice(["empty", "binary", "json", "text", "bom only", "nul"])
    data = {
        "empty": b"",
        "binary": bytes(rng.randrange(256) for _ in range(rng.randint(1, 400))),
        "json": b'{"strokes": [[0, 0, 0]]}',
        "text": b"A MOVE to stop Mr. Gaitskell",
        "bom only": codecs.BOM_UTF16_LE,
        "nul": b"\0" * 64,
    }[kind]
    return data, None


_BUILDERS = {
    "none": _plain,
    "encoding": _encoding,
    "whitespace": _whitespace,
    "time": _time,
    "flip": _flip,
    "truncate": _truncate,
    "duplicate attribute": _duplicate_attribute,
    "missing attribute": _missing_attribute,
    "coordinate": _coordinate,
    "offset": _offset,
    "no points": _no_points,
    "nesting": _nesting,
    "doctype": _doctype,
    "refused encoding": _refused_encoding,
    "encoding lie": _encoding_lie,
    "structure": _structure,
    "large": _large,
    "junk": _junk,
}


# ----------------------------------------------------------------------------------------------
# Checks


def check_points(x, y, lengths) -> None:
    """What `parse_line_xml` gives is what a whiteboard gives, and makes a stroke array."""
    assert x.dtype == y.dtype == np.float64 and lengths.dtype == np.int64
    assert x.shape == y.shape == (int(lengths.sum()),) and x.shape[0] > 0
    assert (lengths >= 0).all()
    for values in (x, y):
        assert np.isfinite(values).all()
        assert np.abs(values).max() <= iam_xml.MAX_COORDINATE
        assert np.abs(np.diff(values)).max(initial=0) <= iam_xml.MAX_OFFSET
    strokes, _ = iam_xml.to_stroke_array(x, y, lengths)
    assert strokes.dtype == np.float32 and strokes.ndim == 2 and strokes.shape[1] == 3
    assert np.isfinite(strokes).all() and set(np.unique(strokes[:, 2])) <= {0.0, 1.0}
    assert strokes[-1, 2] == 1.0
    rounding = max(0.5, 1e-6 * float(np.abs(x).max()) * x.shape[0])  # float32 offsets
    np.testing.assert_allclose(strokes[:, 0].astype(np.float64).sum(), x[-1] - x[0], atol=rounding)


def check_line(case: LineCase) -> str:
    data, expectation = case.build()
    target = case.line
    if isinstance(expectation, tuple):
        expectation, target = expectation
    try:
        x, y, lengths = iam_xml.parse_line_xml(data, NAME)
    except iam_xml.LineError as e:
        assert str(e).startswith(f"{NAME}: "), str(e)
        assert e.reason in REASONS, e.reason
        assert expectation in (None, e.reason), f"expected {expectation!r}, refused: {e}"
        return f"refused: {e.reason}"
    assert expectation in (None, "same"), f"expected {expectation!r}, accepted"
    check_points(x, y, lengths)
    if expectation == "same":
        for got, want in zip((x, y, lengths), expected(target), strict=True):
            np.testing.assert_array_equal(got, want)
    return "accepted"


# ----------------------------------------------------------------------------------------------
# A form's original XML: the writer id, or a sentence saying why there is none


@dataclasses.dataclass(frozen=True)
class FormCase:
    writer: str
    attack: str
    seed: int


FORM_ATTACKS = ("none", "encoding", "flip", "truncate", "doctype", "no general", "junk")


def form_cases():
    writer = st.text(alphabet="0123456789abcXYZ", min_size=1, max_size=8)
    return st.builds(FormCase, writer, st.sampled_from(FORM_ATTACKS), st.integers(0, 2**32 - 1))


def form_text(writer: str, general=True) -> str:
    head = (
        f'<General><Form id="a01-000u" writerID="{writer}" saveTime="2004"/></General>'
        if general
        else ""
    )
    body = "<StrokeSet><Stroke/></StrokeSet>"
    return f"<WhiteboardCaptureSession>{head}{body}</WhiteboardCaptureSession>"


def check_form(case: FormCase) -> str:
    rng = random.Random(case.seed)
    name = "original/a01/a01-000/strokesu.xml"
    declared, codec, bom = rng.choice(GOOD_ENCODINGS)
    data = encode(form_text(case.writer), declared, codec, bom)
    want = case.writer
    if case.attack == "flip":
        data = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        data, want = bytes(data), None
    elif case.attack == "truncate":
        data, want = data[: rng.randrange(len(data))], None
    elif case.attack == "doctype":
        data, want = encode(rng.choice(DOCTYPES) + form_text(case.writer), declared, codec, bom), ""
    elif case.attack == "no general":
        data, want = encode(form_text(case.writer, general=False), declared, codec, bom), ""
    elif case.attack == "junk":
        data, want = bytes(rng.randrange(256) for _ in range(rng.randint(0, 200))), None
    writer, problem = iam_ondb.writer_id_of(io.BytesIO(data), name)
    assert isinstance(writer, str) and isinstance(problem, str)
    assert bool(writer) != bool(problem), (writer, problem)
    if problem:
        assert problem.startswith(f"{name}: "), problem
    if want is not None:
        assert writer == want, (writer, problem)
    return "accepted" if writer else "refused: no writer id"
