"""Property and fuzz tests of everything the project reads from users: generated cases, run by
Hypothesis, each checked against the contract of its reader.

Every target is a Hypothesis strategy of cases and a `check(case)` that runs the real reader
on the case and raises `AssertionError` when the contract is broken; it returns a short
outcome (`accepted` or `refused: <reason>`) for the report. The contract everywhere: a good
input is read with the same values; a bad one is refused with the reader's own error, whose
message names the file, the line or the option; never another exception, never a hang.

    python -m fuzz --cases 10000          # `make fuzz`: every target, figures in a table
    tests/test_fuzz_*.py                  # a derandomized slice of the same targets
    python -m fuzz.coverage_guided --target all --seconds 60   # `make fuzz-coverage`: Atheris

Modules: `xml_cases` (IAM-OnDB line and form XML), `text_cases` (transcriptions, split
lists, alignment files, the text to write), `archive_cases` (`.tar.gz` sources),
`json_cases` (style primes, `config.json`, `dataset.json`), `prep_cases` (whole
`data_prep` builds), `model_cases` (`model.keras` and the `write` command), `targets` (the
list the driver runs), `coverage_guided` (the readers of line XML and JSON on bytes, under
Atheris, checked by the same `check` functions), `kills` (SIGKILLs of `data_prep` and
`train.py`).
"""
