"""Data preparation speed: `python -m data_prep iam-ondb` on an IAM-OnDB-sized corpus.

The corpus is written once in the real XML layout (12,000 lines of ~700 points, the size of
IAM-OnDB's lineStrokes) and cached in `args.workdir`; each run builds fresh shards from it with
two worker processes, timing the whole command as a user runs it (interpreter start included).
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time

NUM_LINES = 12000  # IAM-OnDB has 12,195 lines in its four split lists
POINTS_PER_LINE = 700  # its lines average about 700 points
WORKERS = 2
GOAL_SECONDS = 60.0
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _fixtures():
    # Loaded by path: `tests` is not a package, and site-packages may hold another `tests`.
    path = os.path.join(REPO, "tests", "iam_fixtures.py")
    spec = importlib.util.spec_from_file_location("iam_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _corpus(workdir: str) -> str:
    """Returns the cached corpus folder, writing it first when missing or incomplete."""
    src = os.path.join(workdir, "prep-corpus", "IAM-OnDB")
    marker = os.path.join(src, ".complete")
    settings = f"{NUM_LINES} lines, {POINTS_PER_LINE} points per line\n"
    if os.path.isfile(marker):
        with open(marker) as f:
            if f.read() == settings:
                return src
    shutil.rmtree(src, ignore_errors=True)
    start = time.perf_counter()
    _fixtures().write_bulk_corpus(src, num_lines=NUM_LINES, points_per_line=POINTS_PER_LINE)
    with open(marker, "w") as f:
        f.write(settings)
    print(f"# wrote the prep corpus in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return src


def run(args) -> list:
    src = _corpus(args.workdir)
    out = os.path.join(args.workdir, "prep-shards")
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "data_prep", "iam-ondb", src, out, "--workers", str(WORKERS)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    with open(os.path.join(out, "dataset.json"), encoding="utf-8") as f:
        splits = json.load(f)["splits"].values()
    lines = sum(s["lines"] for s in splits)
    points = sum(s["points"] for s in splits)
    note = f"{lines:,} lines, {points:,} points, {WORKERS} workers, whole command"
    return [
        {
            "benchmark": "iam-ondb build time",
            "value": seconds,
            "unit": "s",
            "goal": f"<= {GOAL_SECONDS:.0f}",
            "note": note,
        },
        {"benchmark": "iam-ondb lines", "value": lines / seconds, "unit": "lines/s", "note": note},
        {
            "benchmark": "iam-ondb points",
            "value": points / seconds,
            "unit": "points/s",
            "note": note,
        },
    ]
