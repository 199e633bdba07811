"""Generating the embedded corpus: 12,000 lines (twice the default) in the IAM-OnDB layout."""

import os
import shutil
import time

from data_prep.synth import layout

LINES = 12_000
WRITERS = 120
GOAL_SECONDS = 120  # on a 2-core CPU


def run(args) -> list:
    target = os.path.join(args.workdir, "synth-corpus")
    if os.path.exists(target):
        shutil.rmtree(target)
    workers = os.cpu_count() or 1
    start = time.perf_counter()
    summary = layout.write_corpus(target, lines=LINES, writers=WRITERS, seed=1, workers=workers)
    seconds = time.perf_counter() - start
    shutil.rmtree(target)
    characters = summary["characters"]
    return [
        {
            "benchmark": f"synth {LINES:,} lines, {WRITERS} writers",
            "value": seconds,
            "unit": "s",
            "goal": f"<= {GOAL_SECONDS}",
            "note": f"{workers} processes; {LINES / seconds:,.0f} lines/s",
        },
        {
            "benchmark": "synth points per line",
            "value": summary["points"] / LINES,
            "unit": "points",
            "note": f"{summary['points'] / characters:.1f} per non-space character",
        },
    ]
