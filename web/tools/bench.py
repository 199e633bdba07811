"""Points per second of the page's sampler beside the Python LiteRT runner, same machine.

    python web/tools/bench.py [--model DIR] [--repeats 3]

Writes the same 40-character line with the same seed in the page (headless chromium, the
worker's own clock over its sampling loops, after its warm-up) and with
`export/litert_runner.py` (one CPU thread, as the page's single-threaded wasm runtime, and the
runner's default), float32 and int8, in turns (the machine's load changes: each round runs
all three one after the other); prints the median points per second of each, the median of
the page's share of the one-thread runner's per round and the median time the page took for
the line. The page's figures include what it does per point besides the step: reading the
outputs, posting the points and drawing them.
"""

import argparse
import os
import statistics
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHROMIUM = "/usr/bin/chromium"
TEXT = "The quick brown fox jumps over the dog."  # 39 characters and the full stop: 40
TIMEOUT_MS = 300_000


class PageSampler:
    """The page in headless chromium, ready to write `TEXT` with one sampler variant."""

    def __init__(self, playwright, url, variant, bias, seed):
        self.browser = playwright.chromium.launch(executable_path=CHROMIUM)
        self.page = self.browser.new_page()
        self.page.goto(url)
        self.page.wait_for_selector("body[data-state=ready]", timeout=TIMEOUT_MS)
        self.page.set_checked("#int8", variant == "int8")
        self.page.fill("#text", TEXT)
        self.page.fill("#bias", str(bias))
        self.page.fill("#seed", str(seed))
        self.write()  # compiles and warms up the variant

    def write(self):
        """Writes the line; returns (points per second, points, seconds)."""
        self.page.click("#write")
        self.page.wait_for_selector("body[data-state=done]", timeout=TIMEOUT_MS)
        run = self.page.evaluate("handwritingPage.lastRun")
        return run["points"] / run["seconds"], run["points"], run["seconds"]


class RunnerSampler:
    """`export/litert_runner.py` writing `TEXT`."""

    def __init__(self, export_dir, variant, threads, bias, seed):
        sys.path.insert(0, os.path.join(ROOT, "export"))
        import litert_runner

        self.sampler = litert_runner.Sampler(
            export_dir, int8=variant == "int8", num_threads=threads
        )
        self.bias, self.seed = bias, seed
        self.write()

    def write(self):
        started = time.perf_counter()
        strokes, _ = self.sampler.write(TEXT, self.bias, self.seed)
        seconds = time.perf_counter() - started
        points = len(strokes) - 1
        return points / seconds, points, seconds


def compare(model_dir=None, *, repeats=3, bias=1.0, seed=1) -> list:
    """Measures the page and the runner side by side on one model (None: the demo model).

    Returns a dict per sampler variant (`float32`, `int8`): `page`, `runner_1`,
    `runner_default` (median points per second), `share` (median of the page's points per
    second over the one-thread runner's, round by round), `points` (page, runner) and
    `page_seconds` (median seconds the page took for the line).
    """
    sys.path.insert(0, ROOT)
    from handwriting import export_cache, serve

    export_dir = export_cache.ensure_export(model_dir)
    httpd = serve.make_server(export_dir, port=0, quiet=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    results = []
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            for variant in ("float32", "int8"):
                samplers = (
                    PageSampler(playwright, serve.url_of(httpd), variant, bias, seed),
                    RunnerSampler(export_dir, variant, 1, bias, seed),
                    RunnerSampler(export_dir, variant, None, bias, seed),
                )
                rounds = [[s.write() for s in samplers] for _ in range(repeats)]
                samplers[0].browser.close()
                medians = [statistics.median(r[i][0] for r in rounds) for i in range(3)]
                results.append(
                    {
                        "variant": variant,
                        "page": medians[0],
                        "runner_1": medians[1],
                        "runner_default": medians[2],
                        "share": statistics.median(r[0][0] / r[1][0] for r in rounds),
                        "points": (rounds[0][0][1], rounds[0][1][1]),
                        "page_seconds": statistics.median(r[0][2] for r in rounds),
                        "export": export_dir,
                    }
                )
    finally:
        httpd.shutdown()
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: the demo model)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bias", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    results = compare(args.model, repeats=args.repeats, bias=args.bias, seed=args.seed)
    print(f"model {results[0]['export']}, text {TEXT!r}, bias {args.bias}, seed {args.seed}")
    print(
        "| sampler | page points/s | runner, 1 thread | runner, default | page / runner 1 "
        "| page's line |"
    )
    print("|---|---|---|---|---|---|")
    for r in results:
        points = f"{r['points'][0]} / {r['points'][1]} points"
        print(
            f"| {r['variant']} ({points}) | {r['page']:,.0f} | {r['runner_1']:,.0f} | "
            f"{r['runner_default']:,.0f} | {r['share']:.2f} | {r['page_seconds']:.2f} s |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
