"""Offset statistics of clean lines, combined exactly across shards and processes.

A clean line is the stroke array of `handwriting.records`: `handwriting.iam_xml` turns a
line's raw pen points into one (`to_stroke_array`) and bounds what it accepts
(`MAX_COORDINATE`, `MAX_OFFSET`, the latter re-exported here for the shard writer's check).
"""

import numpy as np

from handwriting.iam_xml import MAX_OFFSET  # noqa: F401  (`data_prep.shards` reads it here)


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
