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
            mean = tuple(float(v) for v in norm["offset_mean"])
            std = tuple(float(v) for v in norm["offset_std"])
            if len(mean) != 2 or len(std) != 2 or min(std) <= 0:
                raise DatasetError(
                    f"{where}: normalization needs two means and two positive standard "
                    f"deviations, found offset_mean={mean}, offset_std={std}"
                )
            splits = {
                name: Split(tuple(Shard(**s) for s in split["shards"]))
                for name, split in obj["splits"].items()
            }
            return cls(
                alphabet=Alphabet.from_json(obj["alphabet"]),
                offset_mean=mean,
                offset_std=std,
                splits=splits,
                source=obj.get("source", {}),
                skipped=obj.get("skipped", {}),
            )
        except DatasetError:
            raise
        except (KeyError, TypeError, ValueError) as e:
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
            with open(path, encoding="utf-8") as f:
                obj = json.load(f)
        except FileNotFoundError:
            raise DatasetError(
                f"{path}: not found; build the shards with `python -m data_prep`"
            ) from None
        except json.JSONDecodeError as e:
            raise DatasetError(
                f"{path}: not valid JSON: line {e.lineno}, column {e.colno}: {e.msg}"
            ) from e
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


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
