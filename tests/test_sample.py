import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_strokes import write_iam_line

from handwriting import draws, presets, sample, strokes, window
from handwriting import model as model_lib
from handwriting.alphabet import PRINTABLE_ASCII, Alphabet

ALPHABET = Alphabet(PRINTABLE_ASCII)
MEAN, STD = (0.5, -0.25), (2.0, 3.0)
POINTS_PER_STEP = 3  # hand-set window: kappa advances 1/3 character per point


def tiny_synth(seed=1):
    keras.utils.set_random_seed(seed)
    cfg = presets.preset("tiny")
    model = model_lib.build_model(cfg.model, ALPHABET.size)
    return sample.Synthesizer(model, cfg, ALPHABET, MEAN, STD)


@pytest.fixture(scope="module")
def synth():
    return tiny_synth()


@pytest.fixture(scope="module")
def steady():
    """A tiny model whose window moves exactly 1/3 character per point (alpha = 1, beta = 4)."""
    synth = tiny_synth(seed=2)
    cell = synth.model.window_cell
    k = cell.window_gaussians
    cell.attention_kernel.assign(np.zeros(cell.attention_kernel.shape, np.float32))
    bias = [0.0] * k + [math.log(4.0)] * k + [math.log(1.0 / POINTS_PER_STEP)] * k
    cell.attention_bias.assign(np.array(bias, np.float32))
    return synth


def test_tf_streams_equal_numpy_pcg64_bit_for_bit():
    for seed in (0, 7, 2**32 - 1):
        streams = draws.seed_streams(seed, 3)
        state = streams.numpy()
        for line in range(3):
            expected = np.random.default_rng([seed, line]).bit_generator.state["state"]
            assert (int(state[line, 0]) << 64) | int(state[line, 1]) == expected["state"]
            assert (int(state[line, 2]) << 64) | int(state[line, 3]) == expected["inc"]
        reference = draws.numpy_streams(seed, 3)
        for _ in range(4):
            uniforms, normals = draws.numpy_next_draws(reference)
            streams, tf_uniforms, tf_normals = draws.next_draws(streams)
            np.testing.assert_array_equal(tf_uniforms.numpy(), uniforms)
            np.testing.assert_allclose(tf_normals.numpy(), normals, rtol=0, atol=1e-6)
    # The normals are Box-Muller of numpy's doubles, and look standard normal.
    raw = np.random.default_rng([5, 0]).random((1, 4))
    _, normals = draws.numpy_next_draws([np.random.default_rng([5, 0])])
    radius = math.sqrt(-2 * math.log(1 - raw[0, 2]))
    assert normals[0, 0] == pytest.approx(radius * math.cos(2 * math.pi * raw[0, 3]), abs=1e-6)
    many = np.concatenate([draws.numpy_next_draws(draws.numpy_streams(1, 500))[1]])
    assert abs(many.mean()) < 0.1 and abs(many.std() - 1) < 0.1
    with pytest.raises(ValueError, match=r"`seed` must be in \[0, 2\*\*32\), received -1"):
        draws.check_seed(-1)


def test_same_seed_same_strokes_other_seed_other_strokes(synth):
    first = sample.generate(synth, ["abc", "hello there"], bias=0.5, seed=11)
    again = sample.generate(synth, ["abc", "hello there"], bias=0.5, seed=11)
    other = sample.generate(synth, ["abc", "hello there"], bias=0.5, seed=12)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.strokes, b.strokes)
    assert not np.array_equal(first[1].strokes, other[1].strokes)
    line = first[0]
    assert line.text == "abc" and line.strokes.dtype == np.float32 and line.strokes.shape[1] == 3
    np.testing.assert_array_equal(line.strokes[0], [0, 0, 0])  # the start point
    assert line.strokes[-1, 2] == 1.0  # the last point ends a stroke
    assert set(np.unique(line.strokes[:, 2])) <= {0.0, 1.0}


def test_bias_shrinks_the_spread(synth):
    texts = ["abcdefg"] * 6
    loose = sample.generate(synth, texts, bias=0.0, seed=3, points_per_char=4)
    tight = sample.generate(synth, texts, bias=4.0, seed=3, points_per_char=4)

    def spread(lines):
        offsets = np.concatenate([s.strokes[1:, :2] for s in lines])
        return offsets.std(axis=0)

    assert np.all(spread(tight) < 0.5 * spread(loose))


def test_stop_rule_on_hand_built_phi():
    phi = tf.constant(
        [
            [0.1, 0.9, 0.2, 0.0],  # peak on u = 1, the end weight below it: go on
            [0.0, 0.1, 0.6, 0.0],  # end weight above every real one (padding holds 0): stop
            [0.0, 0.2, 0.5, 0.1],  # equal: go on (the rule is strict)
            [0.0, 0.0, 0.0, 0.0],  # a line whose phi has vanished, end weight > 0: stop
        ]
    )
    phi_end = tf.constant([0.3, 0.7, 0.5, 1e-30])
    np.testing.assert_array_equal(
        window.window_has_passed(phi, phi_end).numpy(), [False, True, False, True]
    )


def test_end_of_text_weight_matches_numpy(synth):
    rng = np.random.default_rng(0)
    model = synth.model
    state = list(model.initial_state(2))
    state[0] = tf.constant(rng.normal(size=state[0].shape), tf.float32)
    state[2] = tf.constant(rng.uniform(0, 6, size=state[2].shape), tf.float32)
    got = window.end_of_text_weight(model.window_cell, state, tf.constant([4, 7])).numpy()
    cell = model.window_cell
    k = cell.window_gaussians
    params = np.exp(
        state[0].numpy().astype(np.float64) @ cell.attention_kernel.numpy()
        + cell.attention_bias.numpy()
    )
    kappa = state[2].numpy()
    for line, length in enumerate((4, 7)):
        expected = np.sum(
            params[line, :k] * np.exp(-params[line, k : 2 * k] * (kappa[line] - length) ** 2)
        )
        assert got[line] == pytest.approx(expected, rel=1e-5)


def test_each_line_stops_when_the_window_passes_its_end(steady):
    texts = ["ab", "hello", "x y z w"]
    lines = sample.generate(steady, texts, seed=4, return_phi=True)
    for line, text in zip(lines, texts, strict=True):
        u = len(text)
        # kappa after n points is n/3; phi(U) > phi(U-1) once kappa > U - 1/2, at n = 3U - 1
        # points read (the start point and 3U - 2 drawn): no early stop, no run-on.
        assert line.finished
        assert len(line.strokes) == 1 + POINTS_PER_STEP * u - 2
        assert line.phi.shape == (POINTS_PER_STEP * u - 1, u + 1)
        passed = line.phi[:, -1] > line.phi[:, :-1].max(axis=1)
        assert passed[-1] and not passed[:-1].any()
        # The window's peak walks along the text: argmax of row n is the nearest u to n/3.
        reads = np.arange(1, len(line.phi) + 1) / POINTS_PER_STEP
        nearest = np.minimum(np.floor(reads + 0.5), u)
        np.testing.assert_array_equal(np.argmax(line.phi, axis=1), nearest)


def test_point_budget_ends_a_line_that_never_passes(steady):
    lines = sample.generate(steady, ["abcd", "ab"], seed=4, points_per_char=1.5)
    # Budgets: ceil(1.5 * 5) = 8 and ceil(1.5 * 3) = 5 points, below the 10 and 4 the
    # window needs: the first runs out, the second finishes.
    assert not lines[0].finished and len(lines[0].strokes) == 1 + 8
    assert lines[1].finished and len(lines[1].strokes) == 1 + 4


def test_priming_from_an_iam_xml_file(steady, tmp_path):
    path = tmp_path / "a01-000u-01.xml"
    write_iam_line(path, count_a=7, count_b=5)  # 12 points
    prime = strokes.load_prime(path, "me")
    assert prime.strokes.shape == (12, 3) and prime.text == "me"
    np.testing.assert_array_equal(np.flatnonzero(prime.strokes[:, 2]), [6, 11])
    # y grows downwards in the XML and upwards in strokes: 2000 -> 1996 is dy = +4.
    np.testing.assert_array_equal(prime.strokes[1], [13, 4, 0])
    np.testing.assert_array_equal(prime.strokes[5], [13, -16, 0])
    lines = sample.generate(steady, ["ab"], seed=2, prime=prime, return_phi=True)
    line = lines[0]
    # Full text "me ab": 5 characters; after 12 prime points kappa = 4, so the first row
    # of phi peaks at u = 4 ('b'), and the line ends as soon as kappa passes 4.5.
    assert line.phi.shape[1] == len("me ab") + 1
    assert np.argmax(line.phi[0]) == 4
    assert line.finished and len(line.strokes) == 2  # 14/3 > 4.5: two points drawn
    # No start point is added after a prime: the first row is the first drawn offset.
    unprimed = sample.generate(steady, ["ab"], seed=2)[0]
    assert len(unprimed.strokes) == 1 + POINTS_PER_STEP * 2 - 2


def test_priming_from_stroke_json_round_trip(steady, tmp_path):
    written = sample.generate(steady, ["abc"], seed=5)
    path = tmp_path / "mine.json"
    strokes.save_strokes_json(written, path)
    obj = json.loads(path.read_text())
    assert obj["format"] == "handwriting-strokes" and obj["lines"][0]["text"] == "abc"
    prime = strokes.load_prime(path)
    assert prime.text == "abc"
    np.testing.assert_allclose(prime.strokes, written[0].strokes, atol=1e-4)
    assert strokes.load_prime(path, "xyz").text == "xyz"
    primed = sample.generate(steady, ["de"], seed=5, prime=prime, return_phi=True)[0]
    assert primed.phi.shape[1] == len("abc de") + 1


def test_unknown_characters_are_named_with_position_and_alphabet(synth):
    with pytest.raises(sample.SampleError) as info:
        sample.generate(synth, ["ok", "caf\u00e9 \U0001f600"])
    message = str(info.value)
    assert message.startswith(
        "line 2 holds characters outside the model's alphabet: "
        "'\u00e9' (U+00E9, LATIN SMALL LETTER E WITH ACUTE) at position 3, "
        "'\U0001f600' (U+1F600, GRINNING FACE) at position 5."
    )
    assert message.endswith(f"The alphabet is: {PRINTABLE_ASCII!r}")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "line 1 is empty"),
        ("   ", "line 1 is empty"),
        ("x" * 10_000, "line 1 has 10000 characters; the limit is 2000"),
        ("ab\x07c", r"control character U\+0007 \(U\+0007\) at position 2"),
        ("tab\there", r"control character U\+0009"),
        ("two\nlines", r"control character U\+000A"),
        ("\u200bhidden", r"control character U\+200B"),
    ],
)
def test_hostile_text_gets_clear_errors(synth, text, message):
    with pytest.raises(sample.SampleError, match=message):
        sample.generate(synth, [text])


def test_paragraphs_wrap_and_keep_newlines(synth):
    lines = sample.write_paragraph(synth, "one two three\nfour", width=8, seed=1)
    assert [line.text for line in lines] == ["one two", "three", "four"]
    with pytest.raises(sample.SampleError, match="control character"):
        sample.write_paragraph(synth, "bad\x00text")


def test_bad_arguments(synth):
    with pytest.raises(sample.SampleError, match="`bias` must be a number >= 0"):
        sample.generate(synth, ["a"], bias=-1)
    with pytest.raises(sample.SampleError, match=r"`seed` must be in \[0, 2\*\*32\)"):
        sample.generate(synth, ["a"], seed=2**40)
    with pytest.raises(sample.SampleError, match="no text to write"):
        sample.generate(synth, [])


def test_load_errors(tmp_path):
    with pytest.raises(sample.SampleError, match="no such model directory"):
        sample.load(tmp_path / "absent")
    with pytest.raises(sample.SampleError, match=r"no model\.keras"):
        sample.load(tmp_path)


def test_load_round_trip_gives_the_same_strokes(synth, tmp_path):
    from handwriting.dataset_info import DatasetInfo

    synth.model.save(tmp_path / "model.keras")
    synth.config.save(tmp_path)
    DatasetInfo(alphabet=ALPHABET, offset_mean=MEAN, offset_std=STD, splits={}).save(tmp_path)
    loaded = sample.load(tmp_path)
    assert loaded.alphabet == ALPHABET and loaded.offset_std == STD
    a = sample.generate(synth, ["round trip"], seed=9)[0].strokes
    b = sample.generate(loaded, ["round trip"], seed=9)[0].strokes
    np.testing.assert_array_equal(a, b)


def test_truncated_or_altered_model_file_is_named(synth, tmp_path):
    from handwriting.dataset_info import DatasetInfo

    synth.model.save(tmp_path / "model.keras")
    synth.config.save(tmp_path)
    DatasetInfo(alphabet=ALPHABET, offset_mean=MEAN, offset_std=STD, splits={}).save(tmp_path)
    path = tmp_path / "model.keras"
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(sample.SampleError) as raised:
        sample.load(tmp_path)
    assert str(raised.value).startswith(f"{path}: not a complete .keras file (truncated")
    assert "File not found" not in str(raised.value)
    # One byte changed inside the weights member: its CRC no longer holds.
    flipped = bytearray(whole)
    flipped[len(whole) // 2] ^= 0xFF
    path.write_bytes(bytes(flipped))
    with pytest.raises(sample.SampleError) as raised:
        sample.load(tmp_path)
    assert str(raised.value) == (
        f"{path}: corrupt .keras file (model.weights.h5 fails its checksum); copy or export it "
        "again"
    )
