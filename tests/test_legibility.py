"""The legibility score: its sentences, its numbers against a direct computation, its CLI."""

import json
import os
import re

import numpy as np
import pytest
from model_fixtures import write_tiny_model
from PIL import Image
from test_reader import write_corpus

from data_prep.synth import text as corpus_text
from handwriting import cli, ctc, legibility, reader, sample
from handwriting.alphabet import PRINTABLE_ASCII, Alphabet
from handwriting.dataset_info import DatasetInfo
from handwriting.reader_training import save_network

WORD = re.compile(r"[a-z]+")


def corpus_vocabulary() -> set:
    """Every word the embedded corpus' sentence generator can write (lower case)."""
    words = set()
    with open(corpus_text.WORDS_FILE, encoding="utf-8") as f:
        for line in f:
            if not line.startswith(("#", "[")):  # comments and section headers
                words |= set(WORD.findall(line.lower()))
    for _, pattern in corpus_text.PATTERNS:
        words |= set(WORD.findall(re.sub(r"\{\w+\}", "", pattern).lower()))
    return words


def test_held_out_sentences_are_outside_every_corpus_the_generator_writes():
    vocabulary = corpus_vocabulary()
    assert {"the", "abbey", "quiz"} <= vocabulary  # the patterns and the word list were read
    assert len(legibility.HELD_OUT_TEXTS) >= 20
    assert len(set(legibility.HELD_OUT_TEXTS)) == len(legibility.HELD_OUT_TEXTS)
    for sentence in legibility.HELD_OUT_TEXTS:
        unknown = [w for w in WORD.findall(sentence.lower()) if w not in vocabulary]
        assert unknown, f"{sentence!r}: every word can come from the corpus generator"
        assert corpus_text.MIN_CHARS <= len(sentence) <= corpus_text.MAX_CHARS
    together = "".join(legibility.HELD_OUT_TEXTS)
    assert re.search(r"[A-Z]", together) and re.search(r"[0-9]", together)
    assert set(".,!?:;") <= set(together)


def test_error_rate_sums_distances_over_characters():  # the CER the score uses
    assert ctc.cer(["abc", "de"], ["abc", "d"]) == pytest.approx(1 / 5)
    assert ctc.cer(["ab"], ["xyzw"]) == pytest.approx(4 / 2)
    with pytest.raises(ValueError, match="no character"):
        ctc.cer([""], ["a"])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_tiny_model(
        tmp_path_factory.mktemp("model"), seed=5, offset_mean=(0.5, 0.0), offset_std=(2.0, 2.0)
    )


@pytest.fixture(scope="module")
def reader_dir(tmp_path_factory):
    """An untrained tiny reader over printable ASCII: its readings are noise, but real ones."""
    import keras

    directory = tmp_path_factory.mktemp("reader")
    keras.utils.set_random_seed(2)
    alphabet = Alphabet(PRINTABLE_ASCII)
    network = reader.StrokeReader(alphabet.size, filters=8, units=8)
    network({"strokes": np.zeros((1, 8, 3), np.float32), "strokes_mask": np.ones((1, 8), bool)})
    save_network(network, os.path.join(directory, reader.MODEL_FILENAME))
    DatasetInfo(alphabet, (0.5, 0.0), (2.0, 2.0), splits={}).save(directory)
    record = {
        "format_version": reader.READER_FORMAT_VERSION,
        "training": {"best": {"step": 10, "val_cer": 0.25}},
    }
    with open(os.path.join(directory, reader.READER_FILENAME), "w") as f:
        json.dump(record, f)
    return str(directory)


def test_score_cli_matches_sampling_and_reading_directly(
    model_dir, reader_dir, capsys, monkeypatch, tmp_path
):
    monkeypatch.chdir(tmp_path)  # the model's data.dir (data/corpus) is not here
    argv = ["score", "--model", model_dir, "--reader", reader_dir, "--seeds", "2"]
    code = cli.main([*argv, "--bias", "1", "2", "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    result = json.loads(out.out)
    assert result["model"] == model_dir
    assert [row["bias"] for row in result["rows"]] == [1.0, 2.0]
    # The model's data set is not here: the reader's recorded validation CER stands in.
    assert result["ceiling"] == {
        "cer": 0.25,
        "lines": 0,
        "source": os.path.join(reader_dir, reader.READER_FILENAME),
    }

    synth, loaded = sample.load(model_dir), reader.load_reader(reader_dir)
    texts = list(legibility.HELD_OUT_TEXTS)
    for row in result["rows"]:
        references, readings = [], []
        for seed in (0, 1):
            lines = sample.generate(synth, texts, bias=row["bias"], seed=seed)
            for line in lines:  # read one at a time: batching must not change a reading
                readings += reader.read(loaded, [line.strokes])
                references.append(line.text)
        assert row["lines"] == 2 * len(texts)
        assert row["cer"] == pytest.approx(ctc.cer(references, readings), abs=1e-12)

    # With a data set, the ceiling is the reader's CER on its validation lines' true strokes.
    (tmp_path / "corpus").mkdir()
    valid = write_corpus(tmp_path / "corpus", train_lines=4, valid_lines=6)
    picture = tmp_path / "sheet.png"
    code = cli.main(
        [*argv, "--bias", "1", "--data", str(tmp_path / "corpus"), "--picture", str(picture)]
    )
    table = capsys.readouterr().out
    assert code == 0
    image = np.asarray(Image.open(picture))
    assert image.ndim == 3 and image.shape[0] > 8 * 72 and image.min() < 128
    assert image.shape[1] == legibility.SHEET_WIDTH_PX  # room for the labels
    assert f"{result['rows'][0]['cer']:7.3f}" in table
    readings = reader.read(loaded, [strokes for strokes, _ in valid])
    expected = ctc.cer([text for _, text in valid], readings)
    assert f"ceiling: true strokes {expected:7.3f}      6" in table
    assert f"(ceiling from {tmp_path / 'corpus'})" in table


def test_score_cli_reports_a_missing_reader_and_bad_options(model_dir, tmp_path, capsys):
    code = cli.main(["score", "--model", model_dir, "--reader", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"error: {os.path.join(str(tmp_path), reader.MODEL_FILENAME)}: not found")
    with pytest.raises(SystemExit):
        cli.main(["score", "--model", model_dir, "--seeds", "0"])
    assert "--seeds must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["score", "--model", model_dir, "--bias", "nan"])
    assert "--bias must be numbers >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["score", "--model", model_dir, "--picture", str(tmp_path / "a.jpg")])
    assert "--picture must end with .png" in capsys.readouterr().err
