"""Sampling speed of the `paper`-size synthesis network (random weights) and its file sizes.

Rows: points/s at batch 1 with the tf.function loop (`sample.generate`), the SavedModel's
`generate`, the TFLite float32 and int8 samplers driven by `export/litert_runner.py`'s loop,
and at batch 64 with the tf.function loop and a batch-64 TFLite float32 step; then the sizes
of `model.keras`, the SavedModel and the two `.tflite` files. Every run samples lines of
`TEXT`; a point is one network step (the window stops each line when it passes the text).
"""

import os
import shutil
import time

import numpy as np

TEXT = "the quick brown fox jumps"  # 25 characters: about 600 points at the initial pace
BATCH = 64
GOALS = {
    "tflite float32, batch 1": ">= 5,000",
    "tflite int8, batch 1": ">= 10,000",
    "tf.function, batch 64": ">= 24,000",
    "tflite float32, batch 64": ">= 24,000",
}


def _paper_run(workdir):
    import keras

    from handwriting import config
    from handwriting import model as model_lib
    from handwriting.alphabet import PRINTABLE_ASCII, Alphabet
    from handwriting.dataset_info import DatasetInfo

    run = os.path.join(workdir, "sample-paper-run")
    shutil.rmtree(run, ignore_errors=True)
    os.makedirs(run)
    keras.utils.set_random_seed(0)
    cfg = config.preset("paper")
    alphabet = Alphabet(PRINTABLE_ASCII)
    model_lib.build_model(cfg.model, alphabet.size).save(os.path.join(run, "model.keras"))
    cfg.save(run)
    DatasetInfo(alphabet=alphabet, offset_mean=(0.0, 0.0), offset_std=(1.0, 1.0), splits={}).save(
        run
    )
    return run


def _rate(function, repeats=2):
    """Best points/s over `repeats` timed calls after one warm-up; `function` returns points."""
    function()
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        points = function()
        best = max(best, points / (time.perf_counter() - start))
    return best


def _tflite_batch_loop(path, batch, text_ids, steps):
    """Drives a batch-`batch` TFLite step `steps` times; returns points/s."""
    from ai_edge_litert.interpreter import Interpreter

    from export import litert_runner

    interpreter = Interpreter(model_path=path)
    runner = interpreter.get_signature_runner("step")
    inputs = {k: v["index"] for k, v in runner.get_input_details().items()}
    outputs = {k: v["index"] for k, v in runner.get_output_details().items()}
    del runner  # it holds views into the interpreter, which block resizing
    meta = litert_runner.read_metadata(open(path, "rb").read(), os.path.dirname(path))
    chars = np.tile(text_ids[None], [batch, 1]).astype(np.int32)
    for name in ("chars", "chars_mask"):
        interpreter.resize_tensor_input(inputs[name], list(chars.shape))
    interpreter.allocate_tensors()
    rng = np.random.default_rng(0)
    state = np.zeros((batch, sum(meta["state_widths"])), np.float32)
    point = np.zeros((batch, 3), np.float32)
    interpreter.set_tensor(inputs["chars"], chars)
    interpreter.set_tensor(inputs["chars_mask"], np.ones(chars.shape, np.float32))
    interpreter.set_tensor(inputs["bias"], np.ones((batch,), np.float32))

    def run():
        nonlocal point, state
        for _ in range(steps):
            raw = rng.random((batch, 4))
            interpreter.set_tensor(inputs["uniforms"], raw[:, :2].astype(np.float32))
            interpreter.set_tensor(inputs["normals"], raw[:, 2:].astype(np.float32))
            interpreter.set_tensor(inputs["point"], point)
            interpreter.set_tensor(inputs["state"], state)
            interpreter.invoke()
            point = interpreter.get_tensor(outputs["point"])
            state = interpreter.get_tensor(outputs["state"])
        return steps * batch

    return _rate(run)


def _size(path):
    if os.path.isdir(path):
        return sum(
            os.path.getsize(os.path.join(root, name))
            for root, _, names in os.walk(path)
            for name in names
        )
    return os.path.getsize(path)


def run(args):
    import tensorflow as tf

    from export import __main__ as export_main
    from export import litert_runner, tflite
    from handwriting import sample

    workdir = os.path.abspath(args.workdir)
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

    row("tf.function, batch 1", _rate(python_loop(1)), "sample.generate, one line")
    generator = tf.saved_model.load(os.path.join(out, "savedmodel"))

    def saved():
        result = generator.signatures["generate"](
            text=tf.constant(TEXT), bias=tf.constant(1.0), seed=tf.constant(1, tf.int64)
        )
        return int(result["strokes"].shape[0]) - 1

    row("savedmodel, batch 1", _rate(saved), "signature generate")
    for name, int8 in (("tflite float32, batch 1", False), ("tflite int8, batch 1", True)):
        runner = litert_runner.Sampler(out, int8=int8)

        def lite(runner=runner):
            strokes, _ = runner.write(TEXT, 1.0, 1)
            return len(strokes) - 1

        row(name, _rate(lite), "litert_runner.Sampler.write (Python loop included)")
    row(f"tf.function, batch {BATCH}", _rate(python_loop(BATCH)), f"{BATCH} lines of one text")
    batch_path = os.path.join(workdir, "sampler_float32_b64.tflite")
    with open(batch_path, "wb") as f:
        f.write(
            tflite.embed_metadata(
                tflite.convert(synth.model, quantize=False, batch_size=BATCH),
                tflite.metadata(synth, synth.model),
            )
        )
    text_ids = synth.alphabet.encode(TEXT)
    row(
        f"tflite float32, batch {BATCH}",
        _tflite_batch_loop(batch_path, BATCH, text_ids, steps=100),
        "batch-64 step, 100 steps",
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
