"""`python -m fuzz.coverage_guided`: coverage-guided fuzzing of the readers of user input with
Atheris (libFuzzer for Python), beside the generated cases of `python -m fuzz`.

    python -m fuzz.coverage_guided --target line-xml --seconds 60 [--corpus DIR]
    python -m fuzz.coverage_guided --target all --seconds 60      # `make fuzz-coverage`
    python -m fuzz.coverage_guided --target prime --replay FILE   # inputs again, no fuzzing

A target is an entry point on bytes (`ENTRIES`): the fuzzer's input is the file the reader is
given, and the verdict is the Hypothesis target's own check (`fuzz.xml_cases.check_line`,
`fuzz.json_cases.check_prime`, ...) with the input in place of a damaged document. The reader
returns what its contract allows or raises its own error naming the file; anything else (another
exception, a broken contract, a hang over `HANG_SECONDS`) is a failure, and libFuzzer writes the
input to `--artifacts` for `--replay`.

Each target runs in a child process (`--worker`) that imports the project's modules
(`handwriting`, `data_prep`) under `atheris.instrument_imports`, so the fuzzer is guided by the
branches of their Python code; lxml's parser and `json`'s decoder are C and not instrumented.
The corpus is seeded at run time from the test fixtures (`tests/iam_fixtures.py`: every line of
the fixture corpus, hostile ones included) and from what the project itself writes (presets'
`config.json`, a `dataset.json`, stroke JSON), in a temporary folder unless `--corpus` keeps
one; a libFuzzer dictionary of the format's tokens goes to a temporary file. The figures per target
(runs, seconds, coverage `cov`/`ft` after the seeds and at the end, corpus, failures) are
libFuzzer's own, read from its output.
"""

import argparse
import contextlib
import dataclasses
import glob
import importlib.util
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HANG_SECONDS = 30  # an input running longer is a hang (as `python -m fuzz`)
INSTRUMENTED = ("handwriting", "data_prep")  # the packages whose branches guide the fuzzer
DATASET_SEED = 0  # the good `dataset.json` (and its shard files) the dataset-json check makes
CONFIG_SEED = 0  # the case seed of the config-json check (which preset it starts from)


# ----------------------------------------------------------------------------------------------
# Entry points: plain functions of the input's bytes, returning the check's outcome


@dataclasses.dataclass(frozen=True)
class _BytesCase:
    """A `xml_cases.LineCase` whose bytes are given: any outcome within the contract."""

    data: bytes
    line = None  # no clean line to compare with

    def build(self):
        return self.data, None


def line_xml(data: bytes) -> str:
    """An IAM-OnDB line file (`iam_xml.parse_line_xml`, which `data_prep` reads every line
    with), checked by `xml_cases.check_line`: its points are a whiteboard's, or it is refused
    with a `LineError` naming the file and one of the known reasons."""
    from fuzz import xml_cases

    return xml_cases.check_line(_BytesCase(data))


def prime(data: bytes) -> str:
    """A style prime and stroke file (`strokes.load_prime`, JSON or XML by its content, and
    `strokes.load_lines` / `parse_lines`), checked by `json_cases.check_prime`."""
    from fuzz import json_cases

    return json_cases.check_prime(json_cases.PrimeCase("flip", 0, data))


def config_json(data: bytes) -> str:
    """A run's `config.json` (`Config.load`, through `files.read_json`), checked by
    `json_cases.check_config`: every float read is finite, or a `ConfigError` names the file."""
    from fuzz import json_cases

    return json_cases.check_config(json_cases.ConfigCase("flip", CONFIG_SEED, data))


def dataset_json(data: bytes) -> str:
    """`dataset.json`, read by training (`DatasetInfo.load`) and by a model directory
    (`rundir`), checked by `json_cases.check_dataset`; the shards of a good description of
    seed `DATASET_SEED` are present, so a description naming them reads whole."""
    from fuzz import json_cases

    return json_cases.check_dataset(json_cases.DatasetCase("flip", DATASET_SEED, data))


ENTRIES = {
    "line-xml": line_xml,
    "prime": prime,
    "config-json": config_json,
    "dataset-json": dataset_json,
}


# ----------------------------------------------------------------------------------------------
# Seeds and dictionaries


def _iam_fixtures():
    # Loaded by path, as benchmarks/bench_prep.py does: `tests` is not a package.
    spec = importlib.util.spec_from_file_location(
        "iam_fixtures", os.path.join(REPO, "tests", "iam_fixtures.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fixture_lines():
    """`(files, lines)`: the bytes of every line file of the test corpus (good, hostile and
    broken) and the good lines as `(text, strokes (T, 3))`."""
    import numpy as np

    from handwriting import iam_xml

    fixtures = _iam_fixtures()
    with tempfile.TemporaryDirectory(prefix="fuzz-fixture-") as root:
        fixture = fixtures.write_fixture(root)
        paths = sorted(glob.glob(os.path.join(root, "lineStrokes", "**", "*.xml"), recursive=True))
        files = []
        for path in paths:
            with open(path, "rb") as f:
                files.append(f.read())
    lines = []
    for expected in fixture.lines.values():
        points = np.concatenate(expected.strokes)
        lengths = [len(s) for s in expected.strokes]
        strokes, _ = iam_xml.to_stroke_array(points[:, 0], points[:, 1], lengths)
        lines.append((expected.text, strokes))
    return files, lines


def line_xml_seeds() -> list:
    """Every line file of the test fixture, and one short line in each encoding the reader
    takes (`xml_cases.GOOD_ENCODINGS`)."""
    from fuzz import xml_cases

    files, _ = _fixture_lines()
    line = xml_cases.Line((((10, 20), (11, 22), (13, 25)), ((40, 20),)))
    text = xml_cases.line_text(line)
    encoded = [xml_cases.encode(text, *encoding) for encoding in xml_cases.GOOD_ENCODINGS]
    return files + encoded


def prime_seeds() -> list:
    """The fixture's lines as the stroke JSON `save_strokes_json` writes (one line a file, and
    all in one), and its line files as XML primes."""
    from handwriting import strokes

    files, lines = _fixture_lines()
    primes = [strokes.Prime(points, text) for text, points in lines]
    seeds = []
    with tempfile.TemporaryDirectory(prefix="fuzz-seeds-") as folder:
        path = os.path.join(folder, "strokes.json")
        for group in [[p] for p in primes[:4]] + [primes]:
            strokes.save_strokes_json(group, path)
            with open(path, "rb") as f:
                seeds.append(f.read())
    return seeds + files[:4]


def config_json_seeds() -> list:
    """Every preset's `config.json` as a run writes it (`Config.save`)."""
    from handwriting import presets

    seeds = []
    with tempfile.TemporaryDirectory(prefix="fuzz-seeds-") as folder:
        for name in sorted(presets.PRESETS):
            with open(presets.preset(name).save(folder), "rb") as f:
                seeds.append(f.read())
    return seeds


def dataset_json_seeds() -> list:
    """The good `dataset.json` the check's shards belong to, as `DatasetInfo.save` writes it,
    and compact."""
    from fuzz import json_cases
    from handwriting import dataset_info

    document = json_cases.good_dataset(random.Random(DATASET_SEED))
    with tempfile.TemporaryDirectory(prefix="fuzz-seeds-") as folder:
        dataset_info.DatasetInfo.from_json(document).save(folder)
        with open(os.path.join(folder, dataset_info.FILENAME), "rb") as f:
            return [f.read(), json_cases.json_bytes(document)]


SEEDS = {
    "line-xml": line_xml_seeds,
    "prime": prime_seeds,
    "config-json": config_json_seeds,
    "dataset-json": dataset_json_seeds,
}

_XML_TOKENS = (
    b"<?xml",
    b'encoding="UTF-16"',
    b'encoding="UTF-8"',
    b"<WhiteboardCaptureSession>",
    b"<StrokeSet>",
    b"</StrokeSet>",
    b"<Stroke>",
    b"</Stroke>",
    b"<Point ",
    b'x="',
    b'y="',
    b'time="',
    b"/>",
    b"<!DOCTYPE",
    b"<!ENTITY",
    b"<![CDATA[",
    b"<!--",
    b"&#",
    b"\xef\xbb\xbf",
    b"\xff\xfe",
    b"\xfe\xff",
)
_JSON_TOKENS = (
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"1e999",
    b"null",
    b"true",
    b"false",
    b"[]",
    b"{}",
    b"\\u0000",
    b"\\ud800",
    b"99999999999999999999999",
)
_NUMBER_TOKENS = (b"nan", b"inf", b"-1e309", b"0x1F", b"1,5", b"2000001")
TOKENS = {
    "line-xml": (*_XML_TOKENS, *_NUMBER_TOKENS),
    "prime": (*_XML_TOKENS, *_JSON_TOKENS, b'"lines"', b'"strokes"', b'"text"', b'"format"'),
    "config-json": (*_JSON_TOKENS, b'"format_version"', b'"model"', b'"train"', b'"data"'),
    "dataset-json": (*_JSON_TOKENS, b'"alphabet"', b'"normalization"', b'"splits"', b'"shards"'),
}


def dictionary(tokens) -> str:
    """A libFuzzer dictionary (`-dict=`) of `tokens`: one quoted token a line, `\\xNN` escapes."""
    lines = []
    for token in tokens:
        escaped = "".join(
            chr(b) if 0x20 <= b < 0x7F and b not in b'"\\' else f"\\x{b:02x}" for b in token
        )
        lines.append(f'"{escaped}"')
    return "\n".join(lines) + "\n"


def write_corpus(name: str, folder: str) -> int:
    """Writes target `name`'s seeds into `folder` (when it holds none); returns their count."""
    os.makedirs(folder, exist_ok=True)
    if os.listdir(folder):
        return 0
    seeds = SEEDS[name]()
    for number, seed in enumerate(seeds):
        with open(os.path.join(folder, f"seed-{number:03d}"), "wb") as f:
            f.write(seed)
    return len(seeds)


# ----------------------------------------------------------------------------------------------
# The worker: one target under Atheris


def run_worker(name: str, corpus: str, flags: list) -> None:
    """Instruments the project's modules, seeds `corpus` and fuzzes target `name` (libFuzzer
    `flags`); libFuzzer ends the process."""
    import atheris

    already = sorted(m for m in sys.modules if m.split(".")[0] in INSTRUMENTED)
    if already:  # imported before the hook: their branches would guide nothing
        raise RuntimeError(f"imported before instrumentation: {already}")
    with atheris.instrument_imports(include=list(INSTRUMENTED)):
        from fuzz import json_cases, xml_cases  # noqa: F401  (the readers they import)
        from handwriting import config, dataset_info, files, iam_xml, presets, rundir, strokes  # noqa: F401
    seeded = write_corpus(name, corpus)
    print(f"coverage_guided: {name}: {seeded} seeds written to {corpus}", flush=True)
    entry = ENTRIES[name]

    def one_input(data: bytes) -> None:
        entry(data)

    atheris.Setup([sys.argv[0], *flags, corpus], one_input)
    atheris.Fuzz()


# ----------------------------------------------------------------------------------------------
# The driver: each target in a child process, its figures read from libFuzzer's output

_STATUS = re.compile(r"^#(\d+)\s+(\w+)\s+cov: (\d+) ft: (\d+) corp: (\d+)/", re.M)
_DONE = re.compile(r"^Done (\d+) runs in (\d+) second", re.M)
_STAT = re.compile(r"^stat::(\w+):\s+(\d+)", re.M)
_ARTIFACT = re.compile(r"Test unit written to (\S+)")


def figures(name: str, output: str, returncode: int, seconds: float) -> dict:
    """The figures of one target's run, from libFuzzer's output."""
    status = _STATUS.findall(output)
    inited = [s for s in status if s[1] == "INITED"]
    done = _DONE.search(output)
    stats = {key: int(value) for key, value in _STAT.findall(output)}
    artifacts = _ARTIFACT.findall(output)
    runs = stats.get("number_of_executed_units", int(status[-1][0]) if status else 0)
    failed = returncode != 0 or bool(artifacts)
    traceback = ""
    if failed:
        start = output.find("=== Uncaught Python exception: ===")
        traceback = output[start:] if start >= 0 else output[-3000:]
    return {
        "target": name,
        "runs": int(done.group(1)) if done else runs,
        "fuzzing_seconds": int(done.group(2)) if done else None,  # libFuzzer's clock
        "wall_seconds": round(seconds, 1),  # with imports and seeds
        "seed_cov": int(inited[0][2]) if inited else None,
        "seed_ft": int(inited[0][3]) if inited else None,
        "cov": int(status[-1][2]) if status else None,
        "ft": int(status[-1][3]) if status else None,
        "corpus": int(status[-1][4]) if status else None,
        "new_units": stats.get("new_units_added"),
        "exec_per_second": stats.get("average_exec_per_sec"),
        "peak_rss_mb": stats.get("peak_rss_mb"),
        "failed": failed,
        "artifacts": artifacts,
        "traceback": traceback[:6000],
    }


def run_target(name: str, seconds: int, corpus, artifacts: str, runs=None, log=None) -> dict:
    """Fuzzes target `name` for `seconds` (or `runs` inputs) in a child process; appends
    libFuzzer's output to `log` when given."""
    os.makedirs(artifacts, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if corpus is None:
            corpus = stack.enter_context(tempfile.TemporaryDirectory(prefix=f"fuzz-{name}-"))
        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="fuzz-dict-"))
        dict_path = os.path.join(folder, f"{name}.dict")
        with open(dict_path, "w") as f:
            f.write(dictionary(TOKENS[name]))
        flags = [
            f"-max_total_time={seconds}",
            f"-timeout={HANG_SECONDS}",
            f"-dict={dict_path}",
            f"-artifact_prefix={os.path.abspath(artifacts)}/{name}-",
            "-print_final_stats=1",
        ]
        if runs is not None:
            flags.append(f"-runs={runs}")
        command = [sys.executable, "-m", "fuzz.coverage_guided", "--worker", name, corpus]
        start = time.perf_counter()
        process = subprocess.run(
            [*command, *flags],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            check=False,
        )
        seconds_taken = time.perf_counter() - start
    if log is not None:
        with open(log, "a") as f:
            f.write(process.stdout)
    return figures(name, process.stdout, process.returncode, seconds_taken)


def replay(name: str, paths) -> int:
    """Runs target `name`'s entry on each file (no fuzzing); 1 when one fails."""
    entry, failed = ENTRIES[name], 0
    for path in paths:
        with open(path, "rb") as f:
            data = f.read()
        try:
            outcome = entry(data)
        except Exception as e:
            failed += 1
            outcome = f"FAILED: {type(e).__name__}: {e}"
            import traceback

            traceback.print_exc()
        print(f"{path}: {outcome}")
    return 1 if failed else 0


def _print_figures(result: dict) -> None:
    seconds = result["fuzzing_seconds"]
    seconds = result["wall_seconds"] if seconds is None else seconds  # stopped by a failure
    print(
        f"  {result['target']:<13} {result['runs']:>8} runs in {seconds} s "
        f"({result['exec_per_second']}/s); cov {result['seed_cov']} -> {result['cov']}, "
        f"ft {result['seed_ft']} -> {result['ft']}, corpus {result['corpus']} "
        f"({result['new_units']} new); " + ("FAILED" if result["failed"] else "0 failures"),
        flush=True,
    )
    if result["failed"]:
        print(f"    inputs: {result['artifacts']}\n{result['traceback']}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fuzz.coverage_guided", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--target", default="all", help=f"one of {sorted(ENTRIES)}, or all")
    parser.add_argument("--seconds", type=int, default=60, help="fuzzing time per target")
    parser.add_argument("--runs", type=int, help="stop after this many inputs (libFuzzer -runs)")
    parser.add_argument("--corpus", help="folder kept between runs (a subfolder per target)")
    parser.add_argument(
        "--artifacts",
        default=os.path.join(REPO, "build", "fuzz-coverage"),
        help="where failing inputs are written (default: build/fuzz-coverage)",
    )
    parser.add_argument("--report", help="also write the figures as JSON here")
    parser.add_argument("--replay", nargs="+", metavar="FILE", help="run these inputs, no fuzzing")
    parser.add_argument("--log", help="append libFuzzer's whole output to this file")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:  # --worker TARGET CORPUS LIBFUZZER_FLAGS...
        run_worker(argv[1], argv[2], argv[3:])
        return 0
    args = parser.parse_args(argv)
    names = sorted(ENTRIES) if args.target == "all" else args.target.split(",")
    for name in names:
        if name not in ENTRIES:
            parser.error(f"--target: no target {name!r}; known: {sorted(ENTRIES)}, all")
    if args.replay:
        if len(names) != 1:
            parser.error("--replay: give one --target")
        return replay(names[0], args.replay)
    try:
        import atheris  # noqa: F401
    except ImportError:
        parser.error("atheris is not installed: .venv/bin/pip install atheris==3.0.0")
    from fuzz.__main__ import machine

    print(
        f"fuzz.coverage_guided: {', '.join(names)}, {args.seconds} s each; {machine()}", flush=True
    )
    results = []
    for name in names:
        corpus = os.path.join(args.corpus, name) if args.corpus else None
        results.append(run_target(name, args.seconds, corpus, args.artifacts, args.runs, args.log))
        _print_figures(results[-1])
    failed = sum(r["failed"] for r in results)
    print(
        f"fuzz.coverage_guided: {sum(r['runs'] for r in results)} runs, {failed} failures",
        flush=True,
    )
    if args.report:
        with open(args.report, "w") as f:
            json.dump({"machine": machine(), "targets": results}, f, indent=2)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
