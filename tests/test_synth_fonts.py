"""Tests for data_prep.synth.fonts: glyph loading of both families and SVG path parsing."""

import argparse
import itertools
import os

import numpy as np
import pytest

from data_prep.synth import cli, fonts, style

PRINTABLE = [chr(c) for c in range(33, 127)]
LOWERCASE = "abcdefghijklmnopqrstuvwxyz"
# The faces of `make data`'s corpus, in the order its writers draw them from.
TRAINING_FACES = [
    "ems-allure",
    "hershey-cursive",
    "ems-felix",
    "ems-tech",
    "ems-readability-italic",
]


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


@pytest.mark.parametrize("name", ["hershey-cursive", "hershey-sans"])
def test_borrowed_and_fallback_glyphs_come_from_the_fallback_face(name):
    hershey = fonts.load_face(name)
    fallback = fonts.load_face(fonts.FALLBACK_FACE)
    assert fonts.FACES[name].borrowed
    for char in fonts.FACES[name].borrowed:
        assert hershey.glyph(char) is fallback.glyph(char)
    assert hershey.glyph("a") is not fallback.glyph("a")


def _dense(stroke, step):
    """The stroke's polyline sampled every `step` along its length, `(n, 2)`."""
    pieces = [
        a + (b - a) * np.linspace(0.0, 1.0, max(1, int(np.hypot(*(b - a)) / step)), False)[:, None]
        for a, b in itertools.pairwise(stroke)
    ]
    return np.concatenate([*pieces, stroke[-1:]])


def _doubled(strokes, gap) -> bool:
    """Whether a stroke runs within `gap` of another at least half its length over most (60%)
    of its own length: a line drawn twice, side by side, to look bold."""
    lengths = [float(np.hypot(*np.diff(s, axis=0).T).sum()) for s in strokes]
    points = [_dense(s, gap / 10) for s in strokes]
    for i, p in enumerate(points):
        for j, q in enumerate(points):
            if i != j and lengths[i] >= 0.5 * lengths[j]:
                near = np.hypot(*(p[:, None] - q[None]).transpose(2, 0, 1)).min(axis=1) < gap
                if near.mean() > 0.6:
                    return True
    return False


@pytest.mark.parametrize("name", ["hershey-cursive", "hershey-sans"])
def test_hershey_faces_keep_only_single_line_glyphs(name):
    from HersheyFonts import HersheyFonts

    font = HersheyFonts()
    font.load_default_font(fonts.FACES[name].resource)
    kept = [c for c in PRINTABLE if c not in fonts.FACES[name].borrowed]
    # A doubled line lies one unit of Hershey's grid beside the first.
    doubled = [
        c
        for c in kept
        if _doubled([np.asarray(s, np.float64) for s in font.all_glyphs[c].strokes], gap=1.2)
    ]
    assert doubled == []
    font.load_default_font("timesi")  # the Hershey medium italic: drawn with doubled lines
    assert _doubled([np.asarray(s, np.float64) for s in font.all_glyphs["l"].strokes], gap=1.2)


def test_default_corpus_faces_are_unchanged_and_left_out_faces_stay_out():
    # `make data`'s corpus is written in these faces; a left-out face must not change it.
    assert list(style.FACE_WEIGHTS) == TRAINING_FACES
    assert set(fonts.LEFT_OUT_FACES).isdisjoint(style.FACE_WEIGHTS)
    assert set(fonts.FACES) == set(style.FACE_WEIGHTS) | set(fonts.LEFT_OUT_FACES)
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert parser.parse_args(["out"]).fonts == TRAINING_FACES
    assert parser.parse_args(["out", "--fonts", "hershey-sans"]).fonts == ["hershey-sans"]


def _glyph_distance(a, b) -> float:
    """Mean distance, in x-heights, from each glyph's pen path to the other's nearest point,
    both centred on their mean point."""
    p, q = (np.concatenate([_dense(s, 0.03) for s in g.strokes]) for g in (a, b))
    p, q = p - p.mean(axis=0), q - q.mean(axis=0)
    distances = np.hypot(*(p[:, None] - q[None]).transpose(2, 0, 1))
    return 0.5 * float(distances.min(axis=1).mean() + distances.min(axis=0).mean())


@pytest.mark.parametrize("name", fonts.LEFT_OUT_FACES)
def test_left_out_faces_differ_from_every_training_face(name):
    # A new hand, not a training face under another name (Hershey's script simplex draws the
    # letters of `hershey-cursive`: distance 0). The training faces are 0.08 to 0.17 apart;
    # `hershey-sans` is 0.06 from `ems-readability-italic`, its nearest.
    left_out = fonts.load_face(name)
    for training in TRAINING_FACES:
        face = fonts.load_face(training)
        distance = np.mean([_glyph_distance(left_out.glyph(c), face.glyph(c)) for c in LOWERCASE])
        assert distance > 0.05, (name, training, distance)


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
