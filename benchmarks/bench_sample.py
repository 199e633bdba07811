"""Sampling speed of the `paper`-size synthesis network, its file sizes, and int8 accuracy.

Rows: points/s at batch 1 with the tf.function loop (`sample.generate`), the SavedModel's
`generate`, the TFLite float32 and int8 samplers driven by `export/litert_runner.py`; at
batch 64 with the tf.function loop and batch-64 TFLite steps (float32 and int8, driven by the
runner's `write_lines`); then the sizes of `model.keras`, the SavedModel and the two
`.tflite` files. Every run samples lines of `TEXT` with random weights; a point is one
network step (the window stops each line when it passes the text).

With a trained model (`--model RUN_DIR`, default `runs/demo` when it holds `model.keras`) and
its data set (`--data DIR`, default the run's `data.dir`), it also exports that model and
reports the validation NLL (nats per point, teacher forcing over the first `VALID_LINES`
lines of the `valid` split) of the Keras model and of the float32 and int8 TFLite steps, and
the int8 / float32 ratio (goal: within 2%).

    python -m benchmarks --only sample
    python -m benchmarks.bench_sample --model runs/demo --data data/corpus   # this file alone
"""

import argparse
import os
import shutil
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXT = "the quick brown fox jumps"  # 25 characters: about 600 points at the initial pace
BATCH = 64
THREADS = 2  # the machine's cores: the TFLite steps use both
VALID_LINES = 32  # validation lines of the int8 accuracy check
GOALS = {
    "tflite float32, batch 1": ">= 5,000",
    "tflite int8, batch 1": ">= 10,000",
    f"tf.function, batch {BATCH}": ">= 24,000",
    f"tflite float32, batch {BATCH}": ">= 24,000",
    f"tflite int8, batch {BATCH}": ">= 24,000",
    "validation NLL int8 / float32": "within 2%",
}


def _paper_run(workdir):
    import keras

    from handwriting import model as model_lib
    from handwriting import presets
    from handwriting.alphabet import PRINTABLE_ASCII, Alphabet
    from handwriting.dataset_info import DatasetInfo

    run = os.path.join(workdir, "sample-paper-run")
    shutil.rmtree(run, ignore_errors=True)
    os.makedirs(run)
    keras.utils.set_random_seed(0)
    cfg = presets.preset("paper")
    alphabet = Alphabet(PRINTABLE_ASCII)
    model_lib.build_model(cfg.model, alphabet.size).save(os.path.join(run, "model.keras"))
    cfg.save(run)
    DatasetInfo(alphabet=alphabet, offset_mean=(0.0, 0.0), offset_std=(1.0, 1.0), splits={}).save(
        run
    )
    return run


def _rate(function, repeats=5):
    """Best points/s over `repeats` timed calls after one warm-up; `function` returns points."""
    function()
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        points = function()
        best = max(best, points / (time.perf_counter() - start))
    return best


def _size(path):
    if os.path.isdir(path):
        return sum(
            os.path.getsize(os.path.join(root, name))
            for root, _, names in os.walk(path)
            for name in names
        )
    return os.path.getsize(path)


def speed_rows(workdir):
    """The speed and size rows of the paper-size network with random weights."""
    import tensorflow as tf

    from export import __main__ as export_main
    from export import litert_runner, tflite
    from handwriting import sample

    model_dir = _paper_run(workdir)
    out = os.path.join(workdir, "sample-paper-export")
    export_main.export(model_dir, out)
    synth = sample.load(out)
    rows = []

    def row(name, value, note=""):
        rows.append(
            {
                "benchmark": name,
                "value": float(value),
                "unit": "points/s",
                "goal": GOALS.get(name, ""),
                "note": note,
            }
        )

    def python_loop(batch):
        def call():
            lines = sample.generate(synth, [TEXT] * batch, bias=1.0, seed=1)
            return sum(len(line.strokes) - 1 for line in lines)

        return call

    def lite_loop(runner, batch):
        def call():
            lines = runner.write_lines([TEXT] * batch, 1.0, 1)
            return sum(len(strokes) - 1 for strokes, _ in lines)

        return call

    row("tf.function, batch 1", _rate(python_loop(1)), "sample.generate, one line")
    generator = tf.saved_model.load(os.path.join(out, "savedmodel"))

    def saved():
        result = generator.signatures["generate"](
            text=tf.constant(TEXT), bias=tf.constant(1.0), seed=tf.constant(1, tf.int64)
        )
        return int(result["strokes"].shape[0]) - 1

    row("savedmodel, batch 1", _rate(saved), "signature generate")
    for name, int8 in (("tflite float32, batch 1", False), ("tflite int8, batch 1", True)):
        runner = litert_runner.Sampler(out, int8=int8, num_threads=THREADS)
        row(name, _rate(lite_loop(runner, 1)), f"litert_runner write_lines, {THREADS} threads")
    row(f"tf.function, batch {BATCH}", _rate(python_loop(BATCH)), f"{BATCH} lines of one text")
    for kind, quantize in (("float32", False), ("int8", True)):
        name = f"sampler_{kind}_b{BATCH}.tflite"
        flatbuffer = tflite.convert(synth.model, quantize=quantize, batch_size=BATCH)
        with open(os.path.join(out, name), "wb") as f:
            f.write(tflite.embed_metadata(flatbuffer, tflite.metadata(synth, synth.model)))
        runner = litert_runner.Sampler(out, filename=name, num_threads=THREADS)
        row(
            f"tflite {kind}, batch {BATCH}",
            _rate(lite_loop(runner, BATCH)),
            f"batch-{BATCH} step, write_lines, {THREADS} threads",
        )
    for name, path in (
        ("model.keras", os.path.join(out, "model.keras")),
        ("savedmodel/", os.path.join(out, "savedmodel")),
        ("sampler_float32.tflite", os.path.join(out, "sampler_float32.tflite")),
        ("sampler_int8.tflite", os.path.join(out, "sampler_int8.tflite")),
    ):
        rows.append(
            {
                "benchmark": f"size of {name}",
                "value": round(_size(path) / 2**20, 2),
                "unit": "MiB",
                "note": "paper network, 3 x 400, K = 10, M = 20",
            }
        )
    return rows


def _data_dir(model_dir, synth, data):
    """The data set folder: `data` if given, else the run's `data.dir` as given, or relative
    to the run's project (`RUN/../..`) or to this repository."""
    if data:
        return data
    configured = synth.config.data.dir
    project = os.path.dirname(os.path.dirname(os.path.abspath(model_dir)))
    candidates = [configured, os.path.join(project, configured), os.path.join(ROOT, configured)]
    for candidate in candidates:
        if os.path.isfile(os.path.join(candidate, "dataset.json")):
            return candidate
    raise SystemExit(f"{model_dir}: its data set is not in {candidates}; give --data DIR")


def validation_lines(synth, data_dir, count, text_length):
    """The first `count` lines of the `valid` split whose text fits `text_length` characters.

    Returns:
        A list of `(points (N, 3) normalised float32, ids (U,) int32)`.
    """
    import tensorflow as tf

    from handwriting import records, sample
    from handwriting.dataset_info import DatasetInfo

    info = DatasetInfo.load(data_dir)
    lines = []
    for serialized in tf.data.TFRecordDataset(info.shard_paths(data_dir, "valid")):
        line = records.parse_line(serialized)
        ids = line["chars"].numpy().astype(np.int32)
        if len(ids) > text_length:
            continue
        lines.append((sample.normalize(synth, line["strokes"].numpy()), ids))
        if len(lines) == count:
            break
    return lines


def accuracy_rows(workdir, model_dir, data):
    """Validation NLL of the trained model in `model_dir`: Keras, TFLite float32 and int8."""
    import tensorflow as tf

    from export import __main__ as export_main
    from export import litert_runner, tflite
    from handwriting import mixture, sample

    synth = sample.load(model_dir)
    data_dir = _data_dir(model_dir, synth, data)
    lines = validation_lines(synth, data_dir, VALID_LINES, tflite.TEXT_LENGTH)
    if not lines:
        raise SystemExit(f"{data_dir}: no validation line of at most {tflite.TEXT_LENGTH} chars")
    out = os.path.join(workdir, "sample-trained-export")
    export_main.export(model_dir, out)
    points = sum(len(p) - 1 for p, _ in lines)

    def nll(heads):
        total = 0.0
        for (line_points, _), head in zip(lines, heads, strict=True):
            log_p = mixture.point_log_likelihood(tf.constant(head), line_points[1:])
            total -= float(tf.reduce_sum(tf.cast(log_p, tf.float64)))
        return total / points

    # The Keras model reads all lines as one padded batch.
    model = sample.load(out).model
    strokes = np.zeros((len(lines), max(len(p) for p, _ in lines) - 1, 3), np.float32)
    chars = np.zeros((len(lines), max(len(i) for _, i in lines)), np.int32)
    for n, (line_points, ids) in enumerate(lines):
        strokes[n, : len(line_points) - 1] = line_points[:-1]
        chars[n, : len(ids)] = ids
    head = model.forward({"strokes": strokes, "chars": chars})["head"].numpy()
    values = {"keras": nll([head[n, : len(p) - 1] for n, (p, _) in enumerate(lines)])}
    for kind, int8 in (("float32", False), ("int8", True)):
        runner = litert_runner.Sampler(out, int8=int8)
        values[kind] = nll([runner.read_line(p[:-1], ids) for p, ids in lines])
    note = f"{len(lines)} valid lines, {points} points, {os.path.basename(model_dir)}"
    rows = [
        {
            "benchmark": f"validation NLL, {kind}",
            "value": value,
            "unit": "nats/point",
            "goal": "",
            "note": note,
        }
        for kind, value in values.items()
    ]
    change = abs(values["int8"] - values["float32"]) / abs(values["float32"])
    rows.append(
        {
            "benchmark": "validation NLL int8 / float32",
            "value": 100.0 * change,
            "unit": "% change",
            "goal": GOALS["validation NLL int8 / float32"],
            "note": f"int8 {values['int8']:.4f} vs float32 {values['float32']:.4f}",
        }
    )
    return rows


def _default_model() -> str:
    """`runs/demo` when `make train` has run here, else the demo model the package ships."""
    trained = os.path.join(ROOT, "runs", "demo")
    if os.path.isfile(os.path.join(trained, "model.keras")):
        return trained
    return os.path.join(ROOT, "handwriting", "assets", "demo")


def run(args):
    workdir = os.path.abspath(args.workdir)
    rows = speed_rows(workdir)
    model_dir = getattr(args, "model", None) or _default_model()
    if os.path.isfile(os.path.join(model_dir, "model.keras")):
        rows += accuracy_rows(workdir, model_dir, getattr(args, "data", None))
    else:
        print(
            f"# sample: no trained model in {model_dir}; the int8 accuracy rows are left out",
            file=sys.stderr,
        )
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_sample", description=__doc__)
    parser.add_argument("--workdir", default="bench-out", help="scratch folder")
    parser.add_argument(
        "--model", help="a trained run's directory (default runs/demo, else the shipped demo)"
    )
    parser.add_argument("--data", help="its data set folder (default the run's data.dir)")
    parser.add_argument("--accuracy-only", action="store_true", help="skip the speed rows")
    args = parser.parse_args(argv)
    os.makedirs(args.workdir, exist_ok=True)
    if args.accuracy_only:
        model_dir = args.model or _default_model()
        rows = accuracy_rows(os.path.abspath(args.workdir), model_dir, args.data)
    else:
        rows = run(args)
    for row in rows:
        print(f"{row['benchmark']:<36} {row['value']:>12,.4g} {row['unit']:<10} {row['note']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
