"""Named styles: the primes a model carries in its `styles.json`, and its data set's lines.

    styles = load_styles(synth.directory)           # {line id: Prime}, {} without the file
    prime = prime_from_dataset(synth, "a01-000u-01")  # the model's style, else the data set's line
    dataset_line_ids(synth)                         # what `prime_from_dataset` finds, by split

`styles.json` (in a model directory, `handwriting.rundir.STYLES_FILENAME`):

    {"lines": [{"id": "a01-000u-01", "text": "...", "strokes": [[dx, dy, eos], ...]}, ...]}

with strokes as the stroke JSON holds them (`handwriting.strokes`): raw offsets, y up.
"""

import json
import os

import numpy as np
import tensorflow as tf

from handwriting import files, records
from handwriting.dataset_info import DatasetError, DatasetInfo
from handwriting.errors import SampleError
from handwriting.rundir import STYLES_FILENAME, Synthesizer
from handwriting.strokes import Prime, check_prime


def load_styles(directory) -> dict:
    """Reads `directory/styles.json`: `{"lines": [{"id", "text", "strokes"}, ...]}` -> by id."""
    path = os.path.join(directory, STYLES_FILENAME)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
        return {
            line["id"]: check_prime(
                Prime(np.asarray(line["strokes"], np.float32), line["text"], f"{path}:{line['id']}")
            )
            for line in obj["lines"]
        }
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SampleError(f"{path}: malformed styles file ({type(e).__name__}: {e})") from None


def save_styles(directory, styles: dict) -> str:
    """Writes `directory/styles.json` (as `load_styles` reads it) from `{id: Prime}`, atomically.

    Returns the path written.
    """
    path = os.path.join(directory, STYLES_FILENAME)
    obj = {
        "lines": [
            {
                "id": line_id,
                "text": styles[line_id].text,
                "strokes": np.round(styles[line_id].strokes.astype(np.float64), 4).tolist(),
            }
            for line_id in sorted(styles)
        ]
    }
    files.write_text(path, json.dumps(obj, ensure_ascii=False) + "\n")
    return path


def prime_from_dataset(synth: Synthesizer, line_id: str, data_dir=None) -> Prime:
    """Finds the line `line_id` among the model's named styles or in its data set's shards.

    Args:
        synth: the loaded model (its `styles.json` is searched first).
        line_id: e.g. `a01-000u-01`.
        data_dir: the data set folder; None: the run's `data.dir`.
    """
    styles = load_styles(synth.directory) if synth.directory else {}
    if line_id in styles:
        return styles[line_id]
    data_dir = os.fspath(data_dir) if data_dir is not None else synth.config.data.dir
    try:
        info = DatasetInfo.load(data_dir)
    except DatasetError as e:
        known = f"; the model's styles are {sorted(styles)}" if styles else ""
        raise SampleError(
            f"style {line_id!r} is not one of the model's styles and needs the data set: "
            f"{e}{known}. `python -m handwriting styles` lists them"
        ) from None
    target = line_id.encode("utf-8")
    spec = {"line_id": records.FEATURE_SPEC["line_id"]}
    for split in sorted(info.splits):
        paths = info.shard_paths(data_dir, split)
        for batch in tf.data.TFRecordDataset(paths).batch(512):
            ids = tf.io.parse_example(batch, spec)["line_id"].numpy()
            hits = np.flatnonzero(ids == target)
            if hits.size:
                line = records.parse_line(batch[int(hits[0])])
                return check_prime(
                    Prime(
                        strokes=line["strokes"].numpy(),
                        text=line["text"].numpy().decode("utf-8"),
                        source=f"{data_dir}:{split}:{line_id}",
                    )
                )
    raise SampleError(
        f"style {line_id!r}: no line with that id in {data_dir}; "
        "`python -m handwriting styles` lists them"
    )


def dataset_line_ids(synth: Synthesizer, data_dir=None, *, limit: int = 20):
    """The line ids `prime_from_dataset` finds in the model's data set, split by split.

    Args:
        synth: the loaded model.
        data_dir: the data set folder; None: the run's `data.dir`.
        limit: most lines listed per split (the first ones in shard order).

    Returns:
        `(data_dir, {split: (lines in the split, [(line_id, text), ...])})`, or None when
        there is no usable data set there.
    """
    data_dir = os.fspath(data_dir) if data_dir is not None else synth.config.data.dir
    try:
        info = DatasetInfo.load(data_dir)
    except DatasetError:
        return None
    spec = {key: records.FEATURE_SPEC[key] for key in ("line_id", "text")}
    out = {}
    for split in sorted(info.splits):
        lines = []
        if limit > 0:
            paths = info.shard_paths(data_dir, split)
            for batch in tf.data.TFRecordDataset(paths).take(limit).batch(limit):
                parsed = tf.io.parse_example(batch, spec)
                lines = [
                    (line_id.decode("utf-8"), text.decode("utf-8"))
                    for line_id, text in zip(
                        parsed["line_id"].numpy(), parsed["text"].numpy(), strict=True
                    )
                ]
        out[split] = (info.splits[split].lines, lines)
    return data_dir, out
