"""The text a line is written from: checked against the model's alphabet, wrapped, encoded.

    check_text("hello", alphabet)       # the text, or SampleError naming what is wrong
    wrap("a long paragraph ...", 60)    # lines of at most 60 characters, broken at spaces
    encode_batch(alphabet, ["ab", "c"]) # (chars (B, U) int32, mask (B, U) bool), 0-padded

Axes: B lines, U characters.
"""

import textwrap
import unicodedata

import numpy as np

from handwriting.alphabet import Alphabet
from handwriting.errors import SampleError

# Most characters a request may hold (all lines together): beyond, the text is refused
# rather than sampled for minutes.
MAX_TEXT_CHARS = 2000
# Characters per line when a paragraph is wrapped.
DEFAULT_WIDTH = 60


def check_text(text, alphabet: Alphabet, *, what: str = "text", allow_newlines=False) -> str:
    """Returns `text` if the model can write it, else raises `SampleError` saying why.

    Refused: a non-string, empty or blank text, more than `MAX_TEXT_CHARS` characters,
    control characters (newlines are line breaks where `allow_newlines`), and characters
    outside the alphabet (each named with its position, up to five, and the alphabet).
    """
    if not isinstance(text, str):
        raise SampleError(f"{what} must be a string, received {type(text).__name__}")
    if not text.strip():
        raise SampleError(f"{what} is empty; give at least one character to write")
    if len(text) > MAX_TEXT_CHARS:
        raise SampleError(
            f"{what} has {len(text)} characters; the limit is {MAX_TEXT_CHARS} per request"
        )
    allowed_controls = "\n" if allow_newlines else ""
    for position, char in enumerate(text):
        if unicodedata.category(char).startswith("C") and char not in allowed_controls:
            raise SampleError(
                f"{what} holds the control character {_describe(char)} at position "
                f"{position}; only printable characters can be written"
                + (" (newlines break lines)" if allow_newlines else "")
            )
    unknown = [(i, c) for i, c in alphabet.unknown_chars(text) if c not in allowed_controls]
    if unknown:
        listed = ", ".join(f"{_describe(c)} at position {i}" for i, c in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise SampleError(
            f"{what} holds characters outside the model's alphabet: {listed}{more}. "
            f"The alphabet is: {alphabet.chars!r}"
        )
    return text


def _describe(char: str) -> str:
    name = unicodedata.name(char, "")
    shown = repr(char) if char.isprintable() else f"U+{ord(char):04X}"
    return f"{shown} (U+{ord(char):04X}{', ' + name if name else ''})"


def wrap(text: str, width: int = DEFAULT_WIDTH) -> list:
    """Splits `text` into lines of at most `width` characters, at spaces where possible.

    Newlines end paragraphs (blank lines are dropped); runs of spaces become one; a word
    longer than `width` is broken.
    """
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise SampleError(f"`width` must be a positive int, received {width!r}")
    lines = []
    for paragraph in text.split("\n"):
        words = paragraph.split()
        if words:
            lines += textwrap.wrap(" ".join(words), width, break_on_hyphens=False)
    return lines


def encode_batch(alphabet: Alphabet, texts):
    """Returns `(chars (B, U) int32, mask (B, U) bool)`, 0-padded to the longest text."""
    width = max(len(t) for t in texts)
    chars = np.zeros((len(texts), width), np.int32)
    for i, text in enumerate(texts):
        chars[i, : len(text)] = alphabet.encode(text)
    return chars, chars != 0
