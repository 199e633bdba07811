"""Tests for data_prep.synth.fonts: glyph loading of both families and SVG path parsing."""

import os

import numpy as np
import pytest

from data_prep.synth import fonts

PRINTABLE = [chr(c) for c in range(33, 127)]


@pytest.mark.parametrize("name", sorted(fonts.FACES))
def test_every_printable_character_is_drawable(name):
    face = fonts.load_face(name)
    assert face.glyph(" ").strokes == ()
    assert face.glyph(" ").advance > 0
    for char in PRINTABLE:
        glyph = face.glyph(char)
        assert glyph.strokes, f"{name} draws nothing for {char!r}"
        for stroke in glyph.strokes:
            assert stroke.ndim == 2 and stroke.shape[1] == 2 and stroke.shape[0] >= 2
            assert np.isfinite(stroke).all()
            # Glyphs sit in a sane box around the baseline, in x-heights.
            assert -2.0 < stroke[:, 1].min() and stroke[:, 1].max() < 3.5, (name, char)
        assert glyph.advance > 0


@pytest.mark.parametrize("name", sorted(fonts.FACES))
def test_x_height_is_the_unit(name):
    face = fonts.load_face(name)
    top = max(s[:, 1].max() for s in face.glyph("x").strokes)
    assert top == pytest.approx(1.0)
    assert 1.1 < max(s[:, 1].max() for s in face.glyph("H").strokes) < 2.6
    assert min(s[:, 1].min() for s in face.glyph("g").strokes) < -0.3  # a descender


def test_borrowed_and_fallback_glyphs_come_from_the_fallback_face():
    hershey = fonts.load_face("hershey-cursive")
    fallback = fonts.load_face(fonts.FALLBACK_FACE)
    for char in fonts.FACES["hershey-cursive"].borrowed:
        assert hershey.glyph(char) is fallback.glyph(char)
    assert hershey.glyph("a") is not fallback.glyph("a")


def test_hershey_glyph_is_flipped_and_shifted():
    # The Hershey 'l' of the cursive face: y grows down in the data, up here.
    from HersheyFonts import HersheyFonts

    font = HersheyFonts()
    font.load_default_font("cursive")
    raw = font.all_glyphs["l"]
    base = font.render_options["base_line"]
    x_height = base - min(y for s in font.all_glyphs["x"].strokes for _, y in s)
    face = fonts.load_face("hershey-cursive")
    got = face.glyph("l").strokes[0]
    want = np.array([((x - raw.left_offset), (base - y)) for x, y in raw.strokes[0]]) / x_height
    np.testing.assert_allclose(got, want)
    assert face.glyph("l").advance == pytest.approx(raw.char_width / x_height)


def test_parse_path_lines_and_relative_commands():
    strokes = fonts.parse_path("M 1 2 L 3 4 5 6 m 1 1 l 2 0 h 1 v -2 z M 0 0 H 4 V 3")
    assert len(strokes) == 3
    np.testing.assert_allclose(strokes[0], [[1, 2], [3, 4], [5, 6]])
    np.testing.assert_allclose(strokes[1], [[6, 7], [8, 7], [9, 7], [9, 5], [6, 7]])
    np.testing.assert_allclose(strokes[2], [[0, 0], [4, 0], [4, 3]])


def test_parse_path_curves_against_bernstein_form():
    strokes = fonts.parse_path("M 0 0 C 0 3 4 3 4 0 Q 6 -2 8 0 T 12 0")
    t = np.linspace(0, 1, fonts.CURVE_PIECES + 1)[1:]
    cubic = np.stack(
        [3 * (1 - t) * t**2 * 4 + t**3 * 4, 3 * (1 - t) ** 2 * t * 3 + 3 * (1 - t) * t**2 * 3],
        axis=1,
    )
    quad = np.stack([4 + 2 * (1 - t) * t * 2 + t**2 * 4, 2 * (1 - t) * t * -2.0], axis=1)
    # T reflects the last control point (6, -2) about (8, 0): control (10, 2).
    smooth = np.stack([8 + 2 * (1 - t) * t * 2 + t**2 * 4, 2 * (1 - t) * t * 2.0], axis=1)
    want = np.concatenate([[[0, 0]], cubic, quad, smooth])
    np.testing.assert_allclose(strokes[0], want, atol=1e-12)


def test_parse_path_exponent_numbers():
    strokes = fonts.parse_path("M 2.84e-14 1E1 L -.5 +3")
    np.testing.assert_allclose(strokes[0], [[2.84e-14, 10.0], [-0.5, 3.0]])


@pytest.mark.parametrize(
    "d, message",
    [
        ("M 0 0 A 1 1 0 0 1 2 2", "arc commands (A) are not supported"),
        ("3 4 L 1 1", "path data starts with a number"),
        ("M 0 0 L 1", "command L needs 2 numbers"),
        ("M 0 0 L 1 2 % 3", "unexpected characters in path data: '%'"),
    ],
)
def test_parse_path_errors_name_the_place(d, message):
    with pytest.raises(fonts.FontError, match="glyph 'q'") as info:
        fonts.parse_path(d, "glyph 'q'")
    assert message in str(info.value)


def test_svg_font_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.svg"
    path.write_text('<svg xmlns="http://www.w3.org/2000/svg"><defs></defs></svg>')
    with pytest.raises(fonts.FontError, match=f"{path}: no <font> element"):
        fonts.svg_font_glyphs(str(path))
    path.write_text(
        '<svg xmlns="http://www.w3.org/2000/svg"><defs><font horiz-adv-x="500">'
        '<glyph unicode="a" d="M 0 0 L 1 1"/></font></defs></svg>'
    )
    with pytest.raises(fonts.FontError, match="no glyph for 'x'"):
        fonts.svg_font_glyphs(str(path))
    path.write_text("<svg")
    with pytest.raises(fonts.FontError, match="cannot read the SVG font"):
        fonts.svg_font_glyphs(str(path))


def test_vendored_fonts_have_licence_and_sources():
    names = sorted(os.listdir(fonts.FONT_DIR))
    used = sorted(s.resource for s in fonts.FACES.values() if s.family == "svg")
    assert [n for n in names if n.endswith(".svg")] == used
    assert "OFL.txt" in names and "SOURCES.md" in names
    sources = open(os.path.join(fonts.FONT_DIR, "SOURCES.md"), encoding="utf-8").read()
    for name in used:
        assert name in sources


def test_unknown_face_is_refused():
    with pytest.raises(ValueError, match="unknown face 'comic'; known faces: "):
        fonts.load_face("comic")
