"""Text to handwriting with a trained synthesis network (Graves 2013, section 5).

    synth = sample.load("runs/demo")                      # config, alphabet, statistics, weights
    lines = sample.generate(synth, ["hello world"], bias=1.0, seed=7)
    lines[0].strokes                                      # (T, 3) float32 (dx, dy, eos), y up

What happens for a batch of B lines (all run together; each line stops on its own):

1. Every text is checked against the model's alphabet (`handwriting.text.check_text`); a
   character outside it is an error naming the character, its position and the alphabet.
2. With a style prime (`handwriting.strokes.Prime`: a real line's strokes and its
   transcription, from a file or a named style of `handwriting.styles`), each line's text
   becomes `prime.text + " " + text` and the network first reads the prime's points (teacher
   forcing), so the window sits at the end of the prime text and the LSTM state holds its
   style. Without one, the network reads the start point `(0, 0, 0)`.
3. Step t: the network has read point x_t and gives the head (the mixture of the next point)
   and the window weights phi(t, u). The line stops when the window has passed the text,
   phi(t, U) > phi(t, u) for every character u = 0 .. U-1 (position U is one past the last
   character; the paper's phi(t, U+1) with 1-based u), or when it has used its point budget
   (`point_budget`: `points_per_char` times its characters plus one). Otherwise x_{t+1} is
   drawn from the mixture with sampling bias b (Graves eq. 61-62, `mixture.sample_point`) and
   four random numbers from the line's seeded stream (`handwriting.draws`), and the network
   reads it.
4. `finish_line`: the points are denormalised with the training statistics; the last point of
   each line gets eos = 1. An unprimed line starts with the start point `(0, 0, 0)`.

The loop is one `tf.function` (`sampling_loop`), the very function the exported SavedModel
runs, and the random draws come from PCG64 streams that numpy and the LiteRT runner reproduce,
so a seed gives the same strokes in Python, SavedModel and TFLite.

Axes: B lines, T pen steps, U characters, K window Gaussians, M mixtures.
"""

import dataclasses
import math

import numpy as np
import tensorflow as tf

from handwriting import draws, mixture, window
from handwriting.errors import SampleError
from handwriting.rundir import (
    Synthesizer,
    load,  # noqa: F401  (the public API: `sample.load`, `generate`)
)
from handwriting.strokes import Prime, check_prime
from handwriting.text import DEFAULT_WIDTH, MAX_TEXT_CHARS, check_text, encode_batch, wrap

# Point budget per character (plus one): about twice what a hand needs (IAM-OnDB writes
# about 20 points per character), so only a window that never reaches the end runs into it.
POINTS_PER_CHAR = 40


@dataclasses.dataclass(frozen=True)
class Sample:
    """One generated line.

    Attributes:
        text: the line's text (without the prime's).
        strokes: `(T, 3)` float32 `(dx, dy, eos)` in the training data's units, y up.
        finished: True when the window passed the end of the text, False when the line ran
            into its point budget.
        phi: `(S, U + 1)` float32 window weights at every sampling step over the line's full
            text (prime included) and, last, the position one past its end; None unless asked.
    """

    text: str
    strokes: np.ndarray
    finished: bool
    phi: np.ndarray | None = None


# ---------------------------------------------------------------------------------------------
# Sampling


def generate(
    synth: Synthesizer,
    texts,
    *,
    bias: float = 0.0,
    seed: int = 0,
    prime: Prime | None = None,
    points_per_char: float = POINTS_PER_CHAR,
    return_phi: bool = False,
) -> list:
    """Writes each text as one line of handwriting; all lines are sampled as one batch.

    Args:
        synth: the model (`load`).
        texts: a string or a list of strings, one per line.
        bias: sampling bias b >= 0 (Graves eq. 61-62); 0 samples the model as trained,
            larger values give neater, less varied writing.
        seed: in [0, 2**32); the same seed gives the same strokes.
        prime: optional style prime; every line is written in its style.
        points_per_char: point budget per character (plus one) of each line.
        return_phi: keep the window weights of every step in `Sample.phi`.

    Returns:
        A list of `Sample`, one per text, in order.
    """
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        raise SampleError("no text to write")
    texts = [check_text(t, synth.alphabet, what=f"line {i + 1}") for i, t in enumerate(texts)]
    if sum(len(t) for t in texts) > MAX_TEXT_CHARS:
        raise SampleError(f"the lines hold more than {MAX_TEXT_CHARS} characters together")
    try:
        bias = float(bias)
    except (TypeError, ValueError):
        raise SampleError(f"`bias` must be a number >= 0, received {bias!r}") from None
    if not (math.isfinite(bias) and bias >= 0):
        raise SampleError(f"`bias` must be a number >= 0, received {bias!r}")
    try:
        seed = draws.check_seed(seed)
    except (TypeError, ValueError) as e:
        raise SampleError(str(e)) from None
    if not points_per_char > 0:
        raise SampleError(f"`points_per_char` must be > 0, received {points_per_char!r}")
    prefix = ""
    prime_points = np.zeros((0, 3), np.float32)
    if prime is not None:
        prime = check_prime(prime)
        check_text(prime.text, synth.alphabet, what=f"the prime text ({prime.source})")
        prefix = prime.text + " "
        prime_points = normalize(synth, prime.strokes)
    full = [prefix + t for t in texts]
    chars, mask = encode_batch(synth.alphabet, full)
    start = normalize(synth, np.zeros((1, 3), np.float32))[0]
    run = _loop_function(synth.model, return_phi)
    out = run(
        tf.constant(chars),
        tf.constant(mask),
        point_budget([len(t) for t in texts], points_per_char),
        tf.fill([len(texts)], tf.constant(float(bias), tf.float32)),
        tf.constant(seed, tf.int64),
        tf.constant(prime_points),
        tf.constant(start),
    )
    counts = out["counts"].numpy()  # [B]
    finished = out["finished"].numpy()  # [B]
    samples = []
    for i, text in enumerate(texts):
        drawn = out["points"][: counts[i], i]  # [T, 3] normalised
        line = finish_line(synth, drawn, origin=prime is None).numpy()
        phi = None
        if return_phi:
            length = len(full[i])
            steps = int(out["steps"].numpy()[i])
            phi = np.concatenate(
                [out["phi"].numpy()[:steps, i, :length], out["phi_end"].numpy()[:steps, i, None]],
                axis=1,
            )
        samples.append(Sample(text=text, strokes=line, finished=bool(finished[i]), phi=phi))
    return samples


def write_paragraph(synth: Synthesizer, text: str, *, width: int = DEFAULT_WIDTH, **kwargs):
    """Wraps `text` to `width` characters per line and writes the lines as one batch.

    Keyword arguments go to `generate`. Returns its list of `Sample`, one per line.
    """
    text = check_text(text, synth.alphabet, allow_newlines=True)
    lines = wrap(text, width)
    if not lines:
        raise SampleError("text is empty; give at least one character to write")
    return generate(synth, lines, **kwargs)


# ---------------------------------------------------------------------------------------------
# A line's budget and its strokes (the SavedModel's too; the LiteRT runner mirrors them)


def point_budget(text_lengths, points_per_char=POINTS_PER_CHAR):
    """The most points each line may draw: `ceil(points_per_char * (characters + 1))`.

    Args:
        text_lengths: `(B,)` characters of each line's text (a prime's not counted): a list,
            an array or an int tensor (also inside a `tf.function`).
        points_per_char: the budget per character, > 0.

    Returns:
        `(B,)` int32 tensor, computed in float64: `math.ceil` of the product in Python gives
        the same numbers (the LiteRT runner computes it so).
    """
    lengths = tf.cast(text_lengths, tf.float64)
    per_char = tf.convert_to_tensor(points_per_char, tf.float64)
    return tf.cast(tf.math.ceil(per_char * (lengths + 1.0)), tf.int32)


def finish_line(synth: Synthesizer, drawn, *, origin: bool = True):
    """The strokes of a sampled line: its drawn points in the data's units, ready to draw.

    The points are denormalised (in float64, rounded once to float32), the start point
    `(0, 0, 0)` goes first unless the line went on from a prime's last point, and the last
    point gets eos = 1 (the pen is lifted when the line ends). Runs eagerly and inside a
    `tf.function` (the SavedModel's); the LiteRT runner mirrors it.

    Args:
        synth: the model (its offset statistics).
        drawn: `(T, 3)` normalised points drawn for the line, as `sampling_loop` returns them
            (`points[:counts[i], i]`).
        origin: put the start point first (an unprimed line).

    Returns:
        `(T + 1, 3)` (`(T, 3)` without `origin`) float32 tensor of `(dx, dy, eos)`, y up.
    """
    strokes = tf.cast(denormalize(synth, tf.cast(drawn, tf.float64)), tf.float32)  # [T, 3]
    if origin:
        strokes = tf.concat([tf.zeros([1, 3], tf.float32), strokes], axis=0)
    count = tf.shape(strokes)[0]
    eos = tf.where(tf.range(count) == count - 1, 1.0, strokes[:, 2])  # [T]
    return tf.concat([strokes[:, :2], eos[:, None]], axis=1)


def normalize(synth: Synthesizer, strokes) -> np.ndarray:
    """Raw `(..., 3)` `(dx, dy, eos)` points to what the network reads, float32."""
    from handwriting.data import normalize_strokes

    return normalize_strokes(np.asarray(strokes, np.float32), synth.offset_mean, synth.offset_std)


def denormalize(synth: Synthesizer, strokes):
    """Network points back to raw `(dx, dy, eos)`: a tensor or an array of the input's dtype."""
    from handwriting.data import denormalize_strokes

    return denormalize_strokes(strokes, synth.offset_mean, synth.offset_std)


# ---------------------------------------------------------------------------------------------
# The loop


_LOOPS = {}  # (id(model), return_phi) -> the traced tf.function; models are long-lived


def _loop_function(model, return_phi):
    key = (id(model), bool(return_phi))
    if key not in _LOOPS:

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, None], tf.int32),  # chars
                tf.TensorSpec([None, None], tf.bool),  # chars_mask
                tf.TensorSpec([None], tf.int32),  # budgets
                tf.TensorSpec([None], tf.float32),  # bias
                tf.TensorSpec([], tf.int64),  # seed
                tf.TensorSpec([None, 3], tf.float32),  # prime points
                tf.TensorSpec([3], tf.float32),  # start point
            ]
        )
        def run(chars, chars_mask, budgets, bias, seed, prime_points, start):
            return sampling_loop(
                model, chars, chars_mask, budgets, bias, seed, prime_points, start, return_phi
            )

        _LOOPS.clear()  # keep one model's functions alive at a time
        _LOOPS[key] = run
    return _LOOPS[key]


def sampling_loop(
    model, chars, chars_mask, budgets, bias, seed, prime_points, start, return_phi=False
):
    """Samples a batch of lines until each line's window passes its text or its budget ends.

    Plain TF (a `tf.while_loop`); `generate` and the exported SavedModel run it.

    Args:
        model: the synthesis `HandwritingModel`.
        chars: `(B, U)` int32 ids, 0-padded; `chars_mask`: `(B, U)` bool.
        budgets: `(B,)` int32 most points each line may draw.
        bias: `(B,)` float32 sampling bias.
        seed: int64 scalar; line i draws from `numpy.random.default_rng([seed, i])`.
        prime_points: `(N, 3)` normalised points read first by every line (N may be 0).
        start: `(3,)` the normalised start point, read first when there is no prime.
        return_phi: also return phi and phi at the end position of every step.

    Returns:
        A dict: `points` `(S, B, 3)` normalised draws (line i's first `counts[i]` rows are
        its line); `counts` `(B,)` int32; `finished` `(B,)` bool (the window passed the end);
        `steps` `(B,)` int32 steps taken (draws made); with `return_phi`, `phi` `(S + 1, B, U)`
        and `phi_end` `(S + 1, B)` float32.
    """
    # Forget a static batch size: the loop's tensors must keep one shape across iterations.
    chars = tf.raw_ops.PlaceholderWithDefault(input=chars, shape=[None, None])
    chars_mask = tf.raw_ops.PlaceholderWithDefault(input=chars_mask, shape=[None, None])
    batch = tf.shape(chars)[0]
    lengths = tf.reduce_sum(tf.cast(chars_mask, tf.int32), axis=1)  # [B]
    state = model.initial_state(batch)
    # Teacher forcing over the prime (or just the start point): what the network has read.
    read = tf.cond(tf.shape(prime_points)[0] > 0, lambda: prime_points, lambda: start[None])

    def read_point(n, state):
        return model.step(tf.tile(read[n][None], [batch, 1]), chars, chars_mask, state)

    head, phi, state = read_point(0, state)

    def prime_body(n, head, phi, state):
        head, phi, state = read_point(n, state)
        return n + 1, head, phi, state

    _, head, phi, state = tf.while_loop(
        lambda n, *_: n < tf.shape(read)[0],
        prime_body,
        (tf.constant(1), head, phi, state),
    )
    streams = draws.seed_streams(seed, batch)
    max_steps = tf.reduce_max(budgets) + 1
    arrays = [tf.TensorArray(tf.float32, size=0, dynamic_size=True)]  # points
    if return_phi:
        arrays += [
            tf.TensorArray(tf.float32, size=0, dynamic_size=True),  # phi
            tf.TensorArray(tf.float32, size=0, dynamic_size=True),  # phi_end
        ]
    active = tf.ones([batch], tf.bool)
    finished = tf.zeros([batch], tf.bool)
    counts = tf.zeros([batch], tf.int32)
    steps = tf.zeros([batch], tf.int32)

    def body(t, head, phi, state, streams, active, finished, counts, steps, arrays):
        phi_end = window.end_of_text_weight(model.window_cell, state, lengths)
        passed = window.window_has_passed(phi, phi_end)
        streams, uniforms, normals = draws.next_draws(streams)
        point = mixture.sample_point(head, bias, uniforms, normals)  # x_{t+1}, [B, 3]
        steps += tf.cast(active, tf.int32)
        finished = finished | (active & passed)
        active = active & ~passed & (counts < budgets)
        counts += tf.cast(active, tf.int32)
        arrays = list(arrays)
        arrays[0] = arrays[0].write(t, point)
        if return_phi:
            arrays[1] = arrays[1].write(t, phi)
            arrays[2] = arrays[2].write(t, phi_end)
        head, phi, state = model.step(point, chars, chars_mask, state)
        return t + 1, head, phi, state, streams, active, finished, counts, steps, tuple(arrays)

    _, _, _, _, _, _, finished, counts, steps, arrays = tf.while_loop(
        lambda t, head, phi, state, streams, active, *_: (t < max_steps) & tf.reduce_any(active),
        body,
        (tf.constant(0), head, phi, state, streams, active, finished, counts, steps, tuple(arrays)),
    )
    out = {"points": arrays[0].stack(), "counts": counts, "finished": finished, "steps": steps}
    if return_phi:
        out["phi"] = arrays[1].stack()
        out["phi_end"] = arrays[2].stack()
    return out
