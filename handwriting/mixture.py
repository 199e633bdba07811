"""The output mixture: head tensor -> distribution of the next pen point, loss, and sampling.

The network's head emits a plain tensor of `1 + 6M` values per point (M mixture components),
in this order along the last axis:

    [0]              e_hat        end-of-stroke logit                    (Graves eq. 18)
    [1      : 1+M]   pi_hat       mixture weight logits                  (eq. 19)
    [1+M    : 1+2M]  mu_x         component means, x                     (eq. 20)
    [1+2M   : 1+3M]  mu_y         component means, y                     (eq. 20)
    [1+3M   : 1+4M]  log sigma_x  component log standard deviations, x   (eq. 21)
    [1+4M   : 1+5M]  log sigma_y  component log standard deviations, y   (eq. 21)
    [1+5M   : 1+6M]  rho_hat      raw correlations, rho = tanh(rho_hat)  (eq. 22)

`mixture_parameters` is the one map from that tensor to the parameters, sampling bias
included (Graves eq. 61-62: sigma <- exp(log sigma - b), pi <- softmax(pi_hat (1 + b))).
Everything else calls it:

- `point_distribution`: the TFP distribution of a point (a `MixtureSameFamily` of
  `MultivariateNormalTriL` for the offset, a `Bernoulli` for the end of stroke).
- `point_log_likelihood` / `sequence_loss`: the training loss (Graves eq. 26), the closed-form
  bivariate normal density in log space; tests hold it equal to `point_distribution`'s
  `log_prob`, which costs six times as much in a training step.
- `sample_point`: one draw, plain TF ops with the random numbers as inputs, so that Python,
  SavedModel and TFLite samplers give the same strokes from the same seed.

Shapes: `[...]` is any batch shape (`[B]`, `[B, T]`); M mixture components.

References:
    A. Graves, "Generating Sequences With Recurrent Neural Networks", arXiv:1308.0850, 2013.
"""

import math
from typing import NamedTuple

import tensorflow as tf

# log sigma is clipped to this range (after the bias): sigma in [1.2e-4, 8.1e3] on data
# normalised to unit variance, so z-scores and log densities stay finite in float32.
MIN_LOG_SCALE = -9.0
MAX_LOG_SCALE = 9.0
# |rho| <= 1 - 1e-5 keeps 1 - rho^2 >= 2e-5: the density stays finite and differentiable.
MAX_CORRELATION = 1.0 - 1e-5

_LOG_2PI = math.log(2.0 * math.pi)


def head_size(mixtures: int) -> int:
    """The head's width for `mixtures` components: `1 + 6M`."""
    return 1 + 6 * mixtures


class MixtureParameters(NamedTuple):
    """The parameters of the next point's distribution; all float32."""

    eos_logit: tf.Tensor  # [...]           e_hat; p(eos) = sigmoid(e_hat), eq. 18
    log_weights: tf.Tensor  # [..., M]      log pi, normalised, eq. 19 (with bias: eq. 61)
    mean: tf.Tensor  # [..., M, 2]          (mu_x, mu_y), eq. 20
    log_scale: tf.Tensor  # [..., M, 2]     log (sigma_x, sigma_y), eq. 21 (with bias: eq. 62)
    scale: tf.Tensor  # [..., M, 2]         (sigma_x, sigma_y)
    correlation: tf.Tensor  # [..., M]      rho, eq. 22


def mixture_parameters(head, bias=0.0) -> MixtureParameters:
    """Maps the head's raw output to the mixture's parameters, with sampling bias `bias`.

    Args:
        head: `(..., 1 + 6M)` raw head output (any float dtype; computed in float32).
        bias: b >= 0, a scalar or a tensor of the batch shape `(...)` (e.g. one bias per
            line). 0 is the unbiased model used for the loss.

    Returns:
        `MixtureParameters`, each float32.
    """
    head = tf.cast(head, tf.float32)
    mixtures = (head.shape[-1] - 1) // 6
    if head.shape[-1] is None or head.shape[-1] != head_size(mixtures):
        raise ValueError(
            f"`head` must have 1 + 6M values on its last axis, received shape {head.shape}"
        )
    bias = tf.cast(bias, tf.float32)[..., None]  # [..., 1]
    m = mixtures
    eos_logit = head[..., 0]
    weight_logits = head[..., 1 : 1 + m] * (1.0 + bias)  # eq. 61
    mean = tf.stack([head[..., 1 + m : 1 + 2 * m], head[..., 1 + 2 * m : 1 + 3 * m]], axis=-1)
    log_scale = tf.stack(
        [head[..., 1 + 3 * m : 1 + 4 * m], head[..., 1 + 4 * m : 1 + 5 * m]], axis=-1
    )
    log_scale = tf.clip_by_value(log_scale - bias[..., None], MIN_LOG_SCALE, MAX_LOG_SCALE)  # 62
    correlation = MAX_CORRELATION * tf.tanh(head[..., 1 + 5 * m : 1 + 6 * m])
    return MixtureParameters(
        eos_logit=eos_logit,
        log_weights=tf.nn.log_softmax(weight_logits, axis=-1),
        mean=mean,
        log_scale=log_scale,
        scale=tf.exp(log_scale),
        correlation=correlation,
    )


def _scale_tril(params: MixtureParameters):
    """The Cholesky factor of each component's covariance, `(..., M, 2, 2)`.

    [[sigma_x, 0], [rho sigma_y, sigma_y sqrt(1 - rho^2)]]: offset = mu + L z, z ~ N(0, I).
    """
    sigma_x, sigma_y = params.scale[..., 0], params.scale[..., 1]
    rho = params.correlation
    zeros = tf.zeros_like(rho)
    return tf.stack(
        [
            tf.stack([sigma_x, zeros], axis=-1),
            tf.stack([rho * sigma_y, sigma_y * tf.sqrt((1.0 - rho) * (1.0 + rho))], axis=-1),
        ],
        axis=-2,
    )


class PointDistribution(NamedTuple):
    """The distribution of one pen point `(dx, dy, eos)`; the two parts are independent."""

    offset: object  # tfd.MixtureSameFamily over (dx, dy): batch shape [...], event shape [2]
    end_of_stroke: object  # tfd.Bernoulli over eos in {0, 1}: batch shape [...]

    def log_prob(self, points):
        """Returns log p(points), `(...)`, for points `(..., 3)`."""
        points = tf.cast(points, tf.float32)
        return self.offset.log_prob(points[..., :2]) + self.end_of_stroke.log_prob(points[..., 2])


def point_distribution(head, bias=0.0) -> PointDistribution:
    """Builds the TFP distribution of the next point from the head output (eq. 23-25).

    Args:
        head: `(..., 1 + 6M)` raw head output.
        bias: sampling bias b >= 0, scalar or of the batch shape `(...)`.

    Returns:
        `PointDistribution` with batch shape `(...)`.
    """
    import tensorflow_probability as tfp  # TFP loads tf_keras; only pay for it here.

    tfd = tfp.distributions
    params = mixture_parameters(head, bias)
    offset = tfd.MixtureSameFamily(
        mixture_distribution=tfd.Categorical(logits=params.log_weights),
        components_distribution=tfd.MultivariateNormalTriL(
            loc=params.mean, scale_tril=_scale_tril(params)
        ),
    )
    end_of_stroke = tfd.Bernoulli(logits=params.eos_logit, dtype=tf.float32)
    return PointDistribution(offset=offset, end_of_stroke=end_of_stroke)


def point_log_likelihood(head, points):
    """log p(point | head) of each point (Graves eq. 23-25), in log space.

    Args:
        head: `(..., 1 + 6M)` raw head output.
        points: `(..., 3)` targets `(dx, dy, eos)`.

    Returns:
        `(...)` float32 log-likelihoods (nats).
    """
    params = mixture_parameters(head)
    points = tf.cast(points, tf.float32)
    offset = points[..., None, :2]  # [..., 1, 2]
    z = (offset - params.mean) / params.scale  # [..., M, 2]
    rho = params.correlation  # [..., M]
    one_minus_rho2 = (1.0 - rho) * (1.0 + rho)
    # Z of eq. 25: z_x^2 + z_y^2 - 2 rho z_x z_y
    mahalanobis = tf.square(z[..., 0]) + tf.square(z[..., 1]) - 2.0 * rho * z[..., 0] * z[..., 1]
    log_normal = (
        -0.5 * mahalanobis / one_minus_rho2
        - _LOG_2PI
        - tf.reduce_sum(params.log_scale, axis=-1)
        - 0.5 * tf.math.log(one_minus_rho2)
    )  # [..., M], eq. 24
    log_offset = tf.reduce_logsumexp(params.log_weights + log_normal, axis=-1)
    # log Bernoulli(eos; sigmoid(e_hat)) = -cross_entropy(eos, e_hat)
    log_eos = -tf.nn.sigmoid_cross_entropy_with_logits(
        labels=points[..., 2], logits=params.eos_logit
    )
    return log_offset + log_eos


class SequenceLoss(NamedTuple):
    """The loss of a batch of lines (Graves eq. 26), split so metrics can be reduced exactly."""

    point_nll: tf.Tensor  # [B, T] -log p of each target point, 0 where weight is 0
    line_nll: tf.Tensor  # [B]   sum over the line's points: nats per line
    line_points: tf.Tensor  # [B] weighted number of points of each line

    def nats_per_line(self):
        """Mean over lines that hold at least one point."""
        has_points = tf.cast(self.line_points > 0, tf.float32)
        return tf.reduce_sum(self.line_nll) / tf.maximum(tf.reduce_sum(has_points), 1.0)

    def nats_per_point(self):
        return tf.reduce_sum(self.line_nll) / tf.maximum(tf.reduce_sum(self.line_points), 1.0)


def sequence_loss(head, targets, sample_weight) -> SequenceLoss:
    """Negative log-likelihood of a batch of lines over their valid points.

    Args:
        head: `(B, T, 1 + 6M)` head output.
        targets: `(B, T, 3)` next points.
        sample_weight: `(B, T)`, 1 for real points and 0 for padding.

    Returns:
        `SequenceLoss`.
    """
    weight = tf.cast(sample_weight, tf.float32)
    nll = -point_log_likelihood(head, targets)
    # where, not a product: padding never brings a NaN or inf into the sums.
    point_nll = tf.where(weight > 0, nll * weight, 0.0)
    return SequenceLoss(
        point_nll=point_nll,
        line_nll=tf.reduce_sum(point_nll, axis=-1),
        line_points=tf.reduce_sum(weight, axis=-1),
    )


def sample_point(head, bias, uniforms, normals):
    """Draws one point per row from the (biased) mixture; the randomness is an input.

    Plain TF ops only (no random ops, no TFP), so it converts to TFLite builtins.

    Args:
        head: `(B, 1 + 6M)` head output.
        bias: sampling bias b >= 0, scalar or `(B,)`.
        uniforms: `(B, 2)` uniforms in [0, 1): column 0 picks the component (inverse CDF of
            the weights), column 1 decides the end of stroke (eos = 1 when u < sigmoid(e_hat)).
        normals: `(B, 2)` standard normals z; the offset is mu + L z with L the component's
            Cholesky factor, as `MultivariateNormalTriL` draws it.

    Returns:
        `(B, 3)` float32 points `(dx, dy, eos)`.
    """
    params = mixture_parameters(head, bias)
    uniforms = tf.cast(uniforms, tf.float32)
    normals = tf.cast(normals, tf.float32)
    mixtures = params.log_weights.shape[-1]
    cdf = tf.cumsum(tf.exp(params.log_weights), axis=-1)  # [B, M]
    # Scaled by the last entry so rounding in the softmax never leaves u beyond the CDF.
    below = tf.cast(cdf < uniforms[:, :1] * cdf[:, -1:], tf.int32)
    component = tf.minimum(tf.reduce_sum(below, axis=-1), mixtures - 1)  # [B]
    pick = tf.one_hot(component, mixtures, dtype=tf.float32)  # [B, M]
    mean = tf.reduce_sum(pick[..., None] * params.mean, axis=-2)  # [B, 2]
    scale = tf.reduce_sum(pick[..., None] * params.scale, axis=-2)  # [B, 2]
    rho = tf.reduce_sum(pick * params.correlation, axis=-1)  # [B]
    dx = mean[:, 0] + scale[:, 0] * normals[:, 0]
    dy = mean[:, 1] + scale[:, 1] * (
        rho * normals[:, 0] + tf.sqrt((1.0 - rho) * (1.0 + rho)) * normals[:, 1]
    )
    eos = tf.cast(uniforms[:, 1] < tf.sigmoid(params.eos_logit), tf.float32)
    return tf.stack([dx, dy, eos], axis=-1)
