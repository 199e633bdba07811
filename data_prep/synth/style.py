"""Per-writer handwriting style of the embedded corpus.

A writer is a `Style` drawn once from its own seed: the face, slant, size, glyph width,
letter and word spacing, baseline drift, a smooth random deformation field, tremor and pen
speed. Every line of the writer is written with a `line_style` drawn around it, whose
deviations are several times smaller than the spread between writers, so a writer's lines
look alike and different writers' lines do not.

Lengths are in x-heights (the height of a lowercase `x`) unless a field says otherwise.
"""

import dataclasses

import numpy as np

from data_prep.synth import fonts

# Writers per face, relative: the joined cursive faces are the most like IAM-OnDB's hands.
FACE_WEIGHTS = {
    "ems-allure": 3.0,
    "hershey-cursive": 2.5,
    "ems-felix": 1.5,
    "ems-tech": 1.5,
    "ems-readability-italic": 1.5,
}

FIELD_WAVES = 4  # sinusoids in each deformation field


@dataclasses.dataclass(frozen=True)
class Style:
    """How one writer (or one line of a writer) writes."""

    face: str  # a name in fonts.FACES
    x_height: float  # whiteboard units per x-height
    slant: float  # shear, x += slant * y; > 0 leans right
    width: float  # horizontal scale of every glyph
    letter_spacing: float  # gap added after each glyph, x-heights
    word_spacing: float  # gap between words, x-heights
    drift: float  # amplitude of the slow baseline wave, x-heights
    drift_wavelength: float  # its wavelength along the line, x-heights
    rise: float  # baseline slope over the line, x-heights per x-height
    deformation: float  # amplitude of the writer's shape field, x-heights
    shape_field: tuple  # FIELD_WAVES rows of (kx, ky, phase, ax, ay): the writer's glyph field
    line_field: tuple  # same layout, applied in line coordinates (changes with every line)
    glyph_jitter: float  # std of each glyph's own size change (relative) and shift (x-heights)
    tremor: float  # amplitude of the fast pen tremor, x-heights
    speed: float  # pen speed on straight runs, in the face's mean letter paths per second


def _field(rng, wavelength_range, amplitude) -> tuple:
    """FIELD_WAVES random plane waves `(kx, ky, phase, ax, ay)` of a smooth displacement."""
    angle = rng.uniform(0.0, np.pi, FIELD_WAVES)
    wavenumber = 2.0 * np.pi / rng.uniform(*wavelength_range, FIELD_WAVES)
    phase = rng.uniform(0.0, 2.0 * np.pi, FIELD_WAVES)
    direction = rng.uniform(0.0, 2.0 * np.pi, FIELD_WAVES)
    share = amplitude / np.sqrt(FIELD_WAVES)
    return tuple(
        (
            float(k * np.cos(a)),
            float(k * np.sin(a)),
            float(p),
            float(share * np.cos(d)),
            float(share * np.sin(d)),
        )
        for k, a, p, d in zip(wavenumber, angle, phase, direction, strict=True)
    )


def displace(points: np.ndarray, field: tuple) -> np.ndarray:
    """Returns `points` `(N, 2)` moved by the smooth field (sum of plane waves)."""
    if not field:
        return points
    waves = np.asarray(field)  # [FIELD_WAVES, 5]
    arg = points @ waves[:, :2].T + waves[:, 2]  # [N, FIELD_WAVES]
    return points + np.sin(arg) @ waves[:, 3:5]


def sample_writer(rng, faces=None) -> Style:
    """Draws one writer's style.

    Args:
        rng: a `numpy.random.Generator`.
        faces: face names to choose from (default: all of `FACE_WEIGHTS`).
    """
    faces = list(faces or FACE_WEIGHTS)
    unknown = [f for f in faces if f not in fonts.FACES]
    if unknown:
        raise ValueError(f"unknown faces {unknown}; known faces: {sorted(fonts.FACES)}")
    weights = np.asarray([FACE_WEIGHTS.get(f, 1.0) for f in faces])
    face = faces[int(rng.choice(len(faces), p=weights / weights.sum()))]
    deformation = rng.uniform(0.03, 0.09)
    return Style(
        face=face,
        x_height=float(rng.uniform(55.0, 110.0)),
        slant=float(np.clip(rng.normal(0.15, 0.15), -0.2, 0.5)),
        width=float(rng.uniform(0.8, 1.2)),
        letter_spacing=float(rng.uniform(-0.06, 0.2)),
        word_spacing=float(rng.uniform(0.7, 1.5)),
        drift=float(rng.uniform(0.0, 0.25)),
        drift_wavelength=float(rng.uniform(15.0, 40.0)),
        rise=float(rng.normal(0.0, 0.008)),
        deformation=float(deformation),
        shape_field=_field(rng, (1.2, 3.5), deformation),
        line_field=_field(rng, (3.0, 8.0), 0.5 * deformation),
        glyph_jitter=float(rng.uniform(0.015, 0.05)),
        tremor=float(rng.uniform(0.003, 0.015)),
        speed=float(rng.uniform(5.0, 7.8)),
    )


def line_style(writer: Style, rng) -> Style:
    """A line's style: the writer's, varied by a fraction of the spread between writers."""
    return dataclasses.replace(
        writer,
        x_height=writer.x_height * float(rng.normal(1.0, 0.03)),
        slant=writer.slant + float(rng.normal(0.0, 0.025)),
        width=writer.width * float(rng.normal(1.0, 0.02)),
        letter_spacing=writer.letter_spacing + float(rng.normal(0.0, 0.015)),
        word_spacing=writer.word_spacing * float(rng.normal(1.0, 0.05)),
        rise=writer.rise + float(rng.normal(0.0, 0.003)),
        line_field=_field(rng, (3.0, 8.0), 0.5 * writer.deformation),
        speed=writer.speed * float(rng.normal(1.0, 0.04)),
    )
