"""Writes text as handwriting with the exported TFLite sampler: LiteRT and numpy only.

    python export/litert_runner.py EXPORT_DIR "hello world" -o hello.svg [--bias 1] [--seed 7]

What a phone app would do: no TensorFlow and no project package is imported. The sampler
(`sampler_float32.tflite`, or `--int8` for `sampler_int8.tflite`) runs one pen step per call;
this script feeds it the text, the state and the random draws, stops when the attention window
has passed the last character (phi(t, U) > phi(t, u) for every u) or the point budget is spent,
denormalises the points and writes an SVG (or the project's stroke JSON for `.json`).

The draws are those of `handwriting.draws`: `numpy.random.default_rng([seed, 0])`, four
doubles per step, so a seed gives the strokes the Python sampler and the SavedModel give.
Exit status 2 with a message for bad input (unknown characters, empty text, a missing export).
"""

import argparse
import json
import math
import os
import sys
import tempfile

import numpy as np

FLOAT_FILENAME = "sampler_float32.tflite"
INT8_FILENAME = "sampler_int8.tflite"
METADATA_FILENAME = "sampler.json"
METADATA_NAME = b"handwriting"
SIGNATURE = "step"


class RunnerError(ValueError):
    """Bad input; the message says what is wrong."""


def read_metadata(model_bytes: bytes, directory: str) -> dict:
    """The sampler's metadata: embedded in the flatbuffer, else `sampler.json` beside it."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(model_bytes, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() == METADATA_NAME:
            data = model.Buffers(entry.Buffer()).DataAsNumpy()
            return json.loads(bytes(data).decode("utf-8"))
    path = os.path.join(directory, METADATA_FILENAME)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise RunnerError(
            f"{directory}: the sampler has no metadata and {path} is missing"
        ) from None


class Sampler:
    """The TFLite step with its metadata; `write(text, bias, seed)` gives strokes."""

    def __init__(self, directory, int8=False, num_threads=None):
        from ai_edge_litert.interpreter import Interpreter

        path = os.path.join(directory, INT8_FILENAME if int8 else FLOAT_FILENAME)
        try:
            with open(path, "rb") as f:
                content = f.read()
        except OSError as e:
            raise RunnerError(f"{path}: cannot be read ({e.strerror})") from None
        self.meta = read_metadata(content, directory)
        self.interpreter = Interpreter(model_content=content, num_threads=num_threads)
        runner = self.interpreter.get_signature_runner(SIGNATURE)
        self.inputs = {k: v["index"] for k, v in runner.get_input_details().items()}
        self.outputs = {k: v["index"] for k, v in runner.get_output_details().items()}
        self.batch = int(runner.get_input_details()["point"]["shape"][0])
        alphabet = self.meta["alphabet"]
        self.ids = {c: i + 2 for i, c in enumerate(alphabet["chars"])}  # ids from 2
        self.state_width = sum(self.meta["state_widths"])
        self.shift = np.array([*self.meta["normalization"]["offset_mean"], 0.0])
        self.scale = np.array([*self.meta["normalization"]["offset_std"], 1.0])
        self._length = None

    def encode(self, text: str) -> np.ndarray:
        """Returns the ids of `text`; raises `RunnerError` naming unknown characters."""
        if not isinstance(text, str) or not text.strip():
            raise RunnerError("text is empty; give at least one character to write")
        limit = int(self.meta.get("max_text_chars", 2000))
        if len(text) > limit:
            raise RunnerError(f"text has {len(text)} characters; the limit is {limit}")
        unknown = [(i, c) for i, c in enumerate(text) if c not in self.ids]
        if unknown:
            listed = ", ".join(f"{c!r} (U+{ord(c):04X}) at position {i}" for i, c in unknown[:5])
            raise RunnerError(
                f"text holds characters outside the model's alphabet: {listed}. "
                f"The alphabet is: {self.meta['alphabet']['chars']!r}"
            )
        return np.array([self.ids[c] for c in text], np.int32)

    def _prepare(self, length):
        if self._length != length:
            for name in ("chars", "chars_mask"):
                self.interpreter.resize_tensor_input(self.inputs[name], [self.batch, length])
            self.interpreter.allocate_tensors()
            self._length = length

    def step(self, point, state, chars, mask, uniforms, normals, bias):
        """One call of the TFLite step; arrays shaped as the signature says."""
        it = self.interpreter
        self._prepare(chars.shape[1])
        for name, value in (
            ("point", point),
            ("state", state),
            ("chars", chars),
            ("chars_mask", mask),
            ("uniforms", uniforms),
            ("normals", normals),
            ("bias", bias),
        ):
            it.set_tensor(self.inputs[name], value)
        it.invoke()
        return {name: it.get_tensor(index) for name, index in self.outputs.items()}

    def write(self, text: str, bias: float = 0.0, seed: int = 0):
        """Samples one line; returns `(strokes (T, 3) float32 in data units, finished)`."""
        ids = self.encode(text)
        if not (math.isfinite(bias) and bias >= 0):
            raise RunnerError(f"bias must be a number >= 0, received {bias}")
        if not (isinstance(seed, int) and 0 <= seed < 2**32):
            raise RunnerError(f"seed must be an int in [0, 2**32), received {seed}")
        if self.batch != 1:
            raise RunnerError(
                f"this runner drives batch-1 samplers; the file has batch {self.batch}"
            )
        chars = ids[None]
        mask = np.ones(chars.shape, np.float32)
        budget = math.ceil(self.meta["points_per_char"] * (len(ids) + 1))
        stream = np.random.default_rng([seed, 0])
        state = np.zeros((1, self.state_width), np.float32)
        point = np.asarray(self.meta["start_point"], np.float32)[None]
        bias_array = np.full((1,), bias, np.float32)
        drawn = []
        finished = False
        while True:
            raw = stream.random(4)
            uniforms = raw[None, :2].astype(np.float32)
            radius = math.sqrt(-2.0 * math.log(1.0 - raw[2]))
            angle = 2.0 * math.pi * raw[3]
            normals = np.array([[radius * math.cos(angle), radius * math.sin(angle)]], np.float32)
            out = self.step(point, state, chars, mask, uniforms, normals, bias_array)
            if out["phi_end"][0] > max(float(out["phi"][0].max()), 0.0):
                finished = True
                break
            if len(drawn) >= budget:
                break
            point = out["point"].copy()
            state = out["state"].copy()
            drawn.append(point[0])
        points = np.array(drawn, np.float64).reshape(-1, 3) * self.scale + self.shift
        strokes = np.concatenate([np.zeros((1, 3)), points]).astype(np.float32)
        strokes[-1, 2] = 1.0
        return strokes, finished


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


def write_atomically(path, data: bytes) -> None:
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
    args = parser.parse_args(argv)
    if not args.output.lower().endswith((".svg", ".json")):
        parser.error(f"--output must end with .svg or .json, received {args.output!r}")
    try:
        sampler = Sampler(args.export_dir, int8=args.int8)
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
        write_atomically(args.output, (json.dumps(obj) + "\n").encode("utf-8"))
    else:
        write_atomically(args.output, to_svg(strokes).encode("utf-8"))
    if not finished:
        print("note: the point budget ran out before the window reached the end", file=sys.stderr)
    print(f"wrote {args.output} ({len(strokes)} points)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
