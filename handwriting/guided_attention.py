"""Guided attention: an auxiliary training loss that pulls the soft window towards the
character each point writes (Tachibana et al. 2017, adapted to Graves' window).

`HandwritingModel.train_step` adds it, weighted by `train.guided_attention` and annealed to 0
over `train.guided_attention_steps`; it reads the window's phi of `HandwritingModel.forward`.

Axes: B batch, T pen steps, U characters.

References:
    Tachibana, Uenoyama and Aihara (2017), "Efficiently trainable text-to-speech system
    based on deep convolutional networks with guided attention", arXiv:1710.08969.
"""

import tensorflow as tf

# Width (in characters) of the guided-attention target around a point's known character,
# and around the diagonal where a line has no alignment (the diagonal is only a rough guide).
GUIDE_WIDTH = 1.0
DIAGONAL_GUIDE_WIDTH = 3.0


def guided_attention(phi, alignment, strokes_mask, chars_mask):
    """The guided-attention loss of each line: how far the window looks from where it should.

    After Tachibana, Uenoyama and Aihara (2017), "Efficiently trainable text-to-speech system
    based on deep convolutional networks with guided attention", adapted to the window's
    unnormalised weights: at each point t the window's weights are normalised over the
    characters, p_t(u) = phi(t, u) / sum_v phi(t, v), and the loss is

        -log( sum_u p_t(u) exp(-(u - a_t)^2 / (2 s^2)) + 1e-6 )

    with a_t the character point t writes (the data's alignment, s = `GUIDE_WIDTH`), or, on a
    line without an alignment, the diagonal a_t = (t + 1/2) U / T - 1/2 (s =
    `DIAGONAL_GUIDE_WIDTH`). It is 0 when the window's weight lies on a_t and grows as it
    moves away; the scale of phi does not matter.

    Args:
        phi: `(B, T, U)` window weights (`HandwritingModel.forward`).
        alignment: `(B, T)` int, the character of each target point, -1 where unknown.
        strokes_mask: `(B, T)`, True at a line's real steps.
        chars_mask: `(B, U)`, True at a line's real characters.

    Returns:
        `(B,)` float32: the loss summed over each line's steps.
    """
    phi = tf.cast(phi, tf.float32)
    steps = tf.cast(strokes_mask, tf.float32)  # [B, T]
    chars = tf.cast(chars_mask, tf.float32)  # [B, U]
    alignment = tf.cast(alignment, tf.float32)
    line_steps = tf.reduce_sum(steps, axis=1, keepdims=True)  # [B, 1]
    line_chars = tf.reduce_sum(chars, axis=1, keepdims=True)  # [B, 1]
    t = tf.cast(tf.range(tf.shape(phi)[1]), tf.float32)[None, :]  # [1, T]
    diagonal = (t + 0.5) * line_chars / tf.maximum(line_steps, 1.0) - 0.5
    aligned = tf.reduce_any(alignment >= 0, axis=1, keepdims=True)  # [B, 1]
    target = tf.where(aligned, alignment, diagonal)  # [B, T]
    width = tf.where(aligned, GUIDE_WIDTH, DIAGONAL_GUIDE_WIDTH)[:, :, None]  # [B, 1, 1]
    u = tf.cast(tf.range(tf.shape(phi)[2]), tf.float32)[None, None, :]  # [1, 1, U]
    closeness = tf.exp(-tf.square(u - target[:, :, None]) / (2.0 * tf.square(width)))
    weights = phi * chars[:, None, :]
    share = tf.reduce_sum(weights * closeness, -1) / (tf.reduce_sum(weights, -1) + 1e-8)
    per_step = -tf.math.log(share + 1e-6)
    # A point of an aligned line whose character is unknown (none in the corpus) counts 0.
    known = steps * tf.cast(tf.logical_or(tf.logical_not(aligned), alignment >= 0), tf.float32)
    return tf.reduce_sum(per_step * known, axis=1)
