"""The soft window: LSTM-1 and the attention over the text (Graves section 5.1, eq. 46-51).

`WindowCell` is a Keras RNN cell with state `(h1, c1, kappa, w)`. At each pen step t:

    gates      = x_t W_x + [w_{t-1}, h_{t-1}] W_r + b            LSTM-1 pre-activations
    h_t, c_t   = LSTM(gates, c_{t-1})                            (Graves eq. 7-11, no peepholes)
    (alpha_hat, beta_hat, kappa_hat) = h_t W_a + b_a             eq. 48
    alpha = exp(alpha_hat), beta = exp(beta_hat)                 eq. 49, 50
    kappa_t = kappa_{t-1} + exp(kappa_hat)                       eq. 51
    phi(t, u) = sum_k alpha_k exp(-beta_k (kappa_k - u)^2)       eq. 46, u = 0 .. U-1
    w_t = sum_u phi(t, u) c_u                                    eq. 47

The text (one-hot `c`, `(B, U, V)`, and its mask) is a call argument: padding characters are
masked out of phi, so they never move w. Keras 3's `RNN` layer passes no constants, so the
layer that owns the cell drives it: `unroll_window` runs it over a sequence with
`tf.while_loop`, after projecting all input points at once (`project_inputs`, one matmul);
only the recurrent part runs step by step, and its backward pass is written out
(`window_sequence`) rather than left to autodiff of the loop.

Axes: B batch, T pen steps, U characters, V alphabet, K window Gaussians, H units.
kappa is float32 under every dtype policy; so are phi and the cell state c.
"""

import math

import keras
import tensorflow as tf


def clip_gradient(x, bound: float):
    """Identity forward; the gradient flowing back into `x` is clipped to `[-bound, bound]`.

    Graves (2013, section 4.2) clips derivatives with respect to the LSTM pre-activations
    and the network outputs this way. `bound` 0 returns `x` untouched.
    """
    if not bound:
        return x

    @tf.custom_gradient
    def _clip(value):
        def grad(upstream):
            return tf.clip_by_value(upstream, -bound, bound)

        return tf.identity(value), grad

    return _clip(x)


def matmul_last_axis(x, kernel):
    """`x (..., n) @ kernel (n, m)` as one 2-D matmul over all leading positions.

    A 3-D `tf.matmul` with a 2-D kernel becomes a broadcast batch matmul whose kernel
    gradient is a product per leading index summed afterwards; flattened, it is one GEMM
    (about twice as fast forward and backward at `(700, 32, 463) @ (463, 1600)` here).
    """
    if x.shape.rank == 2:
        return tf.matmul(x, kernel)
    leading = tf.shape(x)[:-1]
    flat = tf.matmul(tf.reshape(x, [-1, tf.shape(x)[-1]]), kernel)
    columns = kernel.shape[-1] if kernel.shape[-1] is not None else tf.shape(kernel)[-1]
    return tf.reshape(flat, tf.concat([leading, [columns]], axis=0))


def lstm_update(gates, cell_state):
    """One LSTM update from pre-activations `(B, 4H)` in gate order i, f, g, o (as Keras).

    Returns `(h, c)`, float32.
    """
    gates = tf.cast(gates, tf.float32)
    i, f, g, o = tf.split(gates, 4, axis=-1)
    cell_state = tf.sigmoid(f) * cell_state + tf.sigmoid(i) * tf.tanh(g)
    return tf.sigmoid(o) * tf.tanh(cell_state), cell_state


def lstm_bias_initializer(units: int):
    """Zero bias except the forget gate's, which starts at 1 (Jozefowicz et al., 2015)."""

    def initializer(shape, dtype=None):
        bias = tf.concat([tf.zeros([units]), tf.ones([units]), tf.zeros([2 * units])], 0)
        return tf.cast(bias, dtype or "float32")

    return initializer


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
        `((h, w, phi), new_states)`: h `(batch, units)`, the window w `(batch, V)`, the
        attention phi `(batch, U)` float32, and the new states.
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
        return self.step_projected(
            self.project_inputs(inputs),
            states,
            chars_onehot,
            chars_mask,
            self.joint_recurrent_kernel(),
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
            gates,
            c,
            kappa,
            self.attention_kernel,
            self.attention_bias,
            chars_onehot,
            chars_mask,
        )
        return (h, w, phi), [h, c, kappa, w]

    def window_parameters(self, h):
        """The window's Gaussians from LSTM-1's output (Graves eq. 48-51).

        Args:
            h: `(batch, units)` h_t of LSTM-1.

        Returns:
            `(alpha, beta, kappa_step)`, each `(batch, K)` float32 (under every dtype policy):
            the weights exp(alpha_hat), the widths exp(beta_hat) and the position step
            exp(kappa_hat), so that kappa_t = kappa_{t-1} + kappa_step.
        """
        window = gaussians(h, self.attention_kernel, self.attention_bias)
        k = self.window_gaussians
        return window[:, :k], window[:, k : 2 * k], window[:, 2 * k :]

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


def gaussians(h, attention_kernel, attention_bias):
    """`exp(h W_a + b_a)` (eq. 48-51): `(B, 3K)` float32, alpha, beta and the kappa step."""
    return tf.exp(tf.matmul(tf.cast(h, tf.float32), attention_kernel) + attention_bias)


def window_update(gates, c, kappa, attention_kernel, attention_bias, chars_onehot, chars_mask):
    """LSTM-1 and the window from LSTM-1's pre-activations `gates` `(B, 4H)`.

    Args:
        gates: `(B, 4H)` x_t W_x + [w_{t-1}, h_{t-1}] W_r + b, in the compute dtype.
        c: `(B, H)` float32 cell state; kappa: `(B, K)` float32 window position.
        attention_kernel, attention_bias: W_a `(H, 3K)` and b_a `(3K,)`, float32.
        chars_onehot: `(B, U, V)` in the compute dtype; chars_mask: `(B, U)` float32.

    Returns:
        `(h, c, kappa, w, phi, activations, gaussians)`: h and w in the compute dtype; c,
        kappa, phi, the gate activations `(B, 4H)` (i, f, g, o after their nonlinearities)
        and `gaussians` `(B, 3K)` (alpha, beta, kappa step) float32.
    """
    dtype = gates.dtype
    i, f, g, o = tf.split(tf.cast(gates, tf.float32), 4, axis=-1)
    i, f, g, o = tf.sigmoid(i), tf.sigmoid(f), tf.tanh(g), tf.sigmoid(o)
    c = f * c + i * g
    h = tf.cast(o * tf.tanh(c), dtype)
    window = gaussians(h, attention_kernel, attention_bias)
    alpha, beta, step = tf.split(window, 3, axis=-1)
    kappa = kappa + step  # eq. 51
    phi = attention(alpha, beta, kappa, chars_mask)  # [B, U], eq. 46
    phi_row = tf.expand_dims(tf.cast(phi, dtype), 1)  # [B, 1, U]
    w = tf.squeeze(tf.matmul(phi_row, chars_onehot), axis=1)  # [B, V], eq. 47
    return h, c, kappa, w, phi, tf.concat([i, f, g, o], axis=-1), window


def unroll_window(cell, projected, initial_state, chars_onehot, chars_mask):
    """Runs `cell` over a whole sequence with `tf.while_loop` and a hand-written backward pass.

    Args:
        cell: a built `WindowCell`.
        projected: `(T, B, 4 units)` `cell.project_inputs` of the points, time-major.
        initial_state: the cell's state list.
        chars_onehot: `(B, U, V)` in the cell's compute dtype.
        chars_mask: `(B, U)` float32.

    Returns:
        `(h, w, phi, kappa, final_state)`: time-major `(T, B, units)`, `(T, B, V)`,
        `(T, B, U)` and `(T, B, K)`, and the state after the last step.
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
    needs (gate activations, c, the Gaussians) and runs one loop of its derivatives. The
    gradients of the loop's kernels are matmuls over all steps after it.

    Args:
        projected: `(T, B, 4H)` x_t W_x + b, in the compute dtype.
        kernel: `(V + H, 4H)` the joint recurrent kernel of [w_{t-1}, h_{t-1}].
        attention_kernel: `(H, 3K)`; attention_bias: `(3K,)`; float32.
        h0, c0, kappa0, w0: the initial state (c and kappa float32).
        chars_onehot: `(B, U, V)`; chars_mask: `(B, U)` float32; not differentiated.
        gradient_clip: clip of d/d(LSTM-1 pre-activations), `[-v, v]`; 0 turns it off.

    Returns:
        `(h, w, phi, kappa, h_last, c_last, kappa_last, w_last)`; the sequences time-major.
    """
    dtype = projected.dtype
    alphabet = chars_onehot.shape[-1] if chars_onehot.shape[-1] is not None else None

    @tf.custom_gradient
    def run(projected, kernel, attention_kernel, attention_bias, h0, c0, kappa0, w0):
        steps = tf.shape(projected)[0]
        inputs = tf.TensorArray(dtype, size=steps).unstack(projected)
        kinds = (dtype, dtype, tf.float32, tf.float32, tf.float32, tf.float32, tf.float32)
        arrays = tuple(tf.TensorArray(kind, size=steps) for kind in kinds)

        def body(t, h, c, kappa, w, arrays):
            gates = inputs.read(t) + tf.matmul(tf.concat([w, h], axis=-1), kernel)
            h, c, kappa, w, phi, act, window = window_update(
                gates, c, kappa, attention_kernel, attention_bias, chars_onehot, chars_mask
            )
            values = (h, w, phi, kappa, c, act, window)
            arrays = tuple(ta.write(t, v) for ta, v in zip(arrays, values, strict=True))
            return t + 1, h, c, kappa, w, arrays

        _, h_last, c_last, kappa_last, w_last, arrays = tf.while_loop(
            lambda t, *_: t < steps,
            body,
            (tf.constant(0), h0, c0, kappa0, w0, arrays),
            maximum_iterations=steps,
        )
        h_seq, w_seq, phi_seq, kappa_seq, c_seq, act_seq, window_seq = (ta.stack() for ta in arrays)

        def grad(dh_seq, dw_seq, dphi_seq, dkappa_seq, dh_last, dc_last, dkappa_last, dw_last):
            def f32(upstream, like):
                return (
                    tf.zeros_like(like, tf.float32)
                    if upstream is None
                    else (tf.cast(upstream, tf.float32))
                )

            dh_seq, dw_seq = f32(dh_seq, h_seq), f32(dw_seq, w_seq)
            dphi_seq, dkappa_seq = f32(dphi_seq, phi_seq), f32(dkappa_seq, kappa_seq)
            c_prev_seq = tf.concat([c0[None], c_seq[:-1]], axis=0)
            kernel_t = tf.transpose(kernel)  # [4H, V + H]
            attention_kernel_t = tf.transpose(attention_kernel)  # [3K, H]
            onehot_t = tf.transpose(chars_onehot, [0, 2, 1])  # [B, V, U]
            positions = tf.cast(tf.range(tf.shape(chars_mask)[-1]), tf.float32)
            columns = alphabet if alphabet is not None else tf.shape(chars_onehot)[-1]

            def back(t, dh_next, dc_next, dkappa_next, dw_next, dgates_ta, dwindow_ta):
                # w_t = phi_t C (eq. 47), then phi (eq. 46) through alpha, beta and kappa.
                dw = tf.cast(dw_seq[t] + dw_next, dtype)
                dphi = dphi_seq[t] + tf.cast(
                    tf.squeeze(tf.matmul(dw[:, None], onehot_t), 1), tf.float32
                )
                dphi = dphi * chars_mask  # [B, U]
                alpha, beta, step = tf.split(window_seq[t], 3, axis=-1)  # [B, K] each
                distance = kappa_seq[t][:, :, None] - positions  # [B, K, U]
                bump = tf.exp(-beta[:, :, None] * tf.square(distance))
                dbump = dphi[:, None, :] * bump  # d loss / d alpha_k per position
                weighted = alpha[:, :, None] * dbump
                dalpha = tf.reduce_sum(dbump, -1)
                dbeta = -tf.reduce_sum(weighted * tf.square(distance), -1)
                dkappa = (
                    dkappa_seq[t]
                    + dkappa_next
                    - 2.0 * tf.reduce_sum(weighted * beta[:, :, None] * distance, -1)
                )
                # Through the exp of eq. 49-51 to the pre-activations h W_a + b_a.
                dwindow = tf.concat([dalpha * alpha, dbeta * beta, dkappa * step], axis=-1)
                dh = dh_seq[t] + dh_next + tf.matmul(dwindow, attention_kernel_t)
                # The LSTM update.
                i, f, g, o = tf.split(act_seq[t], 4, axis=-1)
                tanh_c = tf.tanh(c_seq[t])
                dc = dc_next + dh * o * (1.0 - tf.square(tanh_c))
                dgates = tf.concat(
                    [
                        dc * g * i * (1.0 - i),
                        dc * c_prev_seq[t] * f * (1.0 - f),
                        dc * i * (1.0 - tf.square(g)),
                        dh * tanh_c * o * (1.0 - o),
                    ],
                    axis=-1,
                )
                if gradient_clip:
                    dgates = tf.clip_by_value(dgates, -gradient_clip, gradient_clip)
                dgates = tf.cast(dgates, dtype)
                drecurrent = tf.cast(tf.matmul(dgates, kernel_t), tf.float32)
                dw_prev, dh_prev = drecurrent[:, :columns], drecurrent[:, columns:]
                return (
                    t - 1,
                    dh_prev,
                    dc * f,
                    dkappa,
                    dw_prev,
                    dgates_ta.write(t, dgates),
                    dwindow_ta.write(t, dwindow),
                )

            start = (
                steps - 1,
                f32(dh_last, h0),
                f32(dc_last, c0),
                f32(dkappa_last, kappa0),
                f32(dw_last, w0),
                tf.TensorArray(dtype, size=steps),
                tf.TensorArray(tf.float32, size=steps),
            )
            _, dh0, dc0, dkappa0, dw0, dgates_ta, dwindow_ta = tf.while_loop(
                lambda t, *_: t >= 0, back, start, maximum_iterations=steps
            )
            dgates_seq, dwindow_seq = dgates_ta.stack(), dwindow_ta.stack()
            # Kernel gradients: one matmul over all steps each.
            w_prev = tf.concat([w0[None], w_seq[:-1]], axis=0)
            h_prev = tf.concat([h0[None], h_seq[:-1]], axis=0)
            recurrent = tf.concat([w_prev, h_prev], axis=-1)  # [T, B, V + H]
            rows = tf.shape(recurrent)[-1]
            dkernel = tf.matmul(
                tf.reshape(recurrent, [-1, rows]),
                tf.reshape(dgates_seq, [-1, tf.shape(dgates_seq)[-1]]),
                transpose_a=True,
            )
            width = tf.shape(dwindow_seq)[-1]
            flat_dwindow = tf.reshape(dwindow_seq, [-1, width])
            dattention_kernel = tf.matmul(
                tf.reshape(tf.cast(h_seq, tf.float32), [-1, tf.shape(h_seq)[-1]]),
                flat_dwindow,
                transpose_a=True,
            )
            return (
                dgates_seq,
                tf.cast(dkernel, kernel.dtype),
                dattention_kernel,
                tf.reduce_sum(flat_dwindow, 0),
                tf.cast(dh0, h0.dtype),
                dc0,
                dkappa0,
                tf.cast(dw0, w0.dtype),
            )

        outputs = (h_seq, w_seq, phi_seq, kappa_seq, h_last, c_last, kappa_last, w_last)
        return outputs, grad

    return run(projected, kernel, attention_kernel, attention_bias, h0, c0, kappa0, w0)


def end_of_text_weight(cell, state, lengths):
    """phi at the position one past each line's last character, from the window's state.

    phi(t, U) = sum_k alpha_k exp(-beta_k (kappa_k - U)^2) (eq. 46) with alpha and beta
    recomputed from h1 by the window cell (`WindowCell.window_parameters`, eq. 48-50) and
    kappa from the state.

    Args:
        cell: the synthesis network's `WindowCell`.
        state: the network's flat state after the step (`(h1, c1, kappa, w, ...)`).
        lengths: `(B,)` int, U of every line.

    Returns:
        `(B,)` float32.
    """
    alpha, beta, _ = cell.window_parameters(state[0])  # [B, K] each
    kappa = state[2]
    distance = kappa - tf.cast(lengths, tf.float32)[:, None]  # [B, K]
    return tf.reduce_sum(alpha * tf.exp(-beta * tf.square(distance)), axis=-1)


def window_has_passed(phi, phi_end):
    """The stop rule: phi(t, U) > phi(t, u) for every u < U; `(B, U)`, `(B,)` -> `(B,)` bool.

    Padding positions hold phi = 0 and so never hold a line back.
    """
    most = tf.reduce_max(tf.concat([phi, tf.zeros_like(phi[:, :1])], axis=1), axis=1)
    return phi_end > most
