"""Strokes to pictures: SVG, PNG, animated GIF, and the attention map of the soft window.

A line of handwriting is a stroke array `[T, 3]` of `(dx, dy, eos)`: pen offsets from the
previous point (the first from the origin), y growing upwards, `eos = 1` on the last point of
each stroke. Every function here takes one such array or a list of them (one per line); the
lines are stacked top to bottom as a paragraph. Screens grow y downwards, so y is flipped on the
way out: a stroke that goes up in the data goes up on the screen.

Layout (shared by every output): each line is shifted so that its leftmost point sits at the
paragraph's left edge (or is centred / right-aligned within the widest line), and the median
height of its points (roughly the middle of its lower-case letters, robust to ascenders and
descenders) sits on the line's centre. Successive centres are `line_spacing` times the median
line height apart. Distances stay in the strokes' own units; SVG keeps them in its viewBox,
raster outputs scale them so that one line pitch is `line_height_px` pixels.

Curves: consecutive points of a stroke are joined by the cubic Bezier segments of a
Catmull-Rom spline through them (control points a third of the central difference away, capped
at half of the segment's length so uneven spacing cannot make loops); one-point strokes are dots.
"""

import io
import math

import numpy as np
from lxml import etree
from PIL import Image, ImageDraw, ImageFont

from handwriting import files

SVG_NAMESPACE = "http://www.w3.org/2000/svg"
ALIGNMENTS = ("left", "center", "right")
# Bezier samples per segment when a curve is rasterised; enough for smooth curves at a few
# pixels per pen step, cheap for long texts.
_SAMPLES_PER_SEGMENT = 4
# Supersampling factor for antialiased raster lines (drawn large, then box-filtered down).
_SUPERSAMPLE = 4
# Above this many supersampled pixels the factor is lowered so that huge pages stay in memory.
_MAX_SUPERSAMPLED_PIXELS = 64_000_000


def split_strokes(strokes) -> list:
    """Returns the absolute pen positions of every stroke of one line.

    Args:
        strokes: `(T, 3)` array of `(dx, dy, eos)` offsets, y upwards.

    Returns:
        A list of `(N_i, 2)` float64 arrays of `(x, y)`, y upwards, one per stroke, in writing
        order. Points after the last `eos = 1` form a final stroke; `T = 0` gives `[]`.
    """
    strokes = _check_strokes(strokes, "strokes")
    if strokes.shape[0] == 0:
        return []
    positions = np.cumsum(strokes[:, :2].astype(np.float64), axis=0)  # [T, 2]
    ends = np.flatnonzero(strokes[:, 2] > 0.5) + 1
    pieces = np.split(positions, ends)
    return [p for p in pieces if len(p)]


def to_svg(
    strokes_list,
    *,
    line_spacing: float = 1.25,
    stroke_width: float | None = None,
    align: str = "left",
    width: float | None = None,
    color: str = "black",
    margin: float | None = None,
) -> str:
    """Renders lines of strokes as an SVG document with one smooth `<path>` per stroke.

    Args:
        strokes_list: a `(T, 3)` stroke array, or a list of them (one per line, top first).
        line_spacing: distance between line centres in median line heights.
        stroke_width: pen width in stroke units; `None`: 2.5% of the median line height.
        align: "left", "center" or "right", within the widest line.
        width: displayed width in px (the height follows the aspect ratio); `None`: one px per
            stroke unit.
        color: any SVG colour for the ink.
        margin: blank border in stroke units; `None`: 10% of the median line height.

    Returns:
        The SVG document as a string (UTF-8 XML with a declaration-free root `<svg>`).
    """
    layout = _Layout(strokes_list, line_spacing=line_spacing, align=align)
    pen = layout.unit * 0.025 if stroke_width is None else _positive(stroke_width, "stroke_width")
    pad = layout.unit * 0.1 if margin is None else _non_negative(margin, "margin")
    pad = max(pad, pen)
    x0, y0, x1, y1 = layout.bounds()
    box_w, box_h = x1 - x0 + 2 * pad, y1 - y0 + 2 * pad
    if width is None:
        shown_w, shown_h = box_w, box_h
    else:
        shown_w = _positive(width, "width")
        shown_h = shown_w * box_h / box_w
    digits = _decimals(max(box_w, box_h))
    svg = etree.Element(
        f"{{{SVG_NAMESPACE}}}svg",
        nsmap={None: SVG_NAMESPACE},
        attrib={
            "version": "1.1",
            "width": _fmt(shown_w, 2),
            "height": _fmt(shown_h, 2),
            "viewBox": " ".join(_fmt(v, digits) for v in (x0 - pad, y0 - pad, box_w, box_h)),
        },
    )
    group = etree.SubElement(
        svg,
        f"{{{SVG_NAMESPACE}}}g",
        attrib={
            "fill": "none",
            "stroke": str(color),
            "stroke-width": _fmt(pen, digits),
            "stroke-linecap": "round",
            "stroke-linejoin": "round",
        },
    )
    for line_index, line in enumerate(layout.lines):
        for stroke_index, points in enumerate(line):
            etree.SubElement(
                group,
                f"{{{SVG_NAMESPACE}}}path",
                attrib={
                    "d": _path_data(points, digits),
                    "data-line": str(line_index),
                    "data-stroke": str(stroke_index),
                },
            )
    return etree.tostring(svg, encoding="unicode") + "\n"


def to_image(
    strokes_list,
    *,
    line_height_px: int = 64,
    width_px: int | None = None,
    labels=None,
    align: str = "left",
    line_spacing: float = 1.25,
    stroke_px: float | None = None,
    color=(0, 0, 0),
    background=(255, 255, 255),
) -> np.ndarray:
    """Rasterises lines of strokes with antialiased ink.

    Args:
        strokes_list: a `(T, 3)` stroke array, or a list of them (one per line, top first).
        line_height_px: pixels per line pitch (the strokes are scaled to fit).
        width_px: image width; `None`: as wide as the widest line needs. Lines wider than
            `width_px` shrink the scale (and so the line pitch) until they fit.
        labels: optional list of strings, one per line, written small above each line.
        align: "left", "center" or "right".
        line_spacing: distance between line centres in median line heights.
        stroke_px: pen width in pixels; `None`: `line_height_px / 32`, at least 1.
        color: ink colour, an RGB triple or a Pillow colour name.
        background: paper colour, likewise.

    Returns:
        `(H, W, 3)` uint8 RGB image.
    """
    layout = _Layout(strokes_list, line_spacing=line_spacing, align=align)
    line_height_px = int(_positive(line_height_px, "line_height_px"))
    labels = _check_labels(labels, len(layout.lines))
    canvas = _Canvas(
        layout,
        line_height_px=line_height_px,
        width_px=width_px,
        stroke_px=stroke_px,
        label_px=_label_px(line_height_px) if labels else 0,
    )
    for segments in canvas.polylines():
        canvas.draw(segments)
    return canvas.finish(color, background, labels)


def to_png_bytes(image) -> bytes:
    """Encodes a `(H, W, 3)` (or `(H, W)` / `(H, W, 4)`) uint8 image as PNG."""
    buffer = io.BytesIO()
    _to_pil(image).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def save_png(image, path) -> None:
    """Writes an image as a PNG file, atomically."""
    files.write_bytes(path, to_png_bytes(image))


def to_gif(
    strokes_list,
    path,
    *,
    fps: float = 25.0,
    max_frames: int = 150,
    hold_s: float = 1.5,
    line_height_px: int = 64,
    width_px: int | None = None,
    align: str = "left",
    line_spacing: float = 1.25,
    stroke_px: float | None = None,
    color=(0, 0, 0),
    background=(255, 255, 255),
    pen_color=(220, 40, 40),
) -> int:
    """Writes an animated GIF of the pen writing the lines, one after the other.

    Every frame advances the pen by the same number of points, `ceil(T_total / max_frames)`,
    so long texts play faster rather than making huge files. The last frame shows the whole
    text (as `to_image` draws it) and is held for `hold_s` seconds.

    Args:
        strokes_list: a `(T, 3)` stroke array, or a list of them (one per line, top first).
        path: the output file; written atomically.
        fps: frames per second.
        max_frames: upper bound on the number of frames (the final frame included).
        hold_s: how long the final frame stays before the animation loops.
        pen_color: colour of the dot drawn at the pen tip while writing; `None` for no dot.
        line_height_px, width_px, align, line_spacing, stroke_px, color, background: as in
            `to_image`.

    Returns:
        The number of frames rendered; a GIF reader may count fewer, since identical
        neighbouring frames (a pen step that adds no visible ink) are merged when written.
    """
    fps = _positive(fps, "fps")
    max_frames = int(max_frames)
    if max_frames < 2:
        raise ValueError(f"`max_frames` must be at least 2, received {max_frames}")
    hold_s = _non_negative(hold_s, "hold_s")
    layout = _Layout(strokes_list, line_spacing=line_spacing, align=align)
    canvas = _Canvas(
        layout,
        line_height_px=int(_positive(line_height_px, "line_height_px")),
        width_px=width_px,
        stroke_px=stroke_px,
        label_px=0,
    )
    polylines = list(canvas.polylines())
    total = layout.num_points
    step = max(1, math.ceil(total / max_frames))
    frames = []
    pending = iter(polylines)
    current = next(pending, None)
    done_until = 0  # points drawn so far, over all lines
    while done_until < total:
        done_until = min(total, done_until + step)
        pen_at = None
        while current is not None and current.first_point < done_until:
            drawn = canvas.draw(current, until=done_until)
            pen_at = drawn if drawn is not None else pen_at
            if current.last_point < done_until:
                current = next(pending, None)
            else:
                break
        frame = canvas.finish(color, background, None)
        if pen_color is not None and pen_at is not None and done_until < total:
            frame = _draw_dot(frame, pen_at, max(2.0, canvas.stroke_px * 1.5), pen_color)
        frames.append(frame)
    if not frames:
        frames.append(canvas.finish(color, background, None))
    images = [_to_pil(f).convert("P", palette=Image.Palette.ADAPTIVE, colors=64) for f in frames]
    frame_ms = max(20, round(1000.0 / fps))  # GIF delays are in 10 ms units; 20 ms is the floor
    durations = [frame_ms] * (len(images) - 1) + [max(frame_ms, round(hold_s * 1000))]
    with files.atomic_path(path) as tmp:
        images[0].save(
            tmp,
            format="GIF",
            save_all=True,
            append_images=images[1:],
            duration=durations,
            loop=0,
            optimize=False,
            disposal=1,
        )
    return len(images)


def attention_image(phi, text: str, *, row_px: int = 14, max_width_px: int = 1024) -> np.ndarray:
    """Draws the soft window's weights phi(t, u) as a heat map, characters down the side.

    Rows are the characters of `text` (top first), columns are pen steps t (left to right).
    Colours run from dark blue (0) through teal to yellow (the largest weight of that step).

    Args:
        phi: `(T, U)` window weights, `U = len(text)` or `len(text) + 1` (the extra row, one
            past the last character, is labelled "end").
        text: the text the window reads.
        row_px: pixels per character row.
        max_width_px: the plot is at most this wide; more steps are max-pooled into columns.

    Returns:
        `(H, W, 3)` uint8 RGB image with `H = U * row_px + 2 * row_px // 2`.
    """
    phi = np.asarray(phi, dtype=np.float64)
    if phi.ndim != 2:
        raise ValueError(f"`phi` must have shape (T, U), received {phi.shape}")
    steps, chars = phi.shape
    if chars not in (len(text), len(text) + 1):
        raise ValueError(
            f"`phi` has {chars} character columns for a text of {len(text)} characters; "
            f"expected {len(text)} or {len(text) + 1}"
        )
    if not np.all(np.isfinite(phi)):
        raise ValueError("`phi` holds NaN or infinite values")
    row_px = int(_positive(row_px, "row_px"))
    names = [_char_label(c) for c in text] + (["end"] if chars > len(text) else [])
    font = ImageFont.load_default(size=max(8, round(row_px * 0.8)))
    label_w = max([font.getbbox(n)[2] for n in names] + [1]) + row_px // 2
    column_px = max(1, round(row_px * 2 / 7))  # pixels per pen step when there is room
    plot_w = max(1, min(int(max_width_px), steps * column_px))
    if steps == 0 or chars == 0:
        grid = np.zeros((chars, plot_w))
    else:
        # Column j of the plot covers steps [edges[j], edges[j+1]); max-pool keeps peaks visible.
        edges = np.linspace(0, steps, plot_w + 1)
        starts = np.minimum(np.floor(edges[:-1]).astype(int), steps - 1)
        ends = np.maximum(np.ceil(edges[1:]).astype(int), starts + 1)
        pooled = [phi[s:e].max(axis=0) for s, e in zip(starts, ends, strict=True)]
        grid = np.stack(pooled, axis=1)  # [U, W]
    # Each column on its own scale: the window's total weight changes along a line (alpha is
    # learnt), and one global scale would leave most steps dark; per column, the map shows
    # where the window is at every step.
    peak = grid.max(axis=0, keepdims=True) if grid.size else np.zeros((1, plot_w))
    values = np.divide(grid, peak, out=np.zeros_like(grid), where=peak > 0)
    heat = _heat_colors(values)  # [U, W, 3]
    heat = np.repeat(heat, row_px, axis=0)
    pad = row_px // 2
    image = np.full((chars * row_px + 2 * pad, label_w + plot_w + pad, 3), 255, np.uint8)
    image[pad : pad + chars * row_px, label_w : label_w + plot_w] = heat
    pil = Image.fromarray(image)
    draw = ImageDraw.Draw(pil)
    for u, name in enumerate(names):
        box = font.getbbox(name)
        y = pad + u * row_px + (row_px - (box[3] - box[1])) / 2 - box[1]
        draw.text((label_w - row_px // 4 - box[2], y), name, fill=(0, 0, 0), font=font)
    return np.asarray(pil, dtype=np.uint8).copy()


# ---------------------------------------------------------------------------------------------
# Layout


class _Layout:
    """Lines of strokes placed on one page: absolute points, y downwards, in stroke units."""

    def __init__(self, strokes_list, *, line_spacing, align):
        if align not in ALIGNMENTS:
            raise ValueError(f"`align` must be one of {ALIGNMENTS}, received {align!r}")
        line_spacing = _positive(line_spacing, "line_spacing")
        arrays = _as_lines(strokes_list)
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


def _as_lines(strokes_list) -> list:
    """Returns a list of `(T, 3)` float arrays from one stroke array or a sequence of them."""
    if isinstance(strokes_list, np.ndarray) and strokes_list.ndim == 2:
        return [_check_strokes(strokes_list, "strokes")]
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
    return [_check_strokes(s, f"line {i}") for i, s in enumerate(items)]


def _check_strokes(strokes, name) -> np.ndarray:
    array = np.asarray(strokes, dtype=np.float64)
    if array.ndim == 1 and array.size == 0:
        array = array.reshape(0, 3)
    if array.ndim != 2 or array.shape[1] != 3:
        raise ValueError(f"{name}: strokes must have shape (T, 3), received {array.shape}")
    bad = np.flatnonzero(~np.all(np.isfinite(array), axis=1))
    if bad.size:
        raise ValueError(f"{name}: point {int(bad[0])} holds NaN or infinite values")
    return array


# ---------------------------------------------------------------------------------------------
# Curves


def _bezier_segments(points):
    """Returns the cubic Bezier segments `(start, control1, control2, end)`, each `[N-1, 2]`.

    Catmull-Rom tangents (central differences, one-sided at the ends), capped at half the
    segment's length on each side.
    """
    previous = np.concatenate([points[:1], points[:-1]])
    following = np.concatenate([points[1:], points[-1:]])
    tangents = (following - previous) / 2.0  # [N, 2]
    start, end = points[:-1], points[1:]
    length = np.linalg.norm(end - start, axis=1, keepdims=True)  # [N-1, 1]
    out_handle = _cap(tangents[:-1] / 3.0, length / 2.0)
    in_handle = _cap(tangents[1:] / 3.0, length / 2.0)
    return start, start + out_handle, end - in_handle, end


def _cap(vectors, limit):
    norm = np.linalg.norm(vectors, axis=1, keepdims=True)
    scale = np.where(norm > limit, limit / np.maximum(norm, 1e-300), 1.0)
    return vectors * scale


def _path_data(points, digits) -> str:
    def xy(p):
        return f"{_fmt(p[0], digits)} {_fmt(p[1], digits)}"

    if len(points) == 1:
        return f"M{xy(points[0])} l0 0"
    start, c1, c2, end = _bezier_segments(points)
    parts = [f"M{xy(start[0])}"]
    for a, b, p in zip(c1, c2, end, strict=True):
        parts.append(f"C{xy(a)} {xy(b)} {xy(p)}")
    return " ".join(parts)


def _sample_curve(points, samples):
    """Returns `(xy [S, 2], point_index [S])` along the spline through `points`."""
    if len(points) == 1:
        return points.copy(), np.zeros(1, np.int64)
    start, c1, c2, end = _bezier_segments(points)
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


def _fmt(value, digits) -> str:
    text = f"{value:.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _decimals(extent) -> int:
    """Decimals that keep about 1e-5 of `extent` in SVG coordinates."""
    if extent <= 0:
        return 3
    return int(min(8, max(0, 5 - math.floor(math.log10(extent)))))


# ---------------------------------------------------------------------------------------------
# Raster


class _Polyline:
    """One stroke sampled for drawing: pixel coordinates and the global index of each sample."""

    def __init__(self, xy, point_ids, first_point, last_point):
        self.xy = xy  # [S, 2] supersampled pixel coordinates
        self.point_ids = point_ids  # [S] global point index each sample belongs to
        self.first_point = first_point
        self.last_point = last_point


class _Canvas:
    """A supersampled greyscale ink layer for a `_Layout`, finished into RGB images."""

    def __init__(self, layout, *, line_height_px, width_px, stroke_px, label_px):
        self.layout = layout
        self.label_px = label_px
        stroke_px = max(1.0, line_height_px / 32) if stroke_px is None else stroke_px
        self.stroke_px = _positive(stroke_px, "stroke_px")
        x0, y0, x1, y1 = layout.bounds()
        scale = line_height_px / layout.pitch  # px per stroke unit
        pad_px = math.ceil(self.stroke_px) + 2
        if width_px is not None:
            width_px = int(width_px)
            if width_px < 2 * pad_px + 1:
                raise ValueError(
                    f"`width_px` must be at least {2 * pad_px + 1}, received {width_px}"
                )
            if x1 > x0:
                scale = min(scale, (width_px - 2 * pad_px) / (x1 - x0))
        self.scale = scale
        self.width = width_px if width_px is not None else math.ceil((x1 - x0) * scale) + 2 * pad_px
        self.height = math.ceil((y1 - y0) * scale) + 2 * pad_px + label_px * len(layout.lines)
        self.origin = (x0, y0, pad_px)
        factor = _SUPERSAMPLE
        while factor > 1 and self.width * self.height * factor * factor > _MAX_SUPERSAMPLED_PIXELS:
            factor -= 1
        self.factor = factor
        self.ink = Image.new("L", (self.width * factor, self.height * factor), 0)
        self.pen = ImageDraw.Draw(self.ink)
        self.pen_width = max(1, round(self.stroke_px * factor))

    def to_pixels(self, xy, line_index):
        """Maps layout coordinates of line `line_index` to final-image pixel coordinates."""
        x0, y0, pad_px = self.origin
        out = np.empty_like(xy)
        out[:, 0] = (xy[:, 0] - x0) * self.scale + pad_px
        out[:, 1] = (xy[:, 1] - y0) * self.scale + pad_px + self.label_px * (line_index + 1)
        return out

    def polylines(self):
        """Yields a `_Polyline` per stroke, in writing order."""
        first = 0
        for line_index, line in enumerate(self.layout.lines):
            offset = first
            for points in line:
                xy, index = _sample_curve(points, _SAMPLES_PER_SEGMENT)
                pixels = self.to_pixels(xy, line_index) * self.factor
                yield _Polyline(pixels, index + offset, offset, offset + len(points) - 1)
                offset += len(points)
            first += self.layout.point_counts[line_index]

    def draw(self, polyline, until=None):
        """Draws `polyline` (its points before global index `until`); returns the pen tip px."""
        xy = polyline.xy
        if until is not None:
            xy = xy[polyline.point_ids < until]
        if len(xy) == 0:
            return None
        radius = self.pen_width / 2
        coords = [tuple(p) for p in xy.tolist()]
        if len(coords) > 1:
            self.pen.line(coords, fill=255, width=self.pen_width, joint="curve")
        for x, y in (coords[0], coords[-1]):  # round caps (and dots)
            self.pen.ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)
        return coords[-1][0] / self.factor, coords[-1][1] / self.factor

    def finish(self, color, background, labels):
        """Returns the RGB image: ink box-filtered down to the final size over the paper."""
        ink = self.ink.reduce(self.factor) if self.factor > 1 else self.ink
        alpha = np.asarray(ink, dtype=np.float32)[..., None] / 255.0  # [H, W, 1]
        ink_rgb = np.asarray(_rgb(color), np.float32)
        paper_rgb = np.asarray(_rgb(background), np.float32)
        image = paper_rgb * (1.0 - alpha) + ink_rgb * alpha
        image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
        if labels:
            image = self._write_labels(image, labels, color)
        return image

    def _write_labels(self, image, labels, color):
        pil = Image.fromarray(image)
        draw = ImageDraw.Draw(pil)
        font = ImageFont.load_default(size=max(8, round(self.label_px * 0.8)))
        _, y0, pad_px = self.origin
        for index, label in enumerate(labels):
            centre = (index * self.layout.pitch - y0) * self.scale + pad_px
            top = centre - self.layout.pitch * self.scale / 2 + self.label_px * index
            draw.text((pad_px, max(0.0, top)), label, fill=_rgb(color), font=font)
        return np.asarray(pil, dtype=np.uint8).copy()


def _draw_dot(image, centre, radius, color):
    pil = Image.fromarray(image)
    x, y = centre
    ImageDraw.Draw(pil).ellipse((x - radius, y - radius, x + radius, y + radius), fill=_rgb(color))
    return np.asarray(pil, dtype=np.uint8).copy()


def _label_px(line_height_px) -> int:
    return max(10, round(line_height_px * 0.25))


def _check_labels(labels, count):
    if labels is None:
        return None
    labels = [str(label) for label in labels]
    if len(labels) != count:
        raise ValueError(f"`labels` has {len(labels)} entries for {count} lines")
    return labels


def _rgb(color):
    if isinstance(color, str):
        from PIL import ImageColor

        return ImageColor.getrgb(color)[:3]
    values = tuple(int(c) for c in color)
    if len(values) != 3 or not all(0 <= c <= 255 for c in values):
        raise ValueError(f"a colour must be a name or an RGB triple of 0..255, received {color!r}")
    return values


def _to_pil(image) -> Image.Image:
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"an image must be uint8, received {array.dtype}")
    if array.ndim == 2:
        return Image.fromarray(array)
    if array.ndim == 3 and array.shape[2] in (3, 4):
        return Image.fromarray(array)
    raise ValueError(
        f"an image must have shape (H, W), (H, W, 3) or (H, W, 4), received {array.shape}"
    )


# Heat-map colour ramp: value -> RGB, linear between these stops (dark blue, teal, yellow).
_HEAT_STOPS = np.array([0.0, 0.35, 0.7, 1.0])
_HEAT_COLORS = np.array([[20, 18, 70], [35, 105, 140], [60, 185, 115], [250, 230, 40]], float)


def _heat_colors(values):
    """Maps values in [0, 1] to uint8 RGB along the heat ramp."""
    values = np.clip(values, 0.0, 1.0)
    channels = [np.interp(values, _HEAT_STOPS, _HEAT_COLORS[:, c]) for c in range(3)]
    return np.rint(np.stack(channels, axis=-1)).astype(np.uint8)


def _char_label(char) -> str:
    if char == " ":
        return "\u00b7"  # a middle dot stands for the space
    return char if char.isprintable() else f"U+{ord(char):04X}"


def _positive(value, name) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be a number, received {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"`{name}` must be a positive number, received {value!r}")
    return number


def _non_negative(value, name) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be a number, received {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"`{name}` must be a non-negative number, received {value!r}")
    return number
