"""Tests of `handwriting.data`: shards written here with `records.encode_line`, real files."""

import os

import numpy as np
import pytest
import tensorflow as tf

from handwriting import data, records
from handwriting.alphabet import Alphabet
from handwriting.dataset_info import DatasetError, DatasetInfo, Shard, Split, sha256_file

ALPHABET = Alphabet("abcdefghij ")  # V = 13
MEAN = (0.7, -0.3)
STD = (2.5, 1.5)


def _make_line(rng, index, num_points, aligned=True):
    """A random line whose text `t<index>...` is unique, so batches can be matched back."""
    strokes = np.zeros([num_points, 3], np.float32)
    strokes[1:, 0] = rng.normal(MEAN[0], STD[0], num_points - 1)
    strokes[1:, 1] = rng.normal(MEAN[1], STD[1], num_points - 1)
    strokes[:, 2] = rng.random(num_points) < 0.2
    strokes[-1, 2] = 1
    text = "".join(ALPHABET.chars[int(d)] for d in f"{index:02d}") + "a" * int(rng.integers(1, 6))
    alignment = np.minimum(np.arange(num_points) * len(text) // num_points, len(text) - 1)
    return {
        "line_id": f"l{index:02d}",
        "strokes": strokes,
        "text": text,
        "chars": ALPHABET.encode(text),
        "alignment": alignment.astype(np.int32) if aligned else None,
    }


def _write_dataset(directory, splits, shards_per_split=2, encode=records.encode_line):
    """Writes `{split: [line, ...]}` as shards plus a `dataset.json`; returns the info."""
    split_infos = {}
    for split, lines in splits.items():
        shards = []
        for index in range(shards_per_split):
            name = f"{split}-{index:05d}-of-{shards_per_split:05d}.tfrecord"
            path = os.path.join(directory, name)
            chosen = lines[index::shards_per_split]
            with tf.io.TFRecordWriter(path) as writer:
                for line in chosen:
                    writer.write(
                        encode(
                            line["strokes"],
                            line["text"],
                            line["chars"],
                            line["line_id"],
                            "w",
                            line["alignment"],
                        )
                    )
            points = sum(len(line["strokes"]) for line in chosen)
            shards.append(Shard(name, sha256_file(path), len(chosen), points))
        split_infos[split] = Split(tuple(shards))
    info = DatasetInfo(ALPHABET, MEAN, STD, split_infos, source={"kind": "test"})
    info.save(directory)
    return info


@pytest.fixture
def lines():
    rng = np.random.default_rng(7)
    lengths = [5, 9, 14, 17, 22, 26, 29, 33, 38, 41, 45, 11, 23, 36, 7, 19, 31]
    return [_make_line(rng, i, n, aligned=i % 5 != 3) for i, n in enumerate(lengths)]


@pytest.fixture
def dataset_dir(tmp_path, lines):
    _write_dataset(tmp_path, {"train": lines, "valid": lines[:5]}, shards_per_split=3)
    return tmp_path


def _examples(dataset):
    """Unpads every batch: yields `(inputs, targets, weight)` of single lines as numpy."""
    for inputs, targets, weight in dataset:
        steps = inputs["strokes_mask"].numpy().sum(axis=1)
        num_chars = inputs["chars_mask"].numpy().sum(axis=1)
        for row, (t, u) in enumerate(zip(steps, num_chars, strict=True)):
            yield (
                {
                    "strokes": inputs["strokes"][row, :t].numpy(),
                    "strokes_mask": inputs["strokes_mask"][row, :t].numpy(),
                    "chars": inputs["chars"][row, :u].numpy(),
                    "chars_mask": inputs["chars_mask"][row, :u].numpy(),
                    "alignment": inputs["alignment"][row, :t].numpy(),
                },
                targets[row, :t].numpy(),
                weight[row, :t].numpy(),
            )


def _order(dataset):
    return [ALPHABET.decode(x["chars"]) for x, _, _ in _examples(dataset)]


# Normalisation ---------------------------------------------------------------------------


def test_normalize_matches_float64_reference_numpy_tensor_and_map():
    rng = np.random.default_rng(0)
    strokes = rng.normal(size=[4, 6, 3]).astype(np.float32)
    strokes[..., 2] = rng.random([4, 6]) < 0.5
    expected = strokes.astype(np.float64)
    expected[..., :2] = (expected[..., :2] - np.array(MEAN)) / np.array(STD)

    from_numpy = data.normalize_strokes(strokes, MEAN, STD)
    from_tensor = data.normalize_strokes(tf.constant(strokes), MEAN, STD)
    in_map = next(
        iter(
            tf.data.Dataset.from_tensors(strokes).map(
                lambda s: data.normalize_strokes(s, MEAN, STD)
            )
        )
    )
    assert from_numpy.dtype == np.float32 and from_tensor.dtype == tf.float32
    for result in (from_numpy, from_tensor.numpy(), in_map.numpy()):
        np.testing.assert_allclose(result, expected, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(result[..., 2], strokes[..., 2])  # eos untouched

    back_numpy = data.denormalize_strokes(expected, MEAN, STD)
    assert back_numpy.dtype == np.float64
    np.testing.assert_allclose(back_numpy, strokes, rtol=1e-12, atol=1e-12)
    back_map = next(
        iter(
            tf.data.Dataset.from_tensors(from_tensor).map(
                lambda s: data.denormalize_strokes(s, MEAN, STD)
            )
        )
    )
    np.testing.assert_allclose(back_map.numpy(), strokes, rtol=1e-6, atol=1e-6)


def test_normalize_rejects_bad_statistics():
    with pytest.raises(ValueError, match=r"offset_std=\[1.0, 0.0\]"):
        data.normalize_strokes(np.zeros([2, 3]), (0, 0), (1, 0))
    with pytest.raises(ValueError, match=r"offset_mean=\[0.0, 0.0, 0.0\]"):
        data.denormalize_strokes(np.zeros([2, 3]), (0, 0, 0), (1, 1))


# Per-example transforms, eagerly and inside Dataset.map ---------------------------------------


def _check_example(example, line):
    inputs, targets, weight = (tf.nest.map_structure(np.asarray, x) for x in example)
    raw = line["strokes"].astype(np.float64)
    norm = raw.copy()
    norm[:, :2] = (norm[:, :2] - np.array(MEAN)) / np.array(STD)
    steps = len(raw) - 1
    np.testing.assert_allclose(inputs["strokes"], norm[:-1], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(targets, norm[1:], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(inputs["chars"], line["chars"])
    assert inputs["strokes_mask"].shape == (steps,) and inputs["strokes_mask"].all()
    assert inputs["chars_mask"].shape == (len(line["text"]),) and inputs["chars_mask"].all()
    np.testing.assert_array_equal(weight, np.ones(steps, np.float32))
    expected_alignment = line["alignment"][1:] if line["alignment"] is not None else -np.ones(steps)
    np.testing.assert_array_equal(inputs["alignment"], expected_alignment)


def test_make_example_eager_and_in_map(lines):
    for line in (lines[2], lines[3]):  # one aligned, one without alignment
        serialized = records.encode_line(
            line["strokes"],
            line["text"],
            line["chars"],
            line["line_id"],
            alignment=line["alignment"],
        )
        eager = data.make_example(records.parse_line(tf.constant(serialized)), MEAN, STD)
        _check_example(eager, line)
        mapped = tf.data.Dataset.from_tensors(serialized).map(records.parse_line)
        mapped = mapped.map(lambda parsed: data.make_example(parsed, MEAN, STD))
        _check_example(next(iter(mapped)), line)


def _pieces(dataset):
    return [tf.nest.map_structure(np.asarray, piece) for piece in dataset]


def test_split_line_covers_every_step_once_eager_and_in_map(lines):
    line = {k: lines[9][k] for k in ("strokes", "chars", "alignment")}  # 41 points, aligned
    eager = _pieces(data.split_line(line, 15))
    mapped = _pieces(tf.data.Dataset.from_tensors(line).flat_map(lambda x: data.split_line(x, 15)))
    for pieces in (eager, mapped):
        assert [len(p["strokes"]) for p in pieces] == [15, 15, 13]  # 14 + 14 + 12 = 40 steps
        for index, piece in enumerate(pieces):
            start, stop = 14 * index, 14 * index + len(piece["strokes"])
            np.testing.assert_array_equal(piece["strokes"], line["strokes"][start:stop])
            first, last = line["alignment"][start], line["alignment"][stop - 1]
            np.testing.assert_array_equal(piece["chars"], line["chars"][first : last + 1])
            alignment = line["alignment"][start:stop] - first
            np.testing.assert_array_equal(piece["alignment"], alignment)

    unaligned = {
        "strokes": lines[3]["strokes"],  # 17 points, no alignment
        "chars": lines[3]["chars"],
        "alignment": -np.ones(17, np.int32),
    }
    pieces = _pieces(data.split_line(unaligned, 6))
    assert [len(p["strokes"]) for p in pieces] == [6, 6, 6, 2]
    for piece in pieces:
        np.testing.assert_array_equal(piece["chars"], unaligned["chars"])
        assert (piece["alignment"] == -1).all()
    for num_points, num_pieces in ((2, 1), (1, 0), (0, 0)):
        short = {k: v[:num_points] for k, v in unaligned.items()}
        assert len(_pieces(data.split_line(short, 6))) == num_pieces
    with pytest.raises(ValueError, match="`max_points` must be at least 2, received 1"):
        data.split_line(unaligned, 1)


# The pipeline ----------------------------------------------------------------------------------


def test_pipeline_round_trip_shift_masks_and_padding(dataset_dir, lines):
    dataset = data.load_dataset(dataset_dir, "train", batch_size=3, shuffle=False)
    by_text = {line["text"]: line for line in lines}
    seen = []
    for inputs, targets, weight in dataset:
        batch, steps = weight.shape
        assert inputs["strokes"].shape == (batch, steps, 3) and targets.shape == (batch, steps, 3)
        assert inputs["strokes"].dtype == tf.float32 and targets.dtype == tf.float32
        assert inputs["strokes_mask"].dtype == tf.bool and inputs["chars_mask"].dtype == tf.bool
        assert inputs["chars"].dtype == tf.int32 and inputs["alignment"].dtype == tf.int32
        assert inputs["alignment"].shape == (batch, steps)
        assert inputs["chars_mask"].shape == inputs["chars"].shape
        mask = inputs["strokes_mask"].numpy()
        np.testing.assert_array_equal(weight.numpy(), mask.astype(np.float32))
        # Padding is exactly the padding value, never data.
        assert (inputs["strokes"].numpy()[~mask] == 0).all() and (targets.numpy()[~mask] == 0).all()
        assert (inputs["alignment"].numpy()[~mask] == -1).all()
        chars_mask = inputs["chars_mask"].numpy()
        assert (inputs["chars"].numpy()[~chars_mask] == 0).all()
        assert (inputs["chars"].numpy()[chars_mask] > 0).all()
        # Masks are prefixes: True then False.
        assert (np.diff(mask.astype(int), axis=1) <= 0).all()
        assert (np.diff(chars_mask.astype(int), axis=1) <= 0).all()
    for example in _examples(dataset):
        line = by_text[ALPHABET.decode(example[0]["chars"])]
        seen.append(line["text"])
        _check_example(example, line)
        raw = line["strokes"].astype(np.float64)
        np.testing.assert_allclose(
            data.denormalize_strokes(example[1], MEAN, STD), raw[1:], rtol=1e-5, atol=1e-5
        )
        back = data.denormalize_strokes(example[0]["strokes"], MEAN, STD)
        np.testing.assert_allclose(back, raw[:-1], rtol=1e-5, atol=1e-5)
    assert sorted(seen) == sorted(by_text)  # every line once


def test_seed_fixes_order_and_seeds_differ(dataset_dir):
    def order(seed):
        dataset = data.load_dataset(
            dataset_dir, "train", batch_size=2, seed=seed, bucket_boundaries=[20]
        )
        return _order(dataset)

    first = order(3)
    assert data.load_dataset(dataset_dir, "train", batch_size=2, seed=3).options().deterministic
    assert first == order(3)
    assert sorted(first) == sorted(order(4)) and first != order(4)

    # Repeating reshuffles every epoch, deterministically: one batch of 17 lines per epoch.
    def two_epochs():
        repeated = data.load_dataset(
            dataset_dir, "train", batch_size=17, seed=3, repeat=True, bucket_boundaries=[]
        )
        return _order(repeated.take(2))

    epochs = two_epochs()
    assert sorted(epochs[:17]) == sorted(epochs[17:]) and epochs[:17] != epochs[17:]
    assert epochs == two_epochs()


def test_bucketing_groups_lengths(dataset_dir, lines):
    boundaries = [12, 25, 35]
    dataset = data.load_dataset(
        dataset_dir, "train", batch_size=2, seed=1, bucket_boundaries=boundaries
    )
    edges = [0, *boundaries, 10**9]
    batches = 0
    for inputs, _, _ in dataset:
        steps = inputs["strokes_mask"].numpy().sum(axis=1)
        bucket = np.searchsorted(edges, steps, side="right")
        assert len(set(bucket.tolist())) == 1, steps
        assert inputs["strokes"].shape[1] == steps.max()  # padded to the batch's longest
        batches += 1
    # Steps T = N - 1 fall 4/5/4/4 lines into the buckets -> 2 + 3 + 2 + 2 batches.
    assert batches == 9

    full = data.load_dataset(
        dataset_dir,
        "train",
        batch_size=2,
        seed=1,
        bucket_boundaries=boundaries,
        drop_remainder=True,
    )
    sizes = [weight.shape[0] for _, _, weight in full]
    assert sizes == [2] * 8  # the bucket of 5 lines leaves its last line out

    derived = data.boundaries_from_lengths(np.arange(1, 101), num_buckets=4)
    assert derived == [26, 51, 76]
    assert data.boundaries_from_lengths([9, 9, 9], num_buckets=4) == []


def test_long_lines_dropped_or_split(dataset_dir, lines):
    dropped = data.load_dataset(dataset_dir, "train", batch_size=4, shuffle=False, max_points=20)
    kept = sorted(_order(dropped))
    assert kept == sorted(line["text"] for line in lines if len(line["strokes"]) <= 20)

    split = data.load_dataset(
        dataset_dir, "train", batch_size=4, shuffle=False, max_points=20, long_lines="split"
    )
    examples = list(_examples(split))
    assert max(len(x[1]) for x in examples) == 19
    total_steps = sum(len(x[1]) for x in examples)
    assert total_steps == sum(len(line["strokes"]) - 1 for line in lines)

    # Synthesis: long lines with an alignment are cut; long lines without one are kept whole
    # up to unaligned_max_points (line 13, 36 points) and left out beyond (line 8, 38 points).
    aligned_only = data.load_dataset(
        dataset_dir,
        "train",
        batch_size=4,
        shuffle=False,
        max_points=20,
        long_lines="split_aligned",
        unaligned_max_points=37,
    )
    examples = list(_examples(aligned_only))
    unaligned_steps = sorted(len(x[1]) for x in examples if x[0]["alignment"].max() < 0)
    assert unaligned_steps == [16, 35]  # lines 3 (17 points) and 13 (36 points), whole
    kept_lines = [
        line
        for line in lines
        if len(line["strokes"]) <= 20 or line["alignment"] is not None or line["line_id"] == "l13"
    ]
    assert len(kept_lines) == len(lines) - 1  # line 8 left out
    assert sum(len(x[1]) for x in examples) == sum(len(line["strokes"]) - 1 for line in kept_lines)
    plan = data.line_plan(dataset_dir, "train", max_points=20, unaligned_max_points=37)
    long_aligned = sum(len(x["strokes"]) > 20 and x["alignment"] is not None for x in lines)
    assert plan == {
        "whole": sum(len(x["strokes"]) <= 20 for x in lines) + 1,
        "cut": long_aligned,
        "left_out": {"no alignment and over 37 points": 1},
    }
    cut = 0
    for inputs, _, _ in examples:  # every aligned piece reads only the characters it writes
        alignment = inputs["alignment"]
        if alignment.max() >= 0:
            assert alignment.min() >= 0 and alignment.max() < len(inputs["chars"])
            cut += len(inputs["chars"]) < alignment.max() + 3
    assert cut > 0
    with pytest.raises(ValueError, match="`long_lines` must be one of"):
        data.load_dataset(dataset_dir, "train", batch_size=4, long_lines="crop")


def test_iterator_position_resumes_from_checkpoint(dataset_dir, tmp_path_factory):
    def build():
        return data.load_dataset(
            dataset_dir,
            "train",
            batch_size=3,
            seed=11,
            repeat=True,
            shuffle_buffer=6,
            max_points=30,
            long_lines="split",
        )

    iterator = iter(build())
    for _ in range(4):
        next(iterator)
    prefix = os.path.join(tmp_path_factory.mktemp("ckpt"), "data")
    path = tf.train.Checkpoint(data=iterator).save(prefix)
    expected = [next(iterator) for _ in range(8)]  # 24 more lines: into the next epoch

    resumed = iter(build())
    next(resumed)  # a different position, overwritten by the restore
    tf.train.Checkpoint(data=resumed).restore(path).assert_consumed()
    for want in expected:
        got = next(resumed)
        tf.nest.map_structure(
            lambda a, b: np.testing.assert_array_equal(a.numpy(), b.numpy()), want, got
        )


def test_batches_fit_a_keras_model(dataset_dir):
    import keras

    inputs = {
        "strokes": keras.Input((None, 3), name="strokes"),
        "strokes_mask": keras.Input((None,), dtype="bool", name="strokes_mask"),
        "chars": keras.Input((None,), dtype="int32", name="chars"),
        "chars_mask": keras.Input((None,), dtype="bool", name="chars_mask"),
        "alignment": keras.Input((None,), dtype="int32", name="alignment"),
    }
    outputs = keras.layers.Dense(3)(inputs["strokes"])
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="sgd", loss="mse")
    dataset = data.load_dataset(dataset_dir, "valid", batch_size=2, seed=0, repeat=True)
    history = model.fit(dataset, epochs=1, steps_per_epoch=3, shuffle=False, verbose=0)
    assert np.isfinite(history.history["loss"][0])


# Errors name the file ----------------------------------------------------------------------------


def test_missing_shard_names_file(dataset_dir):
    os.remove(dataset_dir / "valid-00001-of-00003.tfrecord")
    with pytest.raises(
        DatasetError, match=r"valid-00001-of-00003\.tfrecord: listed in dataset\.json but missing"
    ):
        data.load_dataset(dataset_dir, "train", batch_size=2)


def test_altered_shard_fails_sha256(dataset_dir):
    path = dataset_dir / "train-00002-of-00003.tfrecord"
    blob = bytearray(path.read_bytes())
    blob[40] ^= 0x55
    path.write_bytes(bytes(blob))
    with pytest.raises(
        DatasetError, match=r"train-00002-of-00003\.tfrecord: sha256 does not match"
    ):
        data.load_dataset(dataset_dir, "train", batch_size=2)


@pytest.mark.parametrize("damage", ["truncate", "garble"])
def test_corrupt_shard_names_file_even_when_listed(tmp_path, lines, damage):
    """A shard written corrupt (its sha256 listed as is) fails the record scan."""
    info = _write_dataset(tmp_path, {"train": lines[:6]}, shards_per_split=2)
    path = tmp_path / "train-00001-of-00002.tfrecord"
    blob = bytearray(path.read_bytes())
    if damage == "truncate":
        blob = blob[:-7]
    else:
        blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    shards = list(info.splits["train"].shards)
    shards[1] = Shard(shards[1].name, sha256_file(path), shards[1].lines, shards[1].points)
    DatasetInfo(ALPHABET, MEAN, STD, {"train": Split(tuple(shards))}).save(tmp_path)
    with pytest.raises(
        DatasetError, match=r"train-00001-of-00002\.tfrecord: corrupt TFRecord shard"
    ):
        data.load_dataset(tmp_path, "train", batch_size=2, bucket_boundaries=[9])


def test_chars_out_of_alphabet_name_file_and_line(tmp_path, lines):
    bad = dict(lines[4], chars=np.array([2, 3, 13, 4, 5, 6, 7][: len(lines[4]["text"])]))
    _write_dataset(tmp_path, {"train": [lines[0], bad, lines[1]]}, shards_per_split=1)
    with pytest.raises(
        DatasetError,
        match=r"train-00000-of-00001\.tfrecord: line 'l04' \(record 1\): character id 13 is "
        r"outside the alphabet's ids \[1, 13\)",
    ):
        data.load_dataset(tmp_path, "train", batch_size=2)


def test_bad_alignment_names_file_and_line(tmp_path, lines):
    bad = dict(lines[5], alignment=lines[5]["alignment"][::-1].copy())
    assert len(bad["text"]) == 6
    _write_dataset(tmp_path, {"train": [lines[1], lines[2], bad]}, shards_per_split=1)
    with pytest.raises(
        DatasetError,
        match=r"train-00000-of-00001\.tfrecord: line 'l05' \(record 2\): `alignment` is not a "
        r"non-decreasing index into the 6 characters",
    ):
        data.load_dataset(tmp_path, "train", batch_size=2)


def test_wrong_num_points_names_file_and_line(tmp_path, lines):
    def encode_with_wrong_count(strokes, *args):
        example = tf.train.Example.FromString(records.encode_line(strokes, *args))
        example.features.feature["num_points"].int64_list.value[0] = len(strokes) + 1
        return example.SerializeToString()

    _write_dataset(
        tmp_path, {"train": lines[2:4]}, shards_per_split=1, encode=encode_with_wrong_count
    )
    with pytest.raises(
        DatasetError,
        match=r"train-00000-of-00001\.tfrecord: line 'l02' \(record 0\): `strokes` holds 168 bytes "
        r"but num_points=15 needs 180",
    ):
        data.load_dataset(tmp_path, "train", batch_size=2)


def test_line_counts_must_match_dataset_json(tmp_path, lines):
    info = _write_dataset(tmp_path, {"train": lines[:4]}, shards_per_split=2)
    shards = list(info.splits["train"].shards)
    shards[0] = Shard(shards[0].name, shards[0].sha256, shards[0].lines + 1, shards[0].points)
    DatasetInfo(ALPHABET, MEAN, STD, {"train": Split(tuple(shards))}).save(tmp_path)
    with pytest.raises(
        DatasetError,
        match=r"train-00000-of-00002\.tfrecord: holds 2 lines of 19 points, .*dataset\.json lists "
        r"3 lines of 19 points",
    ):
        data.load_dataset(tmp_path, "train", batch_size=2)


def test_unknown_split_and_bad_arguments(dataset_dir):
    with pytest.raises(DatasetError, match=r"no split 'test'; it has \['train', 'valid'\]"):
        data.load_dataset(dataset_dir, "test", batch_size=2)
    with pytest.raises(ValueError, match="`batch_size` must be at least 1, received 0"):
        data.load_dataset(dataset_dir, "train", batch_size=0)
    with pytest.raises(
        ValueError, match=r"`bucket_boundaries` must be positive and increasing, received \[5, 5\]"
    ):
        data.load_dataset(dataset_dir, "train", batch_size=2, bucket_boundaries=[5, 5])


def test_lines_without_an_alignment_are_trained_whole_under_a_cutting_preset(tmp_path):
    """IAM-OnDB has no per-point alignment: a preset that cuts lines must not drop them."""
    rng = np.random.default_rng(3)
    lengths = [*rng.integers(30, 1900, size=60).tolist(), 2400]  # one over the bound
    lines = [_make_line(rng, i, n, aligned=False) for i, n in enumerate(lengths)]
    _write_dataset(tmp_path, {"train": lines}, shards_per_split=2)
    plan = data.line_plan(tmp_path, "train", max_points=250)
    assert plan == {
        "whole": 60,
        "cut": 0,
        "left_out": {f"no alignment and over {data.UNALIGNED_MAX_POINTS} points": 1},
    }
    batches = data.load_dataset(
        tmp_path,
        "train",
        batch_size=8,
        shuffle=False,
        max_points=250,
        long_lines="split_aligned",
        bucket_boundaries=[250, 900],
    )
    kept = sorted(len(targets) + 1 for _, targets, _ in _examples(batches))
    assert kept == sorted(lengths[:60])  # every line within the bound, whole
    assert len(kept) >= 0.95 * len(lengths)
