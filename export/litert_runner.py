"""Writes text as handwriting with the exported TFLite sampler: LiteRT and numpy only.

    python export/litert_runner.py EXPORT_DIR "hello world" -o hello.svg [--bias 1] [--seed 7]

What a phone app would do: no TensorFlow and no project package is imported. The sampler
(`sampler_float32.tflite`, or `--int8` for `sampler_int8.tflite`) runs one pen step per call
(its signature is described in `export/tflite.py`); this script sets the text once, feeds
the state back and the random draws in, stops when the step reports that the attention
window has passed the last character (phi(t, U) > phi(t, u) for every u) or when the point
budget is spent, denormalises the points and writes an SVG (or the project's stroke JSON for
`.json`). The sampler reads texts up to a fixed length (`text_length` in its metadata). The
budget and the finishing of a line (`point_budget`, `finish_line`) mirror
`handwriting.sample`'s; tests/test_runner.py holds them equal.

The draws are those of `handwriting.draws`: `numpy.random.default_rng([seed, i])` for line
i, four doubles per step, so a seed gives the strokes the Python sampler and the SavedModel
give.

Exit status 2 with a message naming the file and what is wrong for bad input: unknown
characters, empty text, a missing, truncated or damaged sampler or `sampler.json`, an output
that cannot be written (checked before sampling). A sampler whose bytes differ from those
exported (its embedded `sha256`, see `export/tflite.py`) is refused before it runs.
"""

import argparse
import hashlib
import json
import math
import os
import struct
import sys
import tempfile

import numpy as np

FLOAT_FILENAME = "sampler_float32.tflite"
INT8_FILENAME = "sampler_int8.tflite"
METADATA_FILENAME = "sampler.json"
METADATA_NAME = b"handwriting"
SIGNATURE = "step"
METADATA_VERSION = 2  # the sampler format this runner reads (`export/tflite.py`)
DIGEST_KEY = "sha256"  # the embedded metadata's checksum of the file (`export/tflite.py`)
INPUTS = ("point", "state", "text", "text_mask", "draws", "bias")  # of the signature
OUTPUTS = ("point", "state", "passed", "phi", "phi_end", "head")
FIRST_CHAR_ID = 2  # the alphabet's first character; 0 pads, 1 is the unknown character
# CPU threads of the interpreter: a step streams all weights from memory (15 MB float32,
# 4 MB int8 for the paper network), and each core adds its own bandwidth.
DEFAULT_THREADS = min(os.cpu_count() or 1, 4)


class RunnerError(ValueError):
    """Bad input; the message says what is wrong."""


def read_metadata(model_bytes: bytes, path: str) -> tuple:
    """The metadata of the sampler file `path`: embedded in the flatbuffer, else `sampler.json`
    beside it, checked by `check_metadata`.

    Args:
        model_bytes: the content of `path`, a flatbuffer the interpreter has accepted.
        path: the sampler file, named in the errors.

    Returns:
        `(metadata, the file it was read from)`.
    """
    from ai_edge_litert import schema_py_generated as schema

    try:
        model = schema.Model.GetRootAs(model_bytes, 0)
        embedded = None
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if entry.Name() == METADATA_NAME:
                embedded = bytes(model.Buffers(entry.Buffer()).DataAsNumpy())
    except (struct.error, IndexError, TypeError, ValueError) as e:
        raise RunnerError(f"{path}: not a TFLite model, or a truncated one ({e})") from None
    if embedded is not None:
        source = path
        try:
            meta = json.loads(embedded.decode("utf-8"))
        except ValueError as e:  # also UnicodeDecodeError
            raise RunnerError(f"{path}: its embedded metadata is not valid JSON ({e})") from None
        check_digest(model_bytes, meta, path)
    else:
        source = os.path.join(os.path.dirname(path), METADATA_FILENAME)
        try:
            with open(source, encoding="utf-8") as f:
                meta = json.load(f)
        except FileNotFoundError:
            raise RunnerError(
                f"{os.path.dirname(path)}: the sampler has no metadata and {source} is missing"
            ) from None
        except OSError as e:
            raise RunnerError(f"{source}: cannot be read ({e.strerror})") from None
        except ValueError as e:  # also UnicodeDecodeError
            raise RunnerError(f"{source}: not valid JSON ({e})") from None
    check_metadata(meta, source)
    return meta, source


def _digest_field(digest: str) -> bytes:
    return json.dumps({DIGEST_KEY: digest})[1:-1].encode("utf-8")


def check_digest(model_bytes: bytes, meta, path: str) -> None:
    """Raises `RunnerError` naming `path` unless the sampler's bytes are those exported: the
    sha256 of the file with its digest's 64 hex digits written as zeros is the digest."""
    digest = meta.get(DIGEST_KEY) if isinstance(meta, dict) else None
    if not (isinstance(digest, str) and len(digest) == 64):
        raise RunnerError(
            f"{path}: its embedded metadata holds no checksum ({DIGEST_KEY}); export the model "
            "again with `python -m export`"
        )
    field = _digest_field(digest)
    unsealed = model_bytes.replace(field, _digest_field("0" * 64))
    if model_bytes.count(field) != 1 or hashlib.sha256(unsealed).hexdigest() != digest:
        raise RunnerError(
            f"{path}: sha256 does not match its contents; the file was changed after it was "
            "exported (a damaged copy?); copy or export it again"
        )


def _is_number(value, positive=False) -> bool:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return number and math.isfinite(value) and (value > 0 or not positive)


def _numbers(count, positive=False):
    """The test of a list of `count` finite numbers (each > 0 with `positive`)."""
    return lambda value: (
        isinstance(value, list)
        and len(value) == count
        and all(_is_number(n, positive) for n in value)
    )


def _positive_ints(value) -> bool:
    return (
        isinstance(value, list)
        and len(value) > 0
        and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in value)
    )


# The metadata fields the runner reads: (name, test of the value, what the test wants).
METADATA_FIELDS = (
    ("alphabet.chars", lambda value: isinstance(value, str) and value != "", "a non-empty string"),
    ("state_widths", _positive_ints, "a list of positive ints"),
    ("start_point", _numbers(3), "a list of 3 numbers"),
    ("normalization.offset_mean", _numbers(2), "a list of 2 numbers"),
    ("normalization.offset_std", _numbers(2, positive=True), "a list of 2 numbers > 0"),
    ("points_per_char", lambda value: _is_number(value, positive=True), "a number > 0"),
)


def check_metadata(meta, source) -> None:
    """Raises `RunnerError` naming `source` and the field unless `meta` is a sampler's metadata
    of `METADATA_VERSION` holding every field of `METADATA_FIELDS`, each of its type."""
    if not isinstance(meta, dict):
        raise RunnerError(f"{source}: the metadata is not a JSON object")
    if meta.get("version") != METADATA_VERSION:
        raise RunnerError(
            f"{source}: sampler format version {meta.get('version')}; this runner reads "
            f"version {METADATA_VERSION}; export the model again with `python -m export`"
        )
    for name, valid, wanted in METADATA_FIELDS:
        value, parts = meta, name.split(".")
        for n, key in enumerate(parts):
            if not isinstance(value, dict):
                raise RunnerError(
                    f"{source}: field {'.'.join(parts[:n])!r} must be a JSON object, "
                    f"received {_shorten(value)}"
                )
            if key not in value:
                raise RunnerError(f"{source}: field {'.'.join(parts[: n + 1])!r} is missing")
            value = value[key]
        if not valid(value):
            raise RunnerError(
                f"{source}: field {name!r} must be {wanted}, received {_shorten(value)}"
            )


def _shorten(value, limit=60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Sampler:
    """The TFLite step with its metadata; `write` / `write_lines` turn text into strokes.

    Args:
        directory: the folder `python -m export` wrote.
        int8: use `sampler_int8.tflite` instead of `sampler_float32.tflite`.
        num_threads: CPU threads of the interpreter (default `DEFAULT_THREADS`).
        filename: another sampler file of the folder (e.g. one converted for a larger batch).

    Every shape of the step is fixed, so LiteRT runs it on its XNNPACK delegate (its default
    for CPUs), float32 and int8 alike.
    """

    def __init__(self, directory, int8=False, num_threads=None, filename=None):
        from ai_edge_litert.interpreter import Interpreter

        name = filename or (INT8_FILENAME if int8 else FLOAT_FILENAME)
        path = os.path.join(directory, name)
        try:
            with open(path, "rb") as f:
                content = f.read()
        except OSError as e:
            raise RunnerError(f"{path}: cannot be read ({e.strerror})") from None
        try:
            if not content:
                raise ValueError("the file is empty")
            # The interpreter verifies the flatbuffer before anything reads it.
            self.interpreter = Interpreter(
                model_content=content, num_threads=num_threads or DEFAULT_THREADS
            )
        except ValueError as e:
            raise RunnerError(f"{path}: not a TFLite model, or a truncated one ({e})") from None
        self.meta, source = read_metadata(content, path)
        try:
            runner = self.interpreter.get_signature_runner(SIGNATURE)
            inputs, outputs = runner.get_input_details(), runner.get_output_details()
        except ValueError as e:
            raise RunnerError(f"{path}: not a handwriting sampler ({e})") from None
        missing = sorted((set(INPUTS) - set(inputs)) | (set(OUTPUTS) - set(outputs)))
        if missing:
            raise RunnerError(
                f"{path}: not a handwriting sampler: its signature {SIGNATURE!r} lacks "
                f"{', '.join(missing)}"
            )
        self.inputs = {k: v["index"] for k, v in inputs.items()}
        self.outputs = {k: v["index"] for k, v in outputs.items()}
        self.batch, self.text_length, self.alphabet_size = (int(n) for n in inputs["text"]["shape"])
        state_width = int(inputs["state"]["shape"][-1])
        del runner  # it holds views of the interpreter's tensors, which block invoke()
        self.interpreter.allocate_tensors()
        alphabet = self.meta["alphabet"]
        chars = alphabet["chars"]
        if len(chars) + FIRST_CHAR_ID != self.alphabet_size:
            raise RunnerError(
                f"{source}: field 'alphabet.chars' holds {len(chars)} characters; the sampler "
                f"{path} reads {self.alphabet_size - FIRST_CHAR_ID} (metadata of another export?)"
            )
        self.ids = {c: i + FIRST_CHAR_ID for i, c in enumerate(chars)}
        self.state_width = sum(self.meta["state_widths"])
        if self.state_width != state_width:
            raise RunnerError(
                f"{source}: field 'state_widths' sums to {self.state_width}; the sampler {path} "
                f"has a state {state_width} wide (metadata of another export?)"
            )
        self.start = np.asarray(self.meta["start_point"], np.float32)
        normalization = self.meta["normalization"]
        self.normalization = (normalization["offset_mean"], normalization["offset_std"])

    def encode(self, text: str) -> np.ndarray:
        """Returns the ids of `text`; raises `RunnerError` for text the sampler cannot read."""
        if not isinstance(text, str) or not text.strip():
            raise RunnerError("text is empty; give at least one character to write")
        if len(text) > self.text_length:
            raise RunnerError(
                f"text has {len(text)} characters; this sampler reads at most "
                f"{self.text_length} per line: split the text into lines"
            )
        unknown = [(i, c) for i, c in enumerate(text) if c not in self.ids]
        if unknown:
            listed = ", ".join(f"{c!r} (U+{ord(c):04X}) at position {i}" for i, c in unknown[:5])
            raise RunnerError(
                f"text holds characters outside the model's alphabet: {listed}. "
                f"The alphabet is: {self.meta['alphabet']['chars']!r}"
            )
        return np.array([self.ids[c] for c in text], np.int32)

    def text_inputs(self, id_lists):
        """The step's `text` `(B, L, V)` one-hot and `text_mask` `(B, L)` for up to B lines.

        Rows past the given lines repeat the first line (their output is not used).
        """
        text = np.zeros((self.batch, self.text_length, self.alphabet_size), np.float32)
        mask = np.zeros((self.batch, self.text_length), np.float32)
        for row in range(self.batch):
            ids = id_lists[row if row < len(id_lists) else 0]
            text[row, np.arange(len(ids)), ids] = 1.0
            mask[row, : len(ids)] = 1.0
        return text, mask

    def step(self, point, state, text, text_mask, draws, bias):
        """One call of the TFLite step with every input given; returns every output."""
        it = self.interpreter
        for name, value in (
            ("point", point),
            ("state", state),
            ("text", text),
            ("text_mask", text_mask),
            ("draws", draws),
            ("bias", bias),
        ):
            it.set_tensor(self.inputs[name], np.asarray(value, np.float32))
        it.invoke()
        return {name: it.get_tensor(index) for name, index in self.outputs.items()}

    def write(self, text: str, bias: float = 0.0, seed: int = 0):
        """Samples one line; returns `(strokes (T, 3) float32 in data units, finished)`."""
        return self.write_lines([text], bias, seed)[0]

    def write_lines(self, texts, bias: float = 0.0, seed: int = 0) -> list:
        """Samples lines, B at a time; line i reads `numpy.random.default_rng([seed, i])`.

        Returns:
            A list of `(strokes (T, 3) float32 in data units, finished)`, one per text.
        """
        ids = [self.encode(text) for text in texts]
        if not ids:
            raise RunnerError("no text to write")
        try:
            bias = float(bias)
        except (TypeError, ValueError):
            raise RunnerError(f"bias must be a number >= 0, received {bias!r}") from None
        if not (math.isfinite(bias) and bias >= 0):
            raise RunnerError(f"bias must be a number >= 0, received {bias!r}")
        if isinstance(seed, bool) or not (isinstance(seed, int) and 0 <= seed < 2**32):
            raise RunnerError(f"seed must be an int in [0, 2**32), received {seed!r}")
        it = self.interpreter
        it.set_tensor(self.inputs["bias"], np.full((self.batch,), bias, np.float32))
        results = []
        for first in range(0, len(ids), self.batch):
            chunk = ids[first : first + self.batch]
            text, mask = self.text_inputs(chunk)
            it.set_tensor(self.inputs["text"], text)
            it.set_tensor(self.inputs["text_mask"], mask)
            budgets = [point_budget(len(i), self.meta["points_per_char"]) for i in chunk]
            streams = [np.random.default_rng([seed, first + n]) for n in range(len(chunk))]
            for points, finished in self._run(budgets, streams):
                results.append((finish_line(points, *self.normalization), finished))
        return results

    def read_line(self, points, ids) -> np.ndarray:
        """Teacher forcing: the network reads the given points of one line in turn.

        Args:
            points: `(T, 3)` normalised points x_1 .. x_T (as the network reads them).
            ids: the line's alphabet ids (`encode`).

        Returns:
            `(T, 1 + 6M)` float32: the head after each point, the mixture of the next one.
        """
        if self.batch != 1:
            raise RunnerError(f"read_line drives batch-1 samplers; this one has {self.batch}")
        it, inputs, outputs = self.interpreter, self.inputs, self.outputs
        text, mask = self.text_inputs([ids])
        it.set_tensor(inputs["text"], text)
        it.set_tensor(inputs["text_mask"], mask)
        it.set_tensor(inputs["bias"], np.zeros((1,), np.float32))
        it.set_tensor(inputs["draws"], np.full((1, 4), 0.5, np.float32))
        self._reset()
        points = np.asarray(points, np.float32)
        heads = np.zeros((len(points), int(it.get_tensor(outputs["head"]).shape[-1])), np.float32)
        for t, point in enumerate(points):
            it.set_tensor(inputs["point"], point[None])
            it.invoke()
            heads[t] = it.get_tensor(outputs["head"])[0]
            it.set_tensor(inputs["state"], it.get_tensor(outputs["state"]))
        return heads

    def _reset(self):
        it = self.interpreter
        it.set_tensor(self.inputs["point"], np.tile(self.start, (self.batch, 1)))
        it.set_tensor(self.inputs["state"], np.zeros((self.batch, self.state_width), np.float32))

    def _run(self, budgets, streams):
        """Samples up to B lines at once (a batch-1 sampler: one line); each stops on its own,
        as `sample.sampling_loop` does: when the step reports that its window has passed its
        text, or when its budget is spent.

        A step costs about 100 us, so the loop does little else: it reads and writes the
        tensors through views (`Interpreter.tensor`), each dropped before the next `invoke`
        (every `set_tensor` / `get_tensor` pair would add a few us), and looks at each line
        only at a step where one may stop.

        Args:
            budgets: the most points each line may draw (`point_budget`).
            streams: each line's random stream (`numpy.random.default_rng([seed, i])`).

        Returns:
            A list of `(points (T, 3) float32 normalised, finished)`, one per line.
        """
        it = self.interpreter
        draws_in, point_in, state_in = (
            it.tensor(self.inputs[k]) for k in ("draws", "point", "state")
        )
        passed_out, point_out, state_out = (
            it.tensor(self.outputs[k]) for k in ("passed", "point", "state")
        )
        lines = len(budgets)
        steps = max(budgets) + 1
        draws = np.zeros((steps, self.batch, 4), np.float32)  # rows past the lines: unused
        for n, stream in enumerate(streams):
            draws[:, n] = line_draws(stream, steps)
        points = np.zeros((steps, self.batch, 3), np.float32)  # [steps, B, 3]
        writing = np.arange(self.batch) < lines  # [B] the lines not stopped yet
        stops = set(budgets)  # the steps at which a line's budget is spent
        ends = {}  # line -> (points drawn, finished), once it has stopped
        # The bytes of `passed` when no line has passed: comparing raw bytes is the cheapest
        # test after an invoke (a numpy reduction there costs a step about 10%, measured).
        none_passed = bytes(self.batch)
        self._reset()
        for t in range(steps):
            draws_in()[...] = draws[t]
            it.invoke()
            if t in stops or (
                passed_out().tobytes() != none_passed and (passed_out() & writing).any()
            ):
                passed = passed_out().tolist()  # a copy: no view may outlive the next invoke
                for n in range(lines):
                    if writing[n] and (passed[n] or t >= budgets[n]):
                        ends[n] = (t, bool(passed[n]))
                        writing[n] = False
                if len(ends) == lines:
                    break
            points[t] = point_out()
            point_in()[...] = points[t]
            state_in()[...] = state_out()
        return [(points[: ends[n][0], n], ends[n][1]) for n in range(lines)]


def point_budget(text_length: int, points_per_char: float) -> int:
    """The most points a line of `text_length` characters may draw.

    Mirrors `handwriting.sample.point_budget` (tests/test_runner.py holds them equal).
    """
    return math.ceil(points_per_char * (text_length + 1))


def finish_line(points, offset_mean, offset_std) -> np.ndarray:
    """The strokes of a sampled line: `(T, 3)` normalised points -> `(T + 1, 3)` float32
    `(dx, dy, eos)` in the data's units, the start point `(0, 0, 0)` first, eos = 1 on the
    last point; denormalised in float64 and rounded once to float32.

    Mirrors `handwriting.sample.finish_line` (tests/test_runner.py holds them equal).
    """
    shift = np.array([*offset_mean, 0.0])
    scale = np.array([*offset_std, 1.0])
    drawn = np.asarray(points).astype(np.float64) * scale + shift
    strokes = np.concatenate([np.zeros((1, 3)), drawn]).astype(np.float32)
    strokes[-1, 2] = 1.0
    return strokes


def line_draws(stream, steps) -> np.ndarray:
    """`(steps, 4)` float32 draws of one line: two uniforms, then two standard normals.

    `stream.random((steps, 4))` reads the same doubles as `steps` calls of `random(4)`, the
    four numbers per step of `handwriting.draws`; the normals are their Box-Muller transform.
    """
    raw = stream.random((steps, 4))
    radius = np.sqrt(-2.0 * np.log(1.0 - raw[:, 2]))
    angle = (2.0 * math.pi) * raw[:, 3]
    draws = np.stack([raw[:, 0], raw[:, 1], radius * np.cos(angle), radius * np.sin(angle)], 1)
    return draws.astype(np.float32)


def to_svg(strokes, stroke_width=None) -> str:
    """A plain SVG of one line: a polyline per stroke, y flipped to point down."""
    positions = np.cumsum(strokes[:, :2].astype(np.float64), axis=0)
    positions[:, 1] *= -1.0
    ends = np.flatnonzero(strokes[:, 2] > 0.5) + 1
    pieces = [p for p in np.split(positions, ends) if len(p)]
    low, high = positions.min(axis=0), positions.max(axis=0)
    size = np.maximum(high - low, 1e-6)
    pen = stroke_width or max(size[1], size[0] / 8) * 0.025
    pad = 4 * pen
    paths = []
    for piece in pieces:
        coords = " L".join(f"{x - low[0] + pad:.3f} {y - low[1] + pad:.3f}" for x, y in piece)
        paths.append(f'<path d="M{coords}{" l0 0" if len(piece) == 1 else ""}"/>')
    width, height = size + 2 * pad
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{width:.2f}" '
        f'height="{height:.2f}" viewBox="0 0 {width:.3f} {height:.3f}">'
        f'<g fill="none" stroke="black" stroke-width="{pen:.3f}" stroke-linecap="round" '
        f'stroke-linejoin="round">{"".join(paths)}</g></svg>\n'
    )


def output_problem(path) -> str | None:
    """Why the strokes cannot be written to `path`, in words; None when they can.

    Checked before sampling: `path` must not be a folder, and the nearest existing folder
    above it must be a writable folder (missing folders in between are created).
    """
    path = os.path.abspath(path)
    if os.path.isdir(path):
        return "is a folder; give a file name"
    above = os.path.dirname(path)
    while not os.path.exists(above):
        above = os.path.dirname(above)
    if not os.path.isdir(above):
        return f"{above} is a file, not a folder"
    if not os.access(above, os.W_OK | os.X_OK):
        return f"no permission to write in {above}"
    return None


def write_atomically(path, data: bytes) -> None:
    """Writes `data` to `path` through a temporary file beside it, renamed onto `path`."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="litert_runner.py",
        description="Write text as handwriting with the exported TFLite sampler (no TensorFlow).",
        epilog='example: python export/litert_runner.py exported "hello world" -o hello.svg '
        "--bias 1 --seed 7",
    )
    parser.add_argument("export_dir", help="the folder `python -m export` wrote")
    parser.add_argument("text", help="the text to write (one line)")
    parser.add_argument("-o", "--output", required=True, help="an .svg, or .json for the strokes")
    parser.add_argument("--bias", type=float, default=0.0, help="sampling bias >= 0 (default 0)")
    parser.add_argument("--seed", type=int, default=0, help="random seed in [0, 2**32)")
    parser.add_argument("--int8", action="store_true", help="use the int8 (quantised) sampler")
    parser.add_argument(
        "--threads", type=int, default=DEFAULT_THREADS, help="CPU threads (default %(default)s)"
    )
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, received {args.threads}")
    if not args.output.lower().endswith((".svg", ".json")):
        parser.error(f"--output must end with .svg or .json, received {args.output!r}")
    problem = output_problem(args.output)
    if problem:
        print(f"error: {args.output}: {problem}", file=sys.stderr)
        return 2
    try:
        sampler = Sampler(args.export_dir, int8=args.int8, num_threads=args.threads)
        strokes, finished = sampler.write(args.text, args.bias, args.seed)
    except RunnerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.output.lower().endswith(".json"):
        obj = {
            "format": "handwriting-strokes",
            "version": 1,
            "lines": [{"text": args.text, "strokes": strokes.astype(np.float64).tolist()}],
        }
        data = (json.dumps(obj) + "\n").encode("utf-8")
    else:
        data = to_svg(strokes).encode("utf-8")
    try:
        write_atomically(args.output, data)
    except OSError as e:  # e.g. a full disk, or the folder changed while sampling
        print(f"error: {args.output}: cannot be written ({e.strerror or e})", file=sys.stderr)
        return 2
    if not finished:
        print("note: the point budget ran out before the window reached the end", file=sys.stderr)
    print(f"wrote {args.output} ({len(strokes)} points)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
