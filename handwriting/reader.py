"""An online handwriting recogniser: pen offsets in, characters out, trained with CTC.

It makes the legibility of a synthesis model's samples a number: the reader, trained on the
same shards, reads sampled lines of known text, and the character error rate (CER) of its
readings is compared with its CER on the data's own strokes (the ceiling).

Axis letters: B batch, T pen steps, S frames after the strided front end (S = ceil(ceil(T /
2) / 2)), U characters, V alphabet ids (`Alphabet.size`; id 0, padding in the data, is the CTC
blank, since no label is ever 0).

The network (`StrokeReader`):

    strokes (B, T, 3) normalised (dx, dy, eos), mask (B, T)
    -> Conv1D(filters, kernel 5, stride 2, ReLU) -> Conv1D(same, stride 2, ReLU)   # (B, S, F)
    -> Bidirectional LSTM(units) -> Bidirectional LSTM(units)                     # (B, S, 2H)
    -> Dense(V) -> log_softmax                                                     # (B, S, V)

The convolutions pad explicitly and zero every step past a line's end, so a line's frames
do not depend on what else is in its batch or how far the batch is padded.

A reader directory, as `train_reader` writes it and `load_reader` reads it:

    model.keras    the network at its best validation CER (no optimiser state)
    dataset.json   the alphabet and normalisation statistics of the data it was trained on
    reader.json    its sizes and its training record (`history`, `best`)

    python -m handwriting.reader_training train --data data/corpus --out runs/reader
    python -m handwriting.reader_training read --reader runs/reader samples.json

CTC itself (loss, decoding, character error rate) is `handwriting.ctc`; training is
`handwriting.reader_training`.
"""

import json
import os

import keras
import numpy as np
import tensorflow as tf

from handwriting import data
from handwriting.alphabet import Alphabet
from handwriting.ctc import (
    CharacterErrorRate,
    beam_decode,
    ctc_loss,
    greedy_decode,
    sparse_to_lists,
)
from handwriting.dataset_info import FILENAME as DATASET_FILENAME
from handwriting.dataset_info import DatasetError, DatasetInfo

POINT_FEATURES = 3  # (dx, dy, eos)
FRONT_END_STRIDES = (2, 2)  # strides of the convolutions: S = ceil(ceil(T / 2) / 2)
MODEL_FILENAME = "model.keras"
READER_FILENAME = "reader.json"
READER_FORMAT_VERSION = 1
# Sizes of the network (a ~0.77M-parameter, ~3 MB reader at the alphabet of 95 characters).
FILTERS = 128  # F, channels of both strided convolutions
UNITS = 128  # H, LSTM cells per direction of each bidirectional layer
KERNEL_SIZE = 5  # taps of both convolutions
LSTM_LAYERS = 2  # stacked bidirectional LSTM layers
# Training.
STEPS = 20_000  # optimiser steps at most
BATCH_SIZE = 32  # lines per step (whole lines, padded within a length bucket)
LEARNING_RATE = 1e-3  # Adam's step size
CLIP_NORM = 5.0  # global-norm clip of each step's gradient (of the mean per-line loss)
EVAL_EVERY = 250  # steps between evaluations of the whole valid split
# Steps of a batch in `read` are padded to a multiple of this, so that lines of many lengths
# share a few traced shapes.
READ_PAD_MULTIPLE = 64


class ReaderError(ValueError):
    """A reader directory or a request that cannot be used; the message says what and where."""


# ---------------------------------------------------------------------------------------------
# The network


def frame_lengths(step_lengths):
    """Frames S_b of lines of T_b steps after the strided front end: ceil(ceil(T_b / 2) / 2).

    Args:
        step_lengths: `(B,)` int tensor or array of real steps per line.

    Returns:
        `(B,)` int32 tensor.
    """
    lengths = tf.cast(step_lengths, tf.int32)
    for stride in FRONT_END_STRIDES:
        lengths = (lengths + stride - 1) // stride
    return lengths


@keras.saving.register_keras_serializable(package="handwriting")
class StrokeReader(keras.Model):
    """Strided convolutions and bidirectional LSTMs over pen offsets, a CTC head on top.

    Args:
        alphabet_size: V, ids of the alphabet (`Alphabet.size`); id 0 is the CTC blank.
        filters: F, channels of both convolutions.
        units: H, LSTM cells per direction of each bidirectional layer.
        kernel_size: taps of both convolutions (odd).
        lstm_layers: stacked bidirectional LSTM layers (>= 1).

    Call arguments:
        inputs: dict with `strokes` `(B, T, 3)` normalised points and `strokes_mask` `(B, T)`
            bool, True on a prefix of each row (padding after a line's real steps).
        training: Python bool.

    Returns:
        `(B, S, V)` float32 log-probabilities of each id (blank included) at each frame.
    """

    def __init__(
        self,
        alphabet_size,
        filters=FILTERS,
        units=UNITS,
        kernel_size=KERNEL_SIZE,
        lstm_layers=LSTM_LAYERS,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for name, value in (
            ("alphabet_size", alphabet_size),
            ("filters", filters),
            ("units", units),
            ("kernel_size", kernel_size),
            ("lstm_layers", lstm_layers),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{name}` must be a positive int, received {name}={value!r}")
        if kernel_size % 2 != 1:
            raise ValueError(f"`kernel_size` must be odd, received kernel_size={kernel_size}")
        if alphabet_size < 2:
            raise ValueError(
                f"`alphabet_size` must leave room for the blank and a label, received "
                f"alphabet_size={alphabet_size}"
            )
        self.alphabet_size = alphabet_size
        self.filters = filters
        self.units = units
        self.kernel_size = kernel_size
        self.lstm_layers = lstm_layers

        self.convolutions = []
        channels = POINT_FEATURES
        for n, stride in enumerate(FRONT_END_STRIDES, start=1):
            conv = keras.layers.Conv1D(
                filters, kernel_size, strides=stride, activation="relu", name=f"conv_{n}"
            )
            conv.build((None, None, channels))
            self.convolutions.append(conv)
            channels = filters
        self.recurrent = []
        # Bidirectional copies the layer it is given through Keras' serialization, which inside
        # `keras.saving.load_model` remembers each serialized object by its id(). Left to copy
        # one LSTM into both directions, a freed LSTM's id reused by the next layer's made Keras
        # hand back the earlier layer's copy (a load failing now and then with "Forward layer
        # and backward layer should have different `go_backwards` value"). So the backward layer
        # is passed built, and every forward LSTM is kept alive until all are copied.
        sources = []
        for n in range(1, lstm_layers + 1):
            sources.append(keras.layers.LSTM(units, return_sequences=True))
            backward = keras.layers.LSTM(
                units, return_sequences=True, go_backwards=True, name=f"backward_lstm_{n}"
            )
            layer = keras.layers.Bidirectional(
                sources[-1], backward_layer=backward, name=f"bilstm_{n}"
            )
            layer.build((None, None, channels))
            self.recurrent.append(layer)
            channels = 2 * units
        self.head = keras.layers.Dense(alphabet_size, dtype="float32", name="head")
        self.head.build((None, None, channels))
        self.built = True

        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.cer_tracker = CharacterErrorRate(name="cer")

    @staticmethod
    def line_frames(strokes_mask):
        """`(B, T)` step mask -> `(B,)` int32 frames of each line."""
        return frame_lengths(tf.reduce_sum(tf.cast(strokes_mask, tf.int32), axis=1))

    def frame_mask(self, strokes_mask):
        """`(B, T)` step mask -> `(B, S)` frame mask (True on a line's frames)."""
        steps = tf.shape(strokes_mask)[1]
        return tf.sequence_mask(
            self.line_frames(strokes_mask), maxlen=frame_lengths(steps[None])[0]
        )

    def call(self, inputs, training=False):
        x = tf.convert_to_tensor(inputs["strokes"])  # [B, T, 3]
        step_mask = tf.cast(inputs["strokes_mask"], tf.bool)  # [B, T]
        lengths = tf.reduce_sum(tf.cast(step_mask, tf.int32), axis=1)  # [B]
        mask = step_mask
        left = (self.kernel_size - 1) // 2
        for conv, stride in zip(self.convolutions, FRONT_END_STRIDES, strict=True):
            # Zero past each line's end, pad k - 1 steps: ceil(T / stride) outputs, each the
            # same whatever the batch's padded length.
            x = x * tf.cast(mask, x.dtype)[:, :, None]
            x = tf.pad(x, [[0, 0], [left, self.kernel_size - 1 - left], [0, 0]])
            x = conv(x)
            lengths = (lengths + stride - 1) // stride
            mask = tf.sequence_mask(lengths, maxlen=tf.shape(x)[1])  # [B, S_n]
        for layer in self.recurrent:
            x = layer(x, mask=mask, training=training)  # [B, S, 2H]
        return tf.nn.log_softmax(self.head(x), axis=-1)  # [B, S, V]

    def line_losses(self, inputs, log_probs):
        """Per-line CTC loss and whether each line can be aligned to its frames.

        Args:
            inputs: the batch's inputs dict (`strokes_mask`, `chars`, `chars_mask`).
            log_probs: `(B, S, V)` this network's output on them.

        Returns:
            `(loss (B,), feasible (B,) bool)`: -log p(chars | strokes) in nats, see `ctc_loss`
            (a line with fewer frames than its characters need is not feasible).
        """
        frames = self.line_frames(inputs["strokes_mask"])
        return ctc_loss(log_probs, frames, inputs["chars"], inputs["chars_mask"])

    def train_step(self, data):
        inputs = data[0]
        with tf.GradientTape() as tape:
            log_probs = self(inputs, training=True)
            loss, feasible = self.line_losses(inputs, log_probs)
            weight = tf.cast(feasible, tf.float32)
            mean_loss = tf.reduce_sum(loss * weight) / tf.maximum(tf.reduce_sum(weight), 1.0)
        variables = self.trainable_variables
        self.optimizer.apply(tape.gradient(mean_loss, variables), variables)
        self.loss_tracker.update_state(loss, sample_weight=weight)
        return {"loss": self.loss_tracker.result()}

    def test_step(self, data):
        inputs = data[0]
        log_probs = self(inputs, training=False)
        loss, feasible = self.line_losses(inputs, log_probs)
        self.loss_tracker.update_state(loss, sample_weight=tf.cast(feasible, tf.float32))
        hypotheses = greedy_decode(log_probs, self.line_frames(inputs["strokes_mask"]))
        chars = tf.cast(inputs["chars"], tf.int64) * tf.cast(inputs["chars_mask"], tf.int64)
        distances = tf.edit_distance(hypotheses, tf.sparse.from_dense(chars), normalize=False)
        self.cer_tracker.update_state(
            distances, tf.reduce_sum(tf.cast(inputs["chars_mask"], tf.float32), axis=1)
        )
        return {m.name: m.result() for m in self.metrics}

    @property
    def metrics(self):
        return [self.loss_tracker, self.cer_tracker]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "alphabet_size": self.alphabet_size,
                "filters": self.filters,
                "units": self.units,
                "kernel_size": self.kernel_size,
                "lstm_layers": self.lstm_layers,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)


# ---------------------------------------------------------------------------------------------
# A trained reader: loading and reading


class Reader:
    """A trained recogniser with what reading needs: its alphabet and normalisation.

    Args:
        model: the `StrokeReader`.
        info: the `DatasetInfo` of the data it was trained on.
        record: the contents of `reader.json` (sizes and training record).
        directory: where it was loaded from ("" when built in memory).
    """

    def __init__(self, model, info, record=None, directory=""):
        self.model = model
        self.info = info
        self.record = dict(record or {})
        self.directory = directory
        self._call = tf.function(
            lambda inputs: model(inputs, training=False), reduce_retracing=True
        )

    @property
    def alphabet(self) -> Alphabet:
        return self.info.alphabet

    def log_probs(self, strokes, strokes_mask):
        """`(B, T, 3)` normalised points, `(B, T)` mask -> `(B, S, V)` log-probabilities."""
        return self._call({"strokes": strokes, "strokes_mask": strokes_mask})


def load_reader(directory) -> Reader:
    """Reads a reader directory (`model.keras`, `dataset.json`, `reader.json`).

    Raises:
        ReaderError: a file is missing or malformed.
    """
    directory = os.fspath(directory)
    paths = {
        name: os.path.join(directory, name)
        for name in (MODEL_FILENAME, DATASET_FILENAME, READER_FILENAME)
    }
    for path in paths.values():
        if not os.path.isfile(path):
            raise ReaderError(
                f"{path}: not found; a reader directory is written by "
                "`python -m handwriting.reader train`"
            )
    objects = {}
    for name in (DATASET_FILENAME, READER_FILENAME):
        try:
            with open(paths[name], encoding="utf-8") as f:
                objects[name] = json.load(f)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ReaderError(f"{paths[name]}: cannot be read as JSON ({e})") from None
    try:
        # The reader keeps the data's description, not its shards: no shard check here.
        info = DatasetInfo.from_json(objects[DATASET_FILENAME], where=paths[DATASET_FILENAME])
    except DatasetError as e:
        raise ReaderError(str(e)) from None
    record = objects[READER_FILENAME]
    if not isinstance(record, dict) or record.get("format_version") != READER_FORMAT_VERSION:
        raise ReaderError(
            f"{paths[READER_FILENAME]}: format_version must be {READER_FORMAT_VERSION}"
        )
    try:
        model = keras.saving.load_model(paths[MODEL_FILENAME], compile=False)
    except Exception as e:  # Keras raises many kinds for a damaged archive
        raise ReaderError(f"{paths[MODEL_FILENAME]}: cannot be loaded ({e})") from None
    if not isinstance(model, StrokeReader) or model.alphabet_size != info.alphabet.size:
        raise ReaderError(
            f"{paths[MODEL_FILENAME]}: not a StrokeReader over the {info.alphabet.size} ids "
            f"of {paths[DATASET_FILENAME]}"
        )
    return Reader(model, info, record, directory)


def read(reader: Reader, strokes_list, *, beam_width=0, batch_size=64) -> list:
    """Reads lines of handwriting.

    Args:
        reader: a `Reader` (`load_reader`).
        strokes_list: raw `(N, 3)` arrays of `(dx, dy, eos)` in the data's units, the first
            row the line's origin (as `handwriting.sample.generate` returns them). Like the
            training pipeline, the reader sees points 0 .. N-2; a line of fewer than 2 points
            reads as "".
        beam_width: 0 for greedy decoding, else the beam of `beam_decode`.
        batch_size: lines per network call (lines of similar length are batched together).

    Returns:
        A list of strings, one per line, in order.

    Raises:
        ReaderError: an array is not `(N, 3)` or holds non-finite values.
    """
    lines = []
    for index, strokes in enumerate(strokes_list):
        strokes = np.asarray(strokes, np.float32)
        if strokes.ndim != 2 or strokes.shape[1] != POINT_FEATURES:
            raise ReaderError(f"line {index + 1}: strokes must be (N, 3), received {strokes.shape}")
        if not np.isfinite(strokes).all():
            raise ReaderError(f"line {index + 1}: strokes hold NaN or infinite values")
        lines.append(
            data.normalize_strokes(strokes[:-1], reader.info.offset_mean, reader.info.offset_std)
        )
    readings = [""] * len(lines)
    order = sorted((i for i, x in enumerate(lines) if len(x)), key=lambda i: len(lines[i]))
    for start in range(0, len(order), batch_size):
        chosen = order[start : start + batch_size]
        steps = max(len(lines[i]) for i in chosen)
        steps = -(-steps // READ_PAD_MULTIPLE) * READ_PAD_MULTIPLE
        strokes = np.zeros((len(chosen), steps, POINT_FEATURES), np.float32)
        mask = np.zeros((len(chosen), steps), bool)
        for row, i in enumerate(chosen):
            strokes[row, : len(lines[i])] = lines[i]
            mask[row, : len(lines[i])] = True
        log_probs = reader.log_probs(tf.constant(strokes), tf.constant(mask))
        frames = frame_lengths(mask.sum(axis=1))
        if beam_width:
            decoded = beam_decode(log_probs, frames, beam_width)
        else:
            decoded = greedy_decode(log_probs, frames)
        for i, ids in zip(chosen, sparse_to_lists(decoded, len(chosen)), strict=True):
            readings[i] = reader.alphabet.decode(ids)
    return readings


# ---------------------------------------------------------------------------------------------
# Training
