"""Draws lines of several writers from a folder of shards into one PNG.

    python -m data_prep.synth.preview SHARD_DIR docs/corpus.png [--writers 6] [--lines 2]

The shards are read as training reads them (`handwriting.records.parse_line` in `tf.data`),
so the picture shows what the model sees: stroke offsets `(dx, dy, eos)` with y up.
Writers are taken in the order of their ids, spread over the whole range, from every split.
"""

import argparse
import sys

import numpy as np

from handwriting import render
from handwriting.dataset_info import DatasetError, DatasetInfo


def collect_lines(shard_dir, writers: int, lines_per_writer: int) -> list:
    """Returns `(writer_id, line_id, text, strokes (T, 3))` for the chosen writers' lines."""
    import tensorflow as tf

    from handwriting.records import parse_line

    info = DatasetInfo.load(shard_dir)
    paths = [p for split in sorted(info.splits) for p in info.shard_paths(shard_dir, split)]
    dataset = tf.data.TFRecordDataset(paths).map(parse_line)
    by_writer = {}
    for example in dataset.as_numpy_iterator():
        writer = example["writer_id"].decode()
        found = by_writer.setdefault(writer, [])
        if len(found) < lines_per_writer:
            found.append(
                (writer, example["line_id"].decode(), example["text"].decode(), example["strokes"])
            )
    if not by_writer:
        raise DatasetError(f"{shard_dir}: the shards hold no lines")
    ids = sorted(by_writer)
    chosen = np.unique(np.linspace(0, len(ids) - 1, min(writers, len(ids))).round().astype(int))
    return [line for i in chosen for line in by_writer[ids[i]]]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_prep.synth.preview", description=__doc__)
    parser.add_argument("shard_dir", help="folder with dataset.json and the shards")
    parser.add_argument("out", help="the PNG to write")
    parser.add_argument("--writers", type=int, default=6, help="writers to show (default: 6)")
    parser.add_argument("--lines", type=int, default=2, help="lines per writer (default: 2)")
    parser.add_argument("--height", type=int, default=56, help="pixels per line (default: 56)")
    args = parser.parse_args(argv)
    if args.writers < 1 or args.lines < 1:
        parser.error("--writers and --lines must be at least 1")
    try:
        lines = collect_lines(args.shard_dir, args.writers, args.lines)
    except DatasetError as e:
        print(f"preview: error: {e}", file=sys.stderr)
        return 2
    labels = [f"writer {writer}, {line_id}" for writer, line_id, _, _ in lines]
    image = render.to_image(
        [strokes for *_, strokes in lines], line_height_px=args.height, labels=labels
    )
    render.save_png(image, args.out)
    print(f"wrote {args.out}: {len(lines)} lines, {image.shape[1]} x {image.shape[0]} pixels")
    return 0


if __name__ == "__main__":
    sys.exit(main())
