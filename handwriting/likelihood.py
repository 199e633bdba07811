"""How likely given handwriting is under a model: teacher-forced nats per point.

The network reads a line's true points one by one and gives the mixture density of each next
point (Graves eq. 26); the negative log of that density, summed, is the line's NLL. Lower is
more likely: a model adapted to a writer, or primed with one of their lines, should find the
writer's other lines more likely than the base model does. Densities are of the offsets as
the network sees them (normalised by the model's statistics), so figures compare models that
share their statistics (a model and its adaptations).

With a prime, the network first reads the prime's points with the prime's text before the
line's (`prime.text + " " + text`), exactly as sampling with that prime does; only the line's
points are scored. The first offset of a line, the pen's move to where the line starts, is
never scored: where a line begins on the page is not handwriting.

    python -m handwriting nll --lines mine.json [--model DIR] [--prime one.json] [--json]
"""

import dataclasses

import numpy as np
import tensorflow as tf

from handwriting import mixture
from handwriting.errors import SampleError
from handwriting.sample import normalize
from handwriting.strokes import Prime, check_prime
from handwriting.text import check_text


@dataclasses.dataclass(frozen=True)
class LineLikelihood:
    """The NLL of one line: `nats` summed over its `points` scored points."""

    text: str
    nats: float
    points: int

    @property
    def nats_per_point(self) -> float:
        return self.nats / self.points


def _scored_sequence(synth, text, strokes, prime):
    """`(inputs, targets, weight)` of one line (batch of 1), prime first when given."""
    strokes = np.asarray(strokes, np.float32)
    if prime is None:
        points, full, first = strokes, text, 1  # the target after the origin is not scored
    else:
        prime_points = np.array(prime.strokes, np.float32)
        prime_points[-1, 2] = 1.0  # the pen is lifted between the prime and the line
        points = np.concatenate([prime_points, strokes[1:]])
        full, first = f"{prime.text} {text}", len(prime_points)
    points = normalize(synth, points)
    steps = len(points) - 1
    weight = np.zeros((1, steps), np.float32)
    weight[0, first:] = 1.0  # target i is point i + 1; the line's first offset is left out
    chars = np.asarray([synth.alphabet.encode(full)], np.int32)
    inputs = {
        "strokes": points[None, :-1],
        "strokes_mask": np.ones((1, steps), bool),
        "chars": chars,
        "chars_mask": np.ones(chars.shape, bool),
    }
    return inputs, points[None, 1:], weight


def line_likelihoods(synth, lines, prime: Prime | None = None, *, source: str = "") -> list:
    """Teacher-forced NLL of each line under `synth`.

    Args:
        synth: the model (`sample.load`).
        lines: `[(text, strokes), ...]`, strokes raw `(N, 3)` `(dx, dy, eos)` with the origin
            first (the stroke JSON's lines, `strokes.load_lines`).
        prime: optional style prime read before every line.
        source: where the lines come from (a file name), for messages.

    Returns:
        A list of `LineLikelihood`, one per line.

    Raises:
        SampleError: a line has no text, text outside the model's alphabet, fewer than 3
            points, or non-finite values.
    """
    if prime is not None:
        prime = check_prime(prime)
        check_text(prime.text, synth.alphabet, what=f"the prime text ({prime.source})")
    out = []
    for number, (text, strokes) in enumerate(lines, start=1):
        where = f"{source}: line {number}" if source else f"line {number}"
        if not text:
            raise SampleError(f"{where}: no text; the likelihood is of handwriting given its text")
        check_text(text, synth.alphabet, what=where)
        strokes = np.asarray(strokes, np.float32)
        if strokes.ndim != 2 or strokes.shape[1] != 3 or len(strokes) < 3:
            raise SampleError(f"{where}: strokes must be (N, 3) with N >= 3, got {strokes.shape}")
        if not np.isfinite(strokes).all():
            raise SampleError(f"{where}: strokes hold NaN or infinite values")
        inputs, targets, weight = _scored_sequence(synth, text, strokes, prime)
        head = synth.model.forward({k: tf.constant(v) for k, v in inputs.items()})["head"]
        loss = mixture.sequence_loss(head, tf.constant(targets), tf.constant(weight))
        out.append(LineLikelihood(text, float(loss.line_nll[0]), int(loss.line_points[0])))
    return out


def summary(found) -> dict:
    """`{"nats_per_point", "nats_per_line", "lines"}` over lines (points weigh equally in the
    first, lines in the second)."""
    points = sum(f.points for f in found)
    return {
        "nats_per_point": sum(f.nats for f in found) / points,
        "nats_per_line": sum(f.nats for f in found) / len(found),
        "lines": len(found),
    }
