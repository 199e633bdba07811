"""Lines of strokes placed on one page: the layout every picture of handwriting shares.

A line is a stroke array `[T, 3]` of `(dx, dy, eos)` (y up); `Layout` turns a list of them
into absolute points with y growing downwards, shifted so that each line's leftmost point sits
at the paragraph's left edge (or is centred / right-aligned within the widest line) and the
median height of its points sits on the line's centre; successive centres are `line_spacing`
median line heights apart. Distances stay in the strokes' own units.
"""

import math

import numpy as np

ALIGNMENTS = ("left", "center", "right")


def split_strokes(strokes) -> list:
    """Returns the absolute pen positions of every stroke of one line.

    Args:
        strokes: `(T, 3)` array of `(dx, dy, eos)` offsets, y upwards.

    Returns:
        A list of `(N_i, 2)` float64 arrays of `(x, y)`, y upwards, one per stroke, in writing
        order. Points after the last `eos = 1` form a final stroke; `T = 0` gives `[]`.
    """
    strokes = check_strokes(strokes, "strokes")
    if strokes.shape[0] == 0:
        return []
    positions = np.cumsum(strokes[:, :2].astype(np.float64), axis=0)  # [T, 2]
    ends = np.flatnonzero(strokes[:, 2] > 0.5) + 1
    pieces = np.split(positions, ends)
    return [p for p in pieces if len(p)]


class Layout:
    """Lines of strokes placed on one page: absolute points, y downwards, in stroke units."""

    def __init__(self, strokes_list, *, line_spacing, align):
        if align not in ALIGNMENTS:
            raise ValueError(f"`align` must be one of {ALIGNMENTS}, received {align!r}")
        line_spacing = positive(line_spacing, "line_spacing")
        arrays = as_lines(strokes_list)
        raw = [split_strokes(a) for a in arrays]
        self.num_points = sum(int(a.shape[0]) for a in arrays)
        self.point_counts = [int(a.shape[0]) for a in arrays]
        heights, widths, boxes = [], [], []
        for line in raw:
            if not line:
                boxes.append(None)
                continue
            points = np.concatenate(line)
            lo, hi = points.min(axis=0), points.max(axis=0)
            boxes.append((lo, hi, float(np.median(points[:, 1]))))
            heights.append(hi[1] - lo[1])
            widths.append(hi[0] - lo[0])
        # The unit every size defaults from: the median line height, else width, else 1.
        positive_heights = [h for h in heights if h > 0]
        positive_widths = [w for w in widths if w > 0]
        if positive_heights:
            self.unit = float(np.median(positive_heights))
        elif positive_widths:
            self.unit = float(np.median(positive_widths)) / 4
        else:
            self.unit = 1.0
        self.pitch = line_spacing * self.unit
        self.widest = max(widths, default=0.0)
        self.lines = []
        for index, (line, box) in enumerate(zip(raw, boxes, strict=True)):
            if box is None:
                self.lines.append([])
                continue
            lo, hi, middle = box
            slack = self.widest - (hi[0] - lo[0])
            shift_x = -lo[0] + {"left": 0.0, "center": slack / 2, "right": slack}[align]
            centre = index * self.pitch
            placed = []
            for points in line:
                xy = np.empty_like(points)
                xy[:, 0] = points[:, 0] + shift_x
                xy[:, 1] = centre - (points[:, 1] - middle)  # flip: y grows downwards now
                placed.append(xy)
            self.lines.append(placed)

    def bounds(self):
        """Returns `(x0, y0, x1, y1)` of every placed point, or a one-pitch box when empty."""
        points = [p for line in self.lines for p in line]
        if not points:
            half = self.pitch / 2
            return 0.0, -half, self.pitch, max(half, half + (len(self.lines) - 1) * self.pitch)
        stacked = np.concatenate(points)
        x0, y0 = stacked.min(axis=0)
        x1, y1 = stacked.max(axis=0)
        # Keep every line's slot, empty lines included, so labels and pitch stay regular.
        half = self.pitch / 2
        y0 = min(y0, -half)
        y1 = max(y1, (len(self.lines) - 1) * self.pitch + half)
        return float(x0), float(y0), float(x1), float(y1)


def as_lines(strokes_list) -> list:
    """Returns a list of `(T, 3)` float arrays from one stroke array or a sequence of them."""
    if isinstance(strokes_list, np.ndarray) and strokes_list.ndim == 2:
        return [check_strokes(strokes_list, "strokes")]
    if isinstance(strokes_list, np.ndarray) and strokes_list.ndim != 3:
        raise ValueError(
            f"strokes must be one (T, 3) array or a list of them, received an array of shape "
            f"{strokes_list.shape}"
        )
    try:
        items = list(strokes_list)
    except TypeError:
        raise TypeError(
            f"strokes must be one (T, 3) array or a list of them, "
            f"received {type(strokes_list).__name__}"
        ) from None
    return [check_strokes(s, f"line {i}") for i, s in enumerate(items)]


def check_strokes(strokes, name) -> np.ndarray:
    """`strokes` as a `(T, 3)` float64 array of finite values, else `ValueError` naming it."""
    array = np.asarray(strokes, dtype=np.float64)
    if array.ndim == 1 and array.size == 0:
        array = array.reshape(0, 3)
    if array.ndim != 2 or array.shape[1] != 3:
        raise ValueError(f"{name}: strokes must have shape (T, 3), received {array.shape}")
    bad = np.flatnonzero(~np.all(np.isfinite(array), axis=1))
    if bad.size:
        raise ValueError(f"{name}: point {int(bad[0])} holds NaN or infinite values")
    return array


def positive(value, name) -> float:
    """`value` as a float if it is a finite number > 0, else `TypeError`/`ValueError`."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be a number, received {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"`{name}` must be a positive number, received {value!r}")
    return number


def non_negative(value, name) -> float:
    """`value` as a float if it is a finite number >= 0, else `TypeError`/`ValueError`."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be a number, received {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"`{name}` must be a non-negative number, received {value!r}")
    return number
