import numpy as np
import pytest
import tensorflow as tf

from handwriting import mixture

B, T, M = 3, 7, 4


def _head(rng, shape=(B, T)):
    head = rng.normal(size=(*shape, 1 + 6 * M))
    head[..., 1 + 3 * M : 1 + 5 * M] *= 0.5  # log sigma within a few e-folds
    return head.astype(np.float32)


def _targets(rng, shape=(B, T)):
    points = rng.normal(size=(*shape, 3))
    points[..., 2] = rng.random(shape) < 0.3
    return points.astype(np.float32)


def _reference_log_likelihood(head, points):
    """Graves eq. 23-26 in numpy float64."""
    head = head.astype(np.float64)
    e_hat = head[..., 0]
    logits = head[..., 1 : 1 + M]
    mu_x, mu_y = head[..., 1 + M : 1 + 2 * M], head[..., 1 + 2 * M : 1 + 3 * M]
    sx = np.exp(head[..., 1 + 3 * M : 1 + 4 * M])
    sy = np.exp(head[..., 1 + 4 * M : 1 + 5 * M])
    rho = (1 - 1e-5) * np.tanh(head[..., 1 + 5 * M :])
    x, y, eos = points[..., :1], points[..., 1:2], points[..., 2]
    zx, zy = (x - mu_x) / sx, (y - mu_y) / sy
    z = zx**2 + zy**2 - 2 * rho * zx * zy
    log_n = -z / (2 * (1 - rho**2)) - np.log(2 * np.pi * sx * sy * np.sqrt(1 - rho**2))
    log_pi = logits - np.log(np.sum(np.exp(logits), -1, keepdims=True))
    a = log_pi + log_n
    top = a.max(-1, keepdims=True)
    log_offset = (top + np.log(np.sum(np.exp(a - top), -1, keepdims=True)))[..., 0]
    p_eos = 1 / (1 + np.exp(-e_hat))
    return log_offset + np.where(eos > 0.5, np.log(p_eos), np.log(1 - p_eos))


def test_parameters_layout_and_bias():
    rng = np.random.default_rng(0)
    head = _head(rng)
    p = mixture.mixture_parameters(head, bias=0.5)
    np.testing.assert_allclose(p.eos_logit, head[..., 0])
    logits = head[..., 1 : 1 + M] * 1.5  # eq. 61
    expected = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    np.testing.assert_allclose(p.log_weights, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(p.mean[..., 1], head[..., 1 + 2 * M : 1 + 3 * M])
    np.testing.assert_allclose(  # eq. 62
        p.scale[..., 0], np.exp(head[..., 1 + 3 * M : 1 + 4 * M] - 0.5), rtol=1e-5
    )
    np.testing.assert_allclose(
        p.correlation, (1 - 1e-5) * np.tanh(head[..., 1 + 5 * M :]), rtol=1e-5
    )
    assert p.mean.shape == (B, T, M, 2) and p.scale.shape == (B, T, M, 2)
    with pytest.raises(
        ValueError, match=r"1 \+ 6M values on its last axis, received shape \(3, 7, 9\)"
    ):
        mixture.mixture_parameters(np.zeros((B, T, 9), np.float32))


def test_log_likelihood_against_numpy_and_tfp():
    rng = np.random.default_rng(1)
    head, points = _head(rng), _targets(rng)
    ours = mixture.point_log_likelihood(head, points).numpy()
    np.testing.assert_allclose(ours, _reference_log_likelihood(head, points), rtol=1e-5, atol=1e-4)
    tfp_log_prob = mixture.point_distribution(head).log_prob(points).numpy()
    np.testing.assert_allclose(ours, tfp_log_prob, rtol=1e-5, atol=1e-4)


def test_log_likelihood_stays_finite_at_extremes():
    head = np.zeros((2, 1 + 6 * M), np.float32)
    head[:, 1 + 3 * M : 1 + 5 * M] = [[-60.0], [60.0]]  # sigma far beyond the bounds
    head[:, 1 + 5 * M :] = 30.0  # rho -> 1
    points = np.array([[3.0, -2.0, 1.0], [1e3, 1e3, 0.0]], np.float32)
    with tf.GradientTape() as tape:
        head_t = tf.constant(head)
        tape.watch(head_t)
        ll = mixture.point_log_likelihood(head_t, points)
    assert np.all(np.isfinite(ll.numpy()))
    assert np.all(np.isfinite(tape.gradient(ll, head_t).numpy()))


def test_sequence_loss_masks_padding():
    rng = np.random.default_rng(2)
    head, targets = _head(rng), _targets(rng)
    weight = np.ones((B, T), np.float32)
    weight[0, 5:] = 0
    weight[2, 2:] = 0
    loss = mixture.sequence_loss(head, targets, weight)
    reference = -_reference_log_likelihood(head, targets) * weight
    np.testing.assert_allclose(loss.line_nll, reference.sum(-1), rtol=1e-5)
    np.testing.assert_allclose(loss.line_points, [5, 7, 2])
    np.testing.assert_allclose(loss.nats_per_line(), reference.sum() / 3, rtol=1e-5)
    np.testing.assert_allclose(loss.nats_per_point(), reference.sum() / 14, rtol=1e-5)
    # Whatever sits in the padding changes nothing, even values that overflow.
    head2, targets2 = head.copy(), targets.copy()
    head2[0, 5:] = 1e30
    targets2[2, 2:] = np.nan
    loss2 = mixture.sequence_loss(head2, targets2, weight)
    np.testing.assert_allclose(loss2.line_nll, loss.line_nll)
    # A line without points does not count as a line.
    weight[1] = 0
    loss3 = mixture.sequence_loss(head, targets, weight)
    np.testing.assert_allclose(
        loss3.nats_per_line(), (reference[0].sum() + reference[2].sum()) / 2, rtol=1e-5
    )


def test_sample_point_matches_the_tfp_distribution_draw_by_draw():
    rng = np.random.default_rng(3)
    head = _head(rng, (B,))
    uniforms = rng.random((B, 2)).astype(np.float32)
    normals = rng.normal(size=(B, 2)).astype(np.float32)
    bias = np.array([0.0, 0.7, 2.0], np.float32)
    points = mixture.sample_point(head, bias, uniforms, normals).numpy()
    dist = mixture.point_distribution(head, bias)
    probs = dist.offset.mixture_distribution.probs_parameter().numpy()
    component = np.array(
        [np.searchsorted(np.cumsum(p), u) for p, u in zip(probs, uniforms[:, 0], strict=True)]
    )
    loc = dist.offset.components_distribution.loc.numpy()
    tril = dist.offset.components_distribution.scale.to_dense().numpy()
    rows = np.arange(B)
    expected = loc[rows, component] + np.einsum("bij,bj->bi", tril[rows, component], normals)
    np.testing.assert_allclose(points[:, :2], expected, rtol=1e-5, atol=1e-5)
    p_eos = dist.end_of_stroke.probs_parameter().numpy()
    np.testing.assert_array_equal(points[:, 2], (uniforms[:, 1] < p_eos).astype(np.float32))


def test_sample_point_moments_match_tfp():
    rng = np.random.default_rng(4)
    draws = 40000
    head = np.repeat(_head(rng, (1,)), draws, axis=0)
    uniforms = rng.random((draws, 2)).astype(np.float32)
    normals = rng.normal(size=(draws, 2)).astype(np.float32)
    points = mixture.sample_point(head, 0.0, uniforms, normals).numpy()
    dist = mixture.point_distribution(head[:1])
    np.testing.assert_allclose(points[:, :2].mean(0), dist.offset.mean().numpy()[0], atol=0.05)
    np.testing.assert_allclose(
        np.cov(points[:, :2].T), dist.offset.covariance().numpy()[0], atol=0.1
    )
    np.testing.assert_allclose(points[:, 2].mean(), dist.end_of_stroke.mean().numpy()[0], atol=0.01)


def test_bias_shrinks_the_spread():
    rng = np.random.default_rng(5)
    draws = 5000
    head = np.repeat(_head(rng, (1,)), draws, axis=0)
    uniforms = rng.random((draws, 2)).astype(np.float32)
    normals = rng.normal(size=(draws, 2)).astype(np.float32)
    spread = [
        np.trace(np.cov(mixture.sample_point(head, b, uniforms, normals).numpy()[:, :2].T))
        for b in (0.0, 1.0, 3.0)
    ]
    assert spread[0] > spread[1] > spread[2]
    # A large bias leaves only the most likely component.
    best = np.argmax(head[0, 1 : 1 + M])
    head[:, 1 + best] += 1.0
    points = mixture.sample_point(head, 50.0, uniforms, normals).numpy()
    mu = head[0, [1 + M + best, 1 + 2 * M + best]]
    np.testing.assert_allclose(points[:, :2], np.broadcast_to(mu, (draws, 2)), atol=1e-3)
