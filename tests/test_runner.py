"""The LiteRT runner's mirrors of the library (`export/litert_runner.py` ships without it).

The runner imports numpy and LiteRT only, so it retypes two small pieces of
`handwriting.sample`: a line's point budget and its finishing (denormalise, start point first,
eos on the last point). These tests hold each copy to the library's on the same inputs, bit
for bit; the sampled strokes themselves are compared in tests/test_export.py.
"""

import numpy as np
import pytest
import tensorflow as tf

from export import litert_runner
from handwriting import sample
from handwriting.rundir import Synthesizer


def statistics_only(offset_mean, offset_std):
    """A `Synthesizer` holding only what finishing a line reads."""
    return Synthesizer(
        model=None, config=None, alphabet=None, offset_mean=offset_mean, offset_std=offset_std
    )


@pytest.mark.parametrize("points_per_char", [40, 1.5, 0.3, 7.1, 2 / 3, 12.345, 0.01])
def test_point_budget_is_the_librarys(points_per_char):
    lengths = np.arange(1, 301)
    expected = sample.point_budget(lengths, points_per_char).numpy()
    got = [litert_runner.point_budget(int(n), points_per_char) for n in lengths]
    np.testing.assert_array_equal(got, expected)
    # The SavedModel computes it inside its graph from the decoded text's length.
    in_graph = tf.function(lambda n: sample.point_budget(n, points_per_char))
    np.testing.assert_array_equal(in_graph(tf.constant(lengths, tf.int32)).numpy(), expected)


@pytest.mark.parametrize("count", [0, 1, 2, 37, 400])
def test_finish_line_is_the_librarys(count):
    rng = np.random.default_rng(count)
    for _ in range(5):
        offset_mean = tuple(rng.normal(0, 3, 2).tolist())
        offset_std = tuple(rng.uniform(0.1, 40, 2).tolist())
        synth = statistics_only(offset_mean, offset_std)
        points = np.concatenate(  # [T, 3] normalised draws, eos 0 or 1
            [rng.normal(0, 2, (count, 2)), rng.random((count, 1)) < 0.2], axis=1
        ).astype(np.float32)
        expected = sample.finish_line(synth, points).numpy()
        got = litert_runner.finish_line(points, offset_mean, offset_std)
        assert got.dtype == expected.dtype == np.float32
        assert got.shape == expected.shape == (count + 1, 3)
        assert got.tobytes() == expected.tobytes()
        in_graph = tf.function(lambda p, synth=synth: sample.finish_line(synth, p))
        assert in_graph(tf.constant(points)).numpy().tobytes() == expected.tobytes()
        # The start point first, eos = 1 on the last point.
        np.testing.assert_array_equal(got[0, :2], [0, 0])
        assert got[-1, 2] == 1.0


def test_a_primed_line_has_no_start_point():
    synth = statistics_only((0.5, -1.0), (4.0, 3.0))
    points = np.array([[0.0, 1.0, 0.0], [1.0, -0.5, 0.0]], np.float32)
    strokes = sample.finish_line(synth, points, origin=False).numpy()
    np.testing.assert_array_equal(strokes, [[0.5, 2.0, 0.0], [4.5, -2.5, 1.0]])
