"""JSON a user or another tool gives: style primes and stroke files (`handwriting.strokes`),
`config.json` (`handwriting.config`) and `dataset.json` (`handwriting.dataset_info`, and a
model directory's, `handwriting.rundir`).

A case is a good document and one attack on it: a value of the wrong type or out of range at
a random place, or damage to the bytes. A good document must read with the same values; a
bad one must be refused with the reader's error, naming the file (and the field, where one
field is wrong).
"""

import copy
import dataclasses
import json
import math
import os
import random
import tempfile

import numpy as np
from hypothesis import strategies as st

from fuzz import xml_cases
from handwriting import config as config_lib
from handwriting import dataset_info, iam_xml, presets, rundir, strokes
from handwriting.alphabet import PRINTABLE_ASCII
from handwriting.errors import SampleError

BYTE_ATTACKS = ("truncate", "flip", "deep", "not utf-8", "utf-16", "empty", "nul", "bom")
# Values of the wrong type or out of range, for any field.
WRONG_VALUES = (
    "text",
    "",
    None,
    True,
    [],
    [1, 2],
    {},
    {"a": 1},
    -1,
    0,
    2.5,
    10**400,
    float("inf"),
    float("-inf"),
    float("nan"),
    "1e999",
    [None],
    [[1, 2, 3]],
)


def json_bytes(obj) -> bytes:
    # Python's json writes NaN and Infinity, as other tools do; 10**400 is a valid JSON number.
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def damage(data: bytes, attack: str, rng) -> bytes:
    """The bytes of a JSON document after one of `BYTE_ATTACKS`."""
    if attack == "truncate":
        return data[: rng.randrange(len(data))]
    if attack == "flip":
        data = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if attack == "deep":
        depth = rng.choice([1000, 100_000, 1_000_000])
        return b"[" * depth + b"]" * depth
    if attack == "not utf-8":
        return b"\xff\xfe\xfa" + data
    if attack == "utf-16":
        return data.decode("utf-8").encode("utf-16")
    if attack == "empty":
        return b""
    if attack == "nul":
        return data.replace(b":", b":\0", 1)
    return b"\xef\xbb\xbf" + data  # a UTF-8 byte order mark, which JSON does not allow


def _write(folder, name, data: bytes) -> str:
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def _set_random_field(obj, rng, value):
    """Sets a random leaf or branch of a JSON object to `value`; returns its path."""
    node, path = obj, []
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            return path
        key = rng.choice(keys)
        path.append(key)
        child = node[key]
        if not isinstance(child, dict | list) or not child or rng.random() < 0.3:
            node[key] = value
            return path
        node = child


# ----------------------------------------------------------------------------------------------
# Style primes and stroke files

PRIME_ATTACKS = (
    "none",
    "bare line",
    "text given",
    "xml",
    "field",
    "one point",
    "too many points",
    "eos",
    "non-finite",
    "shape",
    "lines",
    *BYTE_ATTACKS,
)


@dataclasses.dataclass(frozen=True)
class PrimeCase:
    attack: str
    seed: int
    # The bytes a byte attack gives, instead of `damage`'s (a coverage-guided fuzzer's input).
    data: bytes | None = dataclasses.field(default=None, repr=False)


def prime_cases():
    return st.builds(PrimeCase, st.sampled_from(PRIME_ATTACKS), st.integers(0, 2**32 - 1))


def _stroke_lines(rng, count):
    lines = []
    for _ in range(count):
        points = rng.randint(2, 40)
        array = [
            [round(rng.uniform(-50, 50), 2), round(rng.uniform(-50, 50), 2), 0]
            for _ in range(points)
        ]
        for _ in range(rng.randint(0, 3)):
            array[rng.randrange(points)][2] = 1
        array[-1][2] = 1
        lines.append(
            {"text": "".join(rng.choice(PRINTABLE_ASCII) for _ in range(9)), "strokes": array}
        )
    return lines


def check_prime(case: PrimeCase) -> str:
    rng = random.Random(case.seed)
    lines = _stroke_lines(rng, rng.randint(1, 4))
    document = {"format": strokes.STROKES_FORMAT, "version": 1, "lines": lines}
    want, text, suffix, field = "same", None, ".json", None
    attack = case.attack
    if attack == "bare line":
        document = lines[0]
    elif attack == "text given":
        text = rng.choice(["given", "", "\0", "😀"])
    elif attack == "field":
        value = rng.choice(WRONG_VALUES)
        field = _set_random_field(document, rng, value)
        want = None  # some wrong values are harmless where they land (an unused field)
    elif attack == "one point":
        lines[0]["strokes"] = lines[0]["strokes"][:1]
        want = "at least 2 points"
    elif attack == "too many points":
        lines[0]["strokes"] = lines[0]["strokes"] * (strokes.MAX_PRIME_POINTS // 2 + 1)
        want = f"at most {strokes.MAX_PRIME_POINTS} points"
    elif attack == "eos":
        lines[0]["strokes"][rng.randrange(len(lines[0]["strokes"]))][2] = rng.choice([2, 0.5, -1])
        want = "eos values must be 0 or 1"
    elif attack == "non-finite":
        point = rng.randrange(len(lines[0]["strokes"]))
        value = rng.choice([float("nan"), float("inf"), float("-inf"), 1e39, -1e39])
        lines[0]["strokes"][point][rng.randrange(2)] = value
        want = f"point {point} holds NaN or infinite values"
    elif attack == "shape":
        lines[0]["strokes"] = rng.choice(
            [[[1, 2]], [[1, 2, 0, 4]] * 3, [1, 2, 3], [[1, 2, 0], [1, 2]], [], "strokes", {}]
        )
        want = None
    elif attack == "lines":
        document["lines"] = rng.choice([[], {}, "lines", [None], [[]], None])
        want = None
    data = json_bytes(document)
    if attack == "xml":
        points = [(100 + 3 * i, 200 - (i % 4)) for i in range(rng.randint(2, 30))]
        half = len(points) // 2
        line = xml_cases.Line((tuple(points[:half]), tuple(points[half:])))
        data = xml_cases.encode(xml_cases.line_text(line), "ISO-8859-1", "iso-8859-1")
        suffix, text = rng.choice([".xml", ".json", ""]), "the quick fox"
    elif attack in BYTE_ATTACKS:
        data, want = damage(data, attack, rng) if case.data is None else case.data, None
    with tempfile.TemporaryDirectory() as folder:
        path = _write(folder, "prime" + suffix, data)
        try:
            prime = strokes.load_prime(path, text)
        except SampleError as e:
            message = str(e)
            assert message.startswith(f"{path}: "), message
            assert want not in ("same",), f"refused a good prime: {message}"
            if want is not None:
                assert want in message, (want, message)
            outcome = "refused"
        else:
            assert want in (None, "same"), f"expected {want!r}, accepted"
            assert prime.strokes.dtype == np.float32 and prime.strokes.shape[1] == 3
            assert 2 <= prime.strokes.shape[0] <= strokes.MAX_PRIME_POINTS
            assert np.isfinite(prime.strokes).all() and isinstance(prime.text, str)
            if attack == "xml":
                x, y, lengths = xml_cases.expected(line)
                np.testing.assert_array_equal(
                    prime.strokes, iam_xml.to_stroke_array(x, y, lengths)[0]
                )
            elif want == "same":
                first = lines[0]
                np.testing.assert_array_equal(prime.strokes, np.array(first["strokes"], np.float32))
                assert prime.text == (first["text"] if text is None else text)
            outcome = "accepted"
        if attack in ("xml",) or field is not None:
            return outcome
        # The same file, read as a file of many lines.
        try:
            read = strokes.load_lines(path)
        except SampleError as e:
            assert str(e).startswith(f"{path}: "), str(e)
            return outcome
        assert attack not in BYTE_ATTACKS or attack == "flip", f"{attack}: read {len(read)} lines"
        for got_text, got in read:
            assert got.dtype == np.float32 and got.ndim == 2 and got.shape[1] == 3
            assert np.isfinite(got).all(), "load_lines gave non-finite points"
            assert got_text is None or isinstance(got_text, str)
        if want == "same" and attack != "bare line":
            assert [t for t, _ in read] == [line["text"] for line in lines]
    return outcome


# ----------------------------------------------------------------------------------------------
# config.json

CONFIG_ATTACKS = ("none", "field", "unknown field", "unknown section", "section", "version")
CONFIG_ATTACKS += (*BYTE_ATTACKS, "top level")


@dataclasses.dataclass(frozen=True)
class ConfigCase:
    attack: str
    seed: int
    # The bytes a byte attack gives, instead of `damage`'s (a coverage-guided fuzzer's input).
    data: bytes | None = dataclasses.field(default=None, repr=False)


def config_cases():
    return st.builds(ConfigCase, st.sampled_from(CONFIG_ATTACKS), st.integers(0, 2**32 - 1))


def check_config(case: ConfigCase) -> str:
    rng = random.Random(case.seed)
    good = presets.preset(rng.choice(sorted(presets.PRESETS)))
    document = good.to_json()
    want, key = "same", None
    attack = case.attack
    if attack == "field":
        section = rng.choice(["model", "train", "data"])
        field = rng.choice(sorted(document[section]))
        value = rng.choice(WRONG_VALUES)
        document[section][field] = value
        key, want = f"{section}.{field}", None
    elif attack == "unknown field":
        document["train"]["learning_rat"] = 1e-3
        want = "unknown fields of train: ['learning_rat']"
    elif attack == "unknown section":
        document["optimizer"] = {}
        want = "unknown sections ['optimizer']"
    elif attack == "section":
        section = rng.choice(["model", "train", "data"])
        document[section] = rng.choice([[], "x", 1, None])
        want = f"section {section} must be a JSON object"
    elif attack == "version":
        document["format_version"] = rng.choice([0, 2, "1", None])
        want = "format_version must be 1"
    elif attack == "top level":
        document = rng.choice([[], "config", 1, None])
        want = "expected a JSON object"
    data = json_bytes(document)
    if attack in BYTE_ATTACKS:
        data, want = damage(data, attack, rng) if case.data is None else case.data, None
    with tempfile.TemporaryDirectory() as folder:
        path = _write(folder, config_lib.FILENAME, data)
        try:
            loaded = config_lib.Config.load(folder)
        except config_lib.ConfigError as e:
            message = str(e)
            assert message.startswith(f"{path}: "), message
            assert want != "same", f"refused a good config: {message}"
            if want is not None:
                assert want in message, (want, message)
            if key is not None:
                assert message.startswith(f"{path}: {key}: "), (key, message)
            return "refused"
    assert want in (None, "same"), f"expected {want!r}, accepted"
    for section in ("model", "train", "data"):
        for name, value in dataclasses.asdict(getattr(loaded, section)).items():
            if isinstance(value, float):
                assert math.isfinite(value), f"{section}.{name} = {value}"
    if want == "same":
        assert loaded == good
    elif key is not None:
        section, field = key.split(".")
        value = document[section][field]
        got = getattr(getattr(loaded, section), field)
        assert got == (tuple(value) if isinstance(value, list) else value), (key, value, got)
    return "accepted"


# ----------------------------------------------------------------------------------------------
# dataset.json, read by training (`DatasetInfo.load`) and by a model directory's loader

DATASET_ATTACKS = (
    "none",
    "field",
    "normalization",
    "shard name",
    "alphabet",
    "version",
    "top level",
    *BYTE_ATTACKS,
)
SHARD_NAMES = ("../train.tfrecord", "/etc/passwd", "a/b.tfrecord", "", ".", "..", "x\0y")


@dataclasses.dataclass(frozen=True)
class DatasetCase:
    attack: str
    seed: int
    # The bytes a byte attack gives, instead of `damage`'s (a coverage-guided fuzzer's input).
    data: bytes | None = dataclasses.field(default=None, repr=False)


def dataset_cases():
    return st.builds(DatasetCase, st.sampled_from(DATASET_ATTACKS), st.integers(0, 2**32 - 1))


def good_dataset(rng) -> dict:
    shards = {
        split: [
            {
                "name": f"{split}-{i:05d}-of-{n:05d}.tfrecord",
                "sha256": "ab" * 32,
                "lines": 3,
                "points": 99,
            }
            for i in range(n)
        ]
        for split, n in (("train", rng.randint(1, 3)), ("valid", rng.randint(0, 2)))
    }
    info = dataset_info.DatasetInfo(
        alphabet=dataset_info.Alphabet(PRINTABLE_ASCII[: rng.randint(1, 95)]),
        offset_mean=(rng.uniform(-1, 1), rng.uniform(-1, 1)),
        offset_std=(rng.uniform(0.5, 9), rng.uniform(0.5, 9)),
        splits={
            split: dataset_info.Split(tuple(dataset_info.Shard(**s) for s in listed))
            for split, listed in shards.items()
        },
        source={"kind": "iam-ondb", "path": "IAM-OnDB"},
        skipped={"counts": {"no points": 1}, "lines": []},
    )
    return info.to_json()


def check_dataset(case: DatasetCase) -> str:
    rng = random.Random(case.seed)
    document = good_dataset(rng)
    good = copy.deepcopy(document)
    want = "same"
    attack = case.attack
    if attack == "field":
        _set_random_field(document, rng, rng.choice(WRONG_VALUES))
        want = None
    elif attack == "normalization":
        which = rng.choice(["offset_mean", "offset_std"])
        document["normalization"][which][rng.randrange(2)] = rng.choice(
            [
                float("nan"),
                float("inf"),
                float("-inf"),
                10**400,
                *([-1.0, 0.0] * (which == "offset_std")),
            ]
        )
        want = "normalization"
    elif attack == "shard name":
        document["splits"]["train"]["shards"][0]["name"] = rng.choice(SHARD_NAMES)
        want = "shard"
    elif attack == "alphabet":
        document["alphabet"] = rng.choice(
            [
                [],
                "abc",
                None,
                {"pad_id": 0, "unknown_id": 1},
                {"pad_id": 0, "unknown_id": 1, "chars": "aa"},
                {"pad_id": 0, "unknown_id": 1, "chars": "a\0"},
                {"pad_id": 1, "unknown_id": 0, "chars": "a"},
                {"pad_id": 0, "unknown_id": 1, "chars": 5},
            ]
        )
        want = "alphabet"
    elif attack == "version":
        document["format_version"] = rng.choice([0, 2, "1", None])
        want = "format_version"
    elif attack == "top level":
        document = rng.choice([[], "dataset", 1, None])
        want = "malformed dataset description"
    data = json_bytes(document)
    if attack in BYTE_ATTACKS:
        data, want = damage(data, attack, rng) if case.data is None else case.data, None
    with tempfile.TemporaryDirectory() as folder:
        path = _write(folder, dataset_info.FILENAME, data)
        for split in good["splits"].values():
            for shard in split["shards"]:
                _write(folder, shard["name"], b"")
        try:
            info = dataset_info.DatasetInfo.load(folder)
        except dataset_info.DatasetError as e:
            message = str(e)
            assert message.startswith(f"{path}: ") or message.startswith(f"{folder}/"), message
            assert want != "same", f"refused a good dataset.json: {message}"
            if want is not None:
                assert want in message, (want, message)
            outcome = "refused"
        else:
            assert want in (None, "same"), f"expected {want!r}, accepted"
            _check_info(info)
            if want == "same":
                assert info.to_json() == good
            outcome = "accepted"
        # A model directory reads the same file (without its shards) and says so as a
        # SampleError naming it.
        try:
            rundir._load_dataset_info(folder)
        except SampleError as e:
            assert str(e).startswith(f"{path}: "), str(e)
            assert outcome == "refused", f"training's reader accepted what this refused: {e}"
        else:  # it reads no shards, so only a missing shard may have been refused above
            assert outcome == "accepted" or "listed in" in message, message
    return outcome


def _check_info(info) -> None:
    assert all(math.isfinite(v) for v in (*info.offset_mean, *info.offset_std))
    assert min(info.offset_std) > 0 and len(info.offset_mean) == len(info.offset_std) == 2
    assert isinstance(info.source, dict) and isinstance(info.skipped, dict)
    for split in info.splits.values():
        assert isinstance(split.lines, int) and isinstance(split.points, int)
        for shard in split.shards:
            assert isinstance(shard.name, str) and os.path.basename(shard.name) == shard.name
            assert shard.name not in ("", ".", "..") and isinstance(shard.sha256, str)
            assert shard.lines >= 0 and shard.points >= 0
