"""Runs every `benchmarks/bench_*.py` and prints one table.

Each module has `run(args) -> list[dict]`; a row has `benchmark`, `value`, `unit`, and
optionally `goal` (e.g. ">= 1e6") and `note`. `python -m benchmarks --only prep,pipeline`
runs a subset.
"""

import argparse
import importlib
import os
import pkgutil
import platform
import sys
import time


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--only", default="", help="comma-separated names, e.g. prep,pipeline")
    parser.add_argument("--workdir", default="bench-out", help="scratch folder for generated data")
    parser.add_argument(
        "--model", help="a trained run for the sampler's int8 accuracy rows (default runs/demo)"
    )
    parser.add_argument("--data", help="that run's data set folder (default its data.dir)")
    args = parser.parse_args(argv)
    here = os.path.dirname(__file__)
    names = sorted(
        m.name[len("bench_") :] for m in pkgutil.iter_modules([here]) if m.name.startswith("bench_")
    )
    if args.only:
        wanted = args.only.split(",")
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            parser.error(f"--only names unknown benchmarks {unknown}; known: {names}")
        names = [n for n in names if n in wanted]
    os.makedirs(args.workdir, exist_ok=True)
    rows = []
    for name in names:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        start = time.perf_counter()
        print(f"# running {name} ...", file=sys.stderr, flush=True)
        for row in module.run(args):
            rows.append({"group": name, **row})
        print(f"# {name} took {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    print(f"\nMachine: {_machine()}\n")
    header = ("group", "benchmark", "value", "unit", "goal", "note")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        value = row["value"]
        if isinstance(value, float):  # three significant digits below 100, else one decimal
            value = f"{value:.3g}" if abs(value) < 100 else f"{value:,.1f}"
        elif isinstance(value, int):
            value = f"{value:,}"
        cells = [
            row["group"],
            row["benchmark"],
            value,
            row["unit"],
            row.get("goal", ""),
            row.get("note", ""),
        ]
        print("| " + " | ".join(str(c) for c in cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
