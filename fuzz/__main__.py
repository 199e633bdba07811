"""`python -m fuzz`: runs every fuzz target for a number of generated cases, and reports.

    python -m fuzz --cases 10000 --jobs 2 [--seed 0] [--only line-xml,prime] [--report FILE]

Each target runs in a child process of its own (`--worker`), its cases drawn by Hypothesis
from the seed. A case that raises anything but the reader's own error, or breaks its
contract, is a failure (its recipe and traceback are printed); a case still running after
`HANG_SECONDS` is a hang (the child dumps its stack and exits). Exit status 0 when every
case passed, 1 otherwise.
"""

import argparse
import faulthandler
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback

HANG_SECONDS = 30  # a case running longer is a hang
TARGET_TIMEOUT = 20 * 60  # a whole target running longer is stopped


def run_worker(name: str, count: int, seed: int, report: str) -> None:
    """Runs `count` cases of one target; writes `{cases, outcomes, failures, ...}` to `report`."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed

    from fuzz import targets

    target = targets.by_name(name)
    strategy, check = target.functions()
    target.warm_up()  # what every case shares (TensorFlow, a model) is made before the clock
    outcomes, failures, slowest = {}, [], [0.0, ""]
    current = report + ".case"

    @hypothesis_seed(seed)
    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def run(case):
        with open(current, "w") as f:
            f.write(repr(case)[:2000])
        faulthandler.dump_traceback_later(HANG_SECONDS, exit=True)
        start = time.perf_counter()
        try:
            outcome = check(case)
        except Exception:
            outcome = "FAILED"
            failures.append({"case": repr(case)[:2000], "traceback": traceback.format_exc()})
        finally:
            faulthandler.cancel_dump_traceback_later()
        seconds = time.perf_counter() - start
        if seconds > slowest[0]:
            slowest[:] = [seconds, repr(case)[:200]]
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    start = time.perf_counter()
    run()
    result = {
        "target": name,
        "cases": sum(outcomes.values()),
        "outcomes": dict(sorted(outcomes.items())),
        "failures": failures,
        "seconds": time.perf_counter() - start,
        "slowest_case_seconds": slowest[0],
        "slowest_case": slowest[1],
    }
    with open(report, "w") as f:
        json.dump(result, f)
    os.remove(current)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10_000, help="cases over all targets")
    parser.add_argument("--jobs", type=int, default=2, help="targets run at once")
    parser.add_argument("--seed", type=int, default=0, help="Hypothesis seed")
    parser.add_argument("--only", help="comma-separated target names (default: all)")
    parser.add_argument("--report", help="also write the figures as JSON here")
    parser.add_argument("--worker", nargs=4, metavar=("TARGET", "COUNT", "SEED", "REPORT"))
    args = parser.parse_args(argv)
    if args.worker:
        name, count, seed, report = args.worker
        run_worker(name, int(count), int(seed), report)
        return 0
    from fuzz import targets

    chosen = targets.TARGETS
    if args.only:
        chosen = tuple(targets.by_name(n.strip()) for n in args.only.split(","))
    counts = targets.shares(args.cases, chosen)
    # The slow (TensorFlow) targets first, so that they overlap with the quick ones.
    queue = sorted(chosen, key=lambda t: (not t.tensorflow, t.name))
    print(
        f"fuzz: {sum(counts.values())} cases over {len(chosen)} targets, seed {args.seed}, "
        f"{args.jobs} jobs; {machine()}",
        flush=True,
    )
    started = time.perf_counter()
    results, running = [], []
    with tempfile.TemporaryDirectory(prefix="fuzz-") as folder:
        while queue or running:
            while queue and len(running) < max(1, args.jobs):
                target = queue.pop(0)
                report = os.path.join(folder, f"{target.name}.json")
                command = [
                    sys.executable,
                    "-m",
                    "fuzz",
                    "--worker",
                    target.name,
                    str(counts[target.name]),
                    str(args.seed),
                    report,
                ]
                process = subprocess.Popen(
                    command,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    start_new_session=True,
                )
                running.append((target, report, process, time.perf_counter()))
            time.sleep(0.2)
            for entry in list(running):
                target, report, process, start = entry
                timed_out = time.perf_counter() - start > TARGET_TIMEOUT
                if process.poll() is None and not timed_out:
                    continue
                if timed_out:
                    process.kill()
                output = process.communicate()[0]
                running.remove(entry)
                results.append(_collect(target, report, process.returncode, output, timed_out))
                _print_result(results[-1])
    minutes = (time.perf_counter() - started) / 60
    total = sum(r["cases"] for r in results)
    failed = sum(len(r["failures"]) for r in results) + sum(1 for r in results if r["broken"])
    print(f"fuzz: {total} cases in {minutes:.1f} minutes, {failed} failures; {machine()}")
    if args.report:
        with open(args.report, "w") as f:
            json.dump(
                {
                    "cases": total,
                    "minutes": minutes,
                    "machine": machine(),
                    "seed": args.seed,
                    "targets": results,
                },
                f,
                indent=2,
            )
    return 1 if failed else 0


def _collect(target, report, returncode, output, timed_out) -> dict:
    """The worker's figures, or a failure saying how it died (a hang, a crash)."""
    if returncode == 0 and os.path.exists(report):
        with open(report) as f:
            result = json.load(f)
        result["broken"] = ""
        return result
    case = ""
    if os.path.exists(report + ".case"):
        with open(report + ".case") as f:
            case = f.read()
    how = "stopped after the target's timeout" if timed_out else f"exited with {returncode}"
    if "Timeout (0:00:" in output:
        how = f"hang: a case ran longer than {HANG_SECONDS} s"
    return {
        "target": target.name,
        "cases": 0,
        "outcomes": {},
        "failures": [],
        "seconds": 0.0,
        "slowest_case_seconds": 0.0,
        "slowest_case": "",
        "broken": f"{how}; last case: {case}\n{output[-3000:]}",
    }


def _print_result(result) -> None:
    outcomes = ", ".join(f"{k} {v}" for k, v in result["outcomes"].items())
    print(
        f"  {result['target']:<14} {result['cases']:>6} cases {result['seconds']:7.1f} s "
        f"(slowest case {result['slowest_case_seconds']:.2f} s): {outcomes}",
        flush=True,
    )
    if result["broken"]:
        print(f"    BROKEN: {result['broken']}", flush=True)
    for failure in result["failures"][:5]:
        print(f"    FAILED {failure['case']}\n{failure['traceback']}", flush=True)
    if len(result["failures"]) > 5:
        print(f"    ... and {len(result['failures']) - 5} more failures", flush=True)


if __name__ == "__main__":
    sys.exit(main())
