"""`python -m data_prep synth DIR`: generates the embedded corpus in the IAM-OnDB layout.

The defaults (6,000 lines by 60 writers) size a corpus for the demo preset: about 4.1 million
pen points (~690 a line, ~20 a written character, like IAM-OnDB), of which the train split
(5,300 lines, 3.6 million points) is seen about twice in 15 minutes by a 2-core CPU training
at ~10,000 points/s. 100 lines per writer keep every style well represented; 60 writers give
the validation list (testset_v, 7 writers, 700 lines, ~12%) hands never seen in training.
"""

import os
import sys
import time

from data_prep.synth import fonts, layout, style

DEFAULT_LINES = 6000
DEFAULT_WRITERS = 60
DEFAULT_SEED = 1


def add_arguments(parser) -> None:
    """Adds the `synth` arguments to an `argparse` parser."""
    parser.add_argument(
        "directory", metavar="DIR", help="folder to write (new, empty, or an earlier corpus)"
    )
    parser.add_argument(
        "--lines", type=int, default=DEFAULT_LINES, help="text lines (default: %(default)s)"
    )
    parser.add_argument(
        "--writers",
        type=int,
        default=DEFAULT_WRITERS,
        help="writers, i.e. styles (default: %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help="fixes every draw (default: %(default)s)"
    )
    parser.add_argument(
        "--fonts",
        nargs="+",
        default=list(style.FACE_WEIGHTS),
        choices=sorted(fonts.FACES),
        metavar="FACE",
        help=(
            f"faces the writers use (default: {' '.join(style.FACE_WEIGHTS)}). Left out of "
            f"the default on purpose: {' '.join(fonts.LEFT_OUT_FACES)}; a corpus in one stands "
            "for a hand that a model trained on the default corpus never saw"
        ),
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=min(os.cpu_count() or 1, 8),
        help="processes rendering forms; the output does not depend on it (default: %(default)s)",
    )


def run(args) -> int:
    """Generates the corpus; returns the exit status."""
    start = time.perf_counter()
    try:
        summary = layout.write_corpus(
            args.directory,
            lines=args.lines,
            writers=args.writers,
            seed=args.seed,
            faces=args.fonts,
            workers=args.workers,
        )
    except (layout.CorpusError, ValueError) as e:
        print(f"data_prep synth: error: {e}", file=sys.stderr)
        return 2
    splits = ", ".join(
        f"{name[:-4]} {s['lines']} lines/{s['writers']} writers"
        for name, s in summary["splits"].items()
    )
    print(
        f"wrote {summary['lines']} lines, {summary['forms']} forms, {summary['writers']} writers, "
        f"{summary['points']} points to {args.directory} in {time.perf_counter() - start:.1f} s "
        f"({splits})"
    )
    return 0
