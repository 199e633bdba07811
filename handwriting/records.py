"""The TFRecord layout of one handwritten line: written by `data_prep`, read by `data`.

A line is a stroke array `[T, 3]` float32 of `(dx, dy, eos)`: pen offsets from the previous
point, in the source's own units (not normalised; `dataset.json` holds the statistics), with
y growing upwards, and `eos = 1` on the last point of each stroke. The first row is the
offset from the line's first point, so it is `(0, 0, eos)`.

Features of one `tf.train.Example`:

- `strokes`: bytes, the stroke array as little-endian float32, row-major.
- `num_points`: int64, T.
- `text`: bytes, the transcription in UTF-8.
- `chars`: int64 list, the alphabet ids of `text` (one per character, no padding).
- `line_id`: bytes, e.g. `a01-000u-01`.
- `writer_id`: bytes, empty when the source does not name the writer.
- `alignment`: bytes, little-endian int32 `[T]`, for every point the index in `text` of the
  character being written (non-decreasing); empty when the source has no alignment.
"""

import numpy as np
import tensorflow as tf

FEATURE_SPEC = {
    "strokes": tf.io.FixedLenFeature([], tf.string),
    "num_points": tf.io.FixedLenFeature([], tf.int64),
    "text": tf.io.FixedLenFeature([], tf.string),
    "chars": tf.io.VarLenFeature(tf.int64),
    "line_id": tf.io.FixedLenFeature([], tf.string),
    "writer_id": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "alignment": tf.io.FixedLenFeature([], tf.string, default_value=""),
}


def _bytes(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int64s(values) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


def encode_line(strokes, text, chars, line_id, writer_id="", alignment=None) -> bytes:
    """Returns one serialised `tf.train.Example` for a line.

    Args:
        strokes: `(T, 3)` array of `(dx, dy, eos)`.
        text: the transcription.
        chars: `(len(text),)` alphabet ids of `text`.
        line_id: the line's id.
        writer_id: the writer's id, or "" when unknown.
        alignment: optional `(T,)` character index of every point.
    """
    strokes = np.asarray(strokes, dtype="<f4")
    if strokes.ndim != 2 or strokes.shape[1] != 3:
        raise ValueError(f"`strokes` must have shape (T, 3), received {strokes.shape}")
    chars = np.asarray(chars, dtype=np.int64).reshape(-1)
    if len(chars) != len(text):
        raise ValueError(f"`chars` has {len(chars)} ids for a text of {len(text)} characters")
    features = {
        "strokes": _bytes(np.ascontiguousarray(strokes).tobytes()),
        "num_points": _int64s([strokes.shape[0]]),
        "text": _bytes(text.encode("utf-8")),
        "chars": _int64s(chars.tolist()),
        "line_id": _bytes(line_id.encode("utf-8")),
        "writer_id": _bytes(writer_id.encode("utf-8")),
    }
    if alignment is not None:
        alignment = np.asarray(alignment, dtype="<i4").reshape(-1)
        if alignment.shape[0] != strokes.shape[0]:
            raise ValueError(
                f"`alignment` has {alignment.shape[0]} entries for {strokes.shape[0]} points"
            )
        features["alignment"] = _bytes(alignment.tobytes())
    example = tf.train.Example(features=tf.train.Features(feature=features))
    # `Features` is a protobuf map, whose entries are written in an order that differs from
    # process to process; deterministic serialisation sorts them by key, so one line always
    # gives the same bytes (and the same input the same shards).
    return example.SerializeToString(deterministic=True)


def parse_line(serialized):
    """Parses one serialised line; works eagerly and inside `tf.data.Dataset.map`.

    Returns:
        A dict: `strokes` `(T, 3)` float32, `chars` `(U,)` int32, `alignment` `(T,)` int32
        (all -1 when the line has no alignment), `text`, `line_id`, `writer_id` string scalars.
    """
    parsed = tf.io.parse_single_example(serialized, FEATURE_SPEC)
    num_points = tf.cast(parsed["num_points"], tf.int32)
    strokes = tf.io.decode_raw(parsed["strokes"], tf.float32, little_endian=True)
    tf.debugging.assert_equal(
        tf.size(strokes), 3 * num_points, message="`strokes` bytes do not match `num_points`"
    )
    strokes = tf.reshape(strokes, [num_points, 3])
    alignment = tf.cond(
        tf.equal(tf.strings.length(parsed["alignment"]), 0),
        lambda: tf.fill([num_points], -1),
        lambda: tf.io.decode_raw(parsed["alignment"], tf.int32, little_endian=True),
    )
    alignment = tf.reshape(alignment, [num_points])
    return {
        "strokes": strokes,
        "chars": tf.cast(tf.sparse.to_dense(parsed["chars"]), tf.int32),
        "alignment": alignment,
        "text": parsed["text"],
        "line_id": parsed["line_id"],
        "writer_id": parsed["writer_id"],
    }
