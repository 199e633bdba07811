"""`python -m export --model DIR --out DIR`: SavedModel and TFLite samplers of a trained model."""

import argparse
import os
import sys

from export.folder import OutputError, export

EPILOG = """examples:
  python -m export --model runs/demo --out exported
  python export/litert_runner.py exported "hello world" -o hello.svg --bias 1 --seed 7
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m export",
        description="Export a trained synthesis network as a SavedModel and TFLite samplers.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, help="a training run's or export's directory")
    parser.add_argument(
        "--out",
        required=True,
        help="the export directory: a new or empty folder, or a previous export (its outputs "
        "are replaced, other files in it are kept)",
    )
    parser.add_argument("--no-int8", action="store_true", help="skip the int8 TFLite sampler")
    parser.add_argument(
        "--text-length",
        type=int,
        default=None,
        help="characters per line the TFLite samplers read (default: tflite.TEXT_LENGTH)",
    )
    args = parser.parse_args(argv)
    if args.text_length is not None and args.text_length < 1:
        parser.error(f"--text-length must be >= 1, received {args.text_length}")
    from handwriting import startup
    from handwriting.errors import SampleError

    startup.import_tensorflow()  # without TensorFlow's no-GPU notices on stderr

    try:
        sizes = export(args.model, args.out, int8=not args.no_int8, text_length=args.text_length)
    except (SampleError, OutputError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. a disk that filled up, a folder that became read-only
        print(f"error: {e.filename or args.out}: {e.strerror or e}", file=sys.stderr)
        return 2
    for name in sorted(sizes):
        if not name.startswith("savedmodel/") or name.endswith(".pb"):
            print(f"{sizes[name]:>12,d}  {os.path.join(args.out, name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
