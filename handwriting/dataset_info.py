"""`dataset.json`: what a folder of shards holds, written by `data_prep`, read by training.

Layout (format version 1):

    {
      "format_version": 1,
      "source": {"kind": "iam-ondb", "path": "...", "split": "graves" | "official", ...},
      "alphabet": {"pad_id": 0, "unknown_id": 1, "chars": "..."},
      "normalization": {"offset_mean": [mx, my], "offset_std": [sx, sy]},
      "splits": {
        "train": {"lines": N, "points": P,
                  "shards": [{"name": "train-00000-of-00004.tfrecord", "sha256": "...",
                              "lines": n, "points": p}, ...]},
        "valid": {...}, ...
      },
      "skipped": {"counts": {"reason": n, ...},
                  "lines": [{"line_id": "...", "file": "...", "reason": "..."}, ...]}
    }

The normalisation statistics are those of the train split's `(dx, dy)` offsets; a model
sees `(offset - offset_mean) / offset_std` and `eos` as it is.
"""

import dataclasses
import hashlib
import json
import math
import os

from handwriting import files
from handwriting.alphabet import Alphabet

FORMAT_VERSION = 1
FILENAME = "dataset.json"


class DatasetError(ValueError):
    """A folder of shards that cannot be used; the message names the file and what is wrong."""


@dataclasses.dataclass(frozen=True)
class Shard:
    name: str  # file name inside the dataset folder
    sha256: str  # hex digest of the whole file
    lines: int  # examples in the shard
    points: int  # stroke points over all its examples


@dataclasses.dataclass(frozen=True)
class Split:
    shards: tuple  # of Shard, in order

    @property
    def lines(self) -> int:
        return sum(s.lines for s in self.shards)

    @property
    def points(self) -> int:
        return sum(s.points for s in self.shards)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """The contents of `dataset.json`."""

    alphabet: Alphabet
    offset_mean: tuple  # (mean dx, mean dy) of the train split
    offset_std: tuple  # (std dx, std dy) of the train split
    splits: dict  # split name -> Split
    source: dict = dataclasses.field(default_factory=dict)  # where the lines came from
    skipped: dict = dataclasses.field(default_factory=dict)  # {"counts": ..., "lines": ...}

    def to_json(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "source": self.source,
            "alphabet": self.alphabet.to_json(),
            "normalization": {
                "offset_mean": [float(v) for v in self.offset_mean],
                "offset_std": [float(v) for v in self.offset_std],
            },
            "splits": {
                name: {
                    "lines": split.lines,
                    "points": split.points,
                    "shards": [dataclasses.asdict(s) for s in split.shards],
                }
                for name, split in self.splits.items()
            },
            "skipped": self.skipped,
        }

    @classmethod
    def from_json(cls, obj: dict, where: str = FILENAME) -> "DatasetInfo":
        try:
            version = obj["format_version"]
            if version != FORMAT_VERSION:
                raise DatasetError(
                    f"{where}: format_version is {version!r}, this version reads {FORMAT_VERSION}"
                )
            norm = obj["normalization"]
            mean = _numbers(norm["offset_mean"])
            std = _numbers(norm["offset_std"])
            if (
                mean is None
                or std is None
                or len(mean) != 2
                or len(std) != 2
                or not all(math.isfinite(v) for v in mean + std)
                or min(std) <= 0
            ):
                raise DatasetError(
                    f"{where}: normalization needs two finite means and two positive finite "
                    f"standard deviations, found offset_mean={norm['offset_mean']!r}, "
                    f"offset_std={norm['offset_std']!r}"
                )
            try:
                alphabet = Alphabet.from_json(dict(obj["alphabet"]))
            except (KeyError, TypeError, ValueError) as e:
                raise DatasetError(f"{where}: alphabet: {type(e).__name__}: {e}") from None
            splits = {
                name: Split(tuple(_shard(s, f"{where}: split {name!r}") for s in split["shards"]))
                for name, split in obj["splits"].items()
            }
            extra = {key: obj.get(key, {}) for key in ("source", "skipped")}
            for key, value in extra.items():
                if not isinstance(value, dict):
                    raise DatasetError(f"{where}: {key} must be a JSON object, received {value!r}")
            return cls(
                alphabet=alphabet,
                offset_mean=mean,
                offset_std=std,
                splits=splits,
                **extra,
            )
        except DatasetError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise DatasetError(
                f"{where}: malformed dataset description ({type(e).__name__}: {e})"
            ) from e

    def save(self, directory) -> None:
        """Writes `directory/dataset.json` atomically."""
        text = json.dumps(self.to_json(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        files.write_text(os.path.join(directory, FILENAME), text)

    @classmethod
    def load(cls, directory, verify: bool = False) -> "DatasetInfo":
        """Reads `directory/dataset.json`; with `verify`, also checks every shard's sha256."""
        path = os.path.join(directory, FILENAME)
        try:
            obj = files.read_json(path)
        except FileNotFoundError:
            raise DatasetError(
                f"{path}: not found; build the shards with `python -m data_prep`"
            ) from None
        except files.JSONFileError as e:
            raise DatasetError(str(e)) from None
        info = cls.from_json(obj, where=path)
        info.check_shards(directory, verify_hashes=verify)
        return info

    def shard_paths(self, directory, split: str) -> list:
        """Returns the paths of `split`'s shards, in order."""
        if split not in self.splits:
            raise DatasetError(
                f"{os.path.join(directory, FILENAME)}: no split {split!r}; "
                f"it has {sorted(self.splits)}"
            )
        return [os.path.join(directory, s.name) for s in self.splits[split].shards]

    def check_shards(self, directory, verify_hashes: bool = False) -> None:
        """Raises `DatasetError` when a listed shard is missing or (optionally) altered."""
        for split in self.splits.values():
            for shard in split.shards:
                path = os.path.join(directory, shard.name)
                if not os.path.isfile(path):
                    raise DatasetError(f"{path}: listed in {FILENAME} but missing")
                if verify_hashes and sha256_file(path) != shard.sha256:
                    raise DatasetError(
                        f"{path}: sha256 does not match {FILENAME}; the shard was altered "
                        "or belongs to another build"
                    )


def _numbers(values):
    """A list of JSON numbers as a tuple of floats; None for anything else (integers beyond
    float included)."""
    if not isinstance(values, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values
    ):
        return None
    try:
        return tuple(float(v) for v in values)
    except OverflowError:
        return None


def _shard(obj, where: str) -> Shard:
    """A `Shard` from its JSON object; its name must be a plain file name in the folder (no
    path leading out of it), its counts non-negative integers."""
    fields = [f.name for f in dataclasses.fields(Shard)]
    if not isinstance(obj, dict) or sorted(obj) != sorted(fields):
        raise DatasetError(f"{where}: a shard must be an object with {fields}, received {obj!r}")
    name = obj["name"]
    if (
        not isinstance(name, str)
        or name in ("", ".", "..")
        or "/" in name
        or "\\" in name
        or "\0" in name
    ):
        raise DatasetError(f"{where}: shard name {name!r} is not a file name in the folder")
    if not isinstance(obj["sha256"], str):
        raise DatasetError(f"{where}: shard {name}: sha256 must be a string")
    for key in ("lines", "points"):
        value = obj[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise DatasetError(
                f"{where}: shard {name}: {key} must be an integer >= 0, received {value!r}"
            )
    return Shard(**obj)


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
