"""The soft window's attention phi(t, u) drawn as a heat map, characters down the side."""

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from handwriting.layout import positive

# Heat-map colour ramp: value -> RGB, linear between these stops (dark blue, teal, yellow).
_HEAT_STOPS = np.array([0.0, 0.35, 0.7, 1.0])
_HEAT_COLORS = np.array([[20, 18, 70], [35, 105, 140], [60, 185, 115], [250, 230, 40]], float)


def heat_colors(values):
    """Maps values in [0, 1] to uint8 RGB along the heat ramp."""
    values = np.clip(values, 0.0, 1.0)
    channels = [np.interp(values, _HEAT_STOPS, _HEAT_COLORS[:, c]) for c in range(3)]
    return np.rint(np.stack(channels, axis=-1)).astype(np.uint8)


def char_label(char) -> str:
    """How a character is named on the map's side: the space as a middle dot."""
    if char == " ":
        return "\u00b7"  # a middle dot stands for the space
    return char if char.isprintable() else f"U+{ord(char):04X}"


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
    row_px = int(positive(row_px, "row_px"))
    names = [char_label(c) for c in text] + (["end"] if chars > len(text) else [])
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
    heat = heat_colors(values)  # [U, W, 3]
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
