"""Curves through pen points: Catmull-Rom splines as cubic Bezier segments.

Consecutive points of a stroke are joined by the cubic Bezier segments of a Catmull-Rom spline
through them (control points a third of the central difference away, capped at half of the
segment's length so uneven spacing cannot make loops); one-point strokes are dots. `path_data`
writes them as SVG path data, `sample_curve` samples them for rasterising.
"""

import math

import numpy as np


def bezier_segments(points):
    """Returns the cubic Bezier segments `(start, control1, control2, end)`, each `[N-1, 2]`.

    Catmull-Rom tangents (central differences, one-sided at the ends), capped at half the
    segment's length on each side.
    """
    previous = np.concatenate([points[:1], points[:-1]])
    following = np.concatenate([points[1:], points[-1:]])
    tangents = (following - previous) / 2.0  # [N, 2]
    start, end = points[:-1], points[1:]
    length = np.linalg.norm(end - start, axis=1, keepdims=True)  # [N-1, 1]
    out_handle = cap(tangents[:-1] / 3.0, length / 2.0)
    in_handle = cap(tangents[1:] / 3.0, length / 2.0)
    return start, start + out_handle, end - in_handle, end


def cap(vectors, limit):
    """Shortens the rows of `vectors` `[N, 2]` longer than `limit` `[N, 1]` to that length."""
    norm = np.linalg.norm(vectors, axis=1, keepdims=True)
    scale = np.where(norm > limit, limit / np.maximum(norm, 1e-300), 1.0)
    return vectors * scale


def path_data(points, digits) -> str:
    """SVG path data of the spline through `points` `[N, 2]`, numbers to `digits` decimals."""

    def xy(p):
        return f"{fmt(p[0], digits)} {fmt(p[1], digits)}"

    if len(points) == 1:
        return f"M{xy(points[0])} l0 0"
    start, c1, c2, end = bezier_segments(points)
    parts = [f"M{xy(start[0])}"]
    for a, b, p in zip(c1, c2, end, strict=True):
        parts.append(f"C{xy(a)} {xy(b)} {xy(p)}")
    return " ".join(parts)


def sample_curve(points, samples):
    """Returns `(xy [S, 2], point_index [S])` along the spline through `points`."""
    if len(points) == 1:
        return points.copy(), np.zeros(1, np.int64)
    start, c1, c2, end = bezier_segments(points)
    t = (np.arange(1, samples + 1) / samples)[None, :, None]  # [1, s, 1]
    u = 1.0 - t
    curve = (
        u**3 * start[:, None]
        + 3 * u**2 * t * c1[:, None]
        + 3 * u * t**2 * c2[:, None]
        + t**3 * end[:, None]
    )  # [N-1, s, 2]
    xy = np.concatenate([points[:1], curve.reshape(-1, 2)])
    index = np.concatenate([[0], np.repeat(np.arange(1, len(points)), samples)])
    return xy, index


def fmt(value, digits) -> str:
    """`value` with at most `digits` decimals, trailing zeros dropped."""
    text = f"{value:.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def decimals(extent) -> int:
    """Decimals that keep about 1e-5 of `extent` in SVG coordinates."""
    if extent <= 0:
        return 3
    return int(min(8, max(0, 5 - math.floor(math.log10(extent)))))
