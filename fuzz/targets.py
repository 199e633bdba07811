"""The fuzz targets `python -m fuzz` runs, and the share of the cases each gets.

Most cases go to readers that need no TensorFlow (thousands a minute); whole `data_prep`
builds, model files and the `write` command import TensorFlow and take a second or more a
case, so they get few.
"""

import dataclasses
import importlib

from hypothesis import HealthCheck, settings


def slice_settings(count: int):
    """Hypothesis settings of the suite's slice (tests/test_fuzz_*.py): `count` cases,
    derandomized, so that the same cases run every time and a failure reproduces."""
    return settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )


@dataclasses.dataclass(frozen=True)
class Target:
    """One reader under attack."""

    name: str
    what: str  # what is attacked, for the report
    module: str  # fuzz.<module> holding `cases` and `check`
    cases: str  # the function returning the Hypothesis strategy of cases
    check: str  # the function checking one case; returns its outcome
    weight: float  # share of the cases
    tensorflow: bool = False  # imports TensorFlow (slow cases)

    def functions(self):
        """Returns `(strategy, check)`, importing the target's module."""
        module = importlib.import_module(f"fuzz.{self.module}")
        return getattr(module, self.cases)(), getattr(module, self.check)

    def warm_up(self) -> None:
        """Runs the module's `warm_up()`, when it has one."""
        module = importlib.import_module(f"fuzz.{self.module}")
        if hasattr(module, "warm_up"):
            module.warm_up()


TARGETS = (
    Target(
        "line-xml",
        "IAM line XML: flips, truncation, attributes, NaN/inf/huge values, encodings, DOCTYPEs, "
        "nesting, empty strokes, large files",
        "xml_cases",
        "line_cases",
        "check_line",
        0.30,
    ),
    Target(
        "form-xml",
        "form XML (writer id): flips, truncation, DOCTYPEs, encodings",
        "xml_cases",
        "form_cases",
        "check_form",
        0.04,
    ),
    Target(
        "transcription",
        "transcriptions: CSR/OCR blocks missing, doubled, mis-encoded, flipped, truncated",
        "text_cases",
        "transcript_cases",
        "check_transcript",
        0.08,
    ),
    Target(
        "split-list",
        "split lists with junk entries, BOMs, UTF-16, mixed newlines",
        "text_cases",
        "split_list_cases",
        "check_split_list",
        0.06,
    ),
    Target(
        "alignment",
        "alignment files: counts, ranges, order, huge integers, junk",
        "text_cases",
        "alignment_cases",
        "check_alignment",
        0.04,
    ),
    Target(
        "archive",
        ".tar.gz: '..', absolute paths, links, devices, FIFOs, oversize members, bombs, "
        "entry floods, flips, truncation",
        "archive_cases",
        "archive_cases",
        "check_archive",
        0.08,
    ),
    Target(
        "write-text",
        "text to write: empty, whitespace, control characters, NUL, RTL, emoji, 1e5 characters, "
        "absurd widths",
        "text_cases",
        "write_text_cases",
        "check_write_text",
        0.12,
    ),
    Target(
        "prime",
        "stroke JSON / XML primes and stroke files: wrong types, NaN/inf, shapes, damaged bytes",
        "json_cases",
        "prime_cases",
        "check_prime",
        0.12,
    ),
    Target(
        "config-json",
        "config.json: wrong types, unknown keys, non-finite and huge numbers, damaged bytes",
        "json_cases",
        "config_cases",
        "check_config",
        0.07,
    ),
    Target(
        "dataset-json",
        "dataset.json: wrong types, non-finite statistics, shard paths, alphabets, damaged bytes",
        "json_cases",
        "dataset_cases",
        "check_dataset",
        0.07,
    ),
    Target(
        "prep-build",
        "whole data_prep builds of sources with damaged lines, transcriptions, split lists and "
        "archives: accounting of every line, no partial shard",
        "prep_cases",
        "build_cases",
        "check_build",
        0.02,
        tensorflow=True,
    ),
    Target(
        "model-dir",
        "model.keras truncated, flipped, tampered (code in its config), members missing",
        "model_cases",
        "model_cases",
        "check_model",
        0.015,
        tensorflow=True,
    ),
    Target(
        "write-command",
        "python -m handwriting write: text and absurd --width/--bias/--seed/--height",
        "model_cases",
        "command_cases",
        "check_command",
        0.008,
        tensorflow=True,
    ),
)


def by_name(name: str) -> Target:
    for target in TARGETS:
        if target.name == name:
            return target
    raise KeyError(f"no fuzz target {name!r}; known: {[t.name for t in TARGETS]}")


def shares(total: int, targets=TARGETS) -> dict:
    """Splits `total` cases over `targets` by weight (largest remainders), at least 1 each: the
    counts add up to `total` when it is at least the number of targets."""
    weights = sum(t.weight for t in targets)
    exact = {t.name: total * t.weight / weights for t in targets}
    counts = {name: int(value) for name, value in exact.items()}
    order = sorted(exact, key=lambda name: exact[name] - counts[name], reverse=True)
    for name in order[: total - sum(counts.values())]:
        counts[name] += 1
    for name in [name for name, count in counts.items() if count == 0]:
        counts[name] = 1
        largest = max(counts, key=counts.get)
        if counts[largest] > 1:
            counts[largest] -= 1
    return counts
