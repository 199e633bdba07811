"""Legibility: the reader's character error rate (CER) on samples of the held-out sentences.

Rows for the shipped demo model and, when `make train` has run here (or `--model RUN_DIR` is
given), for that run: the CER at sampling bias 0.5, 1 and 2 (`handwriting.legibility.score`:
24 held-out sentences x 3 seeds per bias), and the ceiling, the same reader's CER on the
validation split's true strokes (`--data DIR`, default the model's `data.dir`; without the
data, the reader's recorded validation CER).

    python -m benchmarks --only legibility
    python -m benchmarks.bench_legibility --model runs/demo
"""

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(ROOT, "handwriting", "assets", "demo")
TRAINED = os.path.join(ROOT, "runs", "demo")
# Goals of the legibility issue at bias 1: the shipped model, and `make train`'s 15 minutes.
GOALS = {SHIPPED: "<= 0.10", TRAINED: "<= 0.25"}


def rows_of(model_dir, data_dir=None) -> list:
    from handwriting import legibility, sample
    from handwriting.reader import load_reader

    result = legibility.score(
        sample.load(model_dir), load_reader(legibility.DEFAULT_READER_DIR), data_dir=data_dir
    )
    name = os.path.relpath(model_dir, ROOT)
    rows = [
        {
            "benchmark": f"{name}: CER at bias {row.bias:g}",
            "value": row.cer,
            "unit": "CER",
            "goal": GOALS.get(model_dir, "") if row.bias == 1.0 else "",
            "note": f"{row.lines} lines",
        }
        for row in result.rows
    ]
    if result.ceiling is not None:
        rows.append(
            {
                "benchmark": f"{name}: ceiling (true strokes)",
                "value": result.ceiling.cer,
                "unit": "CER",
                "note": f"{result.ceiling.lines} lines, {result.ceiling_source}",
            }
        )
    return rows


def run(args):
    models = [SHIPPED]
    extra = getattr(args, "model", None) or TRAINED
    if os.path.isfile(os.path.join(extra, "model.keras")) and os.path.abspath(extra) != SHIPPED:
        models.append(os.path.abspath(extra))
    rows = []
    for model_dir in models:
        rows += rows_of(model_dir, getattr(args, "data", None))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_legibility", description=__doc__
    )
    parser.add_argument("--model", help="a trained run's directory (default runs/demo if there)")
    parser.add_argument("--data", help="the data set of the ceiling (default the model's)")
    args = parser.parse_args(argv)
    for row in run(args):
        print(f"{row['benchmark']:<44} {row['value']:>8.3f} {row['unit']:<4} {row['note']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
