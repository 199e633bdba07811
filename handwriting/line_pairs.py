"""Two lines of one writer read as one sequence, joined as priming joins a line to its prime.

Sampling and `nll` with a prime run the network over the prime's points and text first, then
over the line's (`"<prime> <line>"`). A network trained only on single lines has never read a
line that follows another, nor a text as long as the two together. Training on some pairs of
one writer's lines, joined the same way, shows it lines that follow a line of their writer;
300 steps with half the lines joined did not change what the points after the join cost
under the shipped model (BENCHMARKS.md, "The line's first point after a prime", where the
join itself, corrected, took priming from costing 7 of 7 validation writers to helping 6).

The join (`join_strokes` of points, which `likelihood` also uses to score a line after a
prime; `join_lines` of parsed lines): the pen is lifted at the first line's last point; the
second line starts (its origin, its first pen point) one word gap (`WORD_GAP` times the
first line's width over its characters) right of the first line's rightmost point, with the
two lines' mean heights equal; the text is `first + " " + second`; the second line's
alignment moves past the first line's characters and the space.

`pair_lines` pairs the lines of a stream: each line waits for the next line of its writer
(`Dataset.group_by_window`), and a pair is joined with probability `fraction` (a seeded draw
per pair, so one seed gives one stream); pairs not joined, and lines without a writer, go on
as single lines.
"""

import numpy as np
import tensorflow as tf

# Between two words of a line, the next word's first point is a median 1.4 mean character
# widths (the line's width over its characters) right of the words before it: 9,832 gaps of
# the first 1,500 training lines of the embedded corpus, by their per-point alignment
# (quartiles 1.11 and 1.79).
WORD_GAP = 1.4
_NO_WRITER_KEY = -1
_HASH_BUCKETS = 2**62


def join_strokes(first, num_chars, second):
    """The points of `first` (a line of `num_chars` characters, origin first) followed by
    those of `second`, as one line: `[N1 + N2, 3]` float32.

    A line's origin is its first pen point (`(0, 0, eos)`), and every point after it is an
    offset from the one before. The pen is lifted at the first line's last point; the second
    line's origin becomes the pen's move to where that line starts: one word gap (`WORD_GAP`
    times the first line's width over its characters) right of the first line's rightmost
    point, with the two lines' mean heights equal, as the text `"<first> <second>"` is one
    line. Works eagerly and inside `tf.data` functions.

    Measured with the shipped model on the validation writers (BENCHMARKS.md, "The line's
    first point after a prime"): with the second line's origin dropped (its first offset
    merged into the move) and one mean character width as the gap, the 20 points after the
    join cost 1.49 nats per point more than the same points unprimed; joined as here, 0.04.
    """
    head = tf.cast(first, tf.float32)  # [N1, 3], origin first
    tail = tf.cast(second, tf.float32)  # [N2, 3], origin first
    xy = tf.cumsum(tf.cast(head[:, :2], tf.float64), axis=0)
    tail_y = tf.cumsum(tf.cast(tail[:, 1], tf.float64))
    right = tf.reduce_max(xy[:, 0])
    width = (right - tf.reduce_min(xy[:, 0])) / tf.cast(tf.maximum(num_chars, 1), tf.float64)
    gap = WORD_GAP * width
    move = tf.stack(
        [right + gap - xy[-1, 0], tf.reduce_mean(xy[:, 1]) - tf.reduce_mean(tail_y) - xy[-1, 1]]
    )
    head = tf.concat([head[:-1], tf.concat([head[-1:, :2], [[1.0]]], axis=1)], axis=0)
    start = tf.concat([tail[:1, :2] + tf.cast(move, tf.float32), tail[:1, 2:]], axis=1)
    return tf.concat([head, start, tail[1:]], axis=0)


def join_lines(first, second, space_id):
    """One parsed line (`records.parse_line`'s dict) of `first` followed by `second`.

    Works eagerly and inside `tf.data` functions. The points are `join_strokes`'s; the
    alignment is the two alignments joined when both lines have one, else all -1.
    """
    first_chars = tf.cast(first["chars"], tf.int32)
    num_chars = tf.shape(first_chars)[0]
    first_alignment = tf.cast(first["alignment"], tf.int32)
    second_alignment = tf.cast(second["alignment"], tf.int32)
    aligned = tf.reduce_all(first_alignment >= 0) & tf.reduce_all(second_alignment >= 0)
    alignment = tf.concat([first_alignment, second_alignment + num_chars + 1], axis=0)
    return {
        "strokes": join_strokes(first["strokes"], num_chars, second["strokes"]),
        "chars": tf.concat([first_chars, [space_id], tf.cast(second["chars"], tf.int32)], 0),
        "alignment": tf.where(aligned, alignment, -tf.ones_like(alignment)),
        "text": tf.strings.join([first["text"], second["text"]], " "),
        "line_id": tf.strings.join([first["line_id"], second["line_id"]], "+"),
        "writer_id": first["writer_id"],
    }


def pair_lines(lines, fraction, alphabet, seed=None):
    """The stream `lines` with about `fraction` of its lines joined in pairs of one writer.

    Args:
        lines: a `tf.data.Dataset` of parsed lines (`records.parse_line`).
        fraction: in [0, 1], the chance that a line and the next line of its writer are read
            as one sequence (`join_lines`).
        alphabet: the lines' `Alphabet`, which must hold " " (between the two texts).
        seed: fixes which pairs are joined; None draws afresh each run.

    Raises:
        ValueError: the alphabet has no space.
    """
    if " " not in alphabet:
        raise ValueError("lines cannot be joined: the alphabet has no space to put between them")
    space_id = int(alphabet.encode(" ")[0])
    if seed is None:
        seed = int(np.random.default_rng().integers(2**31))
    seed = tf.constant(seed, tf.int64)

    def writer_key(line):
        return tf.where(
            tf.strings.length(line["writer_id"]) > 0,
            tf.strings.to_hash_bucket_fast(line["writer_id"], _HASH_BUCKETS),
            tf.constant(_NO_WRITER_KEY, tf.int64),
        )

    def window(key, group):
        del key
        return group.ragged_batch(2)

    def lines_of(index, pair):
        count = tf.shape(pair["writer_id"])[0]  # 2, or 1 for a writer's last line
        draw = tf.random.stateless_uniform([], tf.stack([seed, index]), dtype=tf.float32)
        joined = (count == 2) & (tf.strings.length(pair["writer_id"][0]) > 0) & (draw < fraction)

        def element(i):
            return tf.cond(
                joined,
                lambda: join_lines(_line(pair, 0), _line(pair, 1), space_id),
                lambda: _line(pair, i),
            )

        return tf.data.Dataset.range(tf.cast(tf.where(joined, 1, count), tf.int64)).map(element)

    pairs = lines.group_by_window(writer_key, window, window_size=2)
    return pairs.enumerate().flat_map(lines_of)


def _line(pair, i):
    """Line `i` of a window of lines batched by `Dataset.ragged_batch`."""
    return {name: value[i] for name, value in pair.items()}
