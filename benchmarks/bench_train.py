"""Training throughput (forward + backward + optimiser update) in pen points per second.

Random data, batch 32 x 700 points, the `paper` and `demo` networks (Adam, global-norm clip
10, as the PyTorch reference trains). When the PyTorch reference environment exists (`make
peer` installs it into `.peer/`; `PEER_PYTHON` names another interpreter), the reference runs
too, alternating with ours; the figures are medians and the ratio is ours / reference.

    python -m benchmarks --only train
    python benchmarks/bench_train.py [--presets paper,demo] [--set model.dtype_policy=...]
        [--rounds 3] [--steps 3] [--peer-variant eager|compile_step] [--no-peer]
"""

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time

BATCH, POINTS, CHARS, ALPHABET = 32, 700, 30, 60  # the reference's sizes
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The PyTorch reference and the environment `make peer` installs it into.
PEER_PYTHON = os.environ.get("PEER_PYTHON", os.path.join(ROOT, ".peer", "bin", "python"))
PEER_SCRIPT = os.path.join(ROOT, "..", "shared", "peer", "torch_graves_bench.py")


def _load():
    return os.getloadavg()[0]


def _make_step(preset_name, overrides=()):
    """Returns `(run(steps) -> seconds, points per step)` for a compiled training step."""
    import keras
    import numpy as np
    import tensorflow as tf

    from handwriting import presets
    from handwriting.model import build_model, build_optimizer

    cfg = presets.preset(preset_name).with_overrides(list(overrides))
    train = dataclasses.replace(cfg.train, optimizer="adam", learning_rate=1e-3, clip_norm=10.0)
    keras.utils.set_random_seed(cfg.train.seed)
    model = build_model(cfg.model, ALPHABET, train)
    model.compile(optimizer=build_optimizer(train), jit_compile=False)
    model.optimizer.build(model.trainable_variables)
    rng = np.random.default_rng(1)
    strokes = rng.normal(size=(BATCH, POINTS, 3)).astype(np.float32)
    strokes[..., 2] = rng.random((BATCH, POINTS)) < 0.05
    targets = rng.normal(size=(BATCH, POINTS, 3)).astype(np.float32)
    targets[..., 2] = rng.random((BATCH, POINTS)) < 0.05
    inputs = {
        "strokes": tf.constant(strokes),
        "strokes_mask": tf.ones((BATCH, POINTS), tf.bool),
        "chars": tf.constant(rng.integers(2, ALPHABET, size=(BATCH, CHARS)), tf.int32),
        "chars_mask": tf.ones((BATCH, CHARS), tf.bool),
        "alignment": tf.fill((BATCH, POINTS), -1),
    }
    data = (inputs, tf.constant(targets), tf.ones((BATCH, POINTS), tf.float32))
    step = tf.function(model.train_step)

    def run(steps):
        start = time.perf_counter()
        for _ in range(steps):
            logs = step(data)
        float(logs["loss"])
        return time.perf_counter() - start

    run(2)  # trace and warm up
    return run, BATCH * POINTS


def _peer(steps, variant):
    out = subprocess.run(
        [PEER_PYTHON, PEER_SCRIPT, variant, str(steps), "2"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])["points_per_s"]


VARIANTS = (
    ("paper", ()),
    ("paper", ("model.dtype_policy=mixed_bfloat16",)),
    ("demo", ()),
    ("demo", ("model.dtype_policy=mixed_bfloat16",)),
)


def _label(preset, overrides):
    return " ".join([preset, *overrides]).replace("model.dtype_policy=", "")


def measure(variants=VARIANTS, rounds=3, steps=3, peer=None, peer_variant="eager"):
    """Returns benchmark rows; every figure is the median of `rounds`, variants alternating."""
    peer = os.path.exists(PEER_PYTHON) and os.path.exists(PEER_SCRIPT) if peer is None else peer
    steps_of = {v: _make_step(*v) for v in variants}
    ours = {v: [] for v in variants}
    theirs, loads = [], []
    for _ in range(rounds):
        for variant, (run_steps, points) in steps_of.items():
            loads.append(_load())
            ours[variant].append(points * steps / run_steps(steps))
        if peer:
            loads.append(_load())
            theirs.append(_peer(steps, peer_variant))
    load = f"1-min load {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores"
    rows = []
    for variant, values in ours.items():
        rows.append(
            {
                "benchmark": f"train {_label(*variant)} 32x700",
                "value": statistics.median(values),
                "unit": "points/s",
                "goal": ">= 10,000" if variant[0] == "paper" else "",
                "note": f"{load}; runs " + ", ".join(f"{v:,.0f}" for v in values),
            }
        )
    if theirs:
        rows.append(
            {
                "benchmark": f"torch reference ({peer_variant}) paper 32x700",
                "value": statistics.median(theirs),
                "unit": "points/s",
                "note": f"{load}; runs " + ", ".join(f"{v:,.0f}" for v in theirs),
            }
        )
        for variant, values in ours.items():
            if variant[0] == "paper":
                rows.append(
                    {
                        "benchmark": f"{_label(*variant)} / torch reference ({peer_variant})",
                        "value": round(statistics.median(values) / statistics.median(theirs), 3),
                        "unit": "x",
                        "goal": ">= 1.15",
                    }
                )
    return rows


def run(args):
    return measure()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="", help="e.g. paper,demo (default: all variants)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument(
        "--peer-variant", default="eager", choices=("eager", "compile_step"), help="torch variant"
    )
    parser.add_argument("--no-peer", action="store_true", help="skip the PyTorch reference")
    parser.add_argument("--set", action="append", default=[], help="config override, repeatable")
    args = parser.parse_args(argv)
    variants = VARIANTS
    if args.presets or args.set:
        names = args.presets.split(",") if args.presets else ["paper"]
        variants = tuple((name, tuple(args.set)) for name in names)
    rows = measure(
        variants=variants,
        rounds=args.rounds,
        steps=args.steps,
        peer=False if args.no_peer else None,
        peer_variant=args.peer_variant,
    )
    for row in rows:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.exit(main())
