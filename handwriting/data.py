"""The tf.data input pipeline: shards of lines -> padded, length-bucketed training batches.

Axis letters: B batch, T pen steps (points of a line less one), U characters.

A line of N points `(dx, dy, eos)` becomes one example of T = N - 1 steps: the network reads
points 0 .. N-2 and predicts points 1 .. N-1. One batch, as `keras.Model.fit` takes it:

    (inputs, targets, sample_weight)
    inputs = {
        "strokes":      float32 (B, T, 3)  normalised points 0 .. N-2 of each line
        "strokes_mask": bool    (B, T)     True on real steps
        "chars":        int32   (B, U)     alphabet ids, 0-padded
        "chars_mask":   bool    (B, U)     True on real characters
        "alignment":    int32   (B, T)     index of the character being written at each
                                           *target* point; -1 where unknown or padding
    }
    targets       = float32 (B, T, 3)      normalised points 1 .. N-1
    sample_weight = float32 (B, T)         1.0 on real steps, 0.0 on padding

Normalisation maps `(dx, dy)` to `((dx, dy) - offset_mean) / offset_std` with the train-split
statistics of `dataset.json`; `eos` is left as it is. `normalize_strokes` and
`denormalize_strokes` do it on numpy arrays and on tensors alike.

Resuming a run exactly where it stopped: the data position is the state of the dataset's
iterator, which `tf.train.Checkpoint` saves and restores (shuffle buffers, bucket contents and
the seeded random state included). Training builds the dataset with the same arguments and a
`seed`, takes `iterator = iter(dataset)`, checkpoints it with
`tf.train.Checkpoint(data=iterator)` beside the weights (`handwriting.checkpoint`) and draws
each step's batch with `next(iterator)`; after a restore, the next batch is the one the killed
run would have drawn. (An iterator created inside `keras.Model.fit`, or a `tf.distribute`
iterator, cannot be checkpointed, so the step loop owns a plain one.)
"""

import itertools
import os

import numpy as np
import tensorflow as tf

from handwriting import line_pairs, records
from handwriting.alphabet import PAD_ID
from handwriting.dataset_info import FILENAME, DatasetError, DatasetInfo

# Length buckets derived from the data when `bucket_boundaries` is None: boundaries at the
# quantiles of the line lengths, so buckets hold about equally many lines.
DEFAULT_NUM_BUCKETS = 8
# Lines the scan of `_scan_split` parses per vectorised call.
_SCAN_BATCH = 512
# Shards read at once (lines of different shards mix even before the shuffle buffer), and
# lines cut by `split_line` at once (their pieces spread over neighbouring batches).
_INTERLEAVE_CYCLE = 4
LONG_LINE_POLICIES = ("drop", "split", "split_aligned")
# The longest line without an alignment that "split_aligned" keeps whole by default.
UNALIGNED_MAX_POINTS = 2000


def _shift_and_scale(offset_mean, offset_std):
    """Returns `(shift, scale)` of shape `(3,)` that leave the `eos` column as it is."""
    mean = np.asarray(offset_mean, np.float64).reshape(-1)
    std = np.asarray(offset_std, np.float64).reshape(-1)
    if mean.shape != (2,) or std.shape != (2,) or not np.all(std > 0):
        raise ValueError(
            "`offset_mean` and `offset_std` must hold two values each and `offset_std` must be "
            f"positive, received offset_mean={mean.tolist()}, offset_std={std.tolist()}"
        )
    return np.array([mean[0], mean[1], 0.0]), np.array([std[0], std[1], 1.0])


def normalize_strokes(strokes, offset_mean, offset_std):
    """Maps raw `(dx, dy, eos)` points to what the network reads.

    `(dx, dy) -> ((dx, dy) - offset_mean) / offset_std`; `eos` is unchanged.

    Args:
        strokes: `(..., 3)` numpy array or tensor of `(dx, dy, eos)`.
        offset_mean: `(mean dx, mean dy)`, e.g. `DatasetInfo.offset_mean`.
        offset_std: `(std dx, std dy)`, e.g. `DatasetInfo.offset_std`.

    Returns:
        The normalised points, same shape; a tensor of the same dtype for a tensor, a numpy
        array of the input's float dtype (float32 for other dtypes) for anything else.
    """
    shift, scale = _shift_and_scale(offset_mean, offset_std)
    if tf.is_tensor(strokes):
        return (strokes - tf.constant(shift, strokes.dtype)) / tf.constant(scale, strokes.dtype)
    strokes = np.asarray(strokes)
    dtype = strokes.dtype if np.issubdtype(strokes.dtype, np.floating) else np.float32
    return ((strokes - shift.astype(dtype)) / scale.astype(dtype)).astype(dtype)


def denormalize_strokes(strokes, offset_mean, offset_std):
    """Inverse of `normalize_strokes`: network points back to raw `(dx, dy, eos)` offsets.

    Args:
        strokes: `(..., 3)` numpy array or tensor of normalised points.
        offset_mean: `(mean dx, mean dy)`.
        offset_std: `(std dx, std dy)`.

    Returns:
        The raw points, same shape and type rules as `normalize_strokes`.
    """
    shift, scale = _shift_and_scale(offset_mean, offset_std)
    if tf.is_tensor(strokes):
        return strokes * tf.constant(scale, strokes.dtype) + tf.constant(shift, strokes.dtype)
    strokes = np.asarray(strokes)
    dtype = strokes.dtype if np.issubdtype(strokes.dtype, np.floating) else np.float32
    return (strokes * scale.astype(dtype) + shift.astype(dtype)).astype(dtype)


def make_example(line, offset_mean, offset_std):
    """Turns one parsed line into one unbatched training example.

    Works eagerly and inside `tf.data.Dataset.map`.

    Args:
        line: a dict with `strokes` `(N, 3)` float32 raw points (N >= 2), `chars` `(U,)` int32
            and `alignment` `(N,)` int32 (-1 where unknown), as `records.parse_line` returns.
        offset_mean: `(mean dx, mean dy)` of the train split.
        offset_std: `(std dx, std dy)` of the train split.

    Returns:
        `(inputs, targets, sample_weight)` as in the module docstring without the batch axis:
        `strokes` `(T, 3)`, `strokes_mask` `(T,)`, `chars` `(U,)`, `chars_mask` `(U,)`,
        `alignment` `(T,)`; targets `(T, 3)`; sample_weight `(T,)`; T = N - 1.
    """
    points = normalize_strokes(tf.cast(line["strokes"], tf.float32), offset_mean, offset_std)
    chars = tf.cast(line["chars"], tf.int32)  # [U]
    alignment = tf.cast(line["alignment"], tf.int32)  # [N]
    num_steps = tf.shape(points)[0] - 1
    inputs = {
        "strokes": points[:-1],  # [T, 3]
        "strokes_mask": tf.ones([num_steps], tf.bool),
        "chars": chars,
        "chars_mask": tf.ones_like(chars, tf.bool),
        "alignment": alignment[1:],  # [T], the character of each target point
    }
    return inputs, points[1:], tf.ones([num_steps], tf.float32)


def split_line(line, max_points, *, unaligned_whole=False):
    """Cuts a line into consecutive pieces of at most `max_points` points.

    Neighbouring pieces share their boundary point, so every step `(point i -> point i + 1)` of
    the line lands in exactly one piece. A line with an alignment gives each piece the
    characters its points write (alignment rebased to them); a line without one keeps its whole
    text in every piece, or with `unaligned_whole` stays whole (one piece of all its points).
    Works eagerly and inside `Dataset.flat_map` / `Dataset.interleave`.

    Args:
        line: a dict with `strokes` `(N, 3)`, `chars` `(U,)`, `alignment` `(N,)`.
        max_points: the longest piece, >= 2.
        unaligned_whole: keep a line without an alignment whole.

    Returns:
        A `tf.data.Dataset` of the P = ceil((N - 1) / (max_points - 1)) pieces, dicts of
        `strokes` `(n, 3)` float32, `chars` `(u,)` int32 and `alignment` `(n,)` int32.
    """
    if max_points < 2:
        raise ValueError(f"`max_points` must be at least 2, received {max_points}")
    strokes = tf.cast(line["strokes"], tf.float32)  # [N, 3]
    chars = tf.cast(line["chars"], tf.int32)  # [U]
    alignment = tf.cast(line["alignment"], tf.int32)  # [N]
    num_points = tf.shape(strokes)[0]
    aligned = tf.reduce_all(alignment >= 0)
    stride = tf.constant(max_points - 1)  # steps per piece
    if unaligned_whole:
        stride = tf.where(aligned, stride, tf.maximum(num_points - 1, 1))
    num_pieces = tf.maximum((num_points - 2) // stride + 1, 0)  # ceil((N - 1) / stride)

    def piece(index):
        start = tf.cast(index, tf.int32) * stride
        stop = tf.minimum(start + stride + 1, num_points)
        piece_alignment = alignment[start:stop]
        first_char = tf.where(aligned, piece_alignment[0], 0)
        stop_char = tf.where(aligned, piece_alignment[-1] + 1, tf.shape(chars)[0])
        return {
            "strokes": strokes[start:stop],
            "chars": chars[first_char:stop_char],
            "alignment": tf.where(aligned, piece_alignment - first_char, piece_alignment),
        }

    return tf.data.Dataset.range(tf.cast(num_pieces, tf.int64)).map(piece)


def boundaries_from_lengths(lengths, num_buckets=DEFAULT_NUM_BUCKETS):
    """Bucket boundaries at the quantiles of `lengths`, for `bucket_by_sequence_length`.

    Args:
        lengths: the step counts T of the lines.
        num_buckets: how many buckets to aim for (fewer when lengths repeat).

    Returns:
        A strictly increasing list of ints; bucket i holds lengths in `[b[i-1], b[i])`.
    """
    lengths = np.asarray(lengths, np.int64)
    if lengths.size == 0 or num_buckets < 2:
        return []
    quantiles = np.quantile(lengths, np.arange(1, num_buckets) / num_buckets, method="higher")
    return sorted({int(q) for q in quantiles if lengths.min() < q})


def _check_lines(parsed, vocab_size):
    """Checks a batch of parsed lines; returns `(row, what is wrong)` or None."""
    num_points = parsed["num_points"].numpy()
    stroke_bytes = tf.strings.length(parsed["strokes"]).numpy()
    ids = parsed["chars"].values.numpy()
    id_rows = parsed["chars"].indices[:, 0].numpy()
    num_chars = np.bincount(id_rows, minlength=len(num_points))
    bad = np.flatnonzero(stroke_bytes != 12 * num_points)  # 3 float32 per point
    if bad.size:
        row = bad[0]
        n = num_points[row]
        return row, f"`strokes` holds {stroke_bytes[row]} bytes but num_points={n} needs {12 * n}"
    bad = np.flatnonzero((ids < 1) | (ids >= vocab_size))
    if bad.size:
        what = f"character id {ids[bad[0]]} is outside the alphabet's ids [1, {vocab_size})"
        return id_rows[bad[0]], what
    for row, blob in enumerate(parsed["alignment"].numpy()):
        if not blob:
            continue
        n = num_points[row]
        if len(blob) != 4 * n:
            return row, f"`alignment` holds {len(blob)} bytes, num_points={n} needs 0 or {4 * n}"
        alignment = np.frombuffer(blob, "<i4")
        if (
            alignment.min() < 0
            or alignment.max() >= num_chars[row]
            or (np.diff(alignment) < 0).any()
        ):
            what = f"`alignment` is not a non-decreasing index into the {num_chars[row]} characters"
            return row, what
    return None


def _readable_records(path) -> int:
    """How many records of the TFRecord file `path` read before the first damaged one."""
    count = 0
    try:
        for _ in tf.data.TFRecordDataset(path):
            count += 1
    except tf.errors.DataLossError:
        pass
    return count


def _scan_split(info, data_dir, split):
    """Reads every line of a split once; checks it against `dataset.json`; returns lengths.

    Checks: each shard reads as TFRecords (not truncated, CRCs match) and holds the number of
    lines and points that `dataset.json` lists; every line's `strokes` bytes match its
    `num_points`, its character ids lie in `[1, V)` and its alignment (when it has one) is a
    non-decreasing index into its characters with one entry per point. Every failure is a
    `DatasetError` that names the shard and the line.

    Returns:
        `(num_lines,)` int64: the number of points N of every line, in shard order.
    """
    spec = {
        k: records.FEATURE_SPEC[k]
        for k in ("strokes", "num_points", "chars", "line_id", "alignment")
    }
    shards = info.splits[split].shards
    lengths = []
    for shard, path in zip(shards, info.shard_paths(data_dir, split), strict=True):
        shard_lengths = []
        try:
            for serialized in tf.data.TFRecordDataset(path).batch(_SCAN_BATCH):
                parsed = tf.io.parse_example(serialized, spec)
                problem = _check_lines(parsed, info.alphabet.size)
                if problem is not None:
                    row, what = problem
                    line_id = parsed["line_id"][row].numpy().decode("utf-8", "replace")
                    record = len(shard_lengths) + row
                    raise DatasetError(f"{path}: line {line_id!r} (record {record}): {what}")
                shard_lengths.extend(parsed["num_points"].numpy().tolist())
        except tf.errors.DataLossError as e:
            good = _readable_records(path)  # lines are read in batches: count them one by one
            raise DatasetError(
                f"{path}: corrupt TFRecord shard after {good} good lines: record {good} is "
                f"damaged ({e.message})"
            ) from None
        except tf.errors.InvalidArgumentError as e:
            good = len(shard_lengths)
            raise DatasetError(
                f"{path}: unreadable line after {good} good lines ({e.message})"
            ) from None
        if len(shard_lengths) != shard.lines or sum(shard_lengths) != shard.points:
            raise DatasetError(
                f"{path}: holds {len(shard_lengths)} lines of {sum(shard_lengths)} points, "
                f"{os.path.join(data_dir, FILENAME)} lists {shard.lines} lines of "
                f"{shard.points} points"
            )
        lengths.extend(shard_lengths)
    return np.asarray(lengths, np.int64)


def line_plan(
    data_dir,
    split,
    *,
    max_points,
    long_lines="split_aligned",
    unaligned_max_points=UNALIGNED_MAX_POINTS,
) -> dict:
    """What `load_dataset` with these arguments does with each line of a split, counted.

    Returns:
        `{"whole": n, "cut": n, "left_out": {reason: n}}`: lines used whole, lines cut into
        pieces, and lines left out, by reason.
    """
    data_dir = os.fspath(data_dir)
    info = DatasetInfo.load(data_dir, verify=False)
    spec = {k: records.FEATURE_SPEC[k] for k in ("num_points", "alignment")}
    lengths, aligned = [], []
    for batch in tf.data.TFRecordDataset(info.shard_paths(data_dir, split)).batch(_SCAN_BATCH):
        parsed = tf.io.parse_example(batch, spec)
        lengths += parsed["num_points"].numpy().tolist()
        aligned += (tf.strings.length(parsed["alignment"]) > 0).numpy().tolist()
    plan = {"whole": 0, "cut": 0, "left_out": {}}

    def leave_out(reason):
        plan["left_out"][reason] = plan["left_out"].get(reason, 0) + 1

    whole_limit = max(max_points or 0, unaligned_max_points)
    for length, has_alignment in zip(lengths, aligned, strict=True):
        if length < 2:
            leave_out("fewer than 2 points")
        elif max_points is None or length <= max_points:
            plan["whole"] += 1
        elif long_lines == "drop":
            leave_out(f"over {max_points} points")
        elif long_lines == "split" or has_alignment:
            plan["cut"] += 1
        elif length <= whole_limit:
            plan["whole"] += 1
        else:
            leave_out(f"no alignment and over {whole_limit} points")
    return plan


def load_dataset(
    data_dir,
    split,
    *,
    batch_size,
    shuffle=True,
    seed=None,
    repeat=False,
    max_points=None,
    long_lines="drop",
    unaligned_max_points=UNALIGNED_MAX_POINTS,
    joined_lines=0.0,
    bucket_boundaries=None,
    drop_remainder=False,
    shuffle_buffer=1024,
    verify=True,
    deterministic=True,
    num_parallel_calls=tf.data.AUTOTUNE,
):
    """Builds the batched, length-bucketed dataset of one split, ready for `Model.fit`.

    shards -> shuffle shard order -> interleave -> shuffle lines -> (repeat) -> parse ->
    (join pairs) -> split or drop long lines -> normalise, shift -> bucket, pad -> prefetch.
    Lines of fewer than 2 points have no step to predict and are left out.

    Args:
        data_dir: the folder with `dataset.json` and the shards.
        split: `"train"`, `"valid"` or `"test"` (any split `dataset.json` lists).
        batch_size: B, lines per batch (every bucket uses the same B).
        shuffle: shuffle shard order and lines (a buffer of `shuffle_buffer` lines).
        seed: fixes the order: the same seed and arguments give the same batches, epoch after
            epoch. None draws a fresh order on every run.
        repeat: repeat forever, reshuffling each epoch (batches then span epoch boundaries).
        max_points: the longest line N the model sees, or None for no cap. IAM-OnDB lines
            reach ~1,900 points.
        long_lines: what happens to lines over `max_points`: `"drop"` leaves them out,
            `"split"` cuts them into pieces of at most `max_points` points (`split_line`),
            `"split_aligned"` cuts those that carry an alignment (each piece then reads only
            the characters it writes) and keeps the others whole up to
            `unaligned_max_points` points, leaving out longer ones — what a synthesis network
            needs, since a piece that kept its whole text would teach the window a wrong pace.
        unaligned_max_points: see `long_lines`; `line_plan` counts what happens to each line.
        joined_lines: the chance that a line is read joined to the next line of its writer
            (`line_pairs.pair_lines`, the join priming uses), before lines are cut.
        bucket_boundaries: increasing step counts T that separate the length buckets; None
            derives `DEFAULT_NUM_BUCKETS` buckets from the split's line lengths.
        drop_remainder: drop each bucket's last, smaller batch (for a fixed B).
        shuffle_buffer: lines in the shuffle buffer. The buffer is part of an iterator
            checkpoint (about 12 bytes per point of each buffered line).
        verify: check every shard's sha256 and contents against `dataset.json` before
            reading (`DatasetError` naming the file and line). The contents are scanned
            anyway when `bucket_boundaries` is None.
        deterministic: produce elements in a fixed order despite parallel calls.
        num_parallel_calls: parallelism of reading and parsing.

    Returns:
        A `tf.data.Dataset` of `(inputs, targets, sample_weight)`, see the module docstring.

    Raises:
        DatasetError: `dataset.json` is missing or malformed, or does not match the shards.
        ValueError: an argument is out of range.
    """
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be at least 1, received {batch_size}")
    if long_lines not in LONG_LINE_POLICIES:
        raise ValueError(
            f"`long_lines` must be one of {LONG_LINE_POLICIES}, received {long_lines!r}"
        )
    if max_points is not None and max_points < 2:
        raise ValueError(f"`max_points` must be None or at least 2, received {max_points}")
    if not 0 <= joined_lines <= 1:
        raise ValueError(f"`joined_lines` must be in [0, 1], received {joined_lines}")
    if shuffle_buffer < 1:
        raise ValueError(f"`shuffle_buffer` must be at least 1, received {shuffle_buffer}")
    data_dir = os.fspath(data_dir)
    info = DatasetInfo.load(data_dir, verify=verify)
    paths = info.shard_paths(data_dir, split)
    if not paths:
        raise DatasetError(f"{os.path.join(data_dir, FILENAME)}: split {split!r} lists no shards")

    if verify or bucket_boundaries is None:
        lengths = _scan_split(info, data_dir, split)
        if bucket_boundaries is None:
            steps = lengths - 1
            if max_points is not None:
                steps = (
                    np.minimum(steps, max_points - 1)
                    if long_lines != "drop"
                    else steps[lengths <= max_points]
                )
            bucket_boundaries = boundaries_from_lengths(steps[steps > 0])
    bucket_boundaries = [int(b) for b in bucket_boundaries]
    if any(b <= a for a, b in itertools.pairwise(bucket_boundaries)) or (
        bucket_boundaries and bucket_boundaries[0] < 1
    ):
        raise ValueError(
            f"`bucket_boundaries` must be positive and increasing, received {bucket_boundaries}"
        )

    files = tf.data.Dataset.from_tensor_slices(paths)
    if shuffle:
        files = files.shuffle(len(paths), seed=seed)
    lines = files.interleave(
        lambda path: tf.data.TFRecordDataset(path),
        cycle_length=min(len(paths), _INTERLEAVE_CYCLE),
        block_length=1,
        num_parallel_calls=num_parallel_calls,
    )
    if shuffle:
        lines = lines.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        lines = lines.repeat()
    lines = lines.map(records.parse_line, num_parallel_calls=num_parallel_calls)
    if joined_lines:
        lines = line_pairs.pair_lines(lines, joined_lines, info.alphabet, seed=seed)
    if max_points is not None and long_lines == "split_aligned":
        whole_limit = max(max_points, unaligned_max_points)
        lines = lines.filter(
            lambda line: (
                (tf.shape(line["strokes"])[0] <= whole_limit)
                | tf.reduce_all(line["alignment"] >= 0)
            )
        )
    if max_points is not None and long_lines != "drop":
        whole = long_lines == "split_aligned"
        lines = lines.interleave(
            lambda line: split_line(line, max_points, unaligned_whole=whole),
            cycle_length=_INTERLEAVE_CYCLE,
            num_parallel_calls=num_parallel_calls,
        )
    elif max_points is not None:
        lines = lines.filter(lambda line: tf.shape(line["strokes"])[0] <= max_points)
    lines = lines.filter(lambda line: tf.shape(line["strokes"])[0] >= 2)
    examples = lines.map(
        lambda line: make_example(line, info.offset_mean, info.offset_std),
        num_parallel_calls=num_parallel_calls,
    )
    padding = (
        {
            "strokes": 0.0,
            "strokes_mask": False,
            "chars": PAD_ID,
            "chars_mask": False,
            "alignment": -1,
        },
        0.0,
        0.0,
    )
    batches = examples.bucket_by_sequence_length(
        element_length_func=lambda inputs, targets, weight: tf.shape(targets)[0],
        bucket_boundaries=bucket_boundaries,
        bucket_batch_sizes=[batch_size] * (len(bucket_boundaries) + 1),
        padding_values=padding,
        drop_remainder=drop_remainder,
    )
    batches = batches.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = deterministic
    return batches.with_options(options)
