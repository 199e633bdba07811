"""Raw pen points of one line to the stroke array of `handwriting.records`.

The source gives absolute whiteboard coordinates with y growing downwards and a per-line
offset. The stroke array holds `(dx, dy, eos)` offsets with y growing upwards, the first row
being the offset of the first point from itself, `(0, 0, eos)`. Exact repeats of the previous
point within a stroke carry no information and are dropped; one-point strokes (dots) stay.

Coordinates must be plausible for a whiteboard: |x|, |y| <= `MAX_COORDINATE` (1e6) and at most
`MAX_OFFSET` (1e5) between consecutive points; the reader skips a line with any other point
(reason `implausible coordinates`), so that no offset overflows float32 and no single point
swamps the normalisation statistics.
"""

import numpy as np

# Bounds on what a pen on a whiteboard gives. IAM-OnDB's points are in the sensor's units, a
# board a few thousand units across (x about 0..10,000); the embedded corpus (6,000 lines)
# spans x 191..11,451 and y 587..5,969, with at most 3,431 between consecutive points (a pen
# lifted across the line). The bounds are about 100 and 30 times that: generous for any such
# sensor, far inside float32 (3.4e38), and a point beyond them is a broken or hostile file.
MAX_COORDINATE = 1e6  # |x|, |y| of a raw point
MAX_OFFSET = 1e5  # |dx|, |dy| between consecutive points, across strokes too


def stroke_ids(stroke_lengths) -> np.ndarray:
    """Returns the stroke index of every point, shape `(sum(stroke_lengths),)` int64."""
    stroke_lengths = np.asarray(stroke_lengths, dtype=np.int64)
    return np.repeat(np.arange(len(stroke_lengths)), stroke_lengths)


def to_stroke_array(x, y, stroke_lengths, alignment=None):
    """Turns one line's absolute points into a stroke array.

    Args:
        x: `(N,)` absolute x of every point, strokes one after another.
        y: `(N,)` absolute y, growing downwards (the whiteboard's convention).
        stroke_lengths: `(S,)` points per stroke, summing to N; empty strokes are allowed.
        alignment: optional `(N,)` character index of every point.

    Returns:
        `(strokes, alignment)`: strokes `(T, 3)` float32 of `(dx, dy, eos)` with y growing
        upwards, T <= N after dropping repeated points; alignment `(T,)` int32 (the indices of
        the points kept) or None.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    stroke = stroke_ids(stroke_lengths)
    if not (x.shape == y.shape == stroke.shape) or x.ndim != 1:
        raise ValueError(
            f"`x` {x.shape}, `y` {y.shape} and `stroke_lengths` (sum {stroke.shape[0]}) "
            "must describe the same points"
        )
    if x.shape[0] == 0:
        raise ValueError("a line needs at least one point")
    # A point equal to its predecessor in the same stroke is a repeat.
    repeat = (stroke[1:] == stroke[:-1]) & (x[1:] == x[:-1]) & (y[1:] == y[:-1])
    keep = np.concatenate([[True], ~repeat])
    x, y, stroke = x[keep], y[keep], stroke[keep]
    eos = np.concatenate([stroke[1:] != stroke[:-1], [True]])
    # Translate so the first point is the origin, flip y so it grows upwards, take offsets.
    x = x - x[0]
    y = -(y - y[0])
    strokes = np.empty((x.shape[0], 3), dtype=np.float32)  # [T, 3]
    strokes[:, 0] = np.diff(x, prepend=0.0)
    strokes[:, 1] = np.diff(y, prepend=0.0)
    strokes[:, 2] = eos
    if alignment is not None:
        alignment = np.asarray(alignment, dtype=np.int32)[keep]
    return strokes, alignment


def offset_moments(strokes) -> tuple:
    """Returns `(n, mean, m2)` of a stroke array's `(dx, dy)`: count, means and sums of squared
    deviations, float64, for exact parallel combination with `combine_moments`."""
    offsets = np.asarray(strokes, dtype=np.float64)[:, :2]
    n = offsets.shape[0]
    mean = offsets.mean(axis=0)
    m2 = ((offsets - mean) ** 2).sum(axis=0)
    return n, mean, m2


def combine_moments(a: tuple, b: tuple) -> tuple:
    """Combines two `(n, mean, m2)` triples (Chan, Golub and LeVeque's pairwise update)."""
    n_a, mean_a, m2_a = a
    n_b, mean_b, m2_b = b
    n = n_a + n_b
    if n_a == 0:
        return n_b, np.asarray(mean_b, np.float64), np.asarray(m2_b, np.float64)
    if n_b == 0:
        return n_a, np.asarray(mean_a, np.float64), np.asarray(m2_a, np.float64)
    mean_a = np.asarray(mean_a, np.float64)
    mean_b = np.asarray(mean_b, np.float64)
    delta = mean_b - mean_a
    mean = mean_a + delta * (n_b / n)
    m2 = np.asarray(m2_a, np.float64) + np.asarray(m2_b, np.float64) + delta**2 * (n_a * n_b / n)
    return n, mean, m2
