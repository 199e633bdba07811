"""The LSTM of Graves (2013, eq. 7-11, without peepholes): its step, its backward step, a layer.

Forward, from the pre-activations a = x W + h_{t-1} W_r + b `(B, 4H)` in gate order i, f, g, o
(as Keras), with sigm the logistic sigmoid:

    i = sigm(a_i), f = sigm(a_f), o = sigm(a_o)                      eq. 7, 8, 10
    g = tanh(a_g);  c_t = f c_{t-1} + i g                            eq. 9
    h_t = o tanh(c_t)                                                eq. 11

Backward (`lstm_update_backward`), from dh = dL/dh_t (every path) and dc_next = dL/dc_t through
c_{t+1} only, with the activations i, f, g, o saved by the forward:

    dc       = dc_next + dh o (1 - tanh(c_t)^2)                               (L1)
    da       = [dc g i (1 - i), dc c_{t-1} f (1 - f), dc i (1 - g^2),
                dh tanh(c_t) o (1 - o)]                                       (L2)
    da       = clip(da, -v, v), Graves' derivative clip (section 4.2)         (L3)
    dc_{t-1} = dc f                                                           (L4)

`lstm_sequence` runs the recurrence over a whole sequence in a `tf.while_loop` with that
backward written out: the loop carries only `h W_r`, and the gradient of W_r is one matmul
over all steps after the loop (measured on a 2-core CPU at the paper's sizes, faster forward
+ backward than `keras.layers.LSTM`, and it carries the clip). Under the `mixed_bfloat16`
policy the matmuls run in bfloat16 while the cell state c and the activations stay float32.

A layer reads its inputs in the order `layer_inputs` gives, [x, h(n-1), w] (Graves eq. 1-5
and 52-55); the model, its step and the TFLite export all go through it.

Axes: B batch, T pen steps, H units.
"""

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


def kernel_gradient(inputs, doutputs):
    """dL/d(kernel) of `inputs @ kernel`: the sum of `x^T dy` over all leading positions.

    `(..., n)`, `(..., m)` -> `(n, m)`, one 2-D matmul (the reshape of `matmul_last_axis`).
    """
    flat = [tf.reshape(v, [-1, tf.shape(v)[-1]]) for v in (inputs, doutputs)]
    return tf.matmul(flat[0], flat[1], transpose_a=True)


def lstm_bias_initializer(units: int):
    """Zero bias except the forget gate's, which starts at 1 (Jozefowicz et al., 2015)."""

    def initializer(shape, dtype=None):
        bias = tf.concat([tf.zeros([units]), tf.ones([units]), tf.zeros([2 * units])], 0)
        return tf.cast(bias, dtype or "float32")

    return initializer


def layer_inputs(points, below=None, window_vector=None) -> list:
    """The inputs of one stacked layer in the order it reads them: `[x, h(n-1), w]`.

    The skip connections of Graves eq. 1-5 and 52-55: every layer reads the input points and
    (synthesis) the window vector w_t, and layer n > 1 the output of layer n - 1. The same
    order stacks the rows of a layer's input kernel (as the TFLite export does), so the
    arguments may be tensors or kernel blocks.

    Args:
        points: x_t, `(..., 3)`, or its kernel rows.
        below: h(n-1) of the layer below, or None for the first layer.
        window_vector: w_t (synthesis), or None.

    Returns:
        The list of the given parts, to concatenate along the last axis.
    """
    return [part for part in (points, below, window_vector) if part is not None]


def lstm_update(gates, cell_state):
    """One LSTM step (eq. 7-11) from pre-activations `(B, 4H)` in gate order i, f, g, o.

    Returns:
        `(h, c, activations)`, float32: h_t and c_t `(B, H)`, and i, f, g, o after their
        nonlinearities `(B, 4H)`, which `lstm_update_backward` reads.
    """
    i, f, g, o = tf.split(tf.cast(gates, tf.float32), 4, axis=-1)
    i, f, g, o = tf.sigmoid(i), tf.sigmoid(f), tf.tanh(g), tf.sigmoid(o)
    cell_state = f * cell_state + i * g
    return o * tf.tanh(cell_state), cell_state, tf.concat([i, f, g, o], axis=-1)


def lstm_update_backward(dh, dc_next, activations, c_prev, c, gradient_clip=0.0):
    """The derivatives of one `lstm_update` (equations L1-L4 of the module docstring).

    Args:
        dh: `(B, H)` dL/dh_t along every path; dc_next: `(B, H)` dL/dc_t through c_{t+1}.
        activations: `(B, 4H)` the step's `lstm_update` activations.
        c_prev, c: `(B, H)` c_{t-1} and c_t.
        gradient_clip: v of the clip (L3); 0 turns it off.

    Returns:
        `(dgates, dc_prev)`: dL/d(pre-activations) `(B, 4H)` and dL/dc_{t-1} `(B, H)`, float32.
    """
    i, f, g, o = tf.split(activations, 4, axis=-1)
    tanh_c = tf.tanh(c)
    dc = dc_next + dh * o * (1.0 - tf.square(tanh_c))  # (L1)
    dgates = tf.concat(  # (L2)
        [
            dc * g * i * (1.0 - i),
            dc * c_prev * f * (1.0 - f),
            dc * i * (1.0 - tf.square(g)),
            dh * tanh_c * o * (1.0 - o),
        ],
        axis=-1,
    )
    if gradient_clip:
        dgates = tf.clip_by_value(dgates, -gradient_clip, gradient_clip)  # (L3)
    return dgates, dc * f  # (L4)


def lstm_sequence(projected, recurrent_kernel, h0, c0, gradient_clip=0.0):
    """Runs an LSTM recurrence over precomputed input projections.

    Args:
        projected: `(T, B, 4H)` x_t W + b, time-major, gate order i, f, g, o.
        recurrent_kernel: `(H, 4H)` W_r.
        h0: `(B, H)` initial output; c0: `(B, H)` float32 initial cell state.
        gradient_clip: clip of the derivatives with respect to the gate pre-activations
            (Graves section 4.2); 0 turns it off.

    Returns:
        `(h, h_last, c_last)`: `(T, B, H)` outputs in `projected`'s dtype, and the final state.
    """
    dtype = projected.dtype

    @tf.custom_gradient
    def run(projected, kernel, h0, c0):
        steps = tf.shape(projected)[0]
        inputs = tf.TensorArray(dtype, size=steps).unstack(projected)
        hs = tf.TensorArray(dtype, size=steps)
        cs = tf.TensorArray(tf.float32, size=steps)
        activations = tf.TensorArray(tf.float32, size=steps)

        def body(t, h, c, hs, cs, activations):
            h, c, act = lstm_update(inputs.read(t) + tf.matmul(h, kernel), c)
            h = tf.cast(h, dtype)
            return t + 1, h, c, hs.write(t, h), cs.write(t, c), activations.write(t, act)

        _, h_last, c_last, hs, cs, activations = tf.while_loop(
            lambda t, *_: t < steps,
            body,
            (tf.constant(0), h0, c0, hs, cs, activations),
            maximum_iterations=steps,
        )
        h_seq, c_seq, act_seq = hs.stack(), cs.stack(), activations.stack()

        def grad(dh_seq, dh_last, dc_last):
            dh_seq = tf.zeros_like(h_seq) if dh_seq is None else dh_seq
            dh_seq = tf.cast(dh_seq, tf.float32)
            dh_last = tf.zeros_like(c0) if dh_last is None else tf.cast(dh_last, tf.float32)
            dc_last = tf.zeros_like(c0) if dc_last is None else tf.cast(dc_last, tf.float32)
            c_prev_seq = tf.concat([c0[None], c_seq[:-1]], axis=0)
            kernel_t = tf.transpose(kernel)

            def back(t, dh_next, dc_next, dgates_ta):
                dgates, dc_prev = lstm_update_backward(
                    dh_seq[t] + dh_next, dc_next, act_seq[t], c_prev_seq[t], c_seq[t], gradient_clip
                )
                dgates = tf.cast(dgates, dtype)
                dh_next = tf.cast(tf.matmul(dgates, kernel_t), tf.float32)
                return t - 1, dh_next, dc_prev, dgates_ta.write(t, dgates)

            _, dh0, dc0, dgates_ta = tf.while_loop(
                lambda t, *_: t >= 0,
                back,
                (steps - 1, dh_last, dc_last, tf.TensorArray(dtype, size=steps)),
                maximum_iterations=steps,
            )
            dgates_seq = dgates_ta.stack()  # [T, B, 4H]
            h_prev = tf.concat([h0[None], h_seq[:-1]], axis=0)
            dkernel = tf.cast(kernel_gradient(h_prev, dgates_seq), kernel.dtype)
            return dgates_seq, dkernel, tf.cast(dh0, h0.dtype), dc0

        return (h_seq, h_last, c_last), grad

    return run(projected, tf.cast(recurrent_kernel, dtype), tf.cast(h0, dtype), c0)


@keras.saving.register_keras_serializable(package="handwriting")
class LSTMLayer(keras.layers.Layer):
    """An LSTM layer (no peepholes) driven over whole sequences by `lstm_sequence`.

    Args:
        units: H, LSTM cells.
        gradient_clip: clip of the derivatives with respect to the gate pre-activations,
            `[-v, v]`; 0 turns it off.

    Call arguments:
        inputs: `(batch, timesteps, features)`.
        initial_state: optional `[h (batch, units), c (batch, units)]`.

    Returns:
        `(batch, timesteps, units)`.
    """

    def __init__(self, units, gradient_clip=0.0, **kwargs):
        # The layer casts for itself: c stays float32 under a mixed policy, which
        # Keras' autocasting of call arguments would round to the compute dtype.
        kwargs["autocast"] = False
        super().__init__(**kwargs)
        if not isinstance(units, int) or isinstance(units, bool) or units < 1:
            raise ValueError(f"`units` must be a positive int, received units={units!r}")
        if not gradient_clip >= 0:
            raise ValueError(
                f"`gradient_clip` must be >= 0 (0: off), received gradient_clip={gradient_clip!r}"
            )
        self.units = units
        self.gradient_clip = float(gradient_clip)

    @property
    def state_size(self):
        return [self.units, self.units]

    def build(self, input_shape):
        units = self.units
        self.kernel = self.add_weight(
            shape=(input_shape[-1], 4 * units), initializer="glorot_uniform", name="kernel"
        )
        self.recurrent_kernel = self.add_weight(
            shape=(units, 4 * units), initializer="orthogonal", name="recurrent_kernel"
        )
        self.bias = self.add_weight(
            shape=(4 * units,), initializer=lstm_bias_initializer(units), name="bias"
        )
        self.built = True

    def get_initial_state(self, batch_size):
        return [
            tf.zeros([batch_size, self.units], self.compute_dtype),  # h
            tf.zeros([batch_size, self.units], tf.float32),  # c
        ]

    def project(self, inputs):
        """x W + b for inputs of any leading shape: `(..., features)` -> `(..., 4 units)`."""
        dtype = self.compute_dtype
        kernel = tf.cast(self.kernel, dtype)
        return matmul_last_axis(tf.cast(inputs, dtype), kernel) + tf.cast(self.bias, dtype)

    def step(self, projected, state):
        """One step from `project`'s output `(batch, 4 units)`; returns `(h, [h, c])`."""
        h, c = state
        dtype = self.compute_dtype
        gates = projected + tf.matmul(h, tf.cast(self.recurrent_kernel, dtype))
        h, c, _ = lstm_update(gates, c)
        h = tf.cast(h, dtype)
        return h, [h, c]

    def unroll(self, projected, state):
        """Runs over `(T, batch, 4 units)` projections; returns `(h (T, batch, units), state)`."""
        h_seq, h, c = lstm_sequence(
            projected, self.recurrent_kernel, state[0], state[1], self.gradient_clip
        )
        return h_seq, [h, c]

    def call(self, inputs, initial_state=None):
        if initial_state is None:
            initial_state = self.get_initial_state(tf.shape(inputs)[0])
        projected = self.project(tf.transpose(inputs, [1, 0, 2]))
        h_seq, _ = self.unroll(projected, initial_state)
        return tf.transpose(h_seq, [1, 0, 2])

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units, "gradient_clip": self.gradient_clip})
        return config
