"""`python -m fuzz.coverage_guided` (`make fuzz-coverage`, RELIABILITY.md): each target's entry
point on its seeds and on junk, without the fuzz loop; with Atheris installed, one short run."""

import importlib.util
import json

import pytest

from fuzz import coverage_guided

JUNK = (b"", b"\x00" * 9, b"\xff\xfe<", b"<", b"{}", b"[[[", b'{"lines": [1]}', b"\xef\xbb\xbf{")


def test_every_target_has_an_entry_seeds_and_a_dictionary():
    assert set(coverage_guided.ENTRIES) == set(coverage_guided.SEEDS) == set(coverage_guided.TOKENS)


@pytest.mark.parametrize("name", sorted(coverage_guided.ENTRIES))
def test_seeds_are_read_and_junk_is_refused_by_the_targets_own_check(name):
    entry = coverage_guided.ENTRIES[name]
    seeds = coverage_guided.SEEDS[name]()
    outcomes = [entry(seed) for seed in seeds]
    # The seeds reach the reading path, not only the first refusal.
    assert "accepted" in outcomes, outcomes
    assert all(entry(data).startswith("refused") for data in JUNK)


def test_the_line_seeds_hold_the_fixtures_hostile_lines():
    outcomes = {coverage_guided.line_xml(seed) for seed in coverage_guided.line_xml_seeds()}
    assert {"refused: unsafe XML", "refused: malformed XML", "refused: no points"} <= outcomes


def test_an_input_breaking_the_contract_fails_its_entry_point(monkeypatch):
    # A reader giving a NaN point instead of refusing it: the reused check says so.
    import numpy as np

    from handwriting import iam_xml

    def lax(data, name):
        return np.array([np.nan]), np.array([1.0]), np.array([1])

    monkeypatch.setattr(iam_xml, "parse_line_xml", lax)
    with pytest.raises(AssertionError):
        coverage_guided.line_xml(b"<WhiteboardCaptureSession/>")


def test_a_dictionary_escapes_quotes_backslashes_and_bytes():
    assert coverage_guided.dictionary([b'x="', b"\\\xff"]) == '"x=\\x22"\n"\\x5c\\xff"\n'


def test_replay_runs_inputs_without_fuzzing(tmp_path, capsys):
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_bytes(coverage_guided.config_json_seeds()[0])
    bad.write_bytes(b"{")
    assert coverage_guided.main(["--target", "config-json", "--replay", str(good), str(bad)]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{good}: accepted", f"{bad}: refused"]


def test_a_failure_in_libfuzzers_output_is_reported_with_its_input():
    output = (
        "#2\tINITED cov: 74 ft: 74 corp: 3/3Kb exec/s: 0 rss: 70Mb\n"
        " === Uncaught Python exception: ===\nAssertionError: contract broken\n"
        "==1== ERROR: libFuzzer: fuzz target exited\n"
        "artifact_prefix='a/'; Test unit written to a/crash-137f\n"
        "stat::number_of_executed_units: 384\n"
    )
    result = coverage_guided.figures("prime", output, 1, 2.0)
    assert result["failed"] and result["artifacts"] == ["a/crash-137f"]
    assert result["runs"] == 384 and result["seed_cov"] == 74
    assert result["traceback"].startswith("=== Uncaught Python exception")


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris not installed")
def test_a_short_atheris_run_is_instrumented_and_finds_no_failure(tmp_path):
    report = tmp_path / "report.json"
    argv = ["--target", "config-json", "--seconds", "10", "--runs", "300"]
    argv += ["--artifacts", str(tmp_path / "artifacts"), "--report", str(report)]
    assert coverage_guided.main(argv) == 0
    (result,) = json.loads(report.read_text())["targets"]
    assert result["runs"] >= 300 and not result["failed"]
    # Coverage counted in the project's modules: the seeds reach some, the fuzzer keeps it.
    assert result["seed_cov"] > 20 and result["cov"] >= result["seed_cov"]
    assert not list((tmp_path / "artifacts").iterdir())
