"""Tests of the shard writer (`data_prep.shards`) and `python -m data_prep iam-ondb`."""

import collections
import json
import os
import shutil

import iam_fixtures
import numpy as np
import pytest
import tensorflow as tf
from test_iam_ondb import reference_strokes

from data_prep import __main__ as cli
from data_prep import shards
from handwriting import records
from handwriting.alphabet import UNKNOWN_ID
from handwriting.dataset_info import DatasetInfo, sha256_file

LINES_PER_SHARD = 3


def build(src, out, **kwargs):
    kwargs.setdefault("workers", 1)
    kwargs.setdefault("lines_per_shard", LINES_PER_SHARD)
    return shards.build(src, out, log=lambda message: None, **kwargs)


def folder_bytes(folder) -> dict:
    out = {}
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as f:
            out[name] = f.read()
    return out


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    return iam_fixtures.write_fixture(tmp_path_factory.mktemp("a") / "IAM-OnDB")


@pytest.fixture(scope="module")
def built(fixture, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    info, fresh = build(fixture.root, out)
    assert fresh
    return out, info


def test_shards_round_trip_through_parse_line(fixture, built):
    out, info = built
    assert sorted(os.listdir(out)) == [
        "dataset.json",
        "train-00000-of-00003.tfrecord",
        "train-00001-of-00003.tfrecord",
        "train-00002-of-00003.tfrecord",
        "valid-00000-of-00001.tfrecord",
    ]
    for split in ("train", "valid"):
        dataset = tf.data.TFRecordDataset(info.shard_paths(out, split)).map(records.parse_line)
        got = list(dataset.as_numpy_iterator())
        expected_ids = sorted(i for i, line in fixture.lines.items() if line.graves == split)
        assert [g["line_id"].decode() for g in got] == expected_ids
        for example in got:
            line = fixture.lines[example["line_id"].decode()]
            strokes, alignment = reference_strokes(line.strokes, line.alignment)
            np.testing.assert_array_equal(example["strokes"], strokes.astype(np.float32))
            assert example["text"].decode() == line.text
            assert example["writer_id"].decode() == line.writer_id
            np.testing.assert_array_equal(example["chars"], info.alphabet.encode(line.text))
            expected_alignment = alignment if alignment is not None else np.full(len(strokes), -1)
            np.testing.assert_array_equal(example["alignment"], expected_alignment)
    valid_chars = info.alphabet.encode("Quiz 42!")
    assert (valid_chars == UNKNOWN_ID).sum() == 5  # Q, z, 4, 2, ! are not in any train text


def test_dataset_json_alphabet_statistics_shards_and_report(fixture, built):
    out, info = built
    train = [line for line in fixture.lines.values() if line.graves == "train"]
    assert info.alphabet.chars == "".join(sorted(set("".join(line.text for line in train))))
    offsets = np.concatenate([reference_strokes(line.strokes)[0][:, :2] for line in train])
    np.testing.assert_allclose(info.offset_mean, offsets.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(info.offset_std, offsets.std(axis=0), rtol=1e-12)
    loaded = DatasetInfo.load(out, verify=True)
    assert loaded.to_json() == info.to_json()
    for split, content in info.splits.items():
        expected = [line for line in fixture.lines.values() if line.graves == split]
        assert content.lines == len(expected)
        assert content.points == sum(len(reference_strokes(line.strokes)[0]) for line in expected)
        for shard in content.shards:
            assert sha256_file(os.path.join(out, shard.name)) == shard.sha256
    assert [s.lines for s in info.splits["train"].shards] == [3, 3, 2]
    assert info.skipped["counts"] == dict(
        sorted(collections.Counter(fixture.skips.values()).items())
    )
    assert [s["line_id"] for s in info.skipped["lines"]] == sorted(fixture.skips)
    assert set(info.skipped["lines"][0]) == {"line_id", "file", "reason", "detail"}
    assert info.source["path"] == "IAM-OnDB" and info.source["split"] == "graves"
    assert info.source["lines_without_writer_id"] == 3
    assert info.source["writer_id_problems"] == {
        "a02-012w": "original/a02/a02-012/strokesw.xml: no General/Form element"
    }
    assert info.source["chars_outside_alphabet"] == {"valid": 6}  # "Quiz 42!" and the d of "made"
    report = shards.format_report(info.skipped, examples=1)
    assert f"skipped: {len(fixture.skips)} (every one is listed in dataset.json)" in report
    assert (
        "  unsafe XML: 2\n    a04-030u-01: lineStrokes/a04/a04-030/a04-030u-01.xml: declares"
        in report
    )


def test_output_does_not_depend_on_the_number_of_workers(fixture, built, tmp_path):
    out, _ = built
    build(fixture.root, tmp_path / "two", workers=2)
    assert folder_bytes(tmp_path / "two") == folder_bytes(out)


def test_archives_give_the_same_build_as_the_folder(fixture, built, tmp_path):
    out, _ = built
    src = tmp_path / "archives" / "IAM-OnDB"
    iam_fixtures.write_archives(fixture.root, src)
    assert sorted(os.listdir(src))[:3] == [
        "alignment",
        "ascii-all.tar.gz",
        "lineStrokes-all.tar.gz",
    ]
    build(src, tmp_path / "from-archives")
    assert folder_bytes(tmp_path / "from-archives") == folder_bytes(out)


class Interrupted(Exception):
    pass


def test_an_interrupted_build_resumes_without_redoing_finished_shards(fixture, built, tmp_path):
    out, _ = built
    resumed = tmp_path / "resumed"
    os.makedirs(resumed)
    # A temporary file of a process killed earlier; the build must clear it.
    leftover = resumed / ".train-00001-of-00003.tfrecord.k1ll3d.tmp"
    leftover.write_bytes(b"half a shard")

    def stop_after_first(name):
        raise Interrupted(name)

    with pytest.raises(Interrupted, match=r"^train-00000-of-00003\.tfrecord$"):
        build(fixture.root, resumed, on_shard_written=stop_after_first)
    assert sorted(os.listdir(resumed)) == [shards.PLAN_FILE, "train-00000-of-00003.tfrecord"]
    first = os.stat(resumed / "train-00000-of-00003.tfrecord")
    written = []
    build(fixture.root, resumed, on_shard_written=written.append)
    assert written == [
        "train-00001-of-00003.tfrecord",
        "train-00002-of-00003.tfrecord",
        "valid-00000-of-00001.tfrecord",
    ]
    again = os.stat(resumed / "train-00000-of-00003.tfrecord")
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)
    assert folder_bytes(resumed) == folder_bytes(out)  # no plan, no temporary file, same bytes


def test_a_complete_build_is_not_redone_and_a_changed_input_is(fixture, tmp_path, capsys):
    out = tmp_path / "out"
    build(fixture.root, out)
    before = {name: os.stat(out / name).st_mtime_ns for name in os.listdir(out)}
    info, fresh = build(fixture.root, out)
    assert not fresh
    argv = [
        "iam-ondb",
        fixture.root,
        str(out),
        "--workers",
        "1",
        "--lines-per-shard",
        str(LINES_PER_SHARD),
    ]
    assert cli.main(argv) == 0
    assert "already holds a complete build of this input" in capsys.readouterr().out
    assert {name: os.stat(out / name).st_mtime_ns for name in os.listdir(out)} == before
    # Another shard size is another build: the old shards are replaced, not left behind.
    info, fresh = build(fixture.root, out, lines_per_shard=5)
    assert fresh
    assert sorted(os.listdir(out)) == [
        "dataset.json",
        "train-00000-of-00002.tfrecord",
        "train-00001-of-00002.tfrecord",
        "valid-00000-of-00001.tfrecord",
    ]
    # A changed input is another build too.
    changed = tmp_path / "changed" / "IAM-OnDB"
    shutil.copytree(fixture.root, changed)
    ascii_path = changed / "ascii" / "a01" / "a01-000" / "a01-000x.txt"
    ascii_path.write_bytes(ascii_path.read_bytes().replace(b"life Peers is", b"life Peers, is"))
    old_fingerprint = info.source["fingerprint"]
    info, fresh = build(changed, out, lines_per_shard=5)
    assert fresh and info.source["fingerprint"] != old_fingerprint
    assert "," in info.alphabet.chars
    assert (
        json.loads((out / "dataset.json").read_text())["source"]["fingerprint"]
        == info.source["fingerprint"]
    )


def test_cli_official_split_and_exit_codes(fixture, tmp_path, capsys):
    out = tmp_path / "official"
    argv = [
        "iam-ondb",
        fixture.root,
        str(out),
        "--split",
        "official",
        "--workers",
        "1",
        "--lines-per-shard",
        "4",
    ]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert (
        "train: 5 lines" in printed and "valid: 4 lines" in printed and "test: 1 lines" in printed
    )
    assert "  line count mismatch: 2" in printed
    info = DatasetInfo.load(out)
    assert sorted(info.splits) == ["test", "train", "valid"]
    assert [s.name for s in info.splits["test"].shards] == ["test-00000-of-00001.tfrecord"]
    assert cli.main(["iam-ondb", str(tmp_path / "missing"), str(out)]) == 2
    assert "missing: not a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        cli.main(["iam-ondb", fixture.root, str(out), "--workers", "0"])
    assert caught.value.code == 2
    assert "expected a positive integer, received 0" in capsys.readouterr().err
