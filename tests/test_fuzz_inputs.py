"""A seeded slice of `make fuzz`: the readers of user input that need no TensorFlow, each under
a few dozen generated attacks (`fuzz/`, RELIABILITY.md). Derandomized: the same cases every
run, so a failure here reproduces."""

import pytest
from hypothesis import given

from fuzz import archive_cases, json_cases, targets, text_cases, xml_cases
from fuzz.targets import slice_settings as slice_of


@slice_of(120)
@given(xml_cases.line_cases(attacks=tuple(a for a in xml_cases.ATTACKS if a != "large")))
def test_line_xml_good_lines_read_the_same_bad_ones_are_refused_naming_the_file(case):
    xml_cases.check_line(case)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_large_line_is_read_whole_or_refused_by_its_size(seed):
    case = xml_cases.LineCase(xml_cases.Line((((1, 2), (3, 4)),)), "large", seed)
    assert xml_cases.check_line(case) in ("accepted", "refused: file too large")


@slice_of(30)
@given(xml_cases.form_cases())
def test_form_xml_gives_a_writer_id_or_a_reason(case):
    xml_cases.check_form(case)


@slice_of(40)
@given(text_cases.transcript_cases())
def test_transcriptions_give_their_csr_lines_or_no_transcription(case):
    text_cases.check_transcript(case)


@slice_of(40)
@given(text_cases.split_list_cases())
def test_split_lists_give_their_form_ids_or_name_the_junk_line(case):
    text_cases.check_split_list(case)


@slice_of(30)
@given(text_cases.alignment_cases())
def test_alignment_files_give_their_indices_or_are_bad_alignments(case):
    text_cases.check_alignment(case)


@slice_of(30)
@given(archive_cases.archive_cases(rare=False))
def test_archives_give_every_good_member_and_list_every_unsafe_one(case):
    archive_cases.check_archive(case)


def test_a_bomb_stops_the_scan_naming_the_archive():
    # A flood of entries: tests/test_fuzz_defects.py (seconds to build).
    case = archive_cases.ArchiveCase(2, ("symlink",), 0, "bomb", 5)
    assert archive_cases.check_archive(case) == "refused: unpacks to more than 100 times its size"


@slice_of(60)
@given(text_cases.write_text_cases())
def test_text_to_write_is_wrapped_or_refused_naming_the_character(case):
    text_cases.check_write_text(case)


@slice_of(50)
@given(json_cases.prime_cases())
def test_primes_and_stroke_files_read_the_same_or_are_refused_naming_the_file(case):
    json_cases.check_prime(case)


@slice_of(40)
@given(json_cases.config_cases())
def test_config_json_reads_the_same_or_is_refused_naming_the_file_and_key(case):
    json_cases.check_config(case)


@slice_of(40)
@given(json_cases.dataset_cases())
def test_dataset_json_reads_the_same_or_is_refused_naming_the_file(case):
    json_cases.check_dataset(case)


def test_make_fuzz_runs_the_cases_asked_for_mostly_without_tensorflow():
    counts = targets.shares(10_000)
    assert sum(counts.values()) == 10_000 and min(counts.values()) >= 1
    heavy = sum(counts[t.name] for t in targets.TARGETS if t.tensorflow)
    assert 200 <= heavy <= 600  # a few hundred slow cases, the rest quick
    assert sum(targets.shares(13).values()) == 13
    for target in targets.TARGETS:  # every target resolves to a strategy and a check
        strategy, check = target.functions()
        assert callable(check) and hasattr(strategy, "example")
