"""Tests for data_prep.synth.pen and data_prep.synth.style: trajectories, alignment, styles."""

import dataclasses

import numpy as np
import pytest

from data_prep.synth import fonts, pen, style

TEXT = "Quiz: 7 jolly tigers (x&y) fix it!"


def _writer(face, seed=4, **changes):
    writer = style.sample_writer(np.random.default_rng(seed), faces=[face])
    return dataclasses.replace(writer, **changes)


def _plain(face, **changes):
    """A writer without random deformation, so geometry can be compared exactly."""
    return _writer(
        face,
        shape_field=(),
        line_field=(),
        glyph_jitter=0.0,
        tremor=0.0,
        drift=0.0,
        rise=0.0,
        **changes,
    )


@pytest.mark.parametrize("face", sorted(fonts.FACES))
def test_alignment_is_monotone_and_covers_every_character(face):
    text = "".join(chr(c) for c in range(33, 127))
    for chunk in (text[:31], text[31:62], text[62:], TEXT):
        line = pen.write_line(chunk, _writer(face), np.random.default_rng(1))
        n = len(line.points)
        assert line.points.shape == (n, 2) and line.chars.shape == line.times.shape == (n,)
        assert np.all(np.diff(line.chars) >= 0)
        wanted = {i for i, c in enumerate(chunk) if c != " "}
        assert set(line.chars.tolist()) == wanted
        assert np.all(np.diff(line.times) > 0)
        assert line.times[0] == 0
        assert line.stroke_end[-1]


def test_points_per_character_near_tablet_density():
    counts = []
    for seed in range(6):
        writer = style.sample_writer(np.random.default_rng(seed))
        line = pen.write_line(TEXT, writer, np.random.default_rng(seed))
        counts.append(len(line.points) / len(TEXT.replace(" ", "")))
    assert 12 < np.mean(counts) < 30


def test_joined_cursive_lifts_only_between_words():
    word = "minimum"
    line = pen.write_line(word, _plain("hershey-cursive"), np.random.default_rng(0))
    # One pen-down stroke for the joined letters, then the two i-dots written after the word.
    assert line.stroke_end.sum() == 3
    first_end = int(np.flatnonzero(line.stroke_end)[0])
    assert set(line.chars[: first_end + 1].tolist()) == set(range(len(word)))
    line = pen.write_line("mum mum", _plain("hershey-cursive"), np.random.default_rng(0))
    assert line.stroke_end.sum() == 2
    print_face = pen.write_line(word, _plain("ems-tech"), np.random.default_rng(0))
    assert print_face.stroke_end.sum() > 3  # a print face lifts the pen between letters


def test_dots_and_bars_come_after_the_word_with_its_last_index():
    text = "it is"
    writer = _plain("hershey-cursive")
    line = pen.write_line(text, writer, np.random.default_rng(0))
    ends = np.flatnonzero(line.stroke_end)
    starts = np.r_[0, ends[:-1] + 1]
    strokes = [
        (line.points[s : e + 1], line.chars[s : e + 1]) for s, e in zip(starts, ends, strict=True)
    ]
    x_height = writer.x_height
    dots = [
        i
        for i, (xy, _) in enumerate(strokes)
        if xy[:, 1].min() > 1.2 * x_height and np.ptp(xy[:, 0]) < 0.3 * x_height
    ]
    assert len(dots) == 2  # one dot per i
    for i in dots:
        word_end = 1 if strokes[i][0][:, 0].mean() < strokes[-1][0][:, 0].min() else 4
        assert set(strokes[i][1].tolist()) == {word_end}
    # The t-bar: a flat stroke labelled 't', after the dot of "it".
    flat = [i for i, (xy, _) in enumerate(strokes) if np.ptp(xy[:, 1]) < 0.3 * np.ptp(xy[:, 0])]
    assert len(flat) == 1 and set(strokes[flat[0]][1].tolist()) == {1}
    assert flat[0] > dots[0]


def test_slant_leans_upright_strokes_by_its_value():
    def lean(slant):
        line = pen.write_line("l l l l", _plain("ems-tech", slant=slant), np.random.default_rng(2))
        bounds = np.flatnonzero(line.stroke_end) + 1
        slopes = [np.polyfit(s[:, 1], s[:, 0], 1)[0] for s in np.split(line.points, bounds[:-1])]
        return np.mean(slopes)

    upright, leaning = lean(0.0), lean(0.3)
    assert leaning - upright == pytest.approx(0.3, abs=0.03)
    assert lean(-0.2) - upright == pytest.approx(-0.2, abs=0.03)


def test_size_scales_the_line_and_keeps_the_timing():
    small = _writer("ems-allure", x_height=50.0)
    large = dataclasses.replace(small, x_height=125.0)
    a = pen.write_line(TEXT, small, np.random.default_rng(9))
    b = pen.write_line(TEXT, large, np.random.default_rng(9))
    np.testing.assert_allclose(b.points, 2.5 * a.points)
    np.testing.assert_array_equal(a.times, b.times)
    np.testing.assert_array_equal(a.chars, b.chars)


def test_width_and_spacing_widen_the_line():
    base = _plain("ems-felix")
    narrow = pen.write_line(TEXT, base, np.random.default_rng(3)).points
    for change in ({"width": base.width * 1.3}, {"letter_spacing": base.letter_spacing + 0.2}):
        wide = pen.write_line(TEXT, dataclasses.replace(base, **change), np.random.default_rng(3))
        assert np.ptp(wide.points[:, 0]) > 1.1 * np.ptp(narrow[:, 0])
        assert np.ptp(wide.points[:, 1]) == pytest.approx(np.ptp(narrow[:, 1]), rel=0.05)


def test_faster_writer_gives_fewer_points():
    slow = _writer("hershey-cursive", speed=3.0)
    fast = dataclasses.replace(slow, speed=6.0)
    n_slow = len(pen.write_line(TEXT, slow, np.random.default_rng(5)).points)
    n_fast = len(pen.write_line(TEXT, fast, np.random.default_rng(5)).points)
    assert 1.6 < n_slow / n_fast < 2.4


def test_points_are_denser_in_curves_than_on_straight_runs():
    line = pen.write_line(
        "l o", _plain("ems-readability-italic", slant=0.0), np.random.default_rng(0)
    )
    step = np.hypot(*np.diff(line.points, axis=0).T)
    same = ~line.stroke_end[:-1]
    on_l = same & (line.chars[1:] == 0)
    on_o = same & (line.chars[1:] == 2)
    assert np.median(step[on_o]) < 0.8 * np.median(step[on_l])


def test_lines_of_a_writer_vary_less_than_writers():
    def slants(writer_seed):
        writer = style.sample_writer(np.random.default_rng(writer_seed))
        rng = np.random.default_rng(100 + writer_seed)
        return [style.line_style(writer, rng).slant for _ in range(20)], writer

    within, between = [], []
    for seed in range(12):
        values, writer = slants(seed)
        within.append(np.std(values))
        between.append(writer.slant)
    assert np.mean(within) < 0.5 * np.std(between)


def test_line_style_keeps_face_and_changes_little():
    writer = style.sample_writer(np.random.default_rng(8))
    line = style.line_style(writer, np.random.default_rng(0))
    assert line.face == writer.face and line.shape_field == writer.shape_field
    assert line.x_height == pytest.approx(writer.x_height, rel=0.15)


def test_displace_matches_the_plane_wave_sum():
    field = ((1.0, 2.0, 0.5, 0.1, -0.2), (0.3, -1.0, 1.0, 0.05, 0.04))
    points = np.array([[0.0, 0.0], [1.5, -0.5], [2.0, 3.0]])
    want = points.copy()
    for kx, ky, phase, ax, ay in field:
        wave = np.sin(kx * points[:, 0] + ky * points[:, 1] + phase)
        want += np.stack([ax * wave, ay * wave], axis=1)
    np.testing.assert_allclose(style.displace(points, field), want)


def test_bad_text_and_faces_are_refused():
    writer = _writer("ems-tech")
    with pytest.raises(ValueError, match="without a visible character"):
        pen.write_line("   ", writer, np.random.default_rng(0))
    with pytest.raises(ValueError, match="outside printable ASCII: \\['é'\\]"):
        pen.write_line("café", writer, np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown faces \\['comic'\\]"):
        style.sample_writer(np.random.default_rng(0), faces=["comic"])
