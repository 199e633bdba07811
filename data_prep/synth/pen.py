"""Glyph paths to pen trajectories: one text line written by one `Style`.

The pen writes word by word. Within a word of a cursive face consecutive letters are joined
with the pen down where the glyphs meet; between words, and between the letters of a print
face, the pen is lifted. i- and j-dots, t-bars and the crossing stroke of a cursive x are
written after the rest of their word, as people do. The path is smoothed (corner cutting),
displaced by the writer's smooth deformation fields, slanted and scaled, and then sampled in
time like a pen tablet: every `SAMPLE_MS` milliseconds while the pen is down, with a speed
that drops in curves and corners (the two-thirds power law of handwriting) and at the start
and end of each stroke, so points lie denser there. A small tremor is added last.

Every point carries the index in the text of the character being written. Joins belong to
the next letter; delayed strokes carry the index of their word's last character (where the
writer is in the text then). So the indices never decrease and every non-space character
has at least one point.

References:
    Lacquaniti, Terzuolo, Viviani (1983), "The law relating the kinematic and figural aspects
    of drawing movements", Acta Psychologica 54: speed = K * curvature^(-1/3).
"""

import dataclasses

import numpy as np

from data_prep.synth import fonts
from data_prep.synth.style import Style, displace

SAMPLE_MS = 10  # tablet sampling interval while the pen is down, milliseconds
JOIN_DISTANCE = 1.6  # longest pen-down join between letters, x-heights
INNER_JOIN_DISTANCE = 0.6  # longest pen-down join between strokes of one cursive letter
JOIN_HEIGHT = 1.3  # joins start and end below this height, x-heights (not from ascenders)
SMOOTHING_PASSES = 2  # corner-cutting passes over each stroke's polyline
STRAIGHT_RADIUS = 1.5  # curves tighter than this radius (x-heights) slow the pen
MIN_SPEED = 0.2  # slowest pen speed, relative to the style's straight-run speed
RAMP_LENGTH = 0.3  # path length over which the pen speeds up or slows down, x-heights
LIFT_MS = 60  # time the pen spends lifting and landing between strokes
TREMOR_HZ = (4.0, 9.0)  # frequency range of the tremor's waves
DELAYED_DOTS = "ij"  # characters whose dot is written after the word
DELAYED_BARS = "t"  # characters whose bar is written after the word
DELAYED_CROSSINGS = "x"  # cursive characters whose crossing stroke comes after the word


@dataclasses.dataclass(frozen=True)
class PenLine:
    """One written line.

    Attributes:
        points: `(N, 2)` float64 whiteboard units, x right and y up, the line's first glyph
            at the origin on the baseline.
        stroke_end: `(N,)` bool, True on the last point of each stroke.
        times: `(N,)` int64 milliseconds since the first point, strictly increasing.
        chars: `(N,)` int64 index in the text of the character being written, non-decreasing.
    """

    points: np.ndarray
    stroke_end: np.ndarray
    times: np.ndarray
    chars: np.ndarray


def write_line(text: str, style: Style, rng) -> PenLine:
    """Writes `text` with `style`; `rng` (a `numpy.random.Generator`) decides every variation."""
    if not text.strip():
        raise ValueError("cannot write a line without a visible character")
    bad = [c for c in text if not (" " <= c <= "~")]
    if bad:
        raise ValueError(f"text {text!r} holds characters outside printable ASCII: {bad!r}")
    face = fonts.load_face(style.face)
    strokes = _layout(text, face, style, rng)
    points, labels, stroke_ids = _smooth(strokes)
    points = _place_on_line(points, style, rng)
    speed = style.speed * face.letter_path  # x-heights per second on straight runs
    times, samples, sample_labels, ends = _sample(points, labels, stroke_ids, speed)
    samples = samples + _tremor(times, style, rng)
    return PenLine(
        points=samples * style.x_height,
        stroke_end=ends,
        times=times,
        chars=sample_labels,
    )


def _split_delayed(char: str, glyph: fonts.Glyph, cursive: bool) -> tuple:
    """Returns the glyph's strokes as `(written with the word, written after it)`."""
    strokes = list(glyph.strokes)
    delayed = [False] * len(strokes)
    if char in DELAYED_DOTS:
        delayed = [float(s[:, 1].min()) > 1.0 for s in strokes]
    elif char in DELAYED_BARS and len(strokes) > 1:
        for i, s in enumerate(strokes):
            span = np.ptp(s, axis=0)
            delayed[i] = bool(span[0] >= 0.25 and span[1] < 0.3 * span[0])
    elif char in DELAYED_CROSSINGS and cursive and len(strokes) > 1:
        rightmost = [max(s[0, 0], s[-1, 0]) for s in strokes]
        exit_stroke = int(np.argmax(rightmost))
        delayed = [i != exit_stroke for i in range(len(strokes))]
    if all(delayed):
        delayed[0] = False
    main = [s for s, d in zip(strokes, delayed, strict=True) if not d]
    later = [s for s, d in zip(strokes, delayed, strict=True) if d]
    return main, later


def _layout(text: str, face: fonts.Face, style: Style, rng) -> list:
    """Places the glyphs; returns strokes `[(vertices (n, 2), labels (n,))]` in writing order.

    Coordinates are x-heights of the line before slant and baseline drift.
    """
    source = fonts.FACES[face.name]
    orient = source.family == "svg"  # SVG fonts store some paths backwards
    strokes = []
    cursor = 0.0
    word_delayed = []  # strokes held back until the current word ends
    pen = None  # where the pen is inside the current word (None between words)
    previous_char = " "
    for index, char in enumerate(text):
        if char == " ":
            strokes.extend((s, np.full(len(s), index - 1)) for s in word_delayed)
            word_delayed, pen = [], None
            cursor += style.word_spacing
            previous_char = char
            continue
        glyph = face.glyph(char)
        scale = 1.0 + rng.normal(0.0, style.glyph_jitter)
        shift = rng.normal(0.0, style.glyph_jitter, 2) * (0.5, 1.0)
        origin = np.array([cursor + shift[0], shift[1]])
        main, later = _split_delayed(char, glyph, face.cursive)

        def place(stroke, scale=scale, origin=origin):
            local = displace(stroke, style.shape_field)
            return local * (style.width * scale, scale) + origin

        for k, stroke in enumerate(main):
            xy = place(stroke)
            # Joins come from the previous letter's exit or this letter's previous stroke.
            may_join = face.cursive and char.isalpha() and pen is not None
            if k == 0:
                may_join = may_join and previous_char.islower() and pen[1] < JOIN_HEIGHT
            follows = pen is not None and (k > 0 or may_join)
            reference = pen if follows else np.array([cursor, 0.5])
            if (
                orient
                and char not in source.top_exit
                and (np.sum((xy[-1] - reference) ** 2) < np.sum((xy[0] - reference) ** 2))
            ):
                xy = xy[::-1]
            gap = np.hypot(*(xy[0] - pen)) if pen is not None else np.inf
            if k == 0:
                joins = may_join and xy[0, 1] < JOIN_HEIGHT and gap < JOIN_DISTANCE
            else:
                joins = may_join and gap < INNER_JOIN_DISTANCE
            labels = np.full(len(xy), index)
            if joins:
                last_xy, last_labels = strokes[-1]
                strokes[-1] = (np.concatenate([last_xy, xy]), np.concatenate([last_labels, labels]))
            else:
                strokes.append((xy, labels))
            pen = xy[-1]
        for stroke in later:
            xy = place(stroke)
            if xy[-1, 0] < xy[0, 0]:
                xy = xy[::-1]  # bars and crossings are drawn left to right
            word_delayed.append(xy)
        cursor += glyph.advance * style.width * scale + style.letter_spacing
        previous_char = char
    last = len(text.rstrip(" ")) - 1
    strokes.extend((s, np.full(len(s), last)) for s in word_delayed)
    return strokes


def _smooth(strokes: list) -> tuple:
    """Corner-cuts every stroke (Chaikin), keeping its ends; labels follow their segments.

    Returns `points (N, 2)`, `labels (N,)` and `stroke_ids (N,)`. A segment's points take the
    label of its end vertex, so a join belongs to the letter it leads into.
    """
    points = np.concatenate([xy for xy, _ in strokes])
    labels = np.concatenate([lab for _, lab in strokes])
    stroke_ids = np.repeat(np.arange(len(strokes)), [len(xy) for xy, _ in strokes])
    for _ in range(SMOOTHING_PASSES):
        inner = stroke_ids[1:] == stroke_ids[:-1]  # segments inside one stroke
        first = np.r_[True, ~inner]  # first vertex of each stroke
        last = np.r_[~inner, True]
        ends = first | last
        a, b = points[:-1][inner], points[1:][inner]
        seg = np.flatnonzero(inner)
        keys = np.concatenate([3 * np.flatnonzero(ends), 3 * seg + 1, 3 * seg + 2])
        new_points = np.concatenate([points[ends], 0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b])
        seg_labels = labels[1:][inner]
        new_labels = np.concatenate([labels[ends], seg_labels, seg_labels])
        seg_ids = stroke_ids[:-1][inner]
        new_ids = np.concatenate([stroke_ids[ends], seg_ids, seg_ids])
        order = np.argsort(keys, kind="stable")
        points, labels, stroke_ids = new_points[order], new_labels[order], new_ids[order]
    return points, labels, stroke_ids


def _place_on_line(points: np.ndarray, style: Style, rng) -> np.ndarray:
    """Line-level geometry: the line's field, baseline drift and rise, then slant."""
    points = displace(points, style.line_field)
    phase = rng.uniform(0.0, 2.0 * np.pi)
    x = points[:, 0]
    y = points[:, 1]
    y = y + style.drift * np.sin(2.0 * np.pi * x / style.drift_wavelength + phase) + style.rise * x
    return np.stack([x + style.slant * y, y], axis=1)


def _sample(points, labels, stroke_ids, top_speed: float) -> tuple:
    """Samples the pen every `SAMPLE_MS` while it is down.

    Returns `times (M,)` int64 ms, `samples (M, 2)` x-heights, `labels (M,)`, `ends (M,)`.
    """
    n = len(points)
    inner = stroke_ids[1:] == stroke_ids[:-1]
    delta = np.diff(points, axis=0)
    length = np.hypot(delta[:, 0], delta[:, 1])
    length = np.where(inner, length, 0.0)
    # Turning angle at each vertex over the mean length of its two segments: curvature.
    heading = np.arctan2(delta[:, 1], delta[:, 0])
    turn = np.abs((np.diff(heading) + np.pi) % (2.0 * np.pi) - np.pi)
    turn = np.where(inner[1:] & inner[:-1], turn, 0.0)
    around = 0.5 * (length[1:] + length[:-1])
    curvature = np.r_[0.0, turn / np.maximum(around, 1e-3), 0.0]
    relative = np.minimum(1.0, (curvature * STRAIGHT_RADIUS + 1e-9) ** (-1.0 / 3.0))
    # Speeding up after the pen lands and slowing down before it lifts.
    starts = np.r_[0, np.flatnonzero(~inner) + 1]
    walked = np.r_[0.0, np.cumsum(length)]
    from_start = walked - walked[starts][stroke_ids]
    stroke_length = np.bincount(stroke_ids, weights=np.r_[length, 0.0])
    to_end = stroke_length[stroke_ids] - from_start
    ramp = np.sqrt(np.clip(np.minimum(from_start, to_end) / RAMP_LENGTH, 0.0, 1.0))
    speed = top_speed * np.maximum(MIN_SPEED, relative * (0.3 + 0.7 * ramp))
    duration = np.maximum(length / (0.5 * (speed[1:] + speed[:-1])), 1e-6)  # seconds
    duration = np.where(inner, duration, 0.0)
    duration = _stretch_short_runs(duration, labels[1:], stroke_ids[1:], inner)
    # A stroke starts on a whole millisecond, a lift after the previous one has ended.
    stroke_time = np.bincount(stroke_ids[:-1], duration, len(starts))
    gap = np.hypot(*(points[starts[1:]] - points[starts[1:] - 1]).T)
    lift_ms = LIFT_MS + np.ceil(1000.0 * gap / (1.5 * top_speed))
    start_ms = np.r_[0, np.cumsum(np.ceil(1000.0 * stroke_time[:-1]) + lift_ms)].astype(np.int64)
    vertex_time = 1000.0 * np.r_[0.0, np.cumsum(duration)]
    vertex_time = vertex_time - vertex_time[starts][stroke_ids] + start_ms[stroke_ids]
    end_time = np.append(vertex_time[starts[1:] - 1], vertex_time[-1])
    pieces_t, pieces_end = [], []
    for s, begin in enumerate(start_ms):
        stop = int(np.floor(end_time[s]))
        grid = np.arange(begin, stop + 1, SAMPLE_MS, dtype=np.int64)
        if grid[-1] < stop:
            grid = np.append(grid, stop)
        pieces_t.append(grid)
        flags = np.zeros(len(grid), bool)
        flags[-1] = True
        pieces_end.append(flags)
    times = np.concatenate(pieces_t)
    ends = np.concatenate(pieces_end)
    # A sample at time t lies on the segment ending at or after t; it takes that end's label.
    after = np.searchsorted(vertex_time, times, side="left")
    after = np.clip(after, 0, n - 1)
    sample_labels = labels[after]
    x = np.interp(times, vertex_time, points[:, 0])
    y = np.interp(times, vertex_time, points[:, 1])
    return times, np.stack([x, y], axis=1), sample_labels, ends


def _stretch_short_runs(duration, segment_labels, segment_strokes, inner):
    """Slows the pen so that each label's stretch of a stroke lasts over a sample interval.

    A segment belongs to the label of its end vertex; a run is a maximal chain of segments
    of one stroke with one label. A run of more than `SAMPLE_MS` always holds a sample, so
    every character gets a point.
    """
    index = np.flatnonzero(inner)
    if len(index) == 0:
        return duration
    key_label, key_stroke = segment_labels[index], segment_strokes[index]
    new_run = np.r_[True, (key_label[1:] != key_label[:-1]) | (key_stroke[1:] != key_stroke[:-1])]
    run = np.cumsum(new_run) - 1
    total = np.bincount(run, duration[index])
    count = np.bincount(run)
    need = 1.5e-3 * SAMPLE_MS
    deficit = np.maximum(need - total, 0.0) / count
    out = duration.copy()
    out[index] += deficit[run]
    return out


def _tremor(times, style: Style, rng) -> np.ndarray:
    """A few fast waves in time, `(M, 2)` x-heights, amplitude about `style.tremor`."""
    waves = 3
    frequency = rng.uniform(*TREMOR_HZ, (waves, 2))
    phase = rng.uniform(0.0, 2.0 * np.pi, (waves, 2))
    seconds = times[:, None, None] / 1000.0
    wave = np.sin(2.0 * np.pi * frequency * seconds + phase)  # [M, waves, 2]
    return style.tremor / np.sqrt(waves) * wave.sum(axis=1)
