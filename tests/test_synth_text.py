"""Tests for data_prep.synth.text: the word list, the patterns and the line wrapping."""

import numpy as np
import pytest

from data_prep.synth import text


@pytest.fixture(scope="module")
def words():
    return text.load_words()


def test_word_list_sections_and_inflections(words):
    assert len(words.distinct_words()) > 2000
    forms = dict((n[0], n) for n in words.nouns)
    assert forms["box"] == ("box", "boxes")
    assert forms["city"] == ("city", "cities")
    assert forms["mouse"] == ("mouse", "mice")
    assert forms["key"] == ("key", "keys")
    verbs = {v[0]: v for v in words.verbs}
    assert verbs["carry"] == ("carry", "carries", "carried", "carrying")
    assert verbs["bake"] == ("bake", "bakes", "baked", "baking")
    assert verbs["stop"] == ("stop", "stops", "stopped", "stopping")
    assert verbs["write"] == ("write", "writes", "wrote", "writing")
    assert verbs["fix"] == ("fix", "fixes", "fixed", "fixing")


def test_lines_cover_printable_ascii_and_stay_in_bounds(words):
    source = text.TextSource(words, np.random.default_rng(11))
    lines = text.unique_lines(source, 3000, set())
    assert len(set(lines)) == 3000
    lengths = np.array([len(line) for line in lines])
    assert lengths.min() >= text.MIN_CHARS and lengths.max() <= text.MAX_CHARS
    assert 30 < lengths.mean() < 55
    used = set("".join(lines))
    assert used == {chr(c) for c in range(32, 127)}
    for line in lines:
        assert line == line.strip() and "  " not in line


def test_same_seed_same_lines_other_seed_other_lines(words):
    def draw(seed):
        return text.unique_lines(text.TextSource(words, np.random.default_rng(seed)), 50, set())

    assert draw(5) == draw(5)
    assert not set(draw(5)) & set(draw(6))


def test_taken_lines_are_not_repeated(words):
    source = text.TextSource(words, np.random.default_rng(2))
    first = text.unique_lines(source, 40, set())
    again = text.unique_lines(text.TextSource(words, np.random.default_rng(2)), 40, set(first))
    assert not set(first) & set(again)


def test_sentences_fill_every_slot(words):
    source = text.TextSource(words, np.random.default_rng(0))
    for _ in range(500):
        sentence = source.sentence()
        assert "{" not in sentence.replace("{{", "") or sentence.count("{") == sentence.count("}")
        assert not any(f"{{{name}}}" in sentence for name in ("noun", "verb", "adj", "name"))
        first = next(c for c in sentence if c.isalpha())
        assert first.isupper()
        assert " a a" not in sentence and " a e" not in sentence


@pytest.mark.parametrize(
    "content, message",
    [
        ("noun\n", "line 1: 'noun' comes before any section"),
        ("[nouns]\nbox\n", "line 1: unknown section '[nouns]'"),
        ("[noun]\nbox|boxes|boxen\n", "line 2: 'box|boxes|boxen' has 3 forms; section [noun]"),
        ("[noun]\nice cream\n", "line 2: 'ice cream' holds spaces or non-ASCII"),
        ("[noun]\nbox\n", "sections without words: ['verb', 'adjective'"),
    ],
)
def test_bad_word_list_names_file_and_line(tmp_path, content, message):
    path = tmp_path / "words.txt"
    path.write_text(content)
    with pytest.raises(text.WordListError) as info:
        text.load_words(path)
    assert str(path) in str(info.value) and message in str(info.value)
