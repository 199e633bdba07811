"""Legibility as a number: a reader's character error rate on a model's free-running samples.

Nats per point and the window's alignment say how well a network predicts the next point
under teacher forcing; they do not say whether its own writing can be read. The legibility
score does: the synthesis model writes each of `HELD_OUT_TEXTS` (sentences the corpus'
text generator cannot produce) with several seeds at several sampling biases, a trained
reader (`handwriting.reader`) reads every line, and the character error rate (CER: summed
edit distances over summed characters) is reported per bias. Beside it, the ceiling: the
same reader's CER on the validation split's true strokes: a model cannot score better than
the reader reads real handwriting.

    synth = sample.load("runs/demo")
    reader = load_reader(DEFAULT_READER_DIR)
    result = score(synth, reader, data_dir="data/corpus")
    result.rows[1].cer                                         # bias 1

`python -m handwriting score [--model DIR]` prints it; training logs `legibility/cer` at
every sample step (`Legibility`).
"""

import dataclasses
import json
import os

import numpy as np
import tensorflow as tf

from handwriting import records
from handwriting import sample as sample_lib
from handwriting.ctc import cer
from handwriting.dataset_info import DatasetError, DatasetInfo
from handwriting.reader import READER_FILENAME, Reader, ReaderError, load_reader, read

DEFAULT_READER_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "reader")

# Sentences in no corpus the embedded corpus' generator can write (each holds a word outside
# its word list and patterns: tests/test_legibility.py checks it), with capitals, digits and
# punctuation, of the corpus' line lengths. The first three hold every letter.
HELD_OUT_TEXTS = (
    "the quick brown fox jumps over the lazy dog",
    "Sphinx of black quartz, judge my vow.",
    "Pack my box with five dozen liquor jugs!",
    "Zebras quietly jinx vexed folk.",
    "Please bring seven blue pencils to Room 12.",
    "She sold 48 jars of honey at the fair.",
    "How vexingly quick daft zebras jump!",
    "Meet me at 7:30 by the old oak tree.",
    "Dr. Mortimer waited 20 minutes in the rain.",
    "Our train leaves Leeds at 9:15 on Friday.",
    "Grandma baked 36 ginger cookies today.",
    "Why would anyone paint a purple giraffe?",
    "Wind howled across the frozen lake.",
    "Keep calm, sip tea, and read 3 poems.",
    "Five wizards juggled 12 glowing orbs.",
    "Rivers carve canyons over 1,000 years.",
    "Never trust a cat wearing boots.",
    "My phone number changed in 2019.",
    "Quilts, kites and yo-yos sell well in May.",
    "Harriet typed 64 pages before lunch.",
    "Violets bloom early near the brook.",
    "Is it 5 or 6 miles to Oxford?",
    "Fog rolled in; the harbour went silent.",
    "Jolly Gus packed 9 woolly sweaters.",
)
# Sampling biases b of the score (Graves eq. 61-62): varied, as trained-for, and neat.
BIASES = (0.5, 1.0, 2.0)
# Seeds of the score: each sentence is written once per seed at each bias.
SEEDS = (0, 1, 2)
# Lines per sampling batch: lines of one batch run until the slowest ends, so a few batches
# of similar texts waste little, and memory stays small.
SAMPLE_BATCH = 72
# Width of `sample_sheet`'s picture: room for a label of text, reading and CER.
SHEET_WIDTH_PX = 1400


@dataclasses.dataclass(frozen=True)
class Row:
    """The reader's CER over `lines` lines (at sampling bias `bias`; None for true strokes)."""

    cer: float
    lines: int
    bias: float | None = None

    def to_json(self) -> dict:
        out = {"bias": self.bias} if self.bias is not None else {}
        return out | {"cer": self.cer, "lines": self.lines}


@dataclasses.dataclass(frozen=True)
class Score:
    """The legibility score of one model: a row per bias and the ceiling.

    `ceiling_source` says where the ceiling comes from: the data folder it was measured on,
    or the reader's training record when the data are not here.
    """

    model: str
    rows: tuple
    ceiling: Row | None
    ceiling_source: str = ""
    readings: dict = dataclasses.field(default_factory=dict, compare=False)

    def row(self, bias: float) -> Row:
        for row in self.rows:
            if row.bias == bias:
                return row
        raise KeyError(f"no row at bias {bias}")

    def to_json(self) -> dict:
        ceiling = None
        if self.ceiling is not None:
            ceiling = self.ceiling.to_json() | {"source": self.ceiling_source}
        return {
            "model": self.model,
            "rows": [row.to_json() for row in self.rows],
            "ceiling": ceiling,
        }


@dataclasses.dataclass(frozen=True)
class Reading:
    """One sampled line and what the reader read."""

    text: str
    seed: int
    strokes: np.ndarray
    reading: str

    @property
    def cer(self) -> float:
        return cer([self.text], [self.reading])


def sample_readings(synth, reader: Reader, texts, *, bias: float, seeds=SEEDS) -> list:
    """Writes every text with every seed at `bias` and reads the lines back.

    Returns a list of `Reading`, texts within seeds.
    """
    texts = list(texts)
    out = []
    for seed in seeds:
        strokes = []
        for start in range(0, len(texts), SAMPLE_BATCH):
            chunk = texts[start : start + SAMPLE_BATCH]
            samples = sample_lib.generate(synth, chunk, bias=bias, seed=seed)
            strokes += [s.strokes for s in samples]
        readings = read(reader, strokes)
        out += [Reading(t, seed, x, r) for t, x, r in zip(texts, strokes, readings, strict=True)]
    return out


def _cer_of(found) -> float:
    return cer([f.text for f in found], [f.reading for f in found])


def true_stroke_lines(data_dir, split: str = "valid", limit: int = 0) -> list:
    """`[(strokes, text), ...]` of a split's lines in shard order, raw units (`limit` 0: all).

    Raises:
        DatasetError: the folder has no usable data set or no such split.
    """
    data_dir = os.fspath(data_dir)
    info = DatasetInfo.load(data_dir)
    if split not in info.splits:
        raise DatasetError(f"{data_dir}: no {split!r} split; it has {sorted(info.splits)}")
    lines = []
    dataset = tf.data.TFRecordDataset(info.shard_paths(data_dir, split))
    if limit:
        dataset = dataset.take(limit)
    for serialized in dataset:
        line = records.parse_line(serialized)
        lines.append((line["strokes"].numpy(), line["text"].numpy().decode("utf-8")))
    return lines


def ceiling(reader: Reader, data_dir, *, split: str = "valid", limit: int = 0) -> Row:
    """The reader's CER on the true strokes of `data_dir`'s `split` (greedy decoding)."""
    lines = true_stroke_lines(data_dir, split, limit)
    if not lines:
        raise DatasetError(f"{data_dir}: the {split} split holds no line")
    readings = read(reader, [strokes for strokes, _ in lines])
    return Row(cer=cer([text for _, text in lines], readings), lines=len(lines))


def recorded_ceiling(reader: Reader) -> Row | None:
    """The validation CER in the reader's training record (`reader.json`), if it has one."""
    best = reader.record.get("training", {}).get("best") or {}
    cer = best.get("val_cer")
    if not isinstance(cer, int | float):
        return None
    lines = reader.info.splits["valid"].lines if "valid" in reader.info.splits else 0
    return Row(cer=float(cer), lines=lines)


def score(
    synth,
    reader: Reader,
    *,
    texts=HELD_OUT_TEXTS,
    biases=BIASES,
    seeds=SEEDS,
    data_dir=None,
    ceiling_limit: int = 0,
) -> Score:
    """The legibility score of `synth` (see the module docstring).

    Args:
        synth: the synthesis model (`sample.load`).
        reader: the reader (`load_reader`).
        texts: the sentences written; those with characters outside the model's alphabet
            are left out.
        biases: sampling biases, a row each.
        seeds: each sentence is written once per seed at each bias.
        data_dir: the data set whose validation split's true strokes give the ceiling; None:
            the model's `data.dir`. When it is not there, the reader's recorded validation
            CER stands in (and `ceiling_source` says so).
        ceiling_limit: read at most this many validation lines for the ceiling (0: all).

    Raises:
        ReaderError: no text is in the model's alphabet, or no bias or seed is given.
    """
    usable = [t for t in texts if not synth.alphabet.unknown_chars(t)]
    if not usable:
        raise ReaderError("none of the texts is in the model's alphabet; nothing to score")
    if not biases or not seeds:
        raise ReaderError("give at least one bias and one seed")
    rows, readings = [], {}
    for bias in biases:
        found = sample_readings(synth, reader, usable, bias=float(bias), seeds=seeds)
        readings[float(bias)] = found
        rows.append(Row(cer=_cer_of(found), lines=len(found), bias=float(bias)))
    data_dir = os.fspath(data_dir) if data_dir is not None else synth.config.data.dir
    try:
        top, source = ceiling(reader, data_dir, limit=ceiling_limit), data_dir
    except DatasetError:
        top = recorded_ceiling(reader)
        source = os.path.join(reader.directory, READER_FILENAME) if top else ""
    return Score(
        model=synth.directory,
        rows=tuple(rows),
        ceiling=top,
        ceiling_source=source,
        readings=readings,
    )


def format_table(result: Score) -> str:
    """The score as a text table: a row per bias, then the ceiling."""
    lines = [f"Legibility of {result.model or 'the model'} (reader CER, lower is better)"]
    lines.append(f"{'':>22} {'CER':>7} {'lines':>6}")
    for row in result.rows:
        lines.append(
            f"{'samples, bias ' + format(row.bias, 'g'):>22} {row.cer:7.3f} {row.lines:6d}"
        )
    if result.ceiling is not None:
        top = result.ceiling
        lines.append(f"{'ceiling: true strokes':>22} {top.cer:7.3f} {top.lines:6d}")
        lines.append(f"(ceiling from {result.ceiling_source})")
    return "\n".join(lines)


def sample_sheet(result: Score, *, bias: float = 1.0, seed: int = 0, lines: int = 8):
    """A picture of the first `lines` sentences of a score at `bias` and `seed`, each
    labelled with its text, the reader's reading and its CER: `(H, W, 3)` uint8."""
    from handwriting import render

    chosen = [f for f in result.readings[float(bias)] if f.seed == seed][:lines]
    if not chosen:
        raise ReaderError(f"the score has no line at bias {bias:g} and seed {seed}")
    return render.to_image(
        [f.strokes for f in chosen],
        labels=[f"{f.text}  |  read: {f.reading}  |  CER {f.cer:.2f}" for f in chosen],
        line_height_px=72,
        width_px=SHEET_WIDTH_PX,
    )


def score_run(run_dir, reader_dir=DEFAULT_READER_DIR) -> Score:
    """Scores the network a training run kept (`model.keras`) and writes `legibility.json`.

    Returns the `Score`; the file holds its `to_json()`.
    """
    from handwriting import files, rundir

    result = score(rundir.load(run_dir), load_reader(reader_dir))
    path = os.path.join(os.fspath(run_dir), rundir.LEGIBILITY_FILENAME)
    files.write_text(path, json.dumps(result.to_json(), indent=2) + "\n")
    return result


class Legibility:
    """The score during training: the reader's CER on samples at one bias and seed.

    Cheaper than `score` (one bias, one seed), so it can run at every sample step; the
    ceiling is measured once, on the first call.

    Args:
        reader: the reader, or None to load the shipped one (`DEFAULT_READER_DIR`).
        texts: the sentences written (those outside the model's alphabet left out).
        bias: the sampling bias.
        seed: the seed of the samples (the same at every call, so the curve shows the network
            changing rather than the draws).
        ceiling_limit: validation lines read for the ceiling (0: all).
    """

    def __init__(self, reader=None, *, texts=HELD_OUT_TEXTS, bias=1.0, seed=0, ceiling_limit=0):
        self.reader = reader if reader is not None else load_reader(DEFAULT_READER_DIR)
        self.texts, self.bias, self.seed = tuple(texts), float(bias), int(seed)
        self.ceiling_limit = ceiling_limit
        self._ceiling = None

    def __call__(self, synth) -> dict:
        """`{"cer": ..., "ceiling": ...}` of `synth` now (ceiling None without data)."""
        usable = [t for t in self.texts if not synth.alphabet.unknown_chars(t)]
        if not usable:
            return {}
        found = sample_readings(synth, self.reader, usable, bias=self.bias, seeds=(self.seed,))
        out = {"cer": _cer_of(found)}
        if self._ceiling is None:
            try:
                self._ceiling = ceiling(
                    self.reader, synth.config.data.dir, limit=self.ceiling_limit
                ).cer
            except DatasetError:
                self._ceiling = float("nan")
        if np.isfinite(self._ceiling):
            out["ceiling"] = self._ceiling
        return out
