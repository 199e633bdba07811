"""Tests of the IAM-OnDB reader (`data_prep.iam_ondb`) and offset statistics (`data_prep.clean`).

The line XML itself is read by `handwriting.iam_xml`: tests/test_iam_xml.py."""

import io
import os
import tarfile

import iam_fixtures
import numpy as np
import pytest

from data_prep import clean, iam_ondb


def reference_strokes(strokes, alignment=None):
    """The expected stroke array, computed point by point in float64 from the written points."""
    rows, kept_alignment, index = [], [], 0
    for stroke in strokes:
        previous = None
        for j, (x, y) in enumerate(np.asarray(stroke, np.float64)):
            if previous is None or (x, y) != previous:
                rows.append([x, y, 1.0 if j == len(stroke) - 1 else 0.0])
                if alignment is not None:
                    kept_alignment.append(alignment[index])
            elif j == len(stroke) - 1:
                rows[-1][2] = 1.0  # a repeat ending the stroke: its kept twin ends it
            previous = (x, y)
            index += 1
    rows = np.array(rows, np.float64)
    x = rows[:, 0] - rows[0, 0]
    y = -(rows[:, 1] - rows[0, 1])
    offsets = np.stack([np.diff(x, prepend=0.0), np.diff(y, prepend=0.0), rows[:, 2]], axis=1)
    return offsets, (np.array(kept_alignment) if alignment is not None else None)


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    return iam_fixtures.write_fixture(tmp_path_factory.mktemp("iam") / "IAM-OnDB")


@pytest.fixture(scope="module")
def corpus(fixture):
    return iam_ondb.read_corpus(iam_ondb.scan_source(fixture.root), mode="graves", workers=1)


def test_reads_every_kept_line_with_its_text_points_and_writer(fixture, corpus):
    got = {line.line_id: line for lines in corpus.splits.values() for line in lines}
    assert sorted(got) == sorted(fixture.lines)
    for line_id, expected in fixture.lines.items():
        line = got[line_id]
        assert line.text == expected.text, line_id
        assert line.writer_id == expected.writer_id, line_id
        strokes, alignment = reference_strokes(expected.strokes, expected.alignment)
        assert line.strokes.dtype == np.float32 and line.strokes.shape == strokes.shape
        np.testing.assert_array_equal(line.strokes, strokes.astype(np.float32), err_msg=line_id)
        if alignment is None:
            assert line.alignment is None
        else:
            np.testing.assert_array_equal(line.alignment, alignment)
    # Quirks of the source that must have been read through.
    assert got["a01-000u-03"].text == "café nominating"  # ISO-8859-1 transcription
    assert got["a01-000u-02"].text == "Mr. Gaitskell from"  # spaces around the line stripped
    assert corpus.lines_without_writer == 3  # a01-007u has no original, a02-012w no writerID


@pytest.mark.parametrize("mode", ["graves", "official"])
def test_split_assignment(fixture, mode):
    corpus = iam_ondb.read_corpus(iam_ondb.scan_source(fixture.root), mode=mode, workers=1)
    expected = {}
    for line_id, line in fixture.lines.items():
        expected.setdefault(getattr(line, mode), []).append(line_id)
    assert list(corpus.splits) == (
        ["train", "valid"] if mode == "graves" else ["train", "valid", "test"]
    )
    for split, lines in corpus.splits.items():
        assert [line.line_id for line in lines] == sorted(expected.get(split, [])), split


def test_every_skip_has_its_reason_and_names_a_real_file(fixture, corpus):
    assert {s.line_id: s.reason for s in corpus.skips} == fixture.skips
    for skip in corpus.skips:
        assert os.path.isfile(os.path.join(fixture.root, skip.file)), skip
    details = {s.line_id: s.detail for s in corpus.skips}
    assert details["a04-030u-05"] == (
        "lineStrokes/a04/a04-030/a04-030u-05.xml: point 2 has non-numeric x='1l'"
    )
    with open(os.path.join(fixture.root, "lineStrokes/a04/a04-030/a04-030u-09.xml"), "rb") as f:
        points = f.read().count(b"<Point ")
    assert details["a04-030u-09"] == (
        f"alignment/a04/a04-030/a04-030u-09.txt: 3 indices for {points} points"
    )
    assert (
        details["a03-023u-01"]
        == "ascii/a03/a03-023/a03-023u.txt: not found, the form has no transcription"
    )
    assert details["a03-020u-01"].startswith(
        "ascii/a03/a03-020/a03-020u.txt: 3 CSR lines, but the stroke"
    )


def test_csr_block_with_mixed_newlines_spaces_and_an_inner_blank_line():
    text = "Document id: a01-000u\r\nOCR:\r\n\r\nignored\nCSR:   \r\n"
    text += "\r\n  first line \r\nsecond\r\rfourth  \n\n\r\n"
    assert iam_ondb.csr_lines(text, "a.txt") == ["first line", "second", "", "fourth"]
    with pytest.raises(iam_ondb.LineError, match=r"^a.txt: 0 `CSR:` blocks, expected 1$"):
        iam_ondb.csr_lines("OCR:\nsome text\n", "a.txt")
    with pytest.raises(iam_ondb.LineError, match="placeholder"):
        iam_ondb.check_text("", "a.txt line 3")
    iam_ondb.check_text("#1 of 2", "a.txt line 4")  # marks inside real text are fine


def test_split_lists_and_their_errors(tmp_path):
    assert iam_ondb.read_split_list(b"  a01-000u\r\na01-001\n\n  b02-100w  \n", "t.txt") == [
        "a01-000u",
        "a01-001",
        "b02-100w",
    ]
    with pytest.raises(
        iam_ondb.PrepError, match=r"^trainset.txt line 2: 'a01_000' is not a form id"
    ):
        iam_ondb.read_split_list(b"a01-000u\na01_000\n", "trainset.txt")
    root = iam_fixtures.write_fixture(tmp_path / "src").root
    os.remove(os.path.join(root, "testset_t.txt"))
    with pytest.raises(
        iam_ondb.PrepError, match=r"testset_t.txt: split list not found \(nor in task1/\)$"
    ):
        iam_ondb.scan_source(root)
    with pytest.raises(iam_ondb.PrepError, match="no_such_dir: not a folder"):
        iam_ondb.scan_source(tmp_path / "no_such_dir")


def test_alignment_is_checked(tmp_path):
    assert iam_ondb.parse_alignment(b"0 0 1\r\n2 2\n", "a.txt", 5, 3).tolist() == [0, 0, 1, 2, 2]
    cases = [
        (b"0 1 0 2 2", "decreases after point 2"),
        (b"0 1 2 3 3", r"indices span \[0, 3\], the text has 3 characters"),
        (b"0 1 x 2 2", "holds something other than integers"),
        (b"0 1 2", "3 indices for 5 points"),
    ]
    for data, message in cases:
        with pytest.raises(iam_ondb.LineError, match=f"^a.txt: {message}$"):
            iam_ondb.parse_alignment(data, "a.txt", 5, 3)


def test_writer_id_of_the_original_form():
    read = iam_ondb.writer_id_of
    assert read(io.BytesIO(iam_fixtures.original_xml("a01-000u", " 10042 ")), "o.xml") == (
        "10042",
        "",
    )
    assert read(io.BytesIO(iam_fixtures.original_xml("a01-000u", "")), "o.xml") == (
        "",
        "o.xml: no General/Form element",
    )
    writer, problem = read(io.BytesIO(iam_fixtures.HOSTILE["xxe"]), "x.xml")
    assert writer == "" and "DOCTYPE" in problem
    assert read(io.BytesIO(b"<WhiteboardCaptureSession><General><Form"), "t.xml")[0] == ""


def test_archives_refuse_links_traversal_and_read_the_rest(fixture, tmp_path):
    src = tmp_path / "IAM-OnDB"
    iam_fixtures.write_archives(fixture.root, src)
    with tarfile.open(src / "ascii-all.tar.gz", "r:gz") as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]
    with tarfile.open(src / "ascii-all.tar.gz", "w:gz") as tar:
        for member, data in members:
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
        link = tarfile.TarInfo("ascii/a09/a09-000/a09-000u.txt")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
        evil = tarfile.TarInfo("ascii/../../evil.txt")
        evil.size = 4
        tar.addfile(evil, io.BytesIO(b"evil"))
    inventory = iam_ondb.scan_source(src)
    problems = {p.file: p.detail for p in inventory.problems}
    link, evil = (
        "ascii-all.tar.gz:ascii/a09/a09-000/a09-000u.txt",
        "ascii-all.tar.gz:ascii/../../evil.txt",
    )
    assert problems == {
        link: f"{link}: not a regular file (link or device)",
        evil: f"{evil}: path leaves the archive",
    }
    assert not any("evil" in p or "a09" in p for p in inventory.files)
    folder = iam_ondb.scan_source(fixture.root)
    assert sorted(inventory.files) == sorted(folder.files)
    assert inventory.writer_ids == folder.writer_ids


def test_offset_moments_combine_exactly_like_numpy():
    rng = np.random.default_rng(3)
    parts = [rng.normal(size=(n, 3)).astype(np.float32) for n in (5, 1, 12, 7)]
    moments = (0, np.zeros(2), np.zeros(2))
    for part in parts:
        moments = clean.combine_moments(moments, clean.offset_moments(part))
    n, mean, m2 = moments
    everything = np.concatenate(parts).astype(np.float64)[:, :2]
    assert n == 25
    np.testing.assert_allclose(mean, everything.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(np.sqrt(m2 / n), everything.std(axis=0), rtol=1e-13)
