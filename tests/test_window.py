import numpy as np
import pytest
import tensorflow as tf

from handwriting.window import WindowCell, attention, unroll_window

B, T, U, V, K, H = 3, 7, 5, 11, 2, 6


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _cell(seed=0, **kwargs):
    cell = WindowCell(H, K, V, window_step_init=0.3, **kwargs)
    cell.build((None, 3))
    rng = np.random.default_rng(seed)
    # Weights that make alpha, beta and the step differ between Gaussians and lines.
    cell.attention_kernel.assign(rng.normal(size=(H, 3 * K)).astype(np.float32) * 0.8)
    cell.attention_bias.assign(rng.normal(size=(3 * K,)).astype(np.float32) * 0.3)
    cell.bias.assign(rng.normal(size=(4 * H,)).astype(np.float32) * 0.3)
    return cell


def _text(seed=0, lengths=(5, 3, 4)):
    rng = np.random.default_rng(seed)
    chars = rng.integers(2, V, size=(B, U)).astype(np.int32)
    mask = np.arange(U)[None, :] < np.array(lengths)[:, None]
    chars[~mask] = 0
    return chars, mask


def _reference(cell, points, chars, mask):
    """Graves eq. 46-51 and the LSTM in numpy float64, step by step."""
    w_x, w_w, w_r, b, w_a, b_a = (
        v.numpy().astype(np.float64)
        for v in (
            cell.input_kernel,
            cell.window_kernel,
            cell.recurrent_kernel,
            cell.bias,
            cell.attention_kernel,
            cell.attention_bias,
        )
    )
    onehot = np.eye(V)[chars]  # [B, U, V]
    h, c = np.zeros((B, H)), np.zeros((B, H))
    kappa, w = np.zeros((B, K)), np.zeros((B, V))
    out = {"h": [], "w": [], "phi": [], "kappa": []}
    for t in range(points.shape[1]):
        gates = points[:, t] @ w_x + w @ w_w + h @ w_r + b
        i, f, g, o = np.split(gates, 4, axis=-1)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        window = np.exp(h @ w_a + b_a)
        alpha, beta, step = window[:, :K], window[:, K : 2 * K], window[:, 2 * K :]
        kappa = kappa + step
        u = np.arange(chars.shape[1])
        phi = np.sum(alpha[..., None] * np.exp(-beta[..., None] * (kappa[..., None] - u) ** 2), 1)
        phi = phi * mask
        w = np.einsum("bu,buv->bv", phi, onehot)
        for key, value in (("h", h), ("w", w), ("phi", phi), ("kappa", kappa)):
            out[key].append(value)
    return {k: np.stack(v, 1) for k, v in out.items()}


def _unroll(cell, points, chars, mask):
    x = tf.transpose(tf.constant(points, tf.float32), [1, 0, 2])
    onehot = tf.one_hot(chars, V)
    h, w, phi, kappa, state = unroll_window(
        cell, cell.project_inputs(x), cell.get_initial_state(B), onehot, tf.cast(mask, tf.float32)
    )
    out = {"h": h, "w": w, "phi": phi, "kappa": kappa}
    return {k: np.transpose(v.numpy(), [1, 0, 2]) for k, v in out.items()}, state


def test_unroll_matches_numpy_float64():
    cell = _cell()
    chars, mask = _text()
    points = np.random.default_rng(1).normal(size=(B, T, 3)).astype(np.float32)
    ours, state = _unroll(cell, points, chars, mask)
    ref = _reference(cell, points.astype(np.float64), chars, mask)
    for key in ("h", "w", "phi", "kappa"):
        np.testing.assert_allclose(ours[key], ref[key], rtol=1e-4, atol=1e-5, err_msg=key)
    assert ours["phi"].shape == (B, T, U) and ours["w"].shape == (B, T, V)
    np.testing.assert_allclose(state[2], ref["kappa"][:, -1], rtol=1e-5)
    # kappa only moves forward (eq. 51) and phi is zero at padding characters.
    assert np.all(np.diff(ours["kappa"], axis=1) > 0)
    assert np.all(ours["phi"][~np.broadcast_to(mask[:, None, :], (B, T, U))] == 0)


def test_cell_call_is_one_step_of_the_unroll():
    cell = _cell()
    chars, mask = _text()
    points = np.random.default_rng(2).normal(size=(B, T, 3)).astype(np.float32)
    ours, _ = _unroll(cell, points, chars, mask)
    state = cell.get_initial_state(B)
    onehot, maskf = tf.one_hot(chars, V), tf.cast(mask, tf.float32)
    for t in range(T):
        (h, w, phi), state = cell(points[:, t], state, chars_onehot=onehot, chars_mask=maskf)
        np.testing.assert_allclose(h, ours["h"][:, t], atol=1e-6)
        np.testing.assert_allclose(phi, ours["phi"][:, t], atol=1e-6)
        np.testing.assert_allclose(w, ours["w"][:, t], atol=1e-6)


def test_padding_characters_change_nothing():
    cell = _cell()
    chars, mask = _text()
    points = np.random.default_rng(3).normal(size=(B, T, 3)).astype(np.float32)
    ours, _ = _unroll(cell, points, chars, mask)
    # Three more padding positions, filled with real-looking ids: masked, they must not count.
    wide_chars = np.concatenate([chars, np.full((B, 3), 4, np.int32)], axis=1)
    wide_mask = np.concatenate([mask, np.zeros((B, 3), bool)], axis=1)
    wide, _ = _unroll(cell, points, wide_chars, wide_mask)
    np.testing.assert_allclose(wide["h"], ours["h"], atol=1e-6)
    np.testing.assert_allclose(wide["w"], ours["w"], atol=1e-6)
    np.testing.assert_allclose(wide["phi"][..., :U], ours["phi"], atol=1e-6)
    assert np.all(wide["phi"][..., U:] == 0)


def test_initial_window_step_is_window_step_init():
    cell = WindowCell(H, K, V, window_step_init=0.05)
    cell.build((None, 3))
    cell.attention_kernel.assign(np.zeros((H, 3 * K), np.float32))
    chars, mask = _text()
    ours, _ = _unroll(cell, np.zeros((B, 2, 3), np.float32), chars, mask)
    np.testing.assert_allclose(ours["kappa"][:, 0], 0.05, rtol=1e-6)
    np.testing.assert_allclose(ours["kappa"][:, 1], 0.10, rtol=1e-6)


def test_attention_formula():
    alpha = np.array([[1.0, 0.5]], np.float32)
    beta = np.array([[2.0, 0.25]], np.float32)
    kappa = np.array([[1.5, 3.0]], np.float32)
    mask = np.array([[1, 1, 1, 1, 0]], np.float32)
    phi = attention(alpha, beta, kappa, mask).numpy()
    u = np.arange(5)
    expected = np.exp(-2.0 * (1.5 - u) ** 2) + 0.5 * np.exp(-0.25 * (3.0 - u) ** 2)
    np.testing.assert_allclose(phi[0], expected * mask[0], rtol=1e-6)


def test_cell_gradient_clip_bounds_the_pre_activation_derivatives():
    chars, mask = _text()
    points = np.random.default_rng(4).normal(size=(B, T, 3)).astype(np.float32) * 30

    def bias_grad(cell, scale):
        with tf.GradientTape() as tape:
            x = tf.transpose(tf.constant(points), [1, 0, 2])
            h, *_ = unroll_window(
                cell,
                cell.project_inputs(x),
                cell.get_initial_state(B),
                tf.one_hot(chars, V),
                tf.cast(mask, tf.float32),
            )
            loss = scale * tf.reduce_sum(h)
        return tape.gradient(loss, cell.bias).numpy()

    free, clipped = _cell(), _cell(gradient_clip=0.01)
    clipped.set_weights(free.get_weights())
    # The bias gradient is the sum over steps and lines of d loss / d gates.
    small_free, small_clipped = bias_grad(free, 1e-4), bias_grad(clipped, 1e-4)
    np.testing.assert_allclose(small_clipped, small_free, rtol=1e-5)  # inside: untouched
    big_clipped = bias_grad(clipped, 1e4)
    assert np.abs(big_clipped).max() <= 0.01 * B * T * (1 + 1e-5)
    assert np.abs(bias_grad(free, 1e4)).max() > 0.01 * B * T


def test_config_round_trip_and_validation():
    cell = WindowCell(H, K, V, window_step_init=0.07, gradient_clip=10.0, name="w1")
    config = cell.get_config()
    assert config["units"] == H and config["alphabet_size"] == V and config["name"] == "w1"
    clone = WindowCell.from_config(config)
    assert clone.get_config() == config
    assert cell.state_size == [H, H, K, V]
    with pytest.raises(ValueError, match=r"`units` must be a positive int, received units=0"):
        WindowCell(0, K, V)
    with pytest.raises(ValueError, match=r"received alphabet_size=2.5"):
        WindowCell(H, K, 2.5)
    with pytest.raises(ValueError, match=r"received window_step_init=0"):
        WindowCell(H, K, V, window_step_init=0)
    with pytest.raises(ValueError, match=r"received gradient_clip=-1"):
        WindowCell(H, K, V, gradient_clip=-1)


def _unroll_and_step_gradients(cell):
    """The gradients of one loss through `unroll_window` (the hand-written backward) and
    through autodiff of the cell's own step in a plain loop, and the names of the sources.

    Every output (h, w, phi, kappa and the final state) carries a loss, and the initial
    state is not zero.
    """
    chars, mask = _text()
    rng = np.random.default_rng(6)
    points = tf.constant(rng.normal(size=(B, T, 3)).astype(np.float32))
    shapes = [(B, T, H), (B, T, V), (B, T, U), (B, T, K), (B, H), (B, H), (B, K), (B, V)]
    weights = [rng.normal(size=s).astype(np.float32) for s in shapes]
    start = [
        tf.constant(rng.normal(size=s).astype(np.float32) * scale)
        for s, scale in (((B, H), 0.5), ((B, H), 0.5), ((B, K), 1.0), ((B, V), 0.3))
    ]
    start[2] = tf.abs(start[2])
    onehot, maskf = tf.one_hot(chars, V, dtype=cell.compute_dtype), tf.cast(mask, tf.float32)

    def loss_of(outputs):
        return sum(
            tf.reduce_sum(tf.cast(a, tf.float32) * b) for a, b in zip(outputs, weights, strict=True)
        )

    sources = [points, *start, *cell.trainable_variables]
    with tf.GradientTape() as tape:
        tape.watch([points, *start])
        x = tf.transpose(points, [1, 0, 2])
        h, w, phi, kappa, state = unroll_window(
            cell, cell.project_inputs(x), list(start), onehot, maskf
        )
        sequences = [tf.transpose(v, [1, 0, 2]) for v in (h, w, phi, kappa)]
        loss = loss_of(sequences + list(state))
    ours = tape.gradient(loss, sources)
    with tf.GradientTape() as tape:
        tape.watch([points, *start])
        dtypes = [s.dtype for s in cell.get_initial_state(B)]  # h and w in the compute dtype
        state = [tf.cast(v, dtype) for v, dtype in zip(start, dtypes, strict=True)]
        outs = []
        for t in range(T):
            (h, w, phi), state = cell(points[:, t], state, chars_onehot=onehot, chars_mask=maskf)
            outs.append((h, w, phi, state[2]))
        sequences = [tf.stack(v, 1) for v in zip(*outs, strict=True)]
        loss = loss_of(sequences + list(state))
    reference = tape.gradient(loss, sources)
    names = ["points", "h0", "c0", "kappa0", "w0"] + [v.name for v in cell.trainable_variables]
    return ours, reference, names


def test_unroll_gradient_matches_step_by_step_autodiff():
    # The clip acts: the hand-written backward of `unroll_window` must give the gradients
    # autodiff gives through the cell's own step.
    ours, reference, names = _unroll_and_step_gradients(_cell(gradient_clip=0.5))
    for a, b, name in zip(ours, reference, names, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=name)
        assert np.abs(np.asarray(b)).max() > 0, name  # every gradient is exercised


@pytest.mark.parametrize("clip", [0.0, 0.5])
def test_unroll_gradient_matches_step_by_step_autodiff_in_bfloat16(clip):
    # Under mixed_bfloat16 the LSTM matmuls, h and w are bfloat16 (c, kappa, phi and the
    # window params float32). Autodiff sums the derivatives of h and w in bfloat16 where the
    # hand-written backward sums them in float32, so the two agree to bfloat16's precision
    # (2^-8 per rounding; measured: below 1% of a gradient's norm), not to float32's.
    cell = _cell(gradient_clip=clip, dtype="mixed_bfloat16")
    assert cell.compute_dtype == "bfloat16"
    ours, reference, names = _unroll_and_step_gradients(cell)
    for a, b, name in zip(ours, reference, names, strict=True):
        a, b = (tf.cast(v, tf.float32).numpy() for v in (a, b))
        assert np.abs(b).max() > 0, name  # every gradient is exercised
        error = np.linalg.norm(a - b) / np.linalg.norm(b)
        assert error < 0.03, (name, error)
        np.testing.assert_allclose(a, b, atol=0.03 * np.abs(b).max(), err_msg=name)
