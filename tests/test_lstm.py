import keras
import numpy as np
import pytest
import tensorflow as tf

from handwriting.lstm import (
    LSTMLayer,
    clip_gradient,
    layer_inputs,
    lstm_sequence,
    lstm_update,
    lstm_update_backward,
)

B, T, H, F = 3, 7, 6, 5  # batch, steps, units, input features


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_lstm_update_matches_numpy_float64():
    rng = np.random.default_rng(0)
    gates, c_prev = rng.normal(size=(B, 4 * H)), rng.normal(size=(B, H))
    h, c, activations = lstm_update(tf.constant(gates, tf.float32), tf.constant(c_prev, tf.float32))
    i, f, g, o = np.split(gates, 4, axis=-1)  # gate order i, f, g, o
    expected_c = _sigmoid(f) * c_prev + _sigmoid(i) * np.tanh(g)
    np.testing.assert_allclose(c, expected_c, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h, _sigmoid(o) * np.tanh(expected_c), rtol=1e-5, atol=1e-6)
    expected = np.concatenate([_sigmoid(i), _sigmoid(f), np.tanh(g), _sigmoid(o)], axis=-1)
    np.testing.assert_allclose(activations, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bound", [0.0, 0.05])
def test_lstm_update_backward_matches_autodiff(bound):
    rng = np.random.default_rng(1)
    gates = tf.constant(rng.normal(size=(B, 4 * H)), tf.float32)
    c_prev = tf.constant(rng.normal(size=(B, H)), tf.float32)
    dh = tf.constant(rng.normal(size=(B, H)), tf.float32)
    dc_next = tf.constant(rng.normal(size=(B, H)), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch([gates, c_prev])
        h, c, activations = lstm_update(clip_gradient(gates, bound), c_prev)
        loss = tf.reduce_sum(h * dh) + tf.reduce_sum(c * dc_next)
    expected_dgates, expected_dc_prev = tape.gradient(loss, [gates, c_prev])
    dgates, dc_prev = lstm_update_backward(dh, dc_next, activations, c_prev, c, bound)
    np.testing.assert_allclose(dgates, expected_dgates, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dc_prev, expected_dc_prev, rtol=1e-5, atol=1e-6)
    if bound:
        unclipped, _ = lstm_update_backward(dh, dc_next, activations, c_prev, c)
        assert np.abs(dgates).max() <= bound < np.abs(unclipped).max()  # the clip acts


def _reference_lstm(projected, kernel, h0, c0, bound):
    """The same recurrence with TF autodiff, clipping through `clip_gradient`; h in the
    dtype of `projected`, c float32 (as `lstm_sequence`)."""
    h, c, hs = h0, c0, []
    for t in range(projected.shape[0]):
        gates = clip_gradient(projected[t] + tf.matmul(h, kernel), bound)
        i, f, g, o = tf.split(tf.cast(gates, tf.float32), 4, axis=-1)
        c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
        h = tf.cast(tf.sigmoid(o) * tf.tanh(c), projected.dtype)
        hs.append(h)
    return tf.stack(hs), h, c


def _sequence_case(dtype, seed=5):
    """Inputs `(projected, kernel, h0, c0)` of `lstm_sequence` in `dtype` (c0 float32), and
    weights that give each of its three outputs a loss."""
    rng = np.random.default_rng(seed)
    projected = tf.constant(rng.normal(size=(T, B, 4 * H)), dtype)
    kernel = tf.constant(rng.normal(size=(H, 4 * H)) * 0.5, dtype)
    h0 = tf.constant(rng.normal(size=(B, H)), dtype)
    c0 = tf.constant(rng.normal(size=(B, H)), tf.float32)
    weights = [tf.constant(rng.normal(size=s), tf.float32) for s in [(T, B, H), (B, H), (B, H)]]
    return [projected, kernel, h0, c0], weights


def _gradients(fn, inputs, weights, bound):
    """`fn`'s outputs and the float32 gradients of their weighted sum for `inputs`."""
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        outs = fn(*inputs, bound)
        loss = sum(
            tf.reduce_sum(tf.cast(o, tf.float32) * w) for o, w in zip(outs, weights, strict=True)
        )
    return outs, [tf.cast(g, tf.float32).numpy() for g in tape.gradient(loss, inputs)]


@pytest.mark.parametrize("bound", [0.0, 0.05])
def test_lstm_backward_matches_autodiff(bound):
    inputs, weights = _sequence_case(tf.float32)
    unclipped = _reference_lstm(*inputs, 0)[0]
    grads = []
    for fn in (lstm_sequence, _reference_lstm):
        outs, fn_grads = _gradients(fn, inputs, weights, bound)
        np.testing.assert_allclose(outs[0], unclipped, atol=1e-6)
        grads.append(fn_grads)
    for ours, theirs, name in zip(*grads, ("projected", "kernel", "h0", "c0"), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5, err_msg=name)
    if bound:
        assert np.abs(grads[0][0]).max() <= bound  # d/d(projected) is d/d(pre-activations)


@pytest.mark.parametrize("bound", [0.0, 0.05])
def test_lstm_backward_matches_autodiff_in_bfloat16(bound):
    # As under mixed_bfloat16: h, the kernel and d/d(pre-activations) are bfloat16, c float32.
    # The two gradients round in different places (autodiff sums dh in bfloat16, the
    # hand-written backward in float32), so they agree to bfloat16's precision (2^-8 per
    # rounding; measured: at most 0.9% of the gradient's norm), not to float32's.
    inputs, weights = _sequence_case(tf.bfloat16)
    outs, grads = _gradients(lstm_sequence, inputs, weights, bound)
    ref_outs, reference = _gradients(_reference_lstm, inputs, weights, bound)
    assert outs[0].dtype == tf.bfloat16 and outs[2].dtype == tf.float32
    for ours, theirs in zip(outs, ref_outs, strict=True):
        np.testing.assert_array_equal(tf.cast(ours, tf.float32), tf.cast(theirs, tf.float32))
    for ours, theirs, name in zip(
        grads, reference, ("projected", "kernel", "h0", "c0"), strict=True
    ):
        error = np.linalg.norm(ours - theirs) / np.linalg.norm(theirs)
        assert error < 0.03, (name, error)
        np.testing.assert_allclose(ours, theirs, atol=0.05 * np.abs(theirs).max(), err_msg=name)
    if bound:
        assert np.abs(grads[0]).max() <= bound * (1 + 2**-8)  # the bound rounded to bfloat16


def test_clip_gradient_clips_only_beyond_the_bound():
    upstream = tf.constant([-50.0, -3.0, 0.5, 7.0, 20.0])
    x = tf.constant([1.0, 2.0, 3.0, 4.0, 5.0])
    for bound, expected in ((5.0, [-5.0, -3.0, 0.5, 5.0, 5.0]), (0.0, upstream.numpy())):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = clip_gradient(x, bound)
            loss = tf.reduce_sum(y * upstream)
        np.testing.assert_array_equal(y, x)  # identity forward
        np.testing.assert_allclose(tape.gradient(loss, x), expected)


def test_layer_inputs_order_is_x_below_window():
    # Graves eq. 1-5 and 52-55: [x_t, h(n-1)_t, w_t]; absent parts are left out.
    assert layer_inputs("x", "h", "w") == ["x", "h", "w"]
    assert layer_inputs("x", window_vector="w") == ["x", "w"]
    assert layer_inputs("x", "h") == ["x", "h"]
    assert layer_inputs("x") == ["x"]


def test_layer_call_is_its_steps_and_config_round_trips():
    keras.utils.set_random_seed(0)
    layer = LSTMLayer(H, gradient_clip=10.0, name="lstm_2")
    inputs = np.random.default_rng(2).normal(size=(B, T, F)).astype(np.float32)
    whole = layer(inputs).numpy()
    assert whole.shape == (B, T, H)
    state = layer.get_initial_state(B)
    for t in range(T):
        h, state = layer.step(layer.project(inputs[:, t]), state)
        np.testing.assert_allclose(h, whole[:, t], atol=1e-6)
    config = layer.get_config()
    assert config["units"] == H and config["gradient_clip"] == 10.0
    assert LSTMLayer.from_config(config).get_config() == config
    with pytest.raises(ValueError, match=r"`units` must be a positive int, received units=0"):
        LSTMLayer(0)
    with pytest.raises(ValueError, match=r"received gradient_clip=-1"):
        LSTMLayer(H, gradient_clip=-1)
