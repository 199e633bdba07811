"""`python -m handwriting nll`: teacher-forced likelihood of lines, with and without a prime."""

import json

import numpy as np
import pytest
from model_fixtures import write_tiny_model

from handwriting import cli, mixture, sample
from handwriting.data import normalize_strokes
from handwriting.strokes import STROKES_FORMAT

MEAN, STD = (1.5, -0.2), (3.0, 2.0)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("m"), seed=4, offset_mean=MEAN, offset_std=STD)


def _line(rng, points):
    strokes = np.zeros((points, 3))
    strokes[1:, :2] = rng.normal(MEAN, STD, (points - 1, 2))
    strokes[1:, 2] = rng.random(points - 1) < 0.15
    strokes[-1, 2] = 1.0
    return np.round(strokes, 4)


def _write(path, lines):
    obj = {
        "format": STROKES_FORMAT,
        "version": 1,
        "lines": [{"text": t, "strokes": s.tolist()} for t, s in lines],
    }
    path.write_text(json.dumps(obj))
    return str(path)


def _nll(synth, chars_text, inputs, targets, state=None, skip=0):
    """NLL of `targets[skip:]` after `inputs` (raw points), by TFP's log_prob of the mixture."""
    norm = normalize_strokes(np.asarray(inputs, np.float32), MEAN, STD)
    chars = np.asarray([synth.alphabet.encode(chars_text)], np.int32)
    out = synth.model.forward(
        {"strokes": norm[None], "chars": chars, "chars_mask": np.ones(chars.shape, bool)}, state
    )
    norm_targets = normalize_strokes(np.asarray(targets, np.float32), MEAN, STD)
    log_p = mixture.point_distribution(out["head"][0]).log_prob(norm_targets)
    return -np.sum(log_p.numpy()[skip:].astype(np.float64)), out["state"]


def test_nll_of_lines_with_and_without_a_prime_matches_a_reference(model_dir, tmp_path, capsys):
    rng = np.random.default_rng(0)
    lines = [("fox jumps", _line(rng, 40)), ("a lazy dog", _line(rng, 33))]
    lines_path = _write(tmp_path / "lines.json", lines)
    prime = ("quick", _line(rng, 21))
    prime_path = _write(tmp_path / "prime.json", [prime])
    synth = sample.load(model_dir)

    code = cli.main(["nll", "--model", model_dir, "--lines", lines_path, "--json"])
    plain = json.loads(capsys.readouterr().out)
    assert code == 0 and plain["lines"] == 2
    # Unprimed: the line's own points; the first offset (the move to the line) not scored.
    expected = []
    for text, strokes in lines:
        nats, _ = _nll(synth, text, strokes[:-1], strokes[1:], skip=1)
        expected.append(nats)
    got = [line["nats"] for line in plain["per_line"]]
    np.testing.assert_allclose(got, expected, rtol=2e-5)
    assert [line["points"] for line in plain["per_line"]] == [38, 31]
    assert plain["nats_per_point"] == pytest.approx(sum(expected) / 69, rel=2e-5)
    assert plain["nats_per_line"] == pytest.approx(sum(expected) / 2, rel=2e-5)

    # Primed: the network reads the prime (pen lifted at its end), then the line goes on
    # from that state, as one line; computed here in two calls, the state carried over.
    code = cli.main(
        ["nll", "--model", model_dir, "--lines", lines_path, "--prime", prime_path, "--json"]
    )
    primed = json.loads(capsys.readouterr().out)
    assert code == 0
    expected = []
    for text, strokes in lines:
        full = f"{prime[0]} {text}"
        prime_points = prime[1].copy()
        prime_points[-1, 2] = 1.0
        _, state = _nll(synth, full, prime_points, np.zeros((21, 3)))
        # The line's origin (its first pen point) is one word gap (1.4 times the prime's width
        # over its 5 characters) right of the prime's rightmost point, the two lines' mean
        # heights equal; the move there and the line's first offset are not scored.
        x = np.cumsum(prime[1][:, 0])
        y = np.cumsum(prime[1][:, 1])
        inputs = strokes[:-1].copy()
        inputs[0, 0] += x.max() + 1.4 * (x.max() - x.min()) / 5 - x[-1]
        inputs[0, 1] += y.mean() - np.cumsum(strokes[:, 1]).mean() - y[-1]
        nats, _ = _nll(synth, full, inputs, strokes[1:], state, skip=1)
        expected.append(nats)
    np.testing.assert_allclose([line["nats"] for line in primed["per_line"]], expected, rtol=2e-5)
    assert primed["nats_per_point"] != pytest.approx(plain["nats_per_point"], rel=1e-3)

    code = cli.main(["nll", "--model", model_dir, "--lines", lines_path])
    table = capsys.readouterr().out
    assert code == 0
    assert f"{plain['nats_per_point']:10.4f}      69  all 2 lines" in table


@pytest.mark.parametrize(
    "text, strokes, message",
    [
        (None, [[0, 0, 0], [1, 1, 0], [1, 1, 1]], "line 2: no text"),
        (
            "caf\u00e9",
            [[0, 0, 0], [1, 1, 0], [1, 1, 1]],
            "line 2 holds characters outside the model's alphabet: 'é'",
        ),
        ("ok", [[0, 0, 0], [1, 1, 1]], "line 2: strokes must be (N, 3) with N >= 3"),
        ("ok", [[0, 0, 0], [1, float("nan"), 0], [1, 1, 1]], "NaN or infinite"),
    ],
)
def test_nll_refuses_bad_lines_naming_them(model_dir, tmp_path, capsys, text, strokes, message):
    path = tmp_path / "bad.json"
    good = {"text": "fine", "strokes": [[0, 0, 0], [1, 1, 0], [2, 0, 1]]}
    bad = {"strokes": strokes} if text is None else {"text": text, "strokes": strokes}
    path.write_text(json.dumps({"format": STROKES_FORMAT, "version": 1, "lines": [good, bad]}))
    code = cli.main(["nll", "--model", model_dir, "--lines", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"error: {path}: line 2") and message in err, err
