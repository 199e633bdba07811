"""Tests for data_prep.synth.layout and cli: the IAM-OnDB folder, read back by the real reader."""

import argparse
import filecmp
import os

import numpy as np
import pytest
from lxml import etree

from data_prep import iam_ondb
from data_prep.synth import cli, layout

LINES, WRITERS, SEED = 43, 5, 7


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    directory = tmp_path_factory.mktemp("synth") / "corpus"
    summary = layout.write_corpus(directory, lines=LINES, writers=WRITERS, seed=SEED)
    return directory, summary


def _all_files(directory):
    found = []
    for root, _, names in os.walk(directory):
        found.extend(os.path.relpath(os.path.join(root, n), directory) for n in names)
    return sorted(found)


def test_layout_names_and_counts(corpus):
    directory, summary = corpus
    assert summary["lines"] == LINES and summary["complete"]
    names = _all_files(directory)
    strokes = [n for n in names if n.startswith("lineStrokes/")]
    alignments = [n for n in names if n.startswith("alignment/")]
    assert len(strokes) == len(alignments) == LINES
    assert "lineStrokes/a00/a00-000/a00-000u-01.xml" in strokes
    assert "alignment/a00/a00-000/a00-000u-01.txt" in alignments
    assert "ascii/a00/a00-000/a00-000u.txt" in names
    assert "original/a00/a00-000/strokesu.xml" in names
    assert "original/a01/a01-000/strokesv.xml" in names
    for name in (*layout.SPLIT_FILES, ".complete", "synth.json"):
        assert name in names
    assert not any(n.startswith(".staging") for n in names)


def test_real_reader_gives_back_texts_writers_and_alignment(corpus):
    directory, _ = corpus
    plans = layout.plan_corpus(LINES, WRITERS, SEED)
    written = {
        f"{p.form_id}-{k:02d}": (text, layout.writer_id(p.writer_index))
        for p in plans
        for k, text in enumerate(p.lines, start=1)
    }
    inventory = iam_ondb.scan_source(directory)
    read = iam_ondb.read_corpus(inventory, mode="graves", workers=1)
    assert read.skips == []
    lines = [line for split in read.splits.values() for line in split]
    assert {line.line_id: (line.text, line.writer_id) for line in lines} == written
    for line in lines:
        assert line.alignment is not None
        assert np.all(np.diff(line.alignment) >= 0)
        covered = set(line.alignment.tolist())
        assert covered == {i for i, c in enumerate(line.text) if c != " "}, line.line_id
        # Whiteboard-sized lines: several thousand units across, y up in the stroke array.
        xy = np.cumsum(line.strokes[:, :2], axis=0)
        assert 600 < np.ptp(xy[:, 0]) < 12000
        assert line.strokes[-1, 2] == 1


def test_splits_are_writer_disjoint_and_cover_every_form(corpus):
    directory, summary = corpus
    plans = {p.form_id: p for p in layout.plan_corpus(LINES, WRITERS, SEED)}
    writers_of = {}
    for name in layout.SPLIT_FILES:
        with open(directory / name) as f:
            ids = f.read().split()
        writers_of[name] = {plans[i].writer_index for i in ids}
        assert summary["splits"][name]["forms"] == len(ids)
    listed = [w for ws in writers_of.values() for w in ws]
    assert sorted(listed) == list(range(WRITERS))
    assert writers_of["testset_v.txt"]  # a real validation set
    texts = {name: set() for name in layout.SPLIT_FILES}
    for name, ws in writers_of.items():
        for p in plans.values():
            if p.writer_index in ws:
                texts[name].update(p.lines)
    for a in layout.SPLIT_FILES:
        for b in layout.SPLIT_FILES:
            assert a == b or not texts[a] & texts[b]


def test_split_shares_follow_iam_proportions():
    splits = layout.split_writers(60, seed=1)
    counts = {name: len(ws) for name, ws in splits.items()}
    assert counts == {
        "trainset.txt": 28,
        "testset_v.txt": 7,
        "testset_t.txt": 7,
        "testset_f.txt": 18,
    }
    assert layout.split_writers(1, seed=1)["trainset.txt"] == [0]


def test_xml_format(corpus):
    directory, _ = corpus
    path = directory / "lineStrokes/a02/a02-000/a02-000w-02.xml"
    data = path.read_bytes()
    assert data.startswith(
        b'<?xml version="1.0" encoding="ISO-8859-1"?>\n<WhiteboardCaptureSession>'
    )
    root = etree.fromstring(data)
    description = root.find("WhiteboardDescription")
    assert description.find("SensorLocation").get("corner") == "top_left"
    diagonal = description.find("DiagonallyOppositeCoords")
    times, ys = [], []
    for stroke in root.find("StrokeSet"):
        assert stroke.get("colour") == "black"
        points = stroke.findall("Point")
        stamps = [p.get("time") for p in points]
        assert stroke.get("start_time") == stamps[0] and stroke.get("end_time") == stamps[-1]
        for p in points:
            int(p.get("x"))  # integers
            ys.append(int(p.get("y")))
            assert len(p.get("time").split(".")[1]) == 3
            assert int(p.get("x")) < int(diagonal.get("x"))
        times.extend(float(t) for t in stamps)
    assert np.all(np.diff(times) > 0)
    # Line 2 lies below line 1 on the board: y grows downwards.
    first = etree.parse(str(directory / "lineStrokes/a02/a02-000/a02-000w-01.xml"))
    first_ys = [int(v) for v in first.xpath("//Point/@y")]
    assert np.median(ys) > np.median(first_ys)
    original = etree.parse(str(directory / "original/a02/a02-000/strokesw.xml")).getroot()
    form = original.find("General/Form")
    assert form.get("id") == "a02-000w" and form.get("writerID") == "10003"
    ascii_text = (directory / "ascii/a02/a02-000/a02-000w.txt").read_text()
    head, csr = ascii_text.split("\nCSR:\n\n")
    assert "OCR:\n\n" in head
    plan = next(p for p in layout.plan_corpus(LINES, WRITERS, SEED) if p.form_id == "a02-000w")
    assert csr == "\n".join(plan.lines) + "\n"


def test_same_arguments_same_bytes_whatever_the_workers(tmp_path, corpus):
    directory, _ = corpus
    again = tmp_path / "again"
    layout.write_corpus(again, lines=LINES, writers=WRITERS, seed=SEED, workers=2)
    names = _all_files(directory)
    assert names == _all_files(again)
    _, mismatch, errors = filecmp.cmpfiles(directory, again, names, shallow=False)
    assert mismatch == [] and errors == []


def test_other_seed_other_lines(tmp_path, corpus):
    other = tmp_path / "other"
    layout.write_corpus(other, lines=LINES, writers=WRITERS, seed=SEED + 1)
    a = {t for p in layout.plan_corpus(LINES, WRITERS, SEED) for t in p.lines}
    b = {t for p in layout.plan_corpus(LINES, WRITERS, SEED + 1) for t in p.lines}
    assert not a & b
    directory, _ = corpus
    assert (other / "lineStrokes/a00/a00-000/a00-000u-01.xml").read_bytes() != (
        directory / "lineStrokes/a00/a00-000/a00-000u-01.xml"
    ).read_bytes()


def test_rerun_replaces_an_earlier_corpus_without_leftovers(tmp_path):
    target = tmp_path / "c"
    layout.write_corpus(target, lines=30, writers=3, seed=1)
    layout.write_corpus(target, lines=8, writers=2, seed=1)
    strokes = [n for n in _all_files(target) if n.startswith("lineStrokes/")]
    assert len(strokes) == 8


def test_foreign_folder_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(layout.CorpusError, match=r"not empty and holds no synth\.json"):
        layout.write_corpus(tmp_path, lines=4, writers=2, seed=1)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def _parse(argv):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_cli_writes_and_reports(tmp_path, capsys):
    target = tmp_path / "out"
    args = _parse(
        [
            str(target),
            "--lines",
            "9",
            "--writers",
            "2",
            "--seed",
            "3",
            "--workers",
            "1",
            "--fonts",
            "ems-tech",
            "ems-felix",
        ]
    )
    assert cli.run(args) == 0
    assert "wrote 9 lines" in capsys.readouterr().out
    assert (target / ".complete").exists()


def test_cli_bad_arguments(tmp_path, capsys):
    args = _parse([str(tmp_path / "x"), "--lines", "3", "--writers", "5"])
    assert cli.run(args) == 2
    assert "--lines (3) must be at least --writers (5)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _parse([str(tmp_path / "x"), "--fonts", "comic"])
