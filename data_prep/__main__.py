"""`python -m data_prep`: build training shards from IAM-OnDB, or write the embedded corpus.

    python -m data_prep iam-ondb SRC OUT [--split graves|official] [--workers N]
                                         [--lines-per-shard N]
    python -m data_prep synth OUT ...

Exit status: 0 done (or already done), 2 bad usage or bad input (the message names the file).
"""

import argparse
import os
import sys


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer, received {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {value}")
    return value


def _add_iam_ondb(subparsers) -> None:
    from data_prep.shards import DEFAULT_LINES_PER_SHARD

    parser = subparsers.add_parser(
        "iam-ondb",
        help="IAM-OnDB (or the embedded corpus) to TFRecord shards + dataset.json",
        description="Reads an IAM-OnDB folder (unpacked, or holding the .tar.gz archives) and "
        "writes OUT/{train,valid[,test]}-NNNNN-of-NNNNN.tfrecord and OUT/dataset.json.",
    )
    parser.add_argument("src", help="the IAM-OnDB folder (lineStrokes/, ascii/, split lists)")
    parser.add_argument("out", help="the folder for the shards and dataset.json")
    parser.add_argument(
        "--split",
        choices=("graves", "official"),
        default="graves",
        help="graves: train = trainset+testset_t+testset_f, valid = testset_v (default); "
        "official: train = trainset, valid = testset_v+testset_t, test = testset_f",
    )
    parser.add_argument(
        "--workers", type=_positive, default=min(4, os.cpu_count() or 1), help="parsing processes"
    )
    parser.add_argument(
        "--lines-per-shard",
        type=_positive,
        default=DEFAULT_LINES_PER_SHARD,
        help="the most lines in one shard",
    )
    parser.set_defaults(run=_run_iam_ondb)


def _run_iam_ondb(args) -> int:
    from data_prep import iam_ondb, shards

    try:
        info, fresh = shards.build(
            args.src,
            args.out,
            mode=args.split,
            workers=args.workers,
            lines_per_shard=args.lines_per_shard,
        )
    except iam_ondb.PrepError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not fresh:
        print(
            f"{args.out} already holds a complete build of this input and settings; nothing to do"
        )
        return 0
    for split, content in info.splits.items():
        print(
            f"{split}: {content.lines} lines, {content.points} points, {len(content.shards)} shards"
        )
    print(f"alphabet: {info.alphabet.size - 2} characters")
    print(f"offsets: mean {info.offset_mean}, std {info.offset_std} (train split)")
    print(shards.format_report(info.skipped))
    return 0


def _add_synth(subparsers) -> None:
    try:
        from data_prep.synth import cli
    except ModuleNotFoundError as e:
        if e.name not in ("data_prep.synth", "data_prep.synth.cli"):
            raise
        missing = str(e)
        parser = subparsers.add_parser("synth", help="write the embedded corpus (not installed)")
        parser.set_defaults(run=lambda args: _unavailable(missing))
        return
    parser = subparsers.add_parser(
        "synth", help="write the embedded corpus in the IAM-OnDB layout from single-line fonts"
    )
    cli.add_arguments(parser)
    parser.set_defaults(run=cli.run)


def _unavailable(missing: str) -> int:
    print(f"error: the synth command is not available: {missing}", file=sys.stderr)
    return 2


def main(argv=None) -> int:
    from handwriting import startup

    startup.import_tensorflow()  # the shard writer's; without TensorFlow's no-GPU notices
    parser = argparse.ArgumentParser(
        prog="python -m data_prep", description=__doc__.split("\n\n")[0]
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_iam_ondb(subparsers)
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] != ["iam-ondb"]:
        _add_synth(subparsers)  # imported only when it can be the command (or for --help)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
