"""Text inputs: transcriptions (`CSR:`/`OCR:` blocks), split lists, alignment files, and the
text a user asks to write (`handwriting.text`).
"""

import codecs
import dataclasses
import random
import unicodedata

import numpy as np
from hypothesis import strategies as st

from data_prep import iam_ondb
from handwriting import text as text_lib
from handwriting.alphabet import PRINTABLE_ASCII, Alphabet
from handwriting.errors import SampleError
from handwriting.iam_xml import LineError

# Characters of transcriptions: the data's ASCII and some ISO-8859-1 letters.
TRANSCRIPT_CHARS = PRINTABLE_ASCII + "éüß£°Zà"
NEWLINES = ("\n", "\r\n", "\r")


def _words(rng, chars=TRANSCRIPT_CHARS, count=(1, 6)) -> str:
    words = []
    for _ in range(rng.randint(*count)):
        words.append("".join(rng.choice(chars.replace(" ", "")) for _ in range(rng.randint(1, 7))))
    return " ".join(words)


# ----------------------------------------------------------------------------------------------
# Transcriptions

TRANSCRIPT_ATTACKS = (
    "none",
    "no OCR",
    "two OCR",
    "no CSR",
    "two CSR",
    "CSR with spaces",
    "utf-8",
    "utf-8 BOM",
    "utf-16",
    "flip",
    "truncate",
    "blank lines",
)


@dataclasses.dataclass(frozen=True)
class TranscriptCase:
    attack: str
    seed: int


def transcript_cases():
    return st.builds(TranscriptCase, st.sampled_from(TRANSCRIPT_ATTACKS), st.integers(0, 2**32 - 1))


def transcript(texts, newline, ocr=1, csr=1, csr_mark="CSR:") -> str:
    rows = ["Document id: a01-000u", "Writer   : 10000", ""]
    for _ in range(ocr):
        rows += ["OCR:", "", *texts, ""]
    for _ in range(csr):
        rows += [csr_mark, "", *texts, ""]
    return newline.join([*rows, ""])


def check_transcript(case: TranscriptCase) -> str:
    rng = random.Random(case.seed)
    name = "ascii/a01/a01-000/a01-000u.txt"
    texts = [_words(rng) for _ in range(rng.randint(1, 9))]
    newline = rng.choice(NEWLINES)
    want = [t.strip() for t in texts]
    attack = case.attack
    counts = {"no OCR": (0, 1), "two OCR": (2, 1), "no CSR": (1, 0), "two CSR": (1, 2)}
    ocr, csr = counts.get(attack, (1, 1))
    mark = "CSR:  " if attack == "CSR with spaces" else "CSR:"
    body = transcript(texts, newline, ocr, csr, mark)
    if attack == "blank lines" and len(texts) > 1:  # inside the block: kept, as ""
        at = rng.randrange(1, len(texts))
        body = transcript([*texts[:at], " ", *texts[at:]], newline, ocr, csr, mark)
        want = [*want[:at], "", *want[at:]]
    data = body.encode("iso-8859-1")
    if attack in ("utf-8", "utf-8 BOM"):
        data = (codecs.BOM_UTF8 if attack == "utf-8 BOM" else b"") + body.encode("utf-8")
    elif attack == "utf-16":
        data, want = body.encode("utf-16"), "no transcription"
    elif attack == "flip":
        data = bytearray(data)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        data, want = bytes(data), None
    elif attack == "truncate":
        data, want = data[: rng.randrange(len(data))], None
    elif csr != 1:
        want = "no transcription"
    if attack not in ("utf-8", "utf-8 BOM", "utf-16") and _is_utf8(data) and want is not None:
        if data.decode("utf-8") != body:  # ISO-8859-1 bytes that happen to be UTF-8
            want = None
    try:
        lines = iam_ondb.csr_lines(iam_ondb.decode_text(data), name)
    except LineError as e:
        assert str(e).startswith(f"{name}: ") and e.reason == "no transcription", str(e)
        assert want in (None, "no transcription"), f"expected {want!r}, refused: {e}"
        return "refused: no transcription"
    assert want != "no transcription", f"accepted {lines!r}"
    if want is not None:
        assert lines == want, (lines, want)
    outcome = "accepted"
    for number, line in enumerate(lines, 1):
        assert isinstance(line, str) and "\n" not in line and "\r" not in line
        where = f"{name} line {number}"
        try:
            iam_ondb.check_text(line, where)
        except LineError as e:
            assert str(e).startswith(f"{where}: "), str(e)
            assert e.reason in ("placeholder text", "control character"), e.reason
            outcome = "accepted, some lines refused"
    return outcome


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# ----------------------------------------------------------------------------------------------
# Split lists

JUNK_ENTRIES = (
    "a01-000u-01",
    "../../etc/passwd",
    "a01_000u",
    "A01-000U",
    "a01-000 u",
    "a1-000",
    "\0",
    "a01-000u\0",
    "😀",
    "‮a01-000u",
    "# comment",
    "a01-0000",
    "a01-000u,a01-001u",
    "lineStrokes/a01/a01-000/a01-000u-01.xml",
)


@dataclasses.dataclass(frozen=True)
class SplitListCase:
    ids: tuple
    junk: tuple  # (position, entry) inserted
    newline_seed: int
    encoding: str


@st.composite
def split_list_cases(draw):
    form = st.builds(
        lambda letter, a, b, suffix: f"{letter}{a:02d}-{b:03d}{suffix}",
        st.sampled_from("abcdefghijklmnop"),
        st.integers(0, 99),
        st.integers(0, 999),
        st.sampled_from(["", "u", "x", "w", "z", "uu"]),
    )
    ids = tuple(draw(st.lists(form, max_size=20)))
    junk_entry = st.one_of(
        st.sampled_from(JUNK_ENTRIES),
        st.text(min_size=1, max_size=12).filter(
            lambda s: "\r" not in s and "\n" not in s and s.strip()
        ),
    )
    junk = tuple(
        draw(st.lists(st.tuples(st.integers(0, len(ids)), junk_entry), max_size=2))
        if draw(st.booleans())
        else []
    )
    encoding = draw(st.sampled_from(["ascii", "utf-8 BOM", "utf-16"]))
    return SplitListCase(ids, junk, draw(st.integers(0, 2**32 - 1)), encoding)


def check_split_list(case: SplitListCase) -> str:
    rng = random.Random(case.newline_seed)
    rows = [(" " * rng.randint(0, 3) + i + " " * rng.randint(0, 2), i) for i in case.ids]
    for position, entry in sorted(case.junk, reverse=True):
        rows.insert(position, (entry, None))
    if rng.random() < 0.3:
        rows.insert(rng.randint(0, len(rows)), ("   ", ""))
    text = "".join(row + rng.choice(NEWLINES) for row, _ in rows)
    name = "testset_v.txt"
    if case.encoding == "utf-16":
        data = text.encode("utf-16")
    else:
        data = (codecs.BOM_UTF8 if case.encoding == "utf-8 BOM" else b"") + text.encode("utf-8")
    try:
        got = iam_ondb.read_split_list(data, name)
    except iam_ondb.PrepError as e:
        message = str(e)
        assert message.startswith(f"{name} line "), message
        assert message.endswith("is not a form id like a01-000u or a01-000"), message
        if case.encoding != "utf-16":
            # The first entry that is not a form id, by its line number.
            lines = iam_ondb.NEWLINE.split(text)
            first = next(
                (
                    n
                    for n, line in enumerate(lines, 1)
                    if line.strip() and not iam_ondb.FORM_ID.fullmatch(line.strip())
                ),
                None,
            )
            assert first is not None, f"refused a list of form ids: {message}"
            assert message.startswith(f"{name} line {first}: {lines[first - 1].strip()!r}")
        return "refused: not a form id"
    assert case.encoding != "utf-16", f"UTF-16 read as {got!r}"
    junk = [e for _, e in case.junk if not iam_ondb.FORM_ID.fullmatch(e.strip())]
    assert not junk, f"accepted {junk!r}"
    expected = [*case.ids]
    for position, entry in sorted(case.junk, reverse=True):
        expected.insert(position, entry.strip())
    assert got == [e for e in expected if e], (got, expected)
    return "accepted"


# ----------------------------------------------------------------------------------------------
# Alignment files: one character index per point

ALIGNMENT_ATTACKS = (
    "none",
    "count",
    "range",
    "negative",
    "decreasing",
    "word",
    "huge",
    "float",
    "empty",
    "utf-16",
    "flip",
)


@dataclasses.dataclass(frozen=True)
class AlignmentCase:
    attack: str
    seed: int


def alignment_cases():
    return st.builds(AlignmentCase, st.sampled_from(ALIGNMENT_ATTACKS), st.integers(0, 2**32 - 1))


def check_alignment(case: AlignmentCase) -> str:
    rng = random.Random(case.seed)
    name = "alignment/a01/a01-000/a01-000u-01.txt"
    points, length = rng.randint(1, 60), rng.randint(1, 30)
    values = sorted(rng.randrange(length) for _ in range(points))
    words = [str(v) for v in values]
    want = "same"
    attack = case.attack
    if attack == "count":
        words = words[:-1] if rng.random() < 0.5 else [*words, words[-1]]
        want = "bad alignment"
    elif attack == "range":
        words[-1] = str(length + rng.randint(0, 10**6))
        want = "bad alignment"
    elif attack == "negative":
        words[0] = str(-rng.randint(1, 10**6))
        want = "bad alignment"
    elif attack == "decreasing" and points > 1 and values[-1] > 0:
        words[-1], words[0] = "0", str(values[-1])
        want = "bad alignment"
    elif attack in ("word", "float"):
        words[rng.randrange(points)] = rng.choice(["x", "1.5", "1e3", "0x10", "½", "NaN", "--1"])
        want = "bad alignment"
    elif attack == "huge":
        words[rng.randrange(points)] = rng.choice(
            ["9" * 20, "-" + "9" * 20, "1" + "0" * 400, "18446744073709551616"]
        )
        want = "bad alignment"
    elif attack == "empty":
        words, want = [], "bad alignment"
    sep = rng.choice([" ", "\n", "\r\n", "\t", "  "])
    data = (sep.join(words) + rng.choice(["", "\n"])).encode()
    if attack == "utf-16":
        data, want = data.decode().encode("utf-16"), "bad alignment"
    elif attack == "flip":
        data = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        data, want = bytes(data), None
    try:
        got = iam_ondb.parse_alignment(data, name, points, length)
    except LineError as e:
        assert str(e).startswith(f"{name}: ") and e.reason == "bad alignment", str(e)
        assert want in (None, "bad alignment"), f"expected {want}, refused: {e}"
        return "refused: bad alignment"
    assert want in (None, "same"), f"expected {want}, accepted"
    assert got.shape == (points,) and got.min() >= 0 and got.max() < length
    assert (np.diff(got) >= 0).all()
    if want == "same":
        np.testing.assert_array_equal(got, values)
    return "accepted"


# ----------------------------------------------------------------------------------------------
# The text to write (`handwriting.text.check_text` and `wrap`, as `write` uses them)

ALPHABET = Alphabet(PRINTABLE_ASCII)  # the demo model's
HOSTILE_CHARS = (
    "\0",
    "\t",
    "\x07",
    "\x1b",
    "\x7f",
    "\x85",
    "\u200e",  # left-to-right mark
    "\u202e",  # right-to-left override
    "\u2028",
    "\ufeff",
    "\ud800",  # a lone surrogate
    "א",
    "مرحبا",
    "😀",
    "👩\u200d👩\u200d👧",
    "e\u0301",
    "ﬁ",
    "\U000e0001",
    "\uffff",
    "\x1c",
)


@dataclasses.dataclass(frozen=True)
class WriteTextCase:
    text: str
    width: int


@st.composite
def write_text_cases(draw):
    pieces = st.one_of(
        st.text(alphabet=PRINTABLE_ASCII, max_size=40),
        st.sampled_from(["\n", " ", "\n\n", "   ", "\r\n"]),
        st.sampled_from(HOSTILE_CHARS),
        st.text(max_size=5),
    )
    text = "".join(draw(st.lists(pieces, max_size=8)))
    if draw(st.integers(0, 99)) == 0:  # 10^5 characters, now and then
        text = (text or "a") * (100_000 // max(1, len(text or "a")) + 1)
    width = draw(st.one_of(st.integers(1, 200), st.sampled_from([10**9, 2**63 - 1])))
    return WriteTextCase(text, width)


def check_write_text(case: WriteTextCase) -> str:
    text = case.text
    try:
        text_lib.check_text(text, ALPHABET, allow_newlines=True)
    except SampleError as e:
        message = str(e)
        if not text.strip():
            assert message == "text is empty; give at least one character to write", message
            return "refused: empty"
        if len(text) > text_lib.MAX_TEXT_CHARS:
            assert message == (
                f"text has {len(text)} characters; the limit is "
                f"{text_lib.MAX_TEXT_CHARS} per request"
            ), message
            return "refused: too long"
        controls = [
            (i, c) for i, c in enumerate(text) if c != "\n" and unicodedata.category(c)[0] == "C"
        ]
        if controls:
            position, char = controls[0]
            assert message.startswith("text holds the control character "), message
            assert f"U+{ord(char):04X}" in message and f"at position {position};" in message
            return "refused: control character"
        position, char = next((i, c) for i, c in enumerate(text) if c != "\n" and c not in ALPHABET)
        assert message.startswith("text holds characters outside the model's alphabet: ")
        assert f"(U+{ord(char):04X}" in message and f"at position {position}" in message
        return "refused: outside the alphabet"
    assert text.strip() and len(text) <= text_lib.MAX_TEXT_CHARS
    assert all(c == "\n" or c in ALPHABET for c in text)
    lines = text_lib.wrap(text, case.width)
    assert lines and all(0 < len(line) <= case.width for line in lines), lines
    assert "".join("".join(line.split()) for line in lines) == "".join(text.split())
    return "accepted"
