"""Tests of `handwriting.line_pairs`: lines of one writer joined as priming joins them, read
from real TFRecord shards."""

import collections
import os

import numpy as np
import pytest
import tensorflow as tf

from handwriting import data, line_pairs, records
from handwriting.alphabet import Alphabet
from handwriting.dataset_info import DatasetInfo, Shard, Split, sha256_file

ALPHABET = Alphabet("abcdefghij ")
SPACE = int(ALPHABET.encode(" ")[0])
WRITERS = ("w1", "w2", "w3", "")  # "": lines whose writer the source does not name


def _line(rng, index, writer, aligned=True):
    """A random line; its text (no space, unique) names it: `index` in letters."""
    num_points = int(rng.integers(6, 30))
    strokes = np.zeros([num_points, 3], np.float32)
    strokes[1:, :2] = rng.normal(0.5, 2.0, [num_points - 1, 2])
    strokes[:, 2] = rng.random(num_points) < 0.2
    strokes[-1, 2] = rng.random() < 0.5  # not always lifted: the join lifts it
    text = "".join(ALPHABET.chars[int(d)] for d in f"{index:03d}")
    alignment = np.minimum(np.arange(num_points) * len(text) // num_points, len(text) - 1)
    return dict(
        strokes=strokes,
        text=text,
        chars=ALPHABET.encode(text),
        line_id=f"l{index}",
        writer_id=writer,
        alignment=alignment.astype(np.int32) if aligned else None,
    )


@pytest.fixture(scope="module")
def lines():
    rng = np.random.default_rng(3)
    return [_line(rng, i, WRITERS[i % 4], aligned=i % 7 != 5) for i in range(40)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, lines):
    directory = tmp_path_factory.mktemp("pairs")
    shards = []
    for index in range(2):
        name = f"train-{index:05d}-of-00002.tfrecord"
        path = os.path.join(directory, name)
        chosen = lines[index::2]
        with tf.io.TFRecordWriter(path) as writer:
            for line in chosen:
                writer.write(records.encode_line(**line))
        points = sum(len(line["strokes"]) for line in chosen)
        shards.append(Shard(name, sha256_file(path), len(chosen), points))
    DatasetInfo(ALPHABET, (0.5, 0.5), (2.0, 2.0), {"train": Split(tuple(shards))}, {}).save(
        directory
    )
    return directory


def _parse(line):
    return records.parse_line(records.encode_line(**line))


def _parsed(corpus):
    paths = sorted(str(p) for p in corpus.glob("train-*.tfrecord"))
    return tf.data.TFRecordDataset(paths).map(records.parse_line)


def _texts(stream):
    return [line["text"].numpy().decode() for line in stream]


def test_join_is_the_join_of_priming(lines):
    first, second = lines[0], lines[4]  # writer w1, both aligned
    joined = line_pairs.join_lines(_parse(first), _parse(second), SPACE)
    # float64 reference: the second line's origin (its first pen point) is one word gap (1.4
    # times the first line's width over its characters) right of the first line's rightmost
    # point, and the two lines' mean heights are equal.
    xy = np.cumsum(first["strokes"][:, :2].astype(np.float64), axis=0)
    gap = 1.4 * (xy[:, 0].max() - xy[:, 0].min()) / len(first["text"])
    second_y = np.cumsum(second["strokes"][:, 1].astype(np.float64))
    origin = (xy[:, 0].max() + gap, xy[:, 1].mean() - second_y.mean())
    n = len(first["strokes"])
    want = np.concatenate([first["strokes"], second["strokes"]]).astype(np.float64)
    want[n - 1, 2] = 1.0  # the pen is lifted between the lines
    want[n, :2] = origin - xy[-1] + second["strokes"][0, :2]
    # drawn, the second line is itself, moved to there
    drawn = np.cumsum(joined["strokes"].numpy()[:, :2].astype(np.float64), axis=0)
    second_xy = np.cumsum(second["strokes"][:, :2].astype(np.float64), axis=0)
    np.testing.assert_allclose(drawn[n:] - origin, second_xy, atol=1e-3)
    assert drawn[n:, 1].mean() == pytest.approx(drawn[:n, 1].mean(), abs=1e-3)
    np.testing.assert_allclose(joined["strokes"].numpy(), want, atol=1e-5)
    text = f"{first['text']} {second['text']}"
    assert joined["text"].numpy().decode() == text
    np.testing.assert_array_equal(joined["chars"].numpy(), ALPHABET.encode(text))
    want_alignment = np.concatenate(
        [first["alignment"], second["alignment"] + len(first["text"]) + 1]
    )
    np.testing.assert_array_equal(joined["alignment"].numpy(), want_alignment)
    assert joined["writer_id"].numpy() == b"w1"


def test_a_line_without_alignment_makes_the_join_unaligned(lines):
    first, second = lines[1], lines[5]  # writer w2; line 5 has no alignment
    joined = line_pairs.join_lines(_parse(first), _parse(second), SPACE)
    assert (joined["alignment"].numpy() == -1).all()
    assert len(joined["alignment"].numpy()) == len(joined["strokes"].numpy())


def test_every_line_read_once_pairs_of_one_writer(corpus, lines):
    writer_of = {line["text"]: line["writer_id"] for line in lines}
    texts = _texts(line_pairs.pair_lines(_parsed(corpus), 1.0, ALPHABET, seed=0))
    read = [part for text in texts for part in text.split(" ")]
    assert sorted(read) == sorted(writer_of)  # each line once, single or joined
    joined = [text.split(" ") for text in texts if " " in text]
    for first, second in joined:
        assert writer_of[first] == writer_of[second] != ""
    # with fraction 1 only a writer's last, odd line and the lines without a writer are single
    per_writer = collections.Counter(writer_of.values())
    assert len(joined) == sum(n // 2 for w, n in per_writer.items() if w)


def test_fraction_and_seed_fix_which_pairs_are_joined(corpus):
    def joined(fraction, seed):
        stream = line_pairs.pair_lines(_parsed(corpus).repeat(10), fraction, ALPHABET, seed=seed)
        return [" " in text for text in _texts(stream)]

    assert not any(joined(0.0, 1))
    once, again, other = joined(0.5, 1), joined(0.5, 1), joined(0.5, 2)
    assert once == again and once != other
    # 400 lines, 300 with a writer: 150 pairs, each joined with probability 0.5
    pairs = sum(once)
    assert 150 * 0.5 - 4 * np.sqrt(150 * 0.25) < pairs < 150 * 0.5 + 4 * np.sqrt(150 * 0.25)


def test_alphabet_without_space_is_refused(corpus):
    with pytest.raises(ValueError, match="the alphabet has no space"):
        line_pairs.pair_lines(_parsed(corpus), 0.5, Alphabet("abcdefghij"), seed=0)


def _pipeline(corpus, **extra):
    arguments = dict(batch_size=3, seed=5, shuffle_buffer=8, joined_lines=0.5)
    return data.load_dataset(corpus, "train", **(arguments | extra))


def test_pipeline_reads_joined_lines_and_resumes_from_a_checkpoint(corpus, lines, tmp_path):
    steps = collections.Counter(
        int(inputs["strokes_mask"][row].numpy().sum())
        for inputs, _, _ in _pipeline(corpus)
        for row in range(inputs["strokes"].shape[0])
    )
    single = {len(line["strokes"]) - 1 for line in lines}
    assert any(t not in single for t in steps)  # a joined line: N1 + N2 - 2 steps

    iterator = iter(_pipeline(corpus, repeat=True))
    for _ in range(5):
        next(iterator)
    path = tf.train.Checkpoint(data=iterator).save(os.path.join(tmp_path, "data"))
    expected = [next(iterator) for _ in range(20)]  # past the end of the first pass
    resumed = iter(_pipeline(corpus, repeat=True))
    tf.train.Checkpoint(data=resumed).restore(path).assert_consumed()
    for want in expected:
        tf.nest.map_structure(
            lambda a, b: np.testing.assert_array_equal(a.numpy(), b.numpy()), want, next(resumed)
        )
