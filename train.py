"""Trains a handwriting network (Graves 2013) and keeps everything in one run directory.

    python train.py --preset demo --data data/corpus --logdir runs/demo
    python train.py --logdir runs/demo --resume                 # continue after a stop or a kill
    python train.py --preset paper --set train.batch_size=64 model.dtype_policy=mixed_bfloat16

The run directory gets config.json, dataset.json (alphabet and normalisation statistics),
checkpoints, TensorBoard logs, model.keras (the best network by validation loss, or by
legibility score with train.keep=legibility), and at the end samples.png and
attention.png; `handwriting.sample` and the exporters read it back.
See `handwriting.training` for the schedule and how a resume continues exactly.
"""

import argparse
import os
import sys

from handwriting.config import ConfigError
from handwriting.presets import PRESETS

DEFAULT_PRESET = "demo"
STRATEGY_CHOICES = ("auto", "one_device", "mirrored", "multi_worker")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train.py",
        description="Train the handwriting synthesis (or prediction) network of Graves (2013).",
    )
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help=f"configuration to start from (default: {DEFAULT_PRESET}; ignored with --resume "
        "when the run directory holds a run)",
    )
    parser.add_argument("--data", metavar="DIR", help="folder of dataset.json and the shards")
    parser.add_argument("--logdir", metavar="DIR", help="run directory (default: runs/<preset>)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --logdir with its stored configuration (starts one if none)",
    )
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, metavar="N", help="train for N optimiser steps")
    length.add_argument(
        "--epochs", type=int, metavar="N", help="train for N passes over the training lines"
    )
    parser.add_argument(
        "--strategy",
        choices=STRATEGY_CHOICES,
        default="auto",
        help="tf.distribute strategy (auto: mirrored over several GPUs, else one device)",
    )
    parser.add_argument("--seed", type=int, metavar="S", help="seed of initialisation and order")
    parser.add_argument(
        "--init-from",
        metavar="DIR",
        help="start a new run from the weights of this model directory (e.g. "
        "handwriting/assets/demo; the same network and alphabet), with a fresh optimiser",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="override config values, e.g. train.learning_rate=3e-4 model.units=256",
    )
    parser.add_argument(
        "--score",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="at the end, score the legibility of the kept network with the shipped reader "
        "and write legibility.json (default: on)",
    )
    parser.add_argument(
        "--verbose",
        type=int,
        choices=(0, 1, 2),
        default=None,
        help="progress output: 0 none, 1 progress bar, 2 one line per round",
    )
    return parser


def overrides_from_args(args) -> list:
    """The flags as `section.field=value` strings, `--set` last (it wins)."""
    out = []
    if args.data is not None:
        out.append(f"data.dir={args.data}")
    if args.steps is not None:
        out.append(f"train.max_steps={args.steps}")
    if args.epochs is not None:
        out += [f"train.epochs={args.epochs}", "train.max_steps=0"]
    if args.seed is not None:
        out.append(f"train.seed={args.seed}")
    if args.init_from is not None:
        out.append(f"train.init_from={args.init_from}")
    return out + list(args.overrides)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    preset_name = args.preset or DEFAULT_PRESET
    run_dir = args.logdir or os.path.join("runs", preset_name)

    from handwriting import startup

    startup.import_tensorflow()  # here, not for --help; without TensorFlow's no-GPU notices
    from handwriting import rundir, training
    from handwriting.dataset_info import DatasetError
    from handwriting.errors import SampleError

    try:
        config = rundir.resolve_config(run_dir, preset_name, overrides_from_args(args), args.resume)
    except ConfigError as e:
        parser.error(str(e))
    try:
        result = training.train(
            config,
            run_dir,
            resume=args.resume,
            strategy=args.strategy,
            verbose="auto" if args.verbose is None else args.verbose,
        )
    except KeyboardInterrupt:
        print(
            f"\nInterrupted. The last checkpoint is kept; continue with: "
            f"python train.py --logdir {run_dir} --resume",
            file=sys.stderr,
        )
        return 130
    except (training.TrainingError, ConfigError, DatasetError, SampleError) as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        return 1
    model_path = os.path.join(run_dir, rundir.MODEL_FILENAME)
    if args.score and config.model.kind == "synthesis" and model_path in result.files:
        from handwriting import legibility

        print("Scoring legibility (held-out sentences, 3 biases x 3 seeds, the shipped reader)")
        score = legibility.score_run(run_dir)
        print(legibility.format_table(score))
    log_dir = os.path.join(run_dir, rundir.LOG_DIR)
    print(f"TensorBoard: tensorboard --logdir {log_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
