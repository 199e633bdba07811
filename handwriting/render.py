"""Strokes to pictures: SVG, PNG and animated GIF (the window's map: `attention_map`).

A line of handwriting is a stroke array `[T, 3]` of `(dx, dy, eos)`: pen offsets from the
previous point (the first from the origin), y growing upwards, `eos = 1` on the last point of
each stroke. Every function here takes one such array or a list of them (one per line); the
lines are stacked top to bottom as a paragraph. Screens grow y downwards, so y is flipped on the
way out: a stroke that goes up in the data goes up on the screen.

Layout (`handwriting.layout`, shared by every output): each line's leftmost point at the
paragraph's left edge (or centred / right-aligned), the median height of its points (roughly
the middle of its lower-case letters) on the line's centre, centres `line_spacing` median line
heights apart. Distances stay in the strokes' own units; SVG keeps them in its viewBox, raster
outputs scale them so that one line pitch is `line_height_px` pixels. Strokes are drawn as
Catmull-Rom splines (`handwriting.curves`); one-point strokes are dots.
"""

import io
import math

import numpy as np
from lxml import etree
from PIL import Image, ImageDraw, ImageFont

from handwriting import curves, files
from handwriting import layout as layout_lib
from handwriting.attention_map import attention_image  # noqa: F401  (part of this API)
from handwriting.layout import ALIGNMENTS, split_strokes  # noqa: F401  (part of this API)

SVG_NAMESPACE = "http://www.w3.org/2000/svg"
# Bezier samples per segment when a curve is rasterised; enough for smooth curves at a few
# pixels per pen step, cheap for long texts.
_SAMPLES_PER_SEGMENT = 4
# Supersampling factor for antialiased raster lines (drawn large, then box-filtered down).
_SUPERSAMPLE = 4
# Above this many supersampled pixels the factor is lowered so that huge pages stay in memory.
_MAX_SUPERSAMPLED_PIXELS = 64_000_000


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
    layout = layout_lib.Layout(strokes_list, line_spacing=line_spacing, align=align)
    pen = (
        layout.unit * 0.025
        if stroke_width is None
        else layout_lib.positive(stroke_width, "stroke_width")
    )
    pad = layout.unit * 0.1 if margin is None else layout_lib.non_negative(margin, "margin")
    pad = max(pad, pen)
    x0, y0, x1, y1 = layout.bounds()
    box_w, box_h = x1 - x0 + 2 * pad, y1 - y0 + 2 * pad
    if width is None:
        shown_w, shown_h = box_w, box_h
    else:
        shown_w = layout_lib.positive(width, "width")
        shown_h = shown_w * box_h / box_w
    digits = curves.decimals(max(box_w, box_h))
    svg = etree.Element(
        f"{{{SVG_NAMESPACE}}}svg",
        nsmap={None: SVG_NAMESPACE},
        attrib={
            "version": "1.1",
            "width": curves.fmt(shown_w, 2),
            "height": curves.fmt(shown_h, 2),
            "viewBox": " ".join(curves.fmt(v, digits) for v in (x0 - pad, y0 - pad, box_w, box_h)),
        },
    )
    group = etree.SubElement(
        svg,
        f"{{{SVG_NAMESPACE}}}g",
        attrib={
            "fill": "none",
            "stroke": str(color),
            "stroke-width": curves.fmt(pen, digits),
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
                    "d": curves.path_data(points, digits),
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
    layout = layout_lib.Layout(strokes_list, line_spacing=line_spacing, align=align)
    line_height_px = int(layout_lib.positive(line_height_px, "line_height_px"))
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
    fps = layout_lib.positive(fps, "fps")
    max_frames = int(max_frames)
    if max_frames < 2:
        raise ValueError(f"`max_frames` must be at least 2, received {max_frames}")
    hold_s = layout_lib.non_negative(hold_s, "hold_s")
    layout = layout_lib.Layout(strokes_list, line_spacing=line_spacing, align=align)
    canvas = _Canvas(
        layout,
        line_height_px=int(layout_lib.positive(line_height_px, "line_height_px")),
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
    """A supersampled greyscale ink layer for a `Layout`, finished into RGB images."""

    def __init__(self, layout, *, line_height_px, width_px, stroke_px, label_px):
        self.layout = layout
        self.label_px = label_px
        stroke_px = max(1.0, line_height_px / 32) if stroke_px is None else stroke_px
        self.stroke_px = layout_lib.positive(stroke_px, "stroke_px")
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
                xy, index = curves.sample_curve(points, _SAMPLES_PER_SEGMENT)
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
