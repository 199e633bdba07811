"""Training the reader (`handwriting.reader`) on a folder of shards, and its command line.

python -m handwriting.reader_training train --data data/corpus --out runs/reader --minutes 30
python -m handwriting.reader_training read --reader runs/reader samples.json
"""

import argparse
import json
import math
import os
import sys
import time
import warnings

if __name__ == "__main__":
    # As a command: TensorFlow first, without its no-GPU start-up notices.
    from handwriting import startup

    startup.import_tensorflow()

import keras

from handwriting import data, files, strokes
from handwriting.ctc import cer
from handwriting.dataset_info import DatasetError, DatasetInfo
from handwriting.errors import SampleError
from handwriting.reader import (
    BATCH_SIZE,
    CLIP_NORM,
    EVAL_EVERY,
    FILTERS,
    LEARNING_RATE,
    MODEL_FILENAME,
    READER_FILENAME,
    READER_FORMAT_VERSION,
    STEPS,
    UNITS,
    ReaderError,
    StrokeReader,
    load_reader,
    read,
)


def save_network(model, path) -> None:
    """Writes the network alone (no optimiser state) as a `.keras` file, atomically."""
    clone = type(model).from_config(model.get_config())
    clone.set_weights(model.get_weights())
    with files.atomic_path(path, keep_suffix=True) as tmp:
        clone.save(tmp)


class _Progress(keras.callbacks.Callback):
    """Stops at a step count or a time budget, logs each evaluation, keeps the best network.

    The time budget covers the evaluation that follows the last step: training stops when the
    time used plus the last evaluation's duration reaches it.
    """

    def __init__(self, out_dir, record, max_steps, budget_seconds, started, log):
        super().__init__()
        self.out_dir = out_dir
        self.record = record
        self.max_steps = max_steps
        self.budget_seconds = budget_seconds
        self.log = log
        self.started = started  # time.monotonic() when the run began
        self.round_started = time.monotonic()
        self.round_step = 0
        self.eval_seconds = 0.0
        self.best = math.inf

    def step(self) -> int:
        return int(self.model.optimizer.iterations.numpy())

    def on_train_batch_end(self, batch, logs=None):
        used = time.monotonic() - self.started
        if self.step() >= self.max_steps or (
            self.budget_seconds and used + self.eval_seconds >= self.budget_seconds
        ):
            self.model.stop_training = True

    def on_test_begin(self, logs=None):
        self.eval_started = time.monotonic()

    def on_test_end(self, logs=None):
        self.eval_seconds = time.monotonic() - self.eval_started

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        step = self.step()
        now = time.monotonic()
        train_seconds = now - self.round_started - self.eval_seconds
        entry = {
            "step": step,
            "minutes": round((now - self.started) / 60, 2),
            "steps_per_second": round((step - self.round_step) / max(train_seconds, 1e-9), 3),
            "loss": float(logs.get("loss", math.nan)),
            "val_loss": float(logs.get("val_loss", math.nan)),
            "val_cer": float(logs.get("val_cer", math.nan)),
        }
        self.round_started, self.round_step = now, step
        history = self.record["training"]["history"]
        history.append(entry)
        improved = entry["val_cer"] < self.best
        if improved:
            self.best = entry["val_cer"]
            self.record["training"]["best"] = {k: entry[k] for k in ("step", "val_cer")}
            save_network(self.model, os.path.join(self.out_dir, MODEL_FILENAME))
        write_record(self.out_dir, self.record)
        self.log(
            f"step {step}: loss {entry['loss']:.3f}, val_loss {entry['val_loss']:.3f}, "
            f"val_cer {entry['val_cer']:.4f}{' (best, saved)' if improved else ''}, "
            f"{entry['steps_per_second']:.2f} steps/s, {entry['minutes']:.1f} min"
        )


def write_record(directory, record) -> None:
    """Writes `reader.json` atomically."""
    text = json.dumps(record, indent=2, sort_keys=True) + "\n"
    files.write_text(os.path.join(directory, READER_FILENAME), text)


def train_reader(
    data_dir,
    out_dir,
    *,
    steps=STEPS,
    batch_size=BATCH_SIZE,
    learning_rate=LEARNING_RATE,
    seed=0,
    time_budget_minutes=None,
    eval_every=EVAL_EVERY,
    filters=FILTERS,
    units=UNITS,
    clip_norm=CLIP_NORM,
    log=print,
):
    """Trains a reader with Adam on the train split, keeping the best by validation CER.

    Args:
        data_dir: the folder with `dataset.json` and the shards (whole lines are read).
        out_dir: the reader directory written (`model.keras`, `dataset.json`, `reader.json`).
        steps: optimiser steps at most.
        batch_size: lines per step.
        learning_rate: Adam's step size.
        seed: seeds the network's initialisation and the order of the training lines.
        time_budget_minutes: stop when this much time is used (the last evaluation
            included); None for no budget.
        eval_every: steps between evaluations of the valid split (greedy CER of every line).
        filters: F, channels of the convolutions.
        units: H, LSTM cells per direction.
        clip_norm: global-norm clip of each step's gradient (of the mean per-line loss).
        log: called with each progress line.

    Returns:
        The training history: a list of dicts, one per evaluation (`step`, `minutes`,
        `steps_per_second`, `loss`, `val_loss`, `val_cer`).

    Raises:
        DatasetError: the data set is missing or malformed.
        ValueError: an argument is out of range.
    """
    for name, value in (("steps", steps), ("batch_size", batch_size), ("eval_every", eval_every)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive int, received {name}={value!r}")
    if not learning_rate > 0:
        raise ValueError(f"`learning_rate` must be > 0, received {learning_rate!r}")
    if time_budget_minutes is not None and not time_budget_minutes > 0:
        raise ValueError(f"`time_budget_minutes` must be > 0, received {time_budget_minutes!r}")
    started = time.monotonic()
    problem = files.creation_problem(out_dir)
    if problem:
        raise ValueError(f"`out_dir`: {problem}")
    data_dir, out_dir = os.fspath(data_dir), os.fspath(out_dir)
    info = DatasetInfo.load(data_dir)
    keras.utils.set_random_seed(seed)
    model = StrokeReader(info.alphabet.size, filters=filters, units=units)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate, global_clipnorm=clip_norm or None),
        jit_compile=False,
    )
    train = data.load_dataset(data_dir, "train", batch_size=batch_size, seed=seed, repeat=True)
    valid = data.load_dataset(data_dir, "valid", batch_size=batch_size, shuffle=False)
    os.makedirs(out_dir, exist_ok=True)
    info.save(out_dir)
    record = {
        "format_version": READER_FORMAT_VERSION,
        "model": model.get_config() | {"parameters": model.count_params()},
        "training": {
            "data_dir": os.path.abspath(data_dir),
            "steps": steps,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "seed": seed,
            "time_budget_minutes": time_budget_minutes,
            "eval_every": eval_every,
            "clip_norm": clip_norm,
            "history": [],
            "best": None,
        },
    }
    budget = None if time_budget_minutes is None else 60.0 * time_budget_minutes
    progress = _Progress(out_dir, record, steps, budget, started, log)
    log(
        f"Reader: {model.count_params():,} parameters (conv {filters} x2, BiLSTM {units} x2); "
        f"{info.splits['train'].lines} train, {info.splits['valid'].lines} valid lines; "
        f"batch {batch_size}, learning rate {learning_rate:g}, seed {seed}"
    )
    with warnings.catch_warnings():
        # Keras warns when it first meets the end of a dataset of unknown length: the valid
        # split at the first evaluation, which is meant to end there.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        model.fit(
            train,
            epochs=math.ceil(steps / eval_every),
            steps_per_epoch=eval_every,
            validation_data=valid,
            callbacks=[progress],
            shuffle=False,  # the dataset shuffles itself
            verbose=0,
        )
    return record["training"]["history"]


# ---------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m handwriting.reader_training",
        description="Train a handwriting recogniser (CTC over pen offsets), or read with one.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train a reader on a folder of shards")
    train.add_argument("--data", required=True, help="folder with dataset.json and shards")
    train.add_argument("--out", required=True, help="reader directory to write")
    train.add_argument("--steps", type=int, default=STEPS, help="optimiser steps at most")
    train.add_argument("--minutes", type=float, default=None, help="time budget")
    train.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="lines per step")
    train.add_argument("--learning-rate", type=float, default=LEARNING_RATE, help="Adam")
    train.add_argument("--seed", type=int, default=0, help="initialisation and data order")
    train.add_argument("--eval-every", type=int, default=EVAL_EVERY, help="steps per evaluation")
    train.add_argument("--filters", type=int, default=FILTERS, help="convolution channels")
    train.add_argument("--units", type=int, default=UNITS, help="LSTM cells per direction")
    read_cmd = commands.add_parser("read", help="read the lines of a stroke JSON file")
    read_cmd.add_argument("--reader", required=True, help="reader directory")
    read_cmd.add_argument("strokes", help='stroke JSON: {"lines": [{"text", "strokes"}]}')
    read_cmd.add_argument("--beam", type=int, default=0, help="beam width; 0: greedy")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            train_reader(
                args.data,
                args.out,
                steps=args.steps,
                batch_size=args.batch_size,
                learning_rate=args.learning_rate,
                seed=args.seed,
                time_budget_minutes=args.minutes,
                eval_every=args.eval_every,
                filters=args.filters,
                units=args.units,
            )
            return 0
        if args.beam < 0:
            raise ReaderError(f"--beam must be >= 0, received {args.beam}")
        lines = strokes.load_lines(args.strokes)
        reader = load_reader(args.reader)
        readings = read(reader, [strokes for _, strokes in lines], beam_width=args.beam)
        for number, ((text, _), reading) in enumerate(zip(lines, readings, strict=True), 1):
            score = f"  (CER {cer([text], [reading]):.3f})" if text else ""
            print(f"{number}: {reading}{score}")
        known = [(text, reading) for (text, _), reading in zip(lines, readings, strict=True)]
        known = [(t, r) for t, r in known if t]
        if known:
            references, hypotheses = zip(*known, strict=True)
            print(f"CER {cer(references, hypotheses):.4f} over {len(known)} lines")
        return 0
    except (ReaderError, SampleError, DatasetError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
