"""The defects `make fuzz` found, one test each (RELIABILITY.md lists them): each input used
to end in a traceback, a hang, a memory blow-up or a silent wrong result."""

import gzip
import io
import json
import os
import random
import tarfile

import numpy as np
import pytest

from data_prep import iam_ondb
from fuzz import archive_cases
from handwriting import config, presets, rundir, strokes
from handwriting.dataset_info import DatasetError, DatasetInfo
from handwriting.errors import SampleError
from handwriting.iam_xml import LineError

# ----------------------------------------------------------------------------------------------
# data_prep


def test_an_alignment_index_beyond_64_bits_is_a_bad_alignment_not_an_overflow():
    name = "alignment/a01/a01-000/a01-000u-01.txt"
    with pytest.raises(LineError) as caught:
        iam_ondb.parse_alignment(b"0 1 99999999999999999999", name, 3, 5)
    assert (caught.value.reason, str(caught.value)) == (
        "bad alignment",
        f"{name}: holds an integer beyond 64 bits",
    )
    np.testing.assert_array_equal(iam_ondb.parse_alignment(b"0 1 4", name, 3, 5), [0, 1, 4])


def test_text_files_with_a_utf8_byte_order_mark_read_as_without_it():
    listing = b"a01-000u\r\n a02-011\n"
    assert iam_ondb.read_split_list(b"\xef\xbb\xbf" + listing, "trainset.txt") == [
        "a01-000u",
        "a02-011",
    ]
    assert iam_ondb.read_split_list(listing, "trainset.txt") == ["a01-000u", "a02-011"]
    transcript = "\ufeffCSR:\n\nA MOVE\ncafé\n".encode()
    assert iam_ondb.csr_lines(iam_ondb.decode_text(transcript), "a.txt") == ["A MOVE", "café"]
    # ISO-8859-1, the data's own, is still read as such.
    assert iam_ondb.decode_text("café".encode("iso-8859-1")) == "café"


def _source(tmp_path, archive: bytes) -> str:
    return archive_cases.write_source(str(tmp_path / "IAM-OnDB"), archive)


def _stored_archive(members: dict) -> bytes:
    """A .tar.gz whose deflate blocks are stored: a changed byte decompresses without error."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), compresslevel=0, mtime=0)


def test_a_changed_byte_in_an_archive_is_an_error_not_other_content(tmp_path):
    line = b'<Point x="1073" y="1594"/>' * 20
    members = {"lineStrokes/a01/a01-000/a01-000u-01.xml": line}
    data = bytearray(_stored_archive(members))
    at = bytes(data).index(b'x="1073"') + 3
    data[at] = ord("9")  # x="1973": still a plausible point, so only the CRC can tell
    src = _source(tmp_path, bytes(data))
    archive = os.path.join(src, archive_cases.ARCHIVE)
    with pytest.raises(iam_ondb.PrepError) as caught:
        iam_ondb.scan_source(src)
    assert str(caught.value).startswith(
        f"{archive}: not a readable .tar.gz archive (CRC check failed"
    )
    good = _source(tmp_path / "good", _stored_archive(members))
    assert iam_ondb.scan_source(good).files["lineStrokes/a01/a01-000/a01-000u-01.xml"] == line


def test_a_compression_bomb_is_stopped_after_a_bounded_read(tmp_path):
    # 256 MiB of zeros in a member nobody reads: it was decompressed to its end, and any
    # number of them up to MAX_ARCHIVE_BYTES (8 GiB) would be.
    case = archive_cases.ArchiveCase(1, (), 0, "bomb", 0)
    data, _, _ = archive_cases.build_archive(case, random.Random(0))
    src = _source(tmp_path, data)
    archive = os.path.join(src, archive_cases.ARCHIVE)
    with pytest.raises(iam_ondb.PrepError) as caught:
        iam_ondb.scan_source(src)
    message = str(caught.value)
    assert message.startswith(f"{archive}: unpacks to more than 100 times its size (")
    assert message.endswith("like a compression bomb; not read")
    unpacked = int(message.split("(")[1].split(" bytes")[0])
    assert unpacked <= iam_ondb.BOMB_ALLOWANCE + (2 << 20)


@pytest.mark.slow
def test_a_flood_of_empty_entries_is_stopped_at_the_entry_limit(tmp_path):
    case = archive_cases.ArchiveCase(1, (), 0, "entry flood", 0)
    data, _, _ = archive_cases.build_archive(case, random.Random(0))
    src = _source(tmp_path, data)
    with pytest.raises(iam_ondb.PrepError) as caught:
        iam_ondb.scan_source(src)
    archive = os.path.join(src, archive_cases.ARCHIVE)
    assert str(caught.value) == f"{archive}: more than {iam_ondb.MAX_ARCHIVE_MEMBERS} entries"


# ----------------------------------------------------------------------------------------------
# config.json, dataset.json


def _write(folder, name, data: bytes) -> str:
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'\xff{"format_version": 1}', "not valid UTF-8 JSON: byte 0 is not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON: nested too deeply to read"),
        (
            b'{"format_version": 1, "train": {"seed": 1' + b"0" * 5000 + b"}}",
            "not valid JSON: a number has too many digits",
        ),
        (
            b'{"format_version": 1, "train": {"learning_rate": 1' + b"0" * 400 + b"}}",
            "train.learning_rate: expected a finite float, received an integer beyond float",
        ),
        (
            b'{"format_version": 1, "train": {"learning_rate": Infinity}}',
            "train.learning_rate: expected a finite float, received inf",
        ),
        (
            b'{"format_version": 1, "model": {"window_step_init": 1e999}}',
            "model.window_step_init: expected a finite float, received inf",
        ),
    ],
)
def test_a_config_json_that_cannot_be_read_is_named(tmp_path, data, message):
    path = _write(tmp_path, "config.json", data)
    with pytest.raises(config.ConfigError) as caught:
        config.Config.load(tmp_path)
    assert str(caught.value) == f"{path}: {message}"


def test_an_override_of_infinity_is_refused_naming_the_key():
    with pytest.raises(config.ConfigError) as caught:
        presets.preset("tiny").with_overrides(["train.learning_rate=inf"])
    assert str(caught.value) == "train.learning_rate: expected a finite float, received inf"
    changed = presets.preset("tiny").with_overrides(["train.learning_rate=3e-4"])
    assert changed.train.learning_rate == 3e-4


def _dataset(**changes) -> dict:
    obj = {
        "format_version": 1,
        "alphabet": {"pad_id": 0, "unknown_id": 1, "chars": "ab"},
        "normalization": {"offset_mean": [0.5, -1.0], "offset_std": [2.0, 3.0]},
        "splits": {
            "train": {
                "shards": [
                    {
                        "name": "train-00000-of-00001.tfrecord",
                        "sha256": "0f",
                        "lines": 2,
                        "points": 9,
                    }
                ]
            }
        },
        "source": {"kind": "iam-ondb"},
        "skipped": {},
    }
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            obj[section][field] = value
        else:
            obj[section] = value
    return obj


def _shard(**changes) -> dict:
    shard = {"name": "train-00000-of-00001.tfrecord", "sha256": "0f", "lines": 2, "points": 9}
    return {"train": {"shards": [{**shard, **changes}]}}


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (
            _dataset(alphabet=["a", "b"]),
            "alphabet: ValueError: dictionary update sequence element #0 has length 1; 2 is "
            "required",
        ),
        (_dataset(alphabet="ab"), "alphabet: ValueError: dictionary update sequence element "),
        (
            _dataset(normalization__offset_std=[float("nan"), 1.0]),
            "normalization needs two finite means and two positive finite standard deviations, "
            "found offset_mean=[0.5, -1.0], offset_std=[nan, 1.0]",
        ),
        (
            _dataset(normalization__offset_mean=[10**400, 0]),
            "normalization needs two finite means",
        ),
        (
            _dataset(splits=_shard(name="../../etc/passwd")),
            "split 'train': shard name '../../etc/passwd' is not a file name in the folder",
        ),
        (
            _dataset(splits=_shard(lines="2")),
            "split 'train': shard train-00000-of-00001.tfrecord: lines must be an integer >= 0, "
            "received '2'",
        ),
        (_dataset(source=["iam-ondb"]), "source must be a JSON object, received ['iam-ondb']"),
        (_dataset(splits=[]), "malformed dataset description (AttributeError: "),
    ],
)
def test_a_dataset_json_of_wrong_types_is_named(obj, message):
    with pytest.raises(DatasetError) as caught:
        DatasetInfo.from_json(obj, where="data/dataset.json")
    assert str(caught.value).startswith(f"data/dataset.json: {message}")


def test_a_good_dataset_json_still_reads_the_same():
    info = DatasetInfo.from_json(_dataset(), where="dataset.json")
    assert (info.offset_mean, info.offset_std) == ((0.5, -1.0), (2.0, 3.0))
    assert info.splits["train"].lines == 2 and info.alphabet.chars == "ab"
    assert DatasetInfo.from_json(info.to_json()).to_json() == info.to_json()


def test_dataset_json_not_utf8_is_named_by_training_and_by_a_model_directory(tmp_path):
    path = _write(tmp_path, "dataset.json", b"\xff\xfe{}")
    with pytest.raises(DatasetError) as caught:
        DatasetInfo.load(tmp_path)
    assert str(caught.value) == f"{path}: not valid UTF-8 JSON: byte 0 is not UTF-8"
    # A model directory reads dataset.json before the network (which is not looked at here).
    presets.preset("tiny").save(tmp_path)
    _write(tmp_path, "model.keras", b"not read")
    with pytest.raises(SampleError) as caught:
        rundir.load(tmp_path)
    assert str(caught.value) == f"{path}: not valid UTF-8 JSON: byte 0 is not UTF-8"
    os.remove(path)
    os.mkfifo(path)  # would block an open()
    with pytest.raises(SampleError) as caught:
        rundir.load(tmp_path)
    assert str(caught.value) == f"{path}: not a regular file"


# ----------------------------------------------------------------------------------------------
# Stroke JSON


NOT_NUMBERS = "`strokes` must be a list of [dx, dy, eos] numbers"


@pytest.mark.parametrize(
    ("strokes_json", "message"),
    [
        (b"[[1" + b"0" * 400 + b", 0, 0], [1, 1, 1]]", NOT_NUMBERS),
        (b'[["1", "2", "0"], [1, 1, 1]]', NOT_NUMBERS),
        (b"[[true, false, false], [true, true, true]]", NOT_NUMBERS),
        (b"[[0, 0, 0], [1e39, 1, 1]]", "point 1 holds NaN or infinite values"),
    ],
)
def test_stroke_json_with_numbers_that_are_not_points_is_named(tmp_path, strokes_json, message):
    path = _write(tmp_path, "p.json", b'{"text": "a", "strokes": ' + strokes_json + b"}")
    with pytest.raises(SampleError) as caught:
        strokes.load_prime(path)
    assert str(caught.value) == f"{path}: {message}"
    document = b'{"lines": [{"text": "a", "strokes": ' + strokes_json + b"}]}"
    lines = _write(tmp_path, "l.json", document)
    with pytest.raises(SampleError) as caught:
        strokes.load_lines(lines)
    assert str(caught.value) == f"{lines}: line 1: {message}"


def test_deeply_nested_stroke_json_is_named(tmp_path):
    path = _write(tmp_path, "p.json", b"[" * 100_000 + b"]" * 100_000)
    for load in (strokes.load_prime, strokes.load_lines):
        with pytest.raises(SampleError) as caught:
            load(path)
        assert str(caught.value) == f"{path}: not valid JSON: nested too deeply to read"


def test_good_stroke_json_still_reads_the_same(tmp_path):
    line = {"text": "ab", "strokes": [[0, 0, 0], [1.5, -2, 0], [3, 4, 1]]}
    path = _write(tmp_path, "p.json", json.dumps({"lines": [line, line]}).encode())
    prime = strokes.load_prime(path)
    np.testing.assert_array_equal(prime.strokes, np.array(line["strokes"], np.float32))
    assert prime.text == "ab" and [t for t, _ in strokes.load_lines(path)] == ["ab", "ab"]


# ----------------------------------------------------------------------------------------------
# The write command's options: checked before the model is loaded (a model directory that
# does not exist shows it: its error would come first otherwise)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--bias", "nan", "--bias must be a number >= 0, received nan"),
        ("--bias", "-inf", "--bias must be a number >= 0, received -inf"),
        ("--seed", str(2**32), f"--seed must be in [0, 2**32), received {2**32}"),
        ("--seed", "-1", "--seed must be in [0, 2**32), received -1"),
        # 20,000 pixels per line took 22 GB for a two-word line: the kernel killed the process.
        ("--height", "20000", "--height must be in [8, 1024], received 20000"),
    ],
)
def test_absurd_write_options_are_named_before_the_model_is_loaded(
    tmp_path, capsys, option, value, message
):
    from handwriting import cli

    argv = ["write", "hello", "-o", str(tmp_path / "x.png"), "--model", str(tmp_path / "none")]
    with pytest.raises(SystemExit) as caught:
        cli.main([*argv, f"{option}={value}"])
    assert caught.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(f"error: {message}")
    assert not os.path.exists(tmp_path / "x.png")
