"""The soft window: LSTM-1 and the attention over the text (Graves section 5.1, eq. 46-51).

`WindowCell` is a Keras RNN cell with state `(h1, c1, kappa, w)`. At each pen step t:

    gates      = x_t W_x + [w_{t-1}, h_{t-1}] W_r + b            LSTM-1 pre-activations
    h_t, c_t   = LSTM(gates, c_{t-1})                            eq. 7-11 (`lstm.lstm_update`)
    (alpha_hat, beta_hat, kappa_hat) = h_t W_a + b_a             eq. 48
    alpha = exp(alpha_hat), beta = exp(beta_hat)                 eq. 49, 50
    kappa_t = kappa_{t-1} + exp(kappa_hat)                       eq. 51
    phi(t, u) = sum_k alpha_k exp(-beta_k (kappa_k - u)^2)       eq. 46, u = 0 .. U-1
    w_t = sum_u phi(t, u) c_u                                    eq. 47

Names: the window vector is w_t (`window_vector`); the window params are (alpha, beta,
kappa_step = exp(kappa_hat)) (`window_params`); kappa is the window position.

The text (one-hot `c`, `(B, U, V)`, and its mask) is a call argument: padding characters are
masked out of phi, so they never move w. Keras 3's `RNN` layer passes no constants, so the
layer that owns the cell drives it: `unroll_window` runs it over a sequence with
`tf.while_loop`, after projecting all input points at once (`project_inputs`, one matmul);
only the recurrent part runs step by step, and its backward pass is written out
(`window_sequence`, equations B1-B9) rather than left to autodiff of the loop.

Axes: B batch, T pen steps, U characters, V alphabet, K window Gaussians, H units.
kappa is float32 under every dtype policy; so are phi and the cell state c.
"""

import math

import keras
import tensorflow as tf

from handwriting.lstm import (
    clip_gradient,
    kernel_gradient,
    lstm_bias_initializer,
    lstm_update,
    lstm_update_backward,
    matmul_last_axis,
)


@keras.saving.register_keras_serializable(package="handwriting")
class WindowCell(keras.layers.Layer):
    """LSTM-1 and the soft window over the text, one pen step at a time.

    Args:
        units: H, LSTM cells.
        window_gaussians: K, Gaussian functions of the window.
        alphabet_size: V, ids of the alphabet (padding and unknown included).
        window_step_init: the initial window step exp(kappa_hat), > 0; about
            1 / (points per character).
        gradient_clip: clip of the derivative with respect to the LSTM pre-activations,
            `[-v, v]`; 0 turns it off.

    Call arguments:
        inputs: `(batch, features)` pen points.
        states: `[h (batch, units), c (batch, units), kappa (batch, K), w (batch, V)]`.
        chars_onehot: `(batch, U, V)` the text, one-hot.
        chars_mask: `(batch, U)`, true (1) for real characters, false (0) for padding.

    Returns:
        `((h, window_vector, phi), new_states)`: h `(batch, units)`, the window vector w
        `(batch, V)`, the attention phi `(batch, U)` float32, and the new states.
    """

    def __init__(
        self,
        units,
        window_gaussians,
        alphabet_size,
        window_step_init=0.04,
        gradient_clip=0.0,
        **kwargs,
    ):
        # The cell casts for itself: kappa and c stay float32 under a mixed policy, which
        # Keras' autocasting of call arguments would round to the compute dtype.
        kwargs["autocast"] = False
        super().__init__(**kwargs)
        for name, value in (
            ("units", units),
            ("window_gaussians", window_gaussians),
            ("alphabet_size", alphabet_size),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{name}` must be a positive int, received {name}={value!r}")
        if not window_step_init > 0:
            raise ValueError(
                f"`window_step_init` must be > 0, received window_step_init={window_step_init!r}"
            )
        if not gradient_clip >= 0:
            raise ValueError(
                f"`gradient_clip` must be >= 0 (0: off), received gradient_clip={gradient_clip!r}"
            )
        self.units = units
        self.window_gaussians = window_gaussians
        self.alphabet_size = alphabet_size
        self.window_step_init = float(window_step_init)
        self.gradient_clip = float(gradient_clip)

    @property
    def state_size(self):
        return [self.units, self.units, self.window_gaussians, self.alphabet_size]

    @property
    def output_size(self):
        # h and w; phi's size U is the length of the text the call receives.
        return [self.units, self.alphabet_size]

    def build(self, input_shape):
        features = input_shape[-1]
        units, k = self.units, self.window_gaussians
        self.input_kernel = self.add_weight(
            shape=(features, 4 * units), initializer="glorot_uniform", name="input_kernel"
        )
        self.window_kernel = self.add_weight(
            shape=(self.alphabet_size, 4 * units),
            initializer="glorot_uniform",
            name="window_kernel",
        )
        self.recurrent_kernel = self.add_weight(
            shape=(units, 4 * units), initializer="orthogonal", name="recurrent_kernel"
        )
        self.bias = self.add_weight(
            shape=(4 * units,), initializer=lstm_bias_initializer(units), name="bias"
        )
        # W_a and b_a of eq. 48: h_t -> (alpha_hat, beta_hat, kappa_hat).
        self.attention_kernel = self.add_weight(
            shape=(units, 3 * k),
            initializer=keras.initializers.RandomNormal(stddev=0.01),
            name="attention_kernel",
            autocast=False,
        )
        # alpha = beta = 1 at the start, and exp(kappa_hat) = window_step_init (eq. 49-51).
        step = math.log(self.window_step_init)

        def attention_bias_init(shape, dtype=None):
            return tf.constant([0.0] * (2 * k) + [step] * k, dtype=dtype or "float32")

        self.attention_bias = self.add_weight(
            shape=(3 * k,), initializer=attention_bias_init, name="attention_bias", autocast=False
        )
        self.built = True

    def get_initial_state(self, batch_size):
        dtype = self.compute_dtype
        return [
            tf.zeros([batch_size, self.units], dtype),  # h
            tf.zeros([batch_size, self.units], tf.float32),  # c
            tf.zeros([batch_size, self.window_gaussians], tf.float32),  # kappa
            tf.zeros([batch_size, self.alphabet_size], dtype),  # w
        ]

    def project_inputs(self, inputs):
        """x W_x + b for points of any leading shape: `(..., features)` -> `(..., 4 units)`."""
        dtype = self.compute_dtype
        kernel = tf.cast(self.input_kernel, dtype)
        return matmul_last_axis(tf.cast(inputs, dtype), kernel) + tf.cast(self.bias, dtype)

    def joint_recurrent_kernel(self):
        """`(V + units, 4 units)`: the kernels of w_{t-1} and h_{t-1}, stacked once per call."""
        kernel = tf.concat([self.window_kernel, self.recurrent_kernel], axis=0)
        return tf.cast(kernel, self.compute_dtype)

    def call(self, inputs, states, chars_onehot, chars_mask, training=None):
        kernel = self.joint_recurrent_kernel()
        return self.step_projected(
            self.project_inputs(inputs), states, chars_onehot, chars_mask, kernel
        )

    def step_projected(self, projected, states, chars_onehot, chars_mask, recurrent_kernel):
        """One step from `project_inputs`' output `(batch, 4 units)`; see the class docstring.

        `chars_onehot` must be in the compute dtype and `chars_mask` float32 (0 or 1);
        `recurrent_kernel` is `joint_recurrent_kernel()`, computed once outside the loop.
        """
        h, c, kappa, w = states
        gates = projected + tf.matmul(tf.concat([w, h], axis=-1), recurrent_kernel)
        gates = clip_gradient(gates, self.gradient_clip)
        h, c, kappa, w, phi, _, _ = window_update(
            gates, c, kappa, self.attention_kernel, self.attention_bias, chars_onehot, chars_mask
        )
        return (h, w, phi), [h, c, kappa, w]

    def window_params(self, h):
        """The window params from LSTM-1's output (Graves eq. 48-51).

        Args:
            h: `(batch, units)` h_t of LSTM-1.

        Returns:
            `(alpha, beta, kappa_step)`, each `(batch, K)` float32 (under every dtype policy):
            the weights exp(alpha_hat), the widths exp(beta_hat) and the position step
            exp(kappa_hat), so that kappa_t = kappa_{t-1} + kappa_step.
        """
        return tf.split(window_params(h, self.attention_kernel, self.attention_bias), 3, -1)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "window_gaussians": self.window_gaussians,
                "alphabet_size": self.alphabet_size,
                "window_step_init": self.window_step_init,
                "gradient_clip": self.gradient_clip,
            }
        )
        return config


def attention(alpha, beta, kappa, chars_mask):
    """phi(u) = sum_k alpha_k exp(-beta_k (kappa_k - u)^2) over u = 0 .. U-1 (eq. 46).

    Args:
        alpha, beta, kappa: `(B, K)` float32.
        chars_mask: `(B, U)` float32, 0 at padding characters (their phi is 0).

    Returns:
        `(B, U)` float32.
    """
    positions = tf.cast(tf.range(tf.shape(chars_mask)[-1]), tf.float32)  # [U]
    distance = kappa[:, :, None] - positions  # [B, K, U]
    phi = tf.reduce_sum(alpha[:, :, None] * tf.exp(-beta[:, :, None] * tf.square(distance)), 1)
    return phi * chars_mask


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


def window_params(h, attention_kernel, attention_bias):
    """The window params `exp(h W_a + b_a)` (eq. 48-51), packed: `(B, 3K)` float32.

    Along the last axis alpha, beta and kappa_step, K each (`WindowCell.window_params`
    splits them).
    """
    return tf.exp(tf.matmul(tf.cast(h, tf.float32), attention_kernel) + attention_bias)


def window_update(gates, c, kappa, attention_kernel, attention_bias, chars_onehot, chars_mask):
    """LSTM-1 and the window from LSTM-1's pre-activations `gates` `(B, 4H)`.

    Args:
        gates: `(B, 4H)` x_t W_x + [w_{t-1}, h_{t-1}] W_r + b, in the compute dtype.
        c: `(B, H)` float32 cell state; kappa: `(B, K)` float32 window position.
        attention_kernel, attention_bias: W_a `(H, 3K)` and b_a `(3K,)`, float32.
        chars_onehot: `(B, U, V)` in the compute dtype; chars_mask: `(B, U)` float32.

    Returns:
        `(h, c, kappa, window_vector, phi, activations, params)`: h and the window vector w
        in the compute dtype; c, kappa, phi, the LSTM's activations `(B, 4H)` (see
        `lstm.lstm_update`) and the packed window params `(B, 3K)` float32.
    """
    dtype = gates.dtype
    h, c, activations = lstm_update(gates, c)  # eq. 7-11
    h = tf.cast(h, dtype)
    params = window_params(h, attention_kernel, attention_bias)  # eq. 48-50
    alpha, beta, kappa_step = tf.split(params, 3, axis=-1)
    kappa = kappa + kappa_step  # eq. 51
    phi = attention(alpha, beta, kappa, chars_mask)  # [B, U], eq. 46
    phi_row = tf.expand_dims(tf.cast(phi, dtype), 1)  # [B, 1, U]
    window_vector = tf.squeeze(tf.matmul(phi_row, chars_onehot), axis=1)  # [B, V], eq. 47
    return h, c, kappa, window_vector, phi, activations, params


def unroll_window(cell, projected, initial_state, chars_onehot, chars_mask):
    """Runs `cell` over a whole sequence with `tf.while_loop` and a hand-written backward pass.

    Args:
        cell: a built `WindowCell`.
        projected: `(T, B, 4 units)` `cell.project_inputs` of the points, time-major.
        initial_state: the cell's state list.
        chars_onehot: `(B, U, V)` in the cell's compute dtype.
        chars_mask: `(B, U)` float32.

    Returns:
        `(h, window_vector, phi, kappa, final_state)`: time-major `(T, B, units)`,
        `(T, B, V)`, `(T, B, U)` and `(T, B, K)`, and the state after the last step.
    """
    dtype = cell.compute_dtype
    h0, c0, kappa0, w0 = initial_state
    h, w, phi, kappa, h_last, c_last, kappa_last, w_last = window_sequence(
        tf.cast(projected, dtype),
        cell.joint_recurrent_kernel(),
        tf.convert_to_tensor(cell.attention_kernel),
        tf.convert_to_tensor(cell.attention_bias),
        tf.cast(h0, dtype),
        tf.cast(c0, tf.float32),
        tf.cast(kappa0, tf.float32),
        tf.cast(w0, dtype),
        tf.cast(chars_onehot, dtype),
        tf.cast(chars_mask, tf.float32),
        cell.gradient_clip,
    )
    return h, w, phi, kappa, [h_last, c_last, kappa_last, w_last]


def window_sequence(
    projected,
    kernel,
    attention_kernel,
    attention_bias,
    h0,
    c0,
    kappa0,
    w0,
    chars_onehot,
    chars_mask,
    gradient_clip=0.0,
):
    """LSTM-1 and the window over a whole sequence, with a hand-written backward pass.

    Autodiff of a `tf.while_loop` records every op of every step and replays it backwards
    through stacks, about four times the forward's cost here; this keeps what the backward
    needs (the LSTM activations, c, the window params) and runs one loop of its derivatives.

    Backward, for t = T-1 .. 0, with dX = dL/dX. On entering step t, dh, dw, dphi, dkappa
    and dc hold the upstream derivatives of step t's outputs plus what step t+1 sent back (h
    and w through a_{t+1}, kappa through kappa_{t+1}, c through c_{t+1}); m_u is the mask,
    C = (c_uv) the one-hot text, e_ku = exp(-beta_k (kappa_k - u)^2), d_ku = kappa_k - u,
    p = (alpha_hat, beta_hat, kappa_hat) = h_t W_a + b_a and a = LSTM-1's pre-activations:

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

    Args:
        projected: `(T, B, 4H)` x_t W_x + b, in the compute dtype.
        kernel: `(V + H, 4H)` the joint recurrent kernel of [w_{t-1}, h_{t-1}].
        attention_kernel: `(H, 3K)`; attention_bias: `(3K,)`; float32.
        h0, c0, kappa0, w0: the initial state (c and kappa float32).
        chars_onehot: `(B, U, V)`; chars_mask: `(B, U)` float32; not differentiated.
        gradient_clip: clip of d/d(LSTM-1 pre-activations), `[-v, v]`; 0 turns it off.

    Returns:
        `(h, window_vector, phi, kappa, h_last, c_last, kappa_last, w_last)`; the sequences
        time-major.
    """
    dtype = projected.dtype

    @tf.custom_gradient
    def run(projected, kernel, attention_kernel, attention_bias, h0, c0, kappa0, w0):
        steps = tf.shape(projected)[0]
        inputs = tf.TensorArray(dtype, size=steps).unstack(projected)
        kinds = (dtype, dtype, tf.float32, tf.float32, tf.float32, tf.float32, tf.float32)
        arrays = tuple(tf.TensorArray(kind, size=steps) for kind in kinds)

        def body(t, h, c, kappa, w, arrays):
            gates = inputs.read(t) + tf.matmul(tf.concat([w, h], axis=-1), kernel)
            h, c, kappa, w, phi, activations, params = window_update(
                gates, c, kappa, attention_kernel, attention_bias, chars_onehot, chars_mask
            )
            values = (h, w, phi, kappa, c, activations, params)
            arrays = tuple(ta.write(t, v) for ta, v in zip(arrays, values, strict=True))
            return t + 1, h, c, kappa, w, arrays

        start = (tf.constant(0), h0, c0, kappa0, w0, arrays)
        _, h_last, c_last, kappa_last, w_last, arrays = tf.while_loop(
            lambda t, *_: t < steps, body, start, maximum_iterations=steps
        )
        saved = tuple(ta.stack() for ta in arrays)  # h, w, phi, kappa, c, activations, params

        def grad(*upstream):
            differentiated = (kernel, attention_kernel, h0, c0, kappa0, w0)
            return _window_sequence_backward(
                upstream, saved, differentiated, chars_onehot, chars_mask, gradient_clip
            )

        outputs = (*saved[:4], h_last, c_last, kappa_last, w_last)
        return outputs, grad

    return run(projected, kernel, attention_kernel, attention_bias, h0, c0, kappa0, w0)


def _float32_or_zeros(upstream, like):
    """An upstream derivative in float32; zeros when the output was not used (None)."""
    return tf.zeros_like(like, tf.float32) if upstream is None else tf.cast(upstream, tf.float32)


def _window_sequence_backward(upstream, saved, differentiated, chars_onehot, chars_mask, clip):
    """The gradients of `window_sequence`'s 8 inputs from those of its 8 outputs (B1-B9).

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
    """One step t of the window's backward pass: equations B1-B8 of `window_sequence`.

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


def end_of_text_weight(cell, state, lengths):
    """phi at the position one past each line's last character, from the window's state.

    phi(t, U) = sum_k alpha_k exp(-beta_k (kappa_k - U)^2) (eq. 46) with alpha and beta
    recomputed from h1 by the window cell (`WindowCell.window_params`, eq. 48-50) and
    kappa from the state.

    Args:
        cell: the synthesis network's `WindowCell`.
        state: the network's flat state after the step (`(h1, c1, kappa, w, ...)`).
        lengths: `(B,)` int, U of every line.

    Returns:
        `(B,)` float32.
    """
    alpha, beta, _ = cell.window_params(state[0])  # [B, K] each
    kappa = state[2]
    distance = kappa - tf.cast(lengths, tf.float32)[:, None]  # [B, K]
    return tf.reduce_sum(alpha * tf.exp(-beta * tf.square(distance)), axis=-1)


def window_has_passed(phi, phi_end):
    """The stop rule: phi(t, U) > phi(t, u) for every u < U; `(B, U)`, `(B,)` -> `(B,)` bool.

    Padding positions hold phi = 0 and so never hold a line back.
    """
    most = tf.reduce_max(tf.concat([phi, tf.zeros_like(phi[:, :1])], axis=1), axis=1)
    return phi_end > most
