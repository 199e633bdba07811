import numpy as np

from handwriting.guided_attention import DIAGONAL_GUIDE_WIDTH, GUIDE_WIDTH, guided_attention


def _guided_reference(phi, alignment, steps_mask, chars_mask):
    """`guided_attention` in float64 numpy, point by point."""
    out = np.zeros(phi.shape[0])
    for b in range(phi.shape[0]):
        steps, chars = int(steps_mask[b].sum()), int(chars_mask[b].sum())
        aligned = (alignment[b] >= 0).any()
        for t in range(steps):
            if aligned and alignment[b, t] < 0:
                continue
            if aligned:
                target, width = float(alignment[b, t]), GUIDE_WIDTH
            else:
                target = (t + 0.5) * chars / steps - 0.5
                width = DIAGONAL_GUIDE_WIDTH
            weights = phi[b, t, :chars].astype(np.float64)
            close = np.exp(-((np.arange(chars) - target) ** 2) / (2 * width**2))
            share = (weights * close).sum() / (weights.sum() + 1e-8)
            out[b] += -np.log(share + 1e-6)
    return out


def test_guided_attention_matches_a_numpy_reference():
    rng = np.random.default_rng(4)
    batch, steps, chars = 3, 7, 5
    phi = rng.random((batch, steps, chars)).astype(np.float32) ** 3
    steps_mask = np.zeros((batch, steps), bool)
    steps_mask[0, :7], steps_mask[1, :5], steps_mask[2, :6] = True, True, True
    chars_mask = np.zeros((batch, chars), bool)
    chars_mask[0, :5], chars_mask[1, :3], chars_mask[2, :4] = True, True, True
    phi *= chars_mask[:, None, :]  # the window gives padding characters no weight
    alignment = -np.ones((batch, steps), np.int32)
    alignment[0] = [0, 0, 1, 2, 3, 4, 4]  # aligned
    alignment[2, :6] = [0, 1, -1, 2, 3, 3]  # aligned, one point unknown
    # line 1 has no alignment: the diagonal
    got = guided_attention(phi, alignment, steps_mask, chars_mask).numpy()
    np.testing.assert_allclose(
        got, _guided_reference(phi, alignment, steps_mask, chars_mask), rtol=1e-5
    )
    # All the weight on the right character: no loss; moving it away raises it.
    perfect = np.zeros_like(phi)
    perfect[0, np.arange(steps), alignment[0]] = 2.5
    assert guided_attention(perfect, alignment, steps_mask, chars_mask).numpy()[0] < 1e-5
    shifted = np.roll(perfect, 1, axis=2)
    assert guided_attention(shifted, alignment, steps_mask, chars_mask).numpy()[0] > 2.0
