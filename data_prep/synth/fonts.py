"""Single-stroke font faces: every glyph is already a pen path.

Two families are read:

- the Hershey fonts embedded in the PyPI package `Hershey-Fonts` (public domain; coordinates on
  an integer grid, y growing down), and
- the EMS SVG fonts vendored in `data_prep/fonts/` (SIL Open Font License; see `SOURCES.md`
  there), whose `<glyph d="...">` paths are single-line outlines, y growing up.

Both are brought to one frame: x right and y up, in units of the face's x-height (the height of
a lowercase `x`), the baseline at y = 0 and the glyph's left side bearing at x = 0. A stroke is a
`(N, 2)` float64 array of vertices the pen passes through with the pen down.
"""

import dataclasses
import functools
import os
import re

import numpy as np
from lxml import etree

FONT_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fonts")

# Line pieces a Bezier segment is flattened into; the pen model resamples the polyline later.
CURVE_PIECES = 8


@dataclasses.dataclass(frozen=True)
class FaceSource:
    family: str  # "hershey" (Hershey-Fonts package) or "svg" (a file in data_prep/fonts)
    resource: str  # Hershey font name or SVG file name
    cursive: bool  # letters of a word are joined with the pen down where the glyphs meet
    borrowed: str = ""  # characters drawn by FALLBACK_FACE instead (the face draws them doubled)
    top_exit: str = ""  # letters whose bowl is closed and left from the top (see load_face)


# The faces a corpus can write with; each draws a stroke as one line, as a pen does. The
# Hershey faces draw their brackets, braces, tilde and at-sign as doubled outlines, so those
# come from the fallback face. The default corpus uses the faces of `style.FACE_WEIGHTS`;
# the others are left out of it on purpose (see `LEFT_OUT_FACES`).
FACES = {
    "hershey-cursive": FaceSource("hershey", "cursive", cursive=True, borrowed="[]{}~@"),
    "ems-allure": FaceSource("svg", "EMSAllure.svg", cursive=True, top_exit="o"),
    "ems-felix": FaceSource("svg", "EMSFelix.svg", cursive=False),
    "ems-tech": FaceSource("svg", "EMSTech.svg", cursive=False),
    "ems-readability-italic": FaceSource("svg", "EMSReadabilityItalic.svg", cursive=False),
    "hershey-sans": FaceSource("hershey", "futural", cursive=False, borrowed="[]{}~@"),
}

# Faces never in the default corpus, so never seen by a model trained on it: a corpus written
# in one (`data_prep synth --fonts hershey-sans`) stands for a new hand, the test of adapting
# a model to a writer (`benchmarks.bench_adapt`). `hershey-sans` is the Hershey simplex sans,
# an upright hand-printed style; the Hershey script simplex (`scripts`) is not used, its
# letters being those of `hershey-cursive`.
LEFT_OUT_FACES = ("hershey-sans",)

# Draws a face's borrowed characters and any printable ASCII character a face lacks; it has
# every one of them itself.
FALLBACK_FACE = "ems-readability-italic"

PRINTABLE_ASCII = "".join(chr(c) for c in range(32, 127))


class FontError(ValueError):
    """A font file that cannot be read; the message names the file, glyph and problem."""


@dataclasses.dataclass(frozen=True)
class Glyph:
    """One character's pen paths.

    Args:
        strokes: tuple of `(N, 2)` float64 arrays, x right and y up in x-heights, baseline at 0.
        advance: how far the pen moves right after the glyph, in x-heights.
    """

    strokes: tuple
    advance: float


@dataclasses.dataclass(frozen=True)
class Face:
    """A loaded face: its name, whether it joins letters, and a glyph for every printable
    ASCII character (its own or the fallback face's)."""

    name: str
    cursive: bool
    glyphs: dict  # char -> Glyph

    @functools.cached_property
    def letter_path(self) -> float:
        """Mean pen-down path length of the lowercase letters a-z, in x-heights."""
        lengths = [
            sum(float(np.hypot(*np.diff(s, axis=0).T).sum()) for s in self.glyphs[c].strokes)
            for c in "abcdefghijklmnopqrstuvwxyz"
        ]
        return float(np.mean(lengths))

    def glyph(self, char: str) -> Glyph:
        try:
            return self.glyphs[char]
        except KeyError:
            raise KeyError(f"face {self.name!r} has no glyph for {char!r}") from None


@functools.cache
def load_face(name: str) -> Face:
    """Loads (once per process) the face named in `FACES`."""
    if name not in FACES:
        raise ValueError(f"unknown face {name!r}; known faces: {sorted(FACES)}")
    source = FACES[name]
    if source.family == "hershey":
        where = f"Hershey font {source.resource!r}"
        glyphs = _hershey_glyphs(source.resource)
    else:
        where = os.path.join(FONT_DIR, source.resource)
        glyphs = svg_font_glyphs(where)
    for char in source.top_exit:
        # The face's `o` is an open bowl plus an exit tail starting inside it, which reads
        # as `a` once joined; a closed bowl left from its top is the school-cursive `o`.
        bowl = glyphs[char].strokes[0]
        glyphs[char] = Glyph((np.concatenate([bowl, bowl[:1]]),), glyphs[char].advance)
    missing = [c for c in PRINTABLE_ASCII if c != " " and not glyphs.get(c, Glyph((), 0)).strokes]
    if name == FALLBACK_FACE:
        if missing or " " not in glyphs:
            raise FontError(f"{where}: the fallback face lacks {missing or [' ']!r}")
    else:
        lender = load_face(FALLBACK_FACE).glyphs
        taken = set(missing) | set(source.borrowed)
        if " " not in glyphs:
            taken.add(" ")
        glyphs.update({c: lender[c] for c in sorted(taken)})
    return Face(name=name, cursive=source.cursive, glyphs=glyphs)


def _normalise(raw: dict, where: str) -> dict:
    """Scales raw glyphs `char -> ([strokes], advance)` (y up, baseline 0) to x-height units."""
    if "x" not in raw or not raw["x"][0]:
        raise FontError(f"{where}: no glyph for 'x', so the x-height is unknown")
    x_height = max(float(s[:, 1].max()) for s in raw["x"][0])
    if x_height <= 0:
        raise FontError(f"{where}: glyph 'x' does not rise above the baseline")
    return {
        char: Glyph(tuple(s / x_height for s in strokes), advance / x_height)
        for char, (strokes, advance) in raw.items()
    }


def _hershey_glyphs(font_name: str) -> dict:
    from HersheyFonts import HersheyFonts  # imported here: it decompresses all fonts on load

    font = HersheyFonts()
    font.load_default_font(font_name)
    baseline = float(font.render_options["base_line"])
    raw = {}
    for char, glyph in font.all_glyphs.items():
        if not (" " <= char <= "~"):
            continue
        strokes = []
        for stroke in glyph.strokes:
            xy = np.asarray(stroke, dtype=np.float64).reshape(-1, 2)
            xy[:, 0] -= glyph.left_offset
            xy[:, 1] = baseline - xy[:, 1]
            strokes.append(xy)
        raw[char] = (strokes, float(glyph.char_width))
    return _normalise(raw, f"Hershey font {font_name!r}")


_SVG_NS = "{http://www.w3.org/2000/svg}"
_PATH_TOKEN = re.compile(r"[MmLlHhVvCcSsQqTtZzAa]|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_ARG_COUNT = {"M": 2, "L": 2, "H": 1, "V": 1, "C": 6, "S": 4, "Q": 4, "T": 2, "Z": 0}


def svg_font_glyphs(path) -> dict:
    """Reads an SVG font of single-line glyphs; returns `char -> Glyph` in x-height units."""
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        root = etree.parse(path, parser).getroot()
    except (OSError, etree.XMLSyntaxError) as e:
        raise FontError(f"{path}: cannot read the SVG font: {e}") from e
    font = root.find(f".//{_SVG_NS}font")
    if font is None:
        raise FontError(f"{path}: no <font> element")
    default_advance = float(font.get("horiz-adv-x", "0"))
    raw = {}
    for element in font.iter(f"{_SVG_NS}glyph"):
        char = element.get("unicode")
        if char is None or len(char) != 1 or not (" " <= char <= "~"):
            continue
        advance = float(element.get("horiz-adv-x", default_advance))
        where = f"{path}: glyph {char!r} (line {element.sourceline})"
        raw[char] = (parse_path(element.get("d", ""), where), advance)
    return _normalise(raw, path)


def parse_path(d: str, where: str = "path") -> list:
    """Flattens an SVG path's `d` into strokes, `(N, 2)` float64 arrays, one per subpath.

    Supports M, L, H, V, C, S, Q, T, Z in absolute and relative forms; curves become
    `CURVE_PIECES` line pieces each. Arcs (A) are refused.
    """
    tokens = _PATH_TOKEN.findall(d)
    leftover = _PATH_TOKEN.sub("", d).replace(",", "").strip()
    if leftover:
        raise FontError(f"{where}: unexpected characters in path data: {leftover[:20]!r}")
    strokes, current = [], []
    pen = np.zeros(2)
    start = np.zeros(2)
    last_control = None  # reflected by S/T
    command = None
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.isalpha():
            command = token
            i += 1
            if command in "Aa":
                raise FontError(f"{where}: arc commands (A) are not supported")
            if command in "Zz":
                if current:
                    current.append(start.copy())
                pen = start.copy()
                last_control = None
                continue
        elif command is None:
            raise FontError(f"{where}: path data starts with a number, not a command")
        upper = command.upper()
        count = _ARG_COUNT[upper]
        if count == 0:
            raise FontError(f"{where}: numbers after a Z command")
        args = tokens[i : i + count]
        if len(args) < count or any(a.isalpha() for a in args):
            raise FontError(f"{where}: command {command} needs {count} numbers")
        values = np.asarray([float(a) for a in args])
        i += count
        relative = command.islower()
        if upper == "M":
            if len(current) > 1:
                strokes.append(np.asarray(current))
            pen = values + pen if relative else values
            start = pen.copy()
            current = [pen.copy()]
            command = "l" if relative else "L"  # further pairs are line-tos
            last_control = None
            continue
        if not current:
            current = [pen.copy()]
        if upper in "LHV":
            if upper == "L":
                target = values + pen if relative else values
            elif upper == "H":
                target = np.array([values[0] + pen[0] if relative else values[0], pen[1]])
            else:
                target = np.array([pen[0], values[0] + pen[1] if relative else values[0]])
            current.append(target)
            pen = target
            last_control = None
            continue
        points = values.reshape(-1, 2) + (pen if relative else 0.0)
        if upper == "C":
            controls = [pen, points[0], points[1], points[2]]
        elif upper == "S":
            first = 2 * pen - last_control if last_control is not None else pen
            controls = [pen, first, points[0], points[1]]
        elif upper == "Q":
            controls = [pen, points[0], points[1]]
        else:  # T
            control = 2 * pen - last_control if last_control is not None else pen
            controls = [pen, control, points[0]]
        current.extend(_bezier(np.asarray(controls)))
        last_control = controls[-2]
        pen = controls[-1].copy()
    if len(current) > 1:
        strokes.append(np.asarray(current))
    return strokes


def _bezier(controls: np.ndarray) -> list:
    """Points of a Bezier curve (quadratic or cubic) after its start, `CURVE_PIECES` of them."""
    t = np.linspace(0.0, 1.0, CURVE_PIECES + 1)[1:, None]
    if len(controls) == 3:
        p0, p1, p2 = controls
        curve = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
    else:
        p0, p1, p2, p3 = controls
        curve = (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3
    return list(curve)
