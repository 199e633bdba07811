"""The window's hand-written backward pass (`window.window_sequence`, equations B1-B9).

Backward, for t = T-1 .. 0, with dX = dL/dX. On entering step t, dh, dw, dphi, dkappa and dc
hold the upstream derivatives of step t's outputs plus what step t+1 sent back (h and w
through a_{t+1}, kappa through kappa_{t+1}, c through c_{t+1}); m_u is the mask, C = (c_uv)
the one-hot text, e_ku = exp(-beta_k (kappa_k - u)^2), d_ku = kappa_k - u, p = (alpha_hat,
beta_hat, kappa_hat) = h_t W_a + b_a and a = LSTM-1's pre-activations:

    dphi_u    = m_u (dphi_u + sum_v dw_v c_uv)                     (B1) eq. 47, 46's mask
    dalpha_k  = sum_u dphi_u e_ku                                  (B2) eq. 46
    dbeta_k   = -sum_u dphi_u alpha_k e_ku d_ku^2                  (B3) eq. 46
    dkappa_k += -2 beta_k sum_u dphi_u alpha_k e_ku d_ku           (B4) eq. 46; also
                dkappa_{t-1}, as kappa_t = kappa_{t-1} + kappa_step (eq. 51)
    dp        = [dalpha alpha, dbeta beta, dkappa kappa_step]      (B5) eq. 49-51
    dh       += dp W_a^T                                           (B6) eq. 48
    da, dc_{t-1} = LSTM backward, clipped (`lstm.lstm_update_backward`, L1-L4)  (B7)
    [dw_{t-1}, dh_{t-1}] = da W_r^T                                (B8)

and after the loop, one matmul or sum over all steps each:

    dW_r = sum_t [w_{t-1}, h_{t-1}]^T da_t,  dW_a = sum_t h_t^T dp_t,
    db_a = sum_t dp_t,  d(projected)_t = da_t                      (B9)

Axes: B batch, T pen steps, U characters, V alphabet, K window Gaussians, H units.
"""

import tensorflow as tf

from handwriting.lstm import kernel_gradient, lstm_update_backward


def _float32_or_zeros(upstream, like):
    """An upstream derivative in float32; zeros when the output was not used (None)."""
    return tf.zeros_like(like, tf.float32) if upstream is None else tf.cast(upstream, tf.float32)


def sequence_backward(upstream, saved, differentiated, chars_onehot, chars_mask, clip):
    """The gradients of `window.window_sequence`'s 8 inputs from those of its 8 outputs (B1-B9).

    `saved` holds the forward's `(h, w, phi, kappa, c, activations, params)` over all steps;
    `differentiated` its inputs `(kernel, attention_kernel, h0, c0, kappa0, w0)`.
    """
    h_seq, w_seq, phi_seq, kappa_seq, c_seq, act_seq, params_seq = saved
    kernel, attention_kernel, h0, c0, kappa0, w0 = differentiated
    dtype = h_seq.dtype
    likes = (h_seq, w_seq, phi_seq, kappa_seq, h0, c0, kappa0, w0)
    dh_seq, dw_seq, dphi_seq, dkappa_seq, dh_last, dc_last, dkappa_last, dw_last = (
        _float32_or_zeros(d, like) for d, like in zip(upstream, likes, strict=True)
    )
    steps = tf.shape(h_seq)[0]
    c_prev_seq = tf.concat([c0[None], c_seq[:-1]], axis=0)
    constants = (
        tf.transpose(chars_onehot, [0, 2, 1]),  # C^T [B, V, U]
        chars_mask,  # [B, U]
        tf.cast(tf.range(tf.shape(chars_mask)[-1]), tf.float32),  # u [U]
        tf.transpose(attention_kernel),  # W_a^T [3K, H]
        tf.transpose(kernel),  # W_r^T [4H, V + H]
    )

    def back(t, dh, dc, dkappa, dw, dgates_ta, dparams_ta):
        # dh, dc, dkappa, dw: what step t+1 sent back.
        into = (dh_seq[t] + dh, dw_seq[t] + dw, dphi_seq[t], dkappa_seq[t] + dkappa, dc)
        forward = (params_seq[t], kappa_seq[t], act_seq[t], c_prev_seq[t], c_seq[t])
        dgates, dparams, carry = window_backward_step(into, forward, constants, clip)
        return (t - 1, *carry, dgates_ta.write(t, dgates), dparams_ta.write(t, dparams))

    arrays = (tf.TensorArray(dtype, size=steps), tf.TensorArray(tf.float32, size=steps))
    start = (steps - 1, dh_last, dc_last, dkappa_last, dw_last, *arrays)
    _, dh0, dc0, dkappa0, dw0, dgates_ta, dparams_ta = tf.while_loop(
        lambda t, *_: t >= 0, back, start, maximum_iterations=steps
    )
    dgates_seq, dparams_seq = dgates_ta.stack(), dparams_ta.stack()
    # (B9): one matmul over all steps for each kernel.
    w_prev = tf.concat([w0[None], w_seq[:-1]], axis=0)
    h_prev = tf.concat([h0[None], h_seq[:-1]], axis=0)
    recurrent = tf.concat([w_prev, h_prev], axis=-1)  # [T, B, V + H]
    dkernel = tf.cast(kernel_gradient(recurrent, dgates_seq), kernel.dtype)
    dattention_kernel = kernel_gradient(tf.cast(h_seq, tf.float32), dparams_seq)
    dinitial = (tf.cast(dh0, h0.dtype), dc0, dkappa0, tf.cast(dw0, w0.dtype))
    return dgates_seq, dkernel, dattention_kernel, tf.reduce_sum(dparams_seq, [0, 1]), *dinitial


def window_backward_step(into, forward, constants, gradient_clip):
    """One step t of the window's backward pass: equations B1-B8 above.

    Args:
        into: `(dh, dw, dphi, dkappa, dc)` float32, the derivatives reaching step t's h_t,
            w_t, phi_t, kappa_t and c_t from the loss and from step t+1.
        forward: step t's `(params, kappa, activations, c_prev, c)` saved by the forward.
        constants: `(C^T (B, V, U), chars_mask, u (U,), W_a^T, W_r^T)`.
        gradient_clip: the LSTM derivative clip (B7); 0: off.

    Returns:
        `(da_t, dp_t, (dh, dc, dkappa, dw) for step t-1)`: da_t `(B, 4H)` in the compute
        dtype (W_r^T's), the rest float32.
    """
    dh, dw, dphi, dkappa, dc = into
    params, kappa, activations, c_prev, c = forward
    onehot_t, chars_mask, positions, attention_kernel_t, kernel_t = constants
    dtype = kernel_t.dtype
    dw = tf.cast(dw, dtype)
    dphi = dphi + tf.cast(tf.squeeze(tf.matmul(dw[:, None], onehot_t), 1), tf.float32)
    dphi = dphi * chars_mask  # (B1) [B, U]
    alpha, beta, kappa_step = tf.split(params, 3, axis=-1)  # [B, K] each
    distance = kappa[:, :, None] - positions  # d_ku [B, K, U]
    bump = tf.exp(-beta[:, :, None] * tf.square(distance))  # e_ku
    dbump = dphi[:, None, :] * bump
    weighted = alpha[:, :, None] * dbump
    dalpha = tf.reduce_sum(dbump, -1)  # (B2)
    dbeta = -tf.reduce_sum(weighted * tf.square(distance), -1)  # (B3)
    dkappa = dkappa - 2.0 * tf.reduce_sum(weighted * beta[:, :, None] * distance, -1)  # (B4)
    dparams = tf.concat([dalpha * alpha, dbeta * beta, dkappa * kappa_step], axis=-1)  # (B5)
    dh = dh + tf.matmul(dparams, attention_kernel_t)  # (B6)
    dgates, dc_prev = lstm_update_backward(dh, dc, activations, c_prev, c, gradient_clip)  # (B7)
    dgates = tf.cast(dgates, dtype)
    drecurrent = tf.cast(tf.matmul(dgates, kernel_t), tf.float32)  # (B8)
    alphabet = onehot_t.shape[1] if onehot_t.shape[1] is not None else tf.shape(onehot_t)[1]
    dw_prev, dh_prev = drecurrent[:, :alphabet], drecurrent[:, alphabet:]
    return dgates, dparams, (dh_prev, dc_prev, dkappa, dw_prev)
