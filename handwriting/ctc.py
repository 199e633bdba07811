"""CTC for the reader: the loss, greedy and beam decoding, and the character error rate.

Axis letters: B batch, S frames, U characters, V alphabet ids. Id 0 (padding in the data) is
the CTC blank, since no label is ever 0.

References:
    Graves, Fernandez, Gomez, Schmidhuber (2006). Connectionist temporal classification:
    labelling unsegmented sequence data with recurrent neural networks. ICML.
"""

import keras
import numpy as np
import tensorflow as tf

from handwriting.alphabet import PAD_ID, UNKNOWN_ID

BLANK_ID = PAD_ID  # the CTC blank: id 0 never occurs as a label


class CharacterErrorRate(keras.metrics.Metric):
    """Summed edit distances over summed reference lengths, over all lines seen."""

    def __init__(self, name="cer", **kwargs):
        super().__init__(name=name, **kwargs)
        self.distance = self.add_variable(shape=(), initializer="zeros", name="distance")
        self.length = self.add_variable(shape=(), initializer="zeros", name="length")

    def update_state(self, distances, lengths):
        """Adds lines: `distances` `(B,)` edit distances, `lengths` `(B,)` reference lengths."""
        self.distance.assign_add(tf.reduce_sum(tf.cast(distances, tf.float32)))
        self.length.assign_add(tf.reduce_sum(tf.cast(lengths, tf.float32)))

    def result(self):
        return self.distance / tf.maximum(self.length, 1.0)


# ---------------------------------------------------------------------------------------------
# CTC: loss and decoding


def ctc_loss(log_probs, frames, chars, chars_mask):
    """-log p(chars | frames) of each line under CTC (Graves et al. 2006, eq. 14), blank id 0.

    Args:
        log_probs: `(B, S, V)` per-frame log-probabilities (or logits: they are normalised).
        frames: `(B,)` frames of each line (padding after), each >= 1.
        chars: `(B, U)` label ids >= 1, padded after each line's characters.
        chars_mask: `(B, U)` True on real characters.

    Returns:
        `(loss (B,) float32, feasible (B,) bool)`. A line is feasible when it has characters
        and a frame for each, plus one per repeated pair (the blank between them). An
        infeasible line is scored on a stand-in label (id 1 alone), so that its loss and
        gradient stay finite; give it weight 0.
    """
    chars = tf.cast(chars, tf.int32)
    chars_mask = tf.cast(chars_mask, tf.bool)
    frames = tf.cast(frames, tf.int32)
    label_length = tf.reduce_sum(tf.cast(chars_mask, tf.int32), axis=1)  # [B]
    repeats = tf.reduce_sum(
        tf.cast((chars[:, 1:] == chars[:, :-1]) & chars_mask[:, 1:], tf.int32), axis=1
    )
    feasible = (label_length > 0) & (frames >= label_length + repeats)
    first = tf.range(tf.shape(chars)[1]) == 0  # [U]
    labels = tf.where(
        feasible[:, None], tf.where(chars_mask, chars, 0), tf.where(first, UNKNOWN_ID, 0)
    )  # [B, U], 0 after each line's labels
    # Sparse labels select TensorFlow's native CTC kernel, ~10x faster on CPU than the dense
    # (scan-based) one.
    loss = tf.nn.ctc_loss(
        labels=tf.sparse.from_dense(labels),
        logits=tf.cast(log_probs, tf.float32),
        label_length=None,
        logit_length=frames,
        logits_time_major=False,
        blank_index=BLANK_ID,
    )
    return loss, feasible


def greedy_decode(log_probs, frames):
    """Best path decoding: the likeliest id of each frame, repeats merged, blanks dropped.

    Args:
        log_probs: `(B, S, V)` per-frame log-probabilities.
        frames: `(B,)` frames of each line.

    Returns:
        `tf.SparseTensor` int64 of dense shape `(B, L)`: the ids read on each line.
    """
    (decoded,), _ = tf.nn.ctc_greedy_decoder(
        tf.transpose(log_probs, [1, 0, 2]),  # [S, B, V]
        tf.cast(frames, tf.int32),
        merge_repeated=True,
        blank_index=BLANK_ID,
    )
    return decoded


def beam_decode(log_probs, frames, beam_width=16):
    """CTC prefix beam search: the likeliest labelling (summed over its paths) found.

    Args:
        log_probs: `(B, S, V)` per-frame log-probabilities.
        frames: `(B,)` frames of each line.
        beam_width: labellings kept at each frame.

    Returns:
        `tf.SparseTensor` int64 of dense shape `(B, L)`: the ids read on each line.
    """
    # TensorFlow's beam search takes the blank as the last class: move id 0 there.
    rolled = tf.concat([log_probs[:, :, 1:], log_probs[:, :, :1]], axis=-1)
    (decoded,), _ = tf.nn.ctc_beam_search_decoder(
        tf.transpose(rolled, [1, 0, 2]),  # [S, B, V]
        tf.cast(frames, tf.int32),
        beam_width=beam_width,
        top_paths=1,
    )
    return tf.SparseTensor(decoded.indices, decoded.values + 1, decoded.dense_shape)


def sparse_to_lists(decoded, batch_size):
    """`tf.SparseTensor` of ids, row-major -> `batch_size` lists of ids."""
    rows = [[] for _ in range(batch_size)]
    for (row, _), value in zip(decoded.indices.numpy(), decoded.values.numpy(), strict=True):
        rows[row].append(int(value))
    return rows


# ---------------------------------------------------------------------------------------------
# Character error rate


def edit_distance(reference, hypothesis) -> int:
    """Levenshtein distance: the fewest insertions, deletions and substitutions between two
    sequences (strings, or lists of ids)."""
    previous = np.arange(len(hypothesis) + 1)
    for i, ref in enumerate(reference, start=1):
        current = np.empty_like(previous)
        current[0] = i
        for j, hyp in enumerate(hypothesis, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp))
        previous = current
    return int(previous[-1])


def cer(references, hypotheses) -> float:
    """Character error rate over lines: sum of edit distances / sum of reference lengths.

    Raises:
        ValueError: the lists differ in length, or the references hold no character.
    """
    references, hypotheses = list(references), list(hypotheses)
    if len(references) != len(hypotheses):
        raise ValueError(
            f"{len(references)} references but {len(hypotheses)} hypotheses; give one each"
        )
    total = sum(len(r) for r in references)
    if total == 0:
        raise ValueError("the references hold no character; CER is undefined")
    distances = sum(edit_distance(r, h) for r, h in zip(references, hypotheses, strict=True))
    return distances / total
