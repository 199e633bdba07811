"""Tests of the text a line is written from (`handwriting.text`).

Texts refused by the sampler, with its messages: tests/test_sample.py.
"""

import numpy as np
import pytest

from handwriting.alphabet import PRINTABLE_ASCII, Alphabet
from handwriting.errors import SampleError
from handwriting.text import encode_batch, wrap


def test_paragraphs_wrap_at_spaces_and_keep_newlines():
    assert wrap("the quick  brown fox\n\njumps over", 10) == [
        "the quick",
        "brown fox",
        "jumps over",
    ]
    assert wrap("abcdefghijkl", 5) == ["abcde", "fghij", "kl"]
    with pytest.raises(SampleError, match="`width` must be a positive int"):
        wrap("abc", 0)


def test_encode_batch_pads_with_zeros_to_the_longest_text():
    alphabet = Alphabet(PRINTABLE_ASCII)
    chars, mask = encode_batch(alphabet, ["abc", "x", "hello"])
    assert chars.shape == mask.shape == (3, 5) and chars.dtype == np.int32
    np.testing.assert_array_equal(mask.sum(axis=1), [3, 1, 5])
    np.testing.assert_array_equal(chars[0, :3], alphabet.encode("abc"))
    assert not chars[~mask].any()
