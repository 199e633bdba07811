"""How likely given handwriting is under a model: teacher-forced nats per point.

The network reads a line's true points one by one and gives the mixture density of each next
point (Graves eq. 26); the negative log of that density, summed, is the line's NLL. Lower is
more likely: a model adapted to a writer, or primed with one of their lines, should find the
writer's other lines more likely than the base model does. Densities are of the offsets as
the network sees them (normalised by the model's statistics), so figures compare models that
share their statistics (a model and its adaptations).

With a prime, the network first reads the prime's points with the prime's text before the
line's (`prime.text + " " + text`), exactly as sampling with that prime does, the two joined
by `line_pairs.join_strokes`; only the line's points are scored. A line's origin is its first
pen point; the offset after it, its first, is never scored, with a prime or without, so that
a line scores the same points either way; nor, with a prime, is the pen's move from the
prime to the line's origin: where a line begins on the page is not handwriting.

    python -m handwriting nll --lines mine.json [--model DIR] [--prime one.json] [--json]
"""

import dataclasses
import weakref

import numpy as np
import tensorflow as tf

from handwriting import line_pairs, mixture
from handwriting.errors import SampleError
from handwriting.sample import normalize
from handwriting.strokes import MIN_LINE_POINTS, Prime, check_prime
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
        points = line_pairs.join_strokes(prime.strokes, len(prime.text), strokes).numpy()
        # targets from the prime's last point on: the move to the line's origin, then the
        # line's first offset (neither scored), then the line's points as without a prime
        full, first = f"{prime.text} {text}", len(prime.strokes) + 1
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


_TRACED = weakref.WeakKeyDictionary()  # model -> its traced forward pass
_SIGNATURE = {
    "strokes": tf.TensorSpec([None, None, 3], tf.float32),
    "strokes_mask": tf.TensorSpec([None, None], tf.bool),
    "chars": tf.TensorSpec([None, None], tf.int32),
    "chars_mask": tf.TensorSpec([None, None], tf.bool),
}


def _traced_forward(model):
    """The network's forward pass (the head) as one `tf.function` for lines of any length:
    run eagerly, its recurrences would step from Python."""
    if model not in _TRACED:
        network = weakref.ref(model)
        _TRACED[model] = tf.function(
            lambda inputs: network().forward(inputs)["head"], input_signature=[_SIGNATURE]
        )
    return _TRACED[model]


def check_lines(synth, lines, *, source: str = "") -> list:
    """Checks lines of handwriting with their texts; returns `[(text, (N, 3) float32), ...]`.

    Raises:
        SampleError: a line has no text, text outside the model's alphabet, fewer than
            `MIN_LINE_POINTS` points, or non-finite values; the message names the line (and
            `source`).
    """
    out = []
    for number, (text, strokes) in enumerate(lines, start=1):
        where = f"{source}: line {number}" if source else f"line {number}"
        if not text:
            raise SampleError(f"{where}: no text; the likelihood is of handwriting given its text")
        check_text(text, synth.alphabet, what=where)
        strokes = np.asarray(strokes, np.float32)
        if strokes.ndim != 2 or strokes.shape[1] != 3 or len(strokes) < MIN_LINE_POINTS:
            raise SampleError(
                f"{where}: strokes must be (N, 3) with N >= {MIN_LINE_POINTS}, got {strokes.shape}"
            )
        if not np.isfinite(strokes).all():
            raise SampleError(f"{where}: strokes hold NaN or infinite values")
        out.append((text, strokes))
    return out


def line_batch(synth, lines):
    """Checked lines (no prime) as one padded batch `(inputs, targets, weight)` of numpy
    arrays, scored as `line_likelihoods` scores them (the first offset of a line has weight
    0); what training on them (`handwriting.adapt`) reads."""
    examples = [_scored_sequence(synth, text, strokes, None) for text, strokes in lines]
    steps = max(e[1].shape[1] for e in examples)
    chars = max(e[0]["chars"].shape[1] for e in examples)
    batch = len(examples)
    inputs = {
        "strokes": np.zeros((batch, steps, 3), np.float32),
        "strokes_mask": np.zeros((batch, steps), bool),
        "chars": np.zeros((batch, chars), np.int32),
        "chars_mask": np.zeros((batch, chars), bool),
    }
    targets = np.zeros((batch, steps, 3), np.float32)
    weight = np.zeros((batch, steps), np.float32)
    for row, (x, y, w) in enumerate(examples):
        t, u = y.shape[1], x["chars"].shape[1]
        for key in ("strokes", "strokes_mask"):
            inputs[key][row, :t] = x[key][0]
        for key in ("chars", "chars_mask"):
            inputs[key][row, :u] = x[key][0]
        targets[row, :t], weight[row, :t] = y[0], w[0]
    return inputs, targets, weight


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
        SampleError: a line has no text, text outside the model's alphabet, fewer than
            `MIN_LINE_POINTS` points, or non-finite values.
    """
    if prime is not None:
        prime = check_prime(prime)
        check_text(prime.text, synth.alphabet, what=f"the prime text ({prime.source})")
    out = []
    forward = _traced_forward(synth.model)
    for text, strokes in check_lines(synth, lines, source=source):
        inputs, targets, weight = _scored_sequence(synth, text, strokes, prime)
        head = forward({k: tf.constant(v) for k, v in inputs.items()})
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
