"""The character alphabet shared by the data, the model and every export.

Id 0 is reserved for padding and id 1 for characters outside the alphabet; the characters
themselves take ids 2 .. V-1 in the order they are listed. The alphabet travels in
`dataset.json`, in every run directory and in every export, so a model never meets text encoded
with another alphabet.
"""

import dataclasses
import string

import numpy as np

PAD_ID = 0
UNKNOWN_ID = 1
FIRST_CHAR_ID = 2

# Every printable ASCII character, space first: what the embedded corpus writes.
PRINTABLE_ASCII = "".join(chr(c) for c in range(32, 127))
assert set(PRINTABLE_ASCII) == set(string.printable) - set("\t\n\r\x0b\x0c")


@dataclasses.dataclass(frozen=True)
class Alphabet:
    """An ordered set of characters with reserved padding and unknown ids.

    Args:
        chars: the characters, each once, in id order (the first gets id 2).
    """

    chars: str

    def __post_init__(self):
        if not isinstance(self.chars, str):
            raise TypeError(f"`chars` must be a str, received {type(self.chars).__name__}")
        if len(set(self.chars)) != len(self.chars):
            dupes = sorted({c for c in self.chars if self.chars.count(c) > 1})
            raise ValueError(f"`chars` lists characters more than once: {dupes!r}")
        bad = [c for c in self.chars if not c.isprintable()]
        if bad:
            raise ValueError(f"`chars` holds characters that are not printable: {bad!r}")

    @property
    def size(self) -> int:
        """V: the number of ids, padding and unknown included."""
        return len(self.chars) + FIRST_CHAR_ID

    def __contains__(self, char: str) -> bool:
        return char in self._index

    @property
    def _index(self) -> dict:
        # Cached on the frozen instance; dataclasses.replace builds a fresh one.
        index = self.__dict__.get("_index_cache")
        if index is None:
            index = {c: i + FIRST_CHAR_ID for i, c in enumerate(self.chars)}
            object.__setattr__(self, "_index_cache", index)
        return index

    def encode(self, text: str) -> np.ndarray:
        """Returns the ids of `text`, shape `(len(text),)` int64; unknown chars get id 1."""
        index = self._index
        return np.fromiter((index.get(c, UNKNOWN_ID) for c in text), np.int64, len(text))

    def decode(self, ids) -> str:
        """Returns the text of `ids`; padding is dropped, unknown ids read as U+FFFD."""
        out = []
        for i in np.asarray(ids).reshape(-1).tolist():
            if i == PAD_ID:
                continue
            out.append("\ufffd" if i == UNKNOWN_ID else self.chars[i - FIRST_CHAR_ID])
        return "".join(out)

    def unknown_chars(self, text: str) -> list:
        """Returns `(position, char)` for every character of `text` outside the alphabet."""
        index = self._index
        return [(i, c) for i, c in enumerate(text) if c not in index]

    def to_json(self) -> dict:
        return {"pad_id": PAD_ID, "unknown_id": UNKNOWN_ID, "chars": self.chars}

    @classmethod
    def from_json(cls, obj: dict) -> "Alphabet":
        if obj.get("pad_id") != PAD_ID or obj.get("unknown_id") != UNKNOWN_ID:
            raise ValueError(
                f"alphabet reserves pad_id={obj.get('pad_id')!r}, "
                f"unknown_id={obj.get('unknown_id')!r}; expected {PAD_ID} and {UNKNOWN_ID}"
            )
        return cls(obj["chars"])
