"""The browser page's sampler beside the Python LiteRT runner, on the same machine.

Rows per network (the shipped demo model, and a paper-size network with random weights) and
sampler (float32, int8), batch 1: points per second in the page (headless chromium, LiteRT.js
in its worker) and with `export/litert_runner.py` on one thread, and the page's share of the
runner's (goal >= 0.60), measured round by round in turns (`web/tools/bench.py`). Needs
`make web` (LiteRT.js) and chromium (`make browser`); without them the rows are left out.

    python -m benchmarks --only web
"""

import os
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOAL = ">= 0.60"


def run(args):
    vendor = os.path.join(ROOT, "web", "vendor", "litert.js")
    if not os.path.isfile(vendor) or shutil.which("chromium") is None:
        print("# web: needs `make web` and `make browser`; left out", file=sys.stderr)
        return []
    sys.path.insert(0, os.path.join(ROOT, "web", "tools"))
    import bench as web_bench

    from benchmarks.bench_sample import _paper_run

    rows = []
    workdir = os.path.abspath(args.workdir)
    for name, model_dir in (("demo", None), ("paper-size", _paper_run(workdir))):
        for r in web_bench.compare(model_dir, repeats=3):
            label = f"{name} {r['variant']}, batch 1"
            rows += [
                {"benchmark": f"page, {label}", "value": r["page"], "unit": "points/s"},
                {
                    "benchmark": f"runner 1 thread, {label}",
                    "value": r["runner_1"],
                    "unit": "points/s",
                },
                {
                    "benchmark": f"page / runner, {label}",
                    "value": r["share"],
                    "unit": "ratio",
                    "goal": GOAL,
                    "note": f"{r['points'][0]} points, side by side",
                },
            ]
    return rows
