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
only the recurrent part runs step by step.

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
        dtype = self.compute_dtype
        gates = projected + tf.matmul(tf.concat([w, h], axis=-1), recurrent_kernel)
        gates = clip_gradient(gates, self.gradient_clip)
        h, c = lstm_update(gates, c)
        h = tf.cast(h, dtype)
        alpha, beta, step = self.window_parameters(h)
        kappa = kappa + step  # [B, K], eq. 51
        phi = attention(alpha, beta, kappa, chars_mask)  # [B, U], eq. 46
        phi_row = tf.expand_dims(tf.cast(phi, dtype), 1)  # [B, 1, U]
        w = tf.squeeze(tf.matmul(phi_row, chars_onehot), axis=1)  # [B, V], eq. 47
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
        window = tf.matmul(tf.cast(h, tf.float32), self.attention_kernel) + self.attention_bias
        window = tf.exp(window)  # [B, 3K], eq. 49-51
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


def unroll_window(cell, projected, initial_state, chars_onehot, chars_mask):
    """Runs `cell` over a whole sequence with `tf.while_loop`.

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
    steps = tf.shape(projected)[0]
    kernel = cell.joint_recurrent_kernel()
    sequences = {}

    def recurrent_inputs():
        # [w_{t-1}, h_{t-1}] for t = 0 .. T-1: the outputs shifted by one step.
        w = tf.concat([initial_state[3][None], sequences["w"][:-1]], axis=0)
        h = tf.concat([initial_state[0][None], sequences["h"][:-1]], axis=0)
        return tf.concat([w, h], axis=-1)

    projected = attach_kernel_gradient(projected, kernel, recurrent_inputs)
    loop_kernel = tf.stop_gradient(kernel)
    inputs = tf.TensorArray(projected.dtype, size=steps).unstack(projected)
    dtype = cell.compute_dtype
    outputs = (
        tf.TensorArray(dtype, size=steps),  # h
        tf.TensorArray(dtype, size=steps),  # w
        tf.TensorArray(tf.float32, size=steps),  # phi
        tf.TensorArray(tf.float32, size=steps),  # kappa
    )

    def body(t, state, outputs):
        (h, w, phi), state = cell.step_projected(
            inputs.read(t), list(state), chars_onehot, chars_mask, loop_kernel
        )
        outputs = tuple(
            ta.write(t, v) for ta, v in zip(outputs, (h, w, phi, state[2]), strict=True)
        )
        return t + 1, tuple(state), outputs

    _, final_state, outputs = tf.while_loop(
        lambda t, *_: t < steps,
        body,
        (tf.constant(0), tuple(initial_state), outputs),
        maximum_iterations=steps,
    )
    h, w, phi, kappa = (ta.stack() for ta in outputs)
    sequences.update(h=h, w=w)
    return h, w, phi, kappa, list(final_state)


def attach_kernel_gradient(projected, kernel, recurrent_inputs):
    """Identity on `projected` that gives `kernel` the gradient of a loop's recurrent product.

    A loop computing gates_t = projected_t + r_t kernel, with the kernel's gradient stopped
    inside it, leaves d gates_t = d projected_t; then d kernel = sum_t r_t^T d projected_t is
    one matmul over all steps after the loop, instead of a `(rows, 4 units)` product summed
    into an accumulator at every step.

    Args:
        projected: `(T, B, 4 units)`.
        kernel: `(rows, 4 units)`, differentiable.
        recurrent_inputs: a callable returning r `(T, B, rows)`; it is called when the
            gradient is taken, so it may read the loop's outputs.
    """

    @tf.custom_gradient
    def attach(projected, kernel):
        def grad(upstream):
            inputs = recurrent_inputs()
            rows, columns = tf.shape(inputs)[-1], tf.shape(upstream)[-1]
            dkernel = tf.matmul(
                tf.reshape(inputs, [-1, rows]),
                tf.reshape(upstream, [-1, columns]),
                transpose_a=True,
            )
            return upstream, tf.cast(dkernel, kernel.dtype)

        return tf.identity(projected), grad

    return attach(projected, kernel)
