"""Text to handwriting with a trained synthesis network (Graves 2013, section 5).

    synth = sample.load("runs/demo")                      # config, alphabet, statistics, weights
    lines = sample.generate(synth, ["hello world"], bias=1.0, seed=7)
    lines[0].strokes                                      # (T, 3) float32 (dx, dy, eos), y up

What happens for a batch of B lines (all run together; each line stops on its own):

1. Every text is checked against the model's alphabet (`check_text`); a character outside it is
   an error naming the character, its position and the alphabet.
2. With a style prime (`Prime`: a real line's strokes and its transcription), each line's text
   becomes `prime.text + " " + text` and the network first reads the prime's points (teacher
   forcing), so the window sits at the end of the prime text and the LSTM state holds its
   style. Without one, the network reads the start point `(0, 0, 0)`.
3. Step t: the network has read point x_t and gives the head (the mixture of the next point)
   and the window weights phi(t, u). The line stops when the window has passed the text,
   phi(t, U) > phi(t, u) for every character u = 0 .. U-1 (position U is one past the last
   character; the paper's phi(t, U+1) with 1-based u), or when it has used its point budget
   (`points_per_char` times its characters plus one). Otherwise x_{t+1} is drawn from the
   mixture with sampling bias b (Graves eq. 61-62, `mixture.sample_point`) and four random
   numbers from the line's seeded stream (`handwriting.draws`), and the network reads it.
4. The points are denormalised with the training statistics; the last point of each line gets
   eos = 1. An unprimed line starts with the start point `(0, 0, 0)`.

The loop is one `tf.function` (`sampling_loop`), the very function the exported SavedModel
runs, and the random draws come from PCG64 streams that numpy and the LiteRT runner reproduce,
so a seed gives the same strokes in Python, SavedModel and TFLite.

Axes: B lines, T pen steps, U characters, K window Gaussians, M mixtures.
"""

import dataclasses
import json
import math
import os
import textwrap
import unicodedata

import numpy as np
import tensorflow as tf

from handwriting import draws, mixture, window
from handwriting.alphabet import Alphabet
from handwriting.dataset_info import DatasetError, DatasetInfo
from handwriting.errors import SampleError
from handwriting.rundir import (
    STYLES_FILENAME,
    Synthesizer,
    load,  # noqa: F401  (the public API: `sample.load`, `generate`)
)

# Most characters a request may hold (all lines together): beyond, the text is refused
# rather than sampled for minutes.
MAX_TEXT_CHARS = 2000
# Characters per line when a paragraph is wrapped.
DEFAULT_WIDTH = 60
# Point budget per character (plus one): about twice what a hand needs (IAM-OnDB writes
# about 20 points per character), so only a window that never reaches the end runs into it.
POINTS_PER_CHAR = 40
# Longest prime accepted, in points (IAM-OnDB lines have about 700).
MAX_PRIME_POINTS = 4000
# Format tag of the project's stroke JSON (`save_strokes_json` / `load_prime`).
STROKES_FORMAT = "handwriting-strokes"


@dataclasses.dataclass(frozen=True)
class Prime:
    """A real line used to set the style: raw `(T, 3)` strokes (y up) and its transcription."""

    strokes: np.ndarray
    text: str
    source: str = ""  # where it came from, for messages


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
# Text


def check_text(text, alphabet: Alphabet, *, what: str = "text", allow_newlines=False) -> str:
    """Returns `text` if the model can write it, else raises `SampleError` saying why.

    Refused: a non-string, empty or blank text, more than `MAX_TEXT_CHARS` characters,
    control characters (newlines are line breaks where `allow_newlines`), and characters
    outside the alphabet (each named with its position, up to five, and the alphabet).
    """
    if not isinstance(text, str):
        raise SampleError(f"{what} must be a string, received {type(text).__name__}")
    if not text.strip():
        raise SampleError(f"{what} is empty; give at least one character to write")
    if len(text) > MAX_TEXT_CHARS:
        raise SampleError(
            f"{what} has {len(text)} characters; the limit is {MAX_TEXT_CHARS} per request"
        )
    allowed_controls = "\n" if allow_newlines else ""
    for position, char in enumerate(text):
        if unicodedata.category(char).startswith("C") and char not in allowed_controls:
            raise SampleError(
                f"{what} holds the control character {_describe(char)} at position "
                f"{position}; only printable characters can be written"
                + (" (newlines break lines)" if allow_newlines else "")
            )
    unknown = [(i, c) for i, c in alphabet.unknown_chars(text) if c not in allowed_controls]
    if unknown:
        listed = ", ".join(f"{_describe(c)} at position {i}" for i, c in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise SampleError(
            f"{what} holds characters outside the model's alphabet: {listed}{more}. "
            f"The alphabet is: {alphabet.chars!r}"
        )
    return text


def _describe(char: str) -> str:
    name = unicodedata.name(char, "")
    shown = repr(char) if char.isprintable() else f"U+{ord(char):04X}"
    return f"{shown} (U+{ord(char):04X}{', ' + name if name else ''})"


def wrap(text: str, width: int = DEFAULT_WIDTH) -> list:
    """Splits `text` into lines of at most `width` characters, at spaces where possible.

    Newlines end paragraphs (blank lines are dropped); runs of spaces become one; a word
    longer than `width` is broken.
    """
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise SampleError(f"`width` must be a positive int, received {width!r}")
    lines = []
    for paragraph in text.split("\n"):
        words = paragraph.split()
        if words:
            lines += textwrap.wrap(" ".join(words), width, break_on_hyphens=False)
    return lines


# ---------------------------------------------------------------------------------------------
# Priming


def load_prime(path, text=None) -> Prime:
    """Reads a style prime from a file: an IAM-OnDB line XML or the project's stroke JSON.

    Args:
        path: a `.xml` file (IAM-OnDB `lineStrokes` layout; its text must be given) or a
            `.json` file as `save_strokes_json` writes it (its first line is used; `text`
            overrides the transcription stored there).
        text: the transcription of the handwriting in the file.

    Raises:
        SampleError: the file is missing, malformed, hostile, or gives no transcription.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read(64 * 1024 * 1024 + 1)
    except OSError as e:
        raise SampleError(f"{path}: cannot be read ({e.strerror})") from None
    if len(data) > 64 * 1024 * 1024:
        raise SampleError(f"{path}: larger than 64 MiB; a prime is one line of handwriting")
    if path.lower().endswith(".xml") or data.lstrip()[:1] == b"<":
        strokes = _strokes_from_xml(data, path)
        if text is None:
            raise SampleError(f"{path}: an XML prime needs its transcription (--prime-text)")
    else:
        strokes, stored_text = _strokes_from_json(data, path)
        text = stored_text if text is None else text
        if text is None:
            raise SampleError(f"{path}: holds no `text`; give the transcription (--prime-text)")
    return _check_prime(Prime(strokes=strokes, text=text, source=path))


def _strokes_from_xml(data, path):
    from data_prep import clean, iam_ondb

    try:
        x, y, lengths = iam_ondb.parse_line_xml(data, path)
    except iam_ondb.LineError as e:
        raise SampleError(str(e)) from None
    strokes, _ = clean.to_stroke_array(x, y, lengths)
    return strokes


def _strokes_from_json(data, path):
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SampleError(f"{path}: not valid UTF-8 JSON ({e})") from None
    if isinstance(obj, dict) and "lines" in obj:
        lines = obj["lines"]
        if not isinstance(lines, list) or not lines:
            raise SampleError(f"{path}: `lines` must be a non-empty list")
        obj = lines[0]
    if not isinstance(obj, dict) or "strokes" not in obj:
        raise SampleError(
            f"{path}: expected an object with `strokes` ([[dx, dy, eos], ...]) and `text`"
        )
    try:
        strokes = np.asarray(obj["strokes"], dtype=np.float32)
    except (TypeError, ValueError):
        raise SampleError(f"{path}: `strokes` must be a list of [dx, dy, eos] numbers") from None
    if strokes.ndim != 2 or strokes.shape[1] != 3:
        raise SampleError(f"{path}: `strokes` must have shape (T, 3), received {strokes.shape}")
    text = obj.get("text")
    if text is not None and not isinstance(text, str):
        raise SampleError(f"{path}: `text` must be a string")
    return strokes, text


def _check_prime(prime: Prime) -> Prime:
    strokes = np.asarray(prime.strokes, dtype=np.float32)
    where = prime.source or "prime"
    if strokes.ndim != 2 or strokes.shape[1] != 3 or strokes.shape[0] < 2:
        raise SampleError(f"{where}: a prime needs at least 2 points of (dx, dy, eos)")
    if strokes.shape[0] > MAX_PRIME_POINTS:
        raise SampleError(
            f"{where}: {strokes.shape[0]} points; a prime is one line (at most "
            f"{MAX_PRIME_POINTS} points)"
        )
    bad = np.flatnonzero(~np.isfinite(strokes).all(axis=1))
    if bad.size:
        raise SampleError(f"{where}: point {int(bad[0])} holds NaN or infinite values")
    if not np.isin(strokes[:, 2], (0.0, 1.0)).all():
        raise SampleError(f"{where}: eos values must be 0 or 1")
    return dataclasses.replace(prime, strokes=strokes)


def load_styles(directory) -> dict:
    """Reads `directory/styles.json`: `{"lines": [{"id", "text", "strokes"}, ...]}` -> by id."""
    path = os.path.join(directory, STYLES_FILENAME)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
        return {
            line["id"]: _check_prime(
                Prime(np.asarray(line["strokes"], np.float32), line["text"], f"{path}:{line['id']}")
            )
            for line in obj["lines"]
        }
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SampleError(f"{path}: malformed styles file ({type(e).__name__}: {e})") from None


def save_styles(directory, styles: dict) -> str:
    """Writes `directory/styles.json` (as `load_styles` reads it) from `{id: Prime}`, atomically.

    Returns the path written.
    """
    from handwriting import files

    path = os.path.join(directory, STYLES_FILENAME)
    obj = {
        "lines": [
            {
                "id": line_id,
                "text": styles[line_id].text,
                "strokes": np.round(styles[line_id].strokes.astype(np.float64), 4).tolist(),
            }
            for line_id in sorted(styles)
        ]
    }
    files.write_text(path, json.dumps(obj, ensure_ascii=False) + "\n")
    return path


def prime_from_dataset(synth: Synthesizer, line_id: str, data_dir=None) -> Prime:
    """Finds the line `line_id` among the model's named styles or in its data set's shards.

    Args:
        synth: the loaded model (its `styles.json` is searched first).
        line_id: e.g. `a01-000u-01`.
        data_dir: the data set folder; None: the run's `data.dir`.
    """
    styles = load_styles(synth.directory) if synth.directory else {}
    if line_id in styles:
        return styles[line_id]
    data_dir = os.fspath(data_dir) if data_dir is not None else synth.config.data.dir
    try:
        info = DatasetInfo.load(data_dir)
    except DatasetError as e:
        known = f"; the model's styles are {sorted(styles)}" if styles else ""
        raise SampleError(
            f"style {line_id!r} is not one of the model's styles and needs the data set: "
            f"{e}{known}. `python -m handwriting styles` lists them"
        ) from None
    from handwriting import records

    target = line_id.encode("utf-8")
    spec = {"line_id": records.FEATURE_SPEC["line_id"]}
    for split in sorted(info.splits):
        paths = info.shard_paths(data_dir, split)
        for batch in tf.data.TFRecordDataset(paths).batch(512):
            ids = tf.io.parse_example(batch, spec)["line_id"].numpy()
            hits = np.flatnonzero(ids == target)
            if hits.size:
                line = records.parse_line(batch[int(hits[0])])
                return _check_prime(
                    Prime(
                        strokes=line["strokes"].numpy(),
                        text=line["text"].numpy().decode("utf-8"),
                        source=f"{data_dir}:{split}:{line_id}",
                    )
                )
    raise SampleError(
        f"style {line_id!r}: no line with that id in {data_dir}; "
        "`python -m handwriting styles` lists them"
    )


def dataset_line_ids(synth: Synthesizer, data_dir=None, *, limit: int = 20):
    """The line ids `prime_from_dataset` finds in the model's data set, split by split.

    Args:
        synth: the loaded model.
        data_dir: the data set folder; None: the run's `data.dir`.
        limit: most lines listed per split (the first ones in shard order).

    Returns:
        `(data_dir, {split: (lines in the split, [(line_id, text), ...])})`, or None when
        there is no usable data set there.
    """
    data_dir = os.fspath(data_dir) if data_dir is not None else synth.config.data.dir
    try:
        info = DatasetInfo.load(data_dir)
    except DatasetError:
        return None
    from handwriting import records

    spec = {key: records.FEATURE_SPEC[key] for key in ("line_id", "text")}
    out = {}
    for split in sorted(info.splits):
        lines = []
        if limit > 0:
            paths = info.shard_paths(data_dir, split)
            for batch in tf.data.TFRecordDataset(paths).take(limit).batch(limit):
                parsed = tf.io.parse_example(batch, spec)
                lines = [
                    (line_id.decode("utf-8"), text.decode("utf-8"))
                    for line_id, text in zip(
                        parsed["line_id"].numpy(), parsed["text"].numpy(), strict=True
                    )
                ]
        out[split] = (info.splits[split].lines, lines)
    return data_dir, out


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
        prime = _check_prime(prime)
        check_text(prime.text, synth.alphabet, what=f"the prime text ({prime.source})")
        prefix = prime.text + " "
        prime_points = normalize(synth, prime.strokes)
    full = [prefix + t for t in texts]
    chars, mask = encode_batch(synth.alphabet, full)
    budgets = np.array([math.ceil(points_per_char * (len(t) + 1)) for t in texts], np.int32)
    start = normalize(synth, np.zeros((1, 3), np.float32))[0]
    run = _loop_function(synth.model, return_phi)
    out = run(
        tf.constant(chars),
        tf.constant(mask),
        tf.constant(budgets),
        tf.fill([len(texts)], tf.constant(float(bias), tf.float32)),
        tf.constant(seed, tf.int64),
        tf.constant(prime_points),
        tf.constant(start),
    )
    points = out["points"].numpy()  # [S, B, 3] normalised
    counts = out["counts"].numpy()  # [B]
    finished = out["finished"].numpy()  # [B]
    samples = []
    for i, text in enumerate(texts):
        line = denormalize(synth, points[: counts[i], i])
        if prime is None:
            line = np.concatenate([np.zeros((1, 3), np.float32), line])
        line[-1, 2] = 1.0
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


def encode_batch(alphabet: Alphabet, texts):
    """Returns `(chars (B, U) int32, mask (B, U) bool)`, 0-padded to the longest text."""
    width = max(len(t) for t in texts)
    chars = np.zeros((len(texts), width), np.int32)
    for i, text in enumerate(texts):
        chars[i, : len(text)] = alphabet.encode(text)
    return chars, chars != 0


def normalize(synth: Synthesizer, strokes) -> np.ndarray:
    from handwriting.data import normalize_strokes

    return normalize_strokes(np.asarray(strokes, np.float32), synth.offset_mean, synth.offset_std)


def denormalize(synth: Synthesizer, strokes) -> np.ndarray:
    from handwriting.data import denormalize_strokes

    strokes = np.asarray(strokes, np.float32)
    return denormalize_strokes(strokes, synth.offset_mean, synth.offset_std)


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


def save_strokes_json(samples, path) -> None:
    """Writes samples as the project's stroke JSON, atomically.

    `{"format": "handwriting-strokes", "version": 1, "lines": [{"text", "strokes"}, ...]}`,
    strokes as `[[dx, dy, eos], ...]` with y up; `load_prime` reads it back.
    """
    from handwriting import files

    obj = {
        "format": STROKES_FORMAT,
        "version": 1,
        "lines": [
            {"text": s.text, "strokes": np.round(s.strokes.astype(np.float64), 4).tolist()}
            for s in samples
        ],
    }
    files.write_text(path, json.dumps(obj, ensure_ascii=False) + "\n")
