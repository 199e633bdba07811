"""Throughput of the training input pipeline (`handwriting.data.load_dataset`) in points/s.

Writes a synthetic split once into `args.workdir/pipeline-shards` (~12,000 lines of ~700
points, the size of IAM-OnDB's training set, random walks with a pen-up every ~25 points),
then iterates batches of 32 of the shuffled, repeated pipeline for a few seconds after a
warm-up and counts the real (unpadded) steps delivered; once as it is, once with the lines
over 800 points split (`long_lines="split"`).
"""

import os
import time

import numpy as np

from handwriting import records
from handwriting.alphabet import PRINTABLE_ASCII, Alphabet
from handwriting.dataset_info import DatasetInfo, Shard, Split, sha256_file

NUM_LINES = 12_000  # about IAM-OnDB's training lines
MEAN_POINTS = 700  # points per line, about IAM-OnDB's mean
NUM_SHARDS = 8
BATCH_SIZE = 32
WARMUP_S = 3.0  # fill buffers, let AUTOTUNE settle
MEASURE_S = 8.0
SEED = 0
SPLIT_POINTS = 800  # max_points of the second measurement: a third of the lines are split


def _write_shards(directory) -> None:
    import tensorflow as tf

    rng = np.random.default_rng(SEED)
    alphabet = Alphabet(PRINTABLE_ASCII)
    words = ["handwriting", "synthesis", "with", "recurrent", "networks", "pen", "strokes"]
    shards = []
    all_offsets = []
    per_shard = -(-NUM_LINES // NUM_SHARDS)
    for index in range(NUM_SHARDS):
        name = f"train-{index:05d}-of-{NUM_SHARDS:05d}.tfrecord"
        path = os.path.join(directory, name)
        lines = points = 0
        with tf.io.TFRecordWriter(path) as writer:
            for line in range(index * per_shard, min(NUM_LINES, (index + 1) * per_shard)):
                num_points = int(rng.integers(MEAN_POINTS // 2, MEAN_POINTS * 3 // 2))
                strokes = np.zeros([num_points, 3], np.float32)
                strokes[1:, :2] = rng.normal(0.5, 2.0, size=[num_points - 1, 2])
                strokes[:, 2] = rng.random(num_points) < 1 / 25
                strokes[-1, 2] = 1
                text = " ".join(rng.choice(words, size=int(rng.integers(3, 7))))
                alignment = np.minimum(
                    np.arange(num_points) * len(text) // num_points, len(text) - 1
                )
                writer.write(
                    records.encode_line(
                        strokes, text, alphabet.encode(text), f"l{line:05d}", "w0", alignment
                    )
                )
                all_offsets.append(strokes[:, :2])
                lines += 1
                points += num_points
        shards.append(Shard(name, sha256_file(path), lines, points))
    offsets = np.concatenate(all_offsets).astype(np.float64)
    info = DatasetInfo(
        alphabet=alphabet,
        offset_mean=tuple(offsets.mean(axis=0)),
        offset_std=tuple(offsets.std(axis=0)),
        splits={"train": Split(tuple(shards))},
        source={"kind": "benchmark"},
    )
    info.save(directory)


def _throughput(dataset) -> tuple:
    """Returns `(points/s, batches, seconds)` of real steps after a warm-up."""
    iterator = iter(dataset)
    start = time.perf_counter()
    while time.perf_counter() - start < WARMUP_S:
        next(iterator)
    points = batches = 0
    start = time.perf_counter()
    while time.perf_counter() - start < MEASURE_S:
        _, _, weight = next(iterator)
        points += int(weight.numpy().sum())
        batches += 1
    elapsed = time.perf_counter() - start
    return points / elapsed, batches, elapsed


def run(args) -> list:
    from handwriting import data

    directory = os.path.join(args.workdir, "pipeline-shards")
    try:
        DatasetInfo.load(directory, verify=True)
    except ValueError:
        os.makedirs(directory, exist_ok=True)
        _write_shards(directory)

    start = time.perf_counter()
    dataset = data.load_dataset(directory, "train", batch_size=BATCH_SIZE, seed=SEED, repeat=True)
    build_s = time.perf_counter() - start
    rate, batches, elapsed = _throughput(dataset)
    split = data.load_dataset(
        directory,
        "train",
        batch_size=BATCH_SIZE,
        seed=SEED,
        repeat=True,
        max_points=SPLIT_POINTS,
        long_lines="split",
        verify=False,
    )
    split_rate, split_batches, split_elapsed = _throughput(split)
    return [
        {
            "benchmark": "pipeline throughput",
            "value": rate,
            "unit": "points/s",
            "goal": ">= 1,000,000",
            "note": f"batch {BATCH_SIZE}, {batches} batches in {elapsed:.1f} s, real steps only",
        },
        {
            "benchmark": f"pipeline throughput, lines split at {SPLIT_POINTS} points",
            "value": split_rate,
            "unit": "points/s",
            "goal": ">= 1,000,000",
            "note": f"batch {BATCH_SIZE}, {split_batches} batches in {split_elapsed:.1f} s",
        },
        {
            "benchmark": "pipeline build (sha256 + scan of every line)",
            "value": build_s,
            "unit": "s",
            "goal": "",
            "note": f"{NUM_LINES:,} lines of ~{MEAN_POINTS} points in {NUM_SHARDS} shards",
        },
    ]
