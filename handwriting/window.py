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
(`window_sequence`; equations B1-B9 in `handwriting.window_backward`) rather than left to
autodiff of the loop. The guided-attention loss on the window is `handwriting.guided_attention`.

Axes: B batch, T pen steps, U characters, V alphabet, K window Gaussians, H units.
kappa is float32 under every dtype policy; so are phi and the cell state c.
"""

import math

import keras
import tensorflow as tf

from handwriting import window_backward
from handwriting.lstm import clip_gradient, lstm_bias_initializer, lstm_update, matmul_last_axis


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

    The backward's equations (B1-B9) and its loop are in `handwriting.window_backward`.

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
            return window_backward.sequence_backward(
                upstream, saved, differentiated, chars_onehot, chars_mask, gradient_clip
            )

        outputs = (*saved[:4], h_last, c_last, kappa_last, w_last)
        return outputs, grad

    return run(projected, kernel, attention_kernel, attention_bias, h0, c0, kappa0, w0)


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
