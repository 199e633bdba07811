import io
import itertools
import os
import re

import numpy as np
import pytest
from lxml import etree
from PIL import Image

from handwriting import render

SVG = "{http://www.w3.org/2000/svg}"


def offsets(points, ends):
    """Builds a `(T, 3)` stroke array from absolute `(x, y)` points and stroke-end indices."""
    points = np.asarray(points, dtype=np.float64)
    strokes = np.zeros((len(points), 3), np.float32)
    strokes[:, :2] = np.diff(points, axis=0, prepend=np.zeros((1, 2)))
    strokes[list(ends), 2] = 1.0
    return strokes


def path_points(d):
    """Returns every `(x, y)` pair of an SVG path's data (absolute commands only)."""
    d = d.removesuffix(" l0 0")  # the relative zero move that makes a dot
    numbers = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", d)]
    return np.array(numbers).reshape(-1, 2)


def parse_svg(text):
    root = etree.fromstring(text.encode("utf-8"))
    assert root.tag == SVG + "svg"
    return root, root.findall(f".//{SVG}path")


def ink_mask(image, threshold=128):
    return image.astype(np.int32).sum(axis=2) < 3 * threshold


# A zigzag "line": three strokes of 4, 1 and 3 points.
ZIGZAG = [(0, 0), (2, 3), (4, 0), (6, 3), (9, 1), (11, 0), (13, 4), (15, 0)]
ZIGZAG_ENDS = (3, 4, 7)


def test_split_strokes_against_cumulative_sum():
    strokes = offsets(ZIGZAG, ZIGZAG_ENDS)
    pieces = render.split_strokes(strokes)
    assert [len(p) for p in pieces] == [4, 1, 3]
    np.testing.assert_allclose(np.concatenate(pieces), np.array(ZIGZAG, float), atol=1e-5)
    # Points after the last pen-up form a stroke of their own.
    strokes[7, 2] = 0.0
    assert [len(p) for p in render.split_strokes(strokes)] == [4, 1, 3]
    assert render.split_strokes(np.zeros((0, 3))) == []


def test_svg_has_one_path_per_stroke_at_the_right_places():
    strokes = offsets(ZIGZAG, ZIGZAG_ENDS)
    root, paths = parse_svg(render.to_svg(strokes))
    assert len(paths) == 3
    points = np.array(ZIGZAG, float)
    middle = np.median(points[:, 1])
    # Left-aligned: x shifted so the leftmost point is 0; y flipped about the median height.
    expected = np.stack([points[:, 0] - points[:, 0].min(), middle - points[:, 1]], axis=1)
    groups = np.split(expected, [4, 5])
    for path, group in zip(paths, groups, strict=True):
        got = path_points(path.get("d"))
        np.testing.assert_allclose(got[0], group[0], atol=1e-3)  # the M command
        np.testing.assert_allclose(got[-1], group[-1], atol=1e-3)  # the last end point
        if len(group) > 1:
            # A cubic per segment: 1 start + 3 pairs per segment; every 3rd pair is a point.
            assert len(got) == 1 + 3 * (len(group) - 1)
            np.testing.assert_allclose(got[3::3], group[1:], atol=1e-3)
    # The viewBox holds every point.
    x, y, w, h = (float(v) for v in root.get("viewBox").split())
    assert x <= expected[:, 0].min() and x + w >= expected[:, 0].max()
    assert y <= expected[:, 1].min() and y + h >= expected[:, 1].max()
    # Without `width`, one px per stroke unit.
    assert float(root.get("width")) == pytest.approx(w, abs=0.01)
    assert float(root.get("height")) == pytest.approx(h, abs=0.01)


def test_svg_single_point_stroke_is_a_dot_and_empty_input_is_valid():
    _, paths = parse_svg(render.to_svg(np.array([[3.0, 4.0, 1.0]], np.float32)))
    assert len(paths) == 1 and paths[0].get("d").endswith("l0 0")
    root, paths = parse_svg(render.to_svg([]))
    assert paths == [] and len(root.get("viewBox").split()) == 4
    root, paths = parse_svg(render.to_svg([np.zeros((0, 3))]))
    assert paths == []


def test_svg_y_axis_points_down():
    # A vertical stroke going up in the data must go up (to smaller y) in the SVG.
    up = offsets([(0, 0), (0, 5), (0, 10)], [2])
    _, paths = parse_svg(render.to_svg(up))
    got = path_points(paths[0].get("d"))
    assert got[-1][1] < got[0][1]
    assert got[0][1] - got[-1][1] == pytest.approx(10.0, abs=1e-3)


def test_svg_lines_stack_downwards_with_alignment():
    wide = offsets([(0, 0), (20, 0), (20, 4)], [2])  # 20 wide, 4 high
    narrow = offsets([(5, 0), (9, 0), (9, 4)], [2])  # 4 wide
    for align, shift in (("left", 0.0), ("center", 8.0), ("right", 16.0)):
        _, paths = parse_svg(render.to_svg([wide, narrow], align=align, line_spacing=2.0))
        first, second = (path_points(p.get("d")) for p in paths)
        assert first[0][0] == pytest.approx(0.0, abs=1e-3)
        assert second[0][0] == pytest.approx(shift, abs=1e-3), align
        # Line pitch = line_spacing * median line height = 2 * 4.
        assert second[0][1] - first[0][1] == pytest.approx(8.0, abs=1e-3)


def test_svg_width_sets_display_size_and_colour_is_applied():
    strokes = offsets(ZIGZAG, ZIGZAG_ENDS)
    root, _ = parse_svg(render.to_svg(strokes, width=300, color="#123456", stroke_width=0.75))
    _, _, w, h = (float(v) for v in root.get("viewBox").split())
    assert float(root.get("width")) == 300
    assert float(root.get("height")) == pytest.approx(300 * h / w, abs=0.01)
    group = root.find(f"{SVG}g")
    assert group.get("stroke") == "#123456" and group.get("stroke-width") == "0.75"


def test_png_decodes_with_ink_where_the_strokes_are(tmp_path):
    # An L: down the left side then along the bottom, in a 10 x 10 box, a point per unit so
    # that the spline follows the sides.
    side = np.arange(11.0)
    corner = [(0, 10 - v) for v in side] + [(v, 0) for v in side[1:]]
    strokes = offsets(corner, [len(corner) - 1])
    image = render.to_image(strokes, line_height_px=50, width_px=120, line_spacing=1.0)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[1:] == (120, 3)
    path = tmp_path / "l.png"
    render.save_png(image, path)
    assert os.listdir(tmp_path) == ["l.png"]
    decoded = np.asarray(Image.open(path).convert("RGB"))
    np.testing.assert_array_equal(decoded, image)
    ink = ink_mask(decoded)
    rows, cols = np.nonzero(ink)
    height = rows.max() - rows.min()
    # The vertical bar is on the left, the horizontal bar at the bottom (y flipped).
    left = ink[:, cols.min() : cols.min() + 3].any(axis=1).sum()
    bottom = ink[rows.max() - 2 : rows.max() + 1].any(axis=0).sum()
    assert left >= 0.9 * height and bottom >= 0.9 * (cols.max() - cols.min())
    # The top right quadrant is paper.
    middle_row, middle_col = (rows.min() + rows.max()) // 2, (cols.min() + cols.max()) // 2
    assert not ink[rows.min() : middle_row, middle_col + 3 :].any()
    # Antialiased: edge pixels take values between paper and ink.
    grey = image[..., 0]
    assert ((grey > 20) & (grey < 235)).any()
    assert to_png_roundtrip(image).shape == image.shape


def to_png_roundtrip(image):
    return np.asarray(Image.open(io.BytesIO(render.to_png_bytes(image))))


def test_png_stroke_going_up_goes_up_on_screen():
    # One stroke rising to the right: its right end must be higher (smaller row) than its left.
    strokes = offsets([(0, 0), (10, 10)], [1])
    ink = ink_mask(render.to_image(strokes, line_height_px=40))
    rows, cols = np.nonzero(ink)
    left_rows = rows[cols <= cols.min() + 2]
    right_rows = rows[cols >= cols.max() - 2]
    assert right_rows.mean() < left_rows.mean() - 10


def test_png_lines_labels_and_sizes():
    first = offsets(ZIGZAG, ZIGZAG_ENDS)
    second = offsets([(0, 0), (30, 2)], [1])  # twice as wide as the zigzag (15)
    image = render.to_image([first, second], line_height_px=40, labels=["zig", "line"])
    no_labels = render.to_image([first, second], line_height_px=40)
    # Labels add a band per line and write text in it.
    assert image.shape[0] > no_labels.shape[0] and image.shape[1] == no_labels.shape[1]
    assert ink_mask(image).sum() > ink_mask(no_labels).sum()
    # width_px narrower than the content shrinks the scale and keeps the width.
    narrow = render.to_image([first, second], line_height_px=40, width_px=60)
    assert narrow.shape[1] == 60 and narrow.shape[0] < no_labels.shape[0]
    with pytest.raises(ValueError, match="`labels` has 1 entries for 2 lines"):
        render.to_image([first, second], labels=["only one"])


def test_png_dot_and_empty_lines():
    dot = render.to_image(np.array([[0.0, 0.0, 1.0]]), line_height_px=30)
    assert ink_mask(dot).sum() >= 1
    empty = render.to_image([], line_height_px=30)
    assert empty.ndim == 3 and empty.shape[2] == 3 and not ink_mask(empty).any()
    blank_line = render.to_image([np.zeros((0, 3)), np.zeros((0, 3))], line_height_px=30)
    assert blank_line.shape[0] > empty.shape[0]


def test_gif_has_growing_frames_and_a_bounded_count(tmp_path):
    t = np.linspace(0, 4 * np.pi, 120)
    points = np.stack([t * 4, 5 * np.sin(t)], axis=1)
    strokes = offsets(points, [59, 119])
    path = tmp_path / "pen.gif"
    count = render.to_gif([strokes, strokes[:40]], path, max_frames=12, fps=20, pen_color=None)
    assert 6 <= count <= 12
    gif = Image.open(path)
    assert 6 <= gif.n_frames <= count  # a GIF writer merges identical neighbours
    inks = []
    for index in range(gif.n_frames):
        gif.seek(index)
        inks.append(ink_mask(np.asarray(gif.convert("RGB"))).sum())
    assert inks[0] > 0 and inks[-1] > 2 * inks[0]
    assert all(b >= a for a, b in itertools.pairwise(inks))
    # The last frame matches the still picture.
    final = np.asarray(gif.convert("RGB"))
    still = render.to_image([strokes, strokes[:40]])
    assert final.shape == still.shape
    assert abs(int(ink_mask(final).sum()) - int(ink_mask(still).sum())) <= 0.02 * inks[-1]
    # With a pen colour, the frames while writing show the pen tip in it; the last does not.
    render.to_gif(strokes, path, max_frames=4, pen_color=(255, 0, 0))
    gif = Image.open(path)
    gif.seek(1)
    assert np.all(np.asarray(gif.convert("RGB")) == [255, 0, 0], axis=2).any()
    gif.seek(gif.n_frames - 1)
    assert not np.all(np.asarray(gif.convert("RGB")) == [255, 0, 0], axis=2).any()


def test_gif_long_text_stays_bounded(tmp_path):
    rng = np.random.default_rng(3)
    strokes = np.zeros((5000, 3), np.float32)
    strokes[:, 0] = 1.0
    strokes[:, 1] = rng.normal(size=5000)
    strokes[99::100, 2] = 1.0
    count = render.to_gif(strokes, tmp_path / "long.gif", max_frames=20, line_height_px=24)
    assert count <= 20
    assert 10 <= Image.open(tmp_path / "long.gif").n_frames <= count


def test_attention_image_shape_and_colours():
    text = "abc d"
    steps = 37
    phi = np.zeros((steps, len(text)))
    phi[np.arange(steps), np.minimum(np.arange(steps) // 8, len(text) - 1)] = 1.0
    image = render.attention_image(phi, text, row_px=10)
    assert image.dtype == np.uint8 and image.shape[0] == len(text) * 10 + 10
    # The plot spans T steps at 3 px each (10 * 2 / 7 rounds to 3), right of the labels.
    assert image.shape[1] > steps * 3
    # The top-left cell of the plot (t = 0, char "a") is the hottest colour (yellow) and the
    # top-right cell (t = T-1, char "a") is the coldest (dark blue).
    right = image.shape[1] - 5 - 1
    left = right - steps * 3 + 1
    np.testing.assert_array_equal(image[5 + 5, left + 1], [250, 230, 40])
    np.testing.assert_array_equal(image[5 + 5, right - 1], [20, 18, 70])
    # One extra column for "one past the end" is accepted; other sizes are errors.
    extra = np.concatenate([phi, np.zeros((steps, 1))], axis=1)
    assert render.attention_image(extra, text, row_px=10).shape[0] == 6 * 10 + 10
    with pytest.raises(ValueError, match="7 character columns for a text of 5 characters"):
        render.attention_image(np.zeros((steps, 7)), text)
    # Every step on its own scale: a step whose weights are all small still shows its peak.
    faint = phi.copy()
    faint[20:] *= 1e-3
    image = render.attention_image(faint, text, row_px=10)
    row = 5 + 2 * 10 + 5  # char "c", written over steps 16..23
    np.testing.assert_array_equal(image[row, left + 3 * 21 + 1], [250, 230, 40])
    wide = render.attention_image(np.random.default_rng(0).random((5000, 3)), "xyz")
    assert wide.shape[1] <= 1024 + 200


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"line 1: strokes must have shape \(T, 3\)"):
        render.to_svg([np.zeros((2, 3)), np.zeros((4, 2))])
    bad = np.zeros((4, 3))
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="strokes: point 2 holds NaN or infinite values"):
        render.to_image(bad)
    with pytest.raises(ValueError, match="`align` must be one of"):
        render.to_svg(bad[:1], align="justify")
    with pytest.raises(ValueError, match="`line_height_px` must be a positive number"):
        render.to_image(bad[:1], line_height_px=0)
    with pytest.raises(ValueError, match=r"an image must have shape"):
        render.to_png_bytes(np.zeros((2, 2, 2), np.uint8))
