import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from model_fixtures import write_tiny_model

from export import __main__ as export_main
from export import litert_runner, tflite
from handwriting import draws, mixture, sample, window
from handwriting.alphabet import PRINTABLE_ASCII

# Real exports (SavedModel, TFLite conversion) and fresh processes: opt out with -m "not slow".
pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
TEXT_LENGTH = 14  # L of the exported samplers: longer than every test text but one


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny random-weight model exported once: (model dir, export dir)."""
    run = write_tiny_model(
        tmp_path_factory.mktemp("run"), seed=5, offset_mean=(0.5, -1.0), offset_std=(4.0, 3.0)
    )
    out = tmp_path_factory.mktemp("export") / "exported"
    sizes = export_main.export(run, str(out), text_length=TEXT_LENGTH)
    assert {"sampler_float32.tflite", "sampler_int8.tflite", "sampler.json"} <= set(sizes)
    return run, str(out)


def test_tflite_uses_builtin_ops_only_and_carries_metadata(exported):
    _, out = exported
    beside = json.loads(open(os.path.join(out, "sampler.json"), encoding="utf-8").read())
    assert beside["alphabet"]["chars"] == PRINTABLE_ASCII
    assert beside["normalization"] == {"offset_mean": [0.5, -1.0], "offset_std": [4.0, 3.0]}
    assert beside["text_length"] == TEXT_LENGTH and beside["version"] == 2
    for name in ("sampler_float32.tflite", "sampler_int8.tflite"):
        content = open(os.path.join(out, name), "rb").read()
        ops = tflite.builtin_ops(content)
        assert not any(op.startswith("CUSTOM") or "FLEX" in op for op in ops), ops
        assert "FULLY_CONNECTED" in ops and "READ_VARIABLE" not in ops  # weights frozen
        assert "GATHER" not in ops  # the text comes in one-hot: no lookup per step
        assert tflite.read_metadata(content) == beside
        # Every shape is static (what the XNNPACK delegate needs).
        runner = litert_runner.Sampler(out, int8="int8" in name)
        for details in runner.interpreter.get_tensor_details():
            assert -1 not in list(details["shape_signature"]), details["name"]
        assert (runner.batch, runner.text_length, runner.alphabet_size) == (1, TEXT_LENGTH, 97)
    float_size = os.path.getsize(os.path.join(out, "sampler_float32.tflite"))
    assert os.path.getsize(os.path.join(out, "sampler_int8.tflite")) < float_size


def keras_step(model, point, state, chars, draws, bias):
    """The TFLite step's outputs computed with `HandwritingModel.step` and the sampler's
    functions, for texts `chars` `(B, U)` (0-padded)."""
    widths = tflite.state_widths(model)
    parts = tuple(tf.constant(p) for p in np.split(state, np.cumsum(widths)[:-1], axis=1))
    mask = chars != 0
    head, phi, new_state = model.step(point, chars, mask, parts)
    phi_end = window.end_of_text_weight(model.window_cell, new_state, mask.sum(axis=1))
    return {
        "point": mixture.sample_point(head, bias, draws[:, :2], draws[:, 2:]).numpy(),
        "state": np.concatenate([s.numpy() for s in new_state], axis=1),
        # uint8 in the TFLite step (LiteRT.js reads no bool tensors).
        "passed": window.window_has_passed(phi, phi_end).numpy().astype(np.uint8),
        "phi": phi.numpy(),
        "phi_end": phi_end.numpy(),
        "head": head.numpy(),
    }


def random_step_inputs(model, lines, rng):
    widths = tflite.state_widths(model)
    state = rng.normal(size=(lines, sum(widths))).astype(np.float32)
    kappa = slice(sum(widths[:2]), sum(widths[:3]))
    state[:, kappa] = rng.uniform(0, 5, size=(lines, widths[2]))
    point = rng.normal(size=(lines, 3)).astype(np.float32)
    draws = np.concatenate([rng.random((lines, 2)), rng.normal(size=(lines, 2))], axis=1)
    bias = rng.uniform(0, 2, size=lines).astype(np.float32)
    return point, state, draws.astype(np.float32), bias


def test_tflite_step_equals_keras_step(exported, tmp_path):
    _, out = exported
    synth = sample.load(out)
    model = synth.model
    rng = np.random.default_rng(0)
    # Batch 1 (the exported file) and a batch-3 step over texts of different lengths: the
    # padding of the TFLite text (to L) and of the Keras batch (to the longest) differ.
    batch_path = tmp_path / "sampler_b3.tflite"
    batch_path.write_bytes(
        tflite.embed_metadata(
            tflite.convert(model, quantize=False, batch_size=3, text_length=TEXT_LENGTH),
            tflite.metadata(synth, model, TEXT_LENGTH),
        )
    )
    for runner, texts in (
        (litert_runner.Sampler(out), ["step by step"]),
        (litert_runner.Sampler(str(tmp_path), filename=batch_path.name), ["ab", "c d e f", "g"]),
    ):
        point, state, draws, bias = random_step_inputs(model, len(texts), rng)
        ids = [runner.encode(t) for t in texts]
        text, text_mask = runner.text_inputs(ids)
        got = runner.step(point, state, text, text_mask, draws, bias)
        chars, _ = sample.encode_batch(synth.alphabet, texts)
        expected = keras_step(model, point, state, chars, draws, bias)
        assert set(got) == set(expected)
        width = chars.shape[1]
        assert not got["phi"][:, width:].any()  # padding holds phi = 0
        got["phi"] = got["phi"][:, :width]
        for name in expected:
            assert got[name].shape == expected[name].shape, name
            assert got[name].dtype == expected[name].dtype, name
            np.testing.assert_allclose(got[name], expected[name], atol=1e-5, rtol=0, err_msg=name)


def test_the_write_signature_is_the_step_with_three_outputs(exported):
    from ai_edge_litert.interpreter import Interpreter

    run, out = exported
    model = sample.load(run).model
    rng = np.random.default_rng(2)
    for name in ("sampler_float32.tflite", "sampler_int8.tflite"):
        interpreter = Interpreter(model_path=os.path.join(out, name))
        assert set(interpreter.get_signature_list()) == {"step", "write"}
        step = interpreter.get_signature_runner("step")
        write = interpreter.get_signature_runner("write")
        assert set(write.get_output_details()) == {"point", "state", "passed"}
        assert write.get_input_details().keys() == step.get_input_details().keys()
        runner = litert_runner.Sampler(out, int8="int8" in name)
        text, text_mask = runner.text_inputs([runner.encode("step by step")])
        for _ in range(3):
            point, state, draws, bias = random_step_inputs(model, 1, rng)
            inputs = dict(point=point, state=state, text=text, text_mask=text_mask)
            inputs.update(draws=draws, bias=bias)
            full, slim = step(**inputs), write(**inputs)
            for key in ("point", "state", "passed"):
                np.testing.assert_array_equal(slim[key], full[key], err_msg=f"{name} {key}")


def test_tflite_float_and_tf_give_the_same_strokes(exported, tmp_path):
    _, out = exported
    synth = sample.load(out)
    for text, seed, bias in (("hi there", 3, 0.0), ("abc", 8, 1.5)):
        expected = sample.generate(synth, [text], bias=bias, seed=seed)[0]
        strokes, finished = litert_runner.Sampler(out).write(text, bias, seed)
        assert strokes.shape == expected.strokes.shape and finished == expected.finished
        np.testing.assert_allclose(strokes, expected.strokes, atol=1e-3, rtol=0)
    # A batch-2 sampler writes three lines in two chunks; line i reads the stream [seed, i]
    # as in `sample.generate`.
    texts = ["hi", "abc de", "xyz"]
    batch_path = tmp_path / "sampler_b2.tflite"
    batch_path.write_bytes(
        tflite.embed_metadata(
            tflite.convert(synth.model, quantize=False, batch_size=2, text_length=TEXT_LENGTH),
            tflite.metadata(synth, synth.model, TEXT_LENGTH),
        )
    )
    runner = litert_runner.Sampler(str(tmp_path), filename=batch_path.name)
    expected = sample.generate(synth, texts, bias=0.5, seed=6)
    for (strokes, finished), line in zip(runner.write_lines(texts, 0.5, 6), expected, strict=True):
        assert strokes.shape == line.strokes.shape and finished == line.finished
        np.testing.assert_allclose(strokes, line.strokes, atol=1e-3, rtol=0)
    # The int8 sampler runs and gives finite strokes of the same kind.
    strokes, _ = litert_runner.Sampler(out, int8=True).write("hi there", 0.0, 3)
    assert strokes.shape[1] == 3 and np.isfinite(strokes).all()


def test_teacher_forcing_reads_like_the_keras_model(exported):
    _, out = exported
    synth = sample.load(out)
    rng = np.random.default_rng(4)
    points = np.concatenate([rng.normal(size=(9, 2)), rng.random((9, 1)) < 0.3], axis=1)
    ids = synth.alphabet.encode("read me")
    heads = litert_runner.Sampler(out).read_line(points.astype(np.float32), ids)
    expected = synth.model.forward({"strokes": points[None], "chars": ids[None]})["head"][0]
    assert heads.shape == (9, 1 + 6 * 3)
    np.testing.assert_allclose(heads, expected.numpy(), atol=1e-5, rtol=0)


def test_runner_refuses_text_it_cannot_read(exported):
    _, out = exported
    runner = litert_runner.Sampler(out)
    with pytest.raises(
        litert_runner.RunnerError,
        match=rf"text has 15 characters; this sampler reads at most {TEXT_LENGTH} per line",
    ):
        runner.write("x" * 15)
    with pytest.raises(litert_runner.RunnerError, match="text is empty"):
        runner.write("  ")
    with pytest.raises(litert_runner.RunnerError, match=r"seed must be an int in \[0, 2\*\*32\)"):
        runner.write("ab", seed=-1)
    with pytest.raises(litert_runner.RunnerError, match="bias must be a number >= 0"):
        runner.write("ab", bias=float("nan"))


BLOCK_TENSORFLOW = """
import sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "handwriting"):
            raise ImportError(f"{name} may not be imported here")

sys.meta_path.insert(0, Block())
"""


def test_runner_needs_no_tensorflow(exported, tmp_path):
    _, out = exported
    (tmp_path / "sitecustomize.py").write_text(BLOCK_TENSORFLOW)
    env = dict(ENV, PYTHONPATH=str(tmp_path))
    runner = os.path.join(ROOT, "export", "litert_runner.py")
    target = tmp_path / "hi.json"
    result = subprocess.run(
        [sys.executable, runner, out, "hi there", "-o", str(target), "--seed", "3"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    got = np.array(json.loads(target.read_text())["lines"][0]["strokes"], np.float32)
    expected = sample.generate(sample.load(out), ["hi there"], seed=3)[0].strokes
    np.testing.assert_allclose(got, expected, atol=1e-3, rtol=0)
    svg = tmp_path / "hi.svg"
    result = subprocess.run(
        [sys.executable, runner, out, "hi there", "-o", str(svg), "--int8"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0 and svg.read_text().startswith("<svg"), result.stderr
    result = subprocess.run(
        [sys.executable, runner, out, "na\u00efve", "-o", str(svg)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "'\u00ef' (U+00EF) at position 2" in result.stderr
    # The block really works: importing tensorflow fails in that environment.
    check = subprocess.run(
        [sys.executable, "-c", "import tensorflow"], capture_output=True, env=env, check=False
    )
    assert check.returncode != 0


def test_savedmodel_in_a_fresh_process(exported, tmp_path):
    _, out = exported
    script = textwrap.dedent(
        f"""
        import json, sys
        import numpy as np
        import tensorflow as tf
        generator = tf.saved_model.load({os.path.join(out, "savedmodel")!r})
        result = generator.signatures["generate"](
            text=tf.constant("hi there"), bias=tf.constant(0.0), seed=tf.constant(3, tf.int64))
        assert not any(m.split(".")[0] in ("handwriting", "export") for m in sys.modules)
        print(json.dumps({{"strokes": result["strokes"].numpy().tolist(),
                          "finished": bool(result["finished"].numpy())}}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=ENV,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    expected = sample.generate(sample.load(out), ["hi there"], seed=3)[0]
    np.testing.assert_allclose(np.array(got["strokes"]), expected.strokes, atol=1e-5)
    assert got["finished"] == expected.finished


def test_savedmodel_maps_unknown_characters_to_the_unknown_id(exported):
    _, out = exported
    generator = tf.saved_model.load(os.path.join(out, "savedmodel"))
    result = generator.signatures["generate"](
        text=tf.constant("\u00e9\u00e9"), bias=tf.constant(0.0), seed=tf.constant(1, tf.int64)
    )
    assert result["strokes"].shape[1] == 3 and np.isfinite(result["strokes"].numpy()).all()
    empty = generator.signatures["generate"](
        text=tf.constant(""), bias=tf.constant(0.0), seed=tf.constant(1, tf.int64)
    )
    np.testing.assert_array_equal(empty["strokes"].numpy(), [[0, 0, 1]])


def test_export_directory_works_as_a_model_and_errors_are_clear(exported, tmp_path, capsys):
    _, out = exported
    assert sample.load(out).alphabet.chars == PRINTABLE_ASCII
    assert export_main.main(["--model", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert "no such model directory" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_draws_of_the_runner_are_the_python_samplers():
    # The runner's draws for a whole line equal handwriting.draws' step by step.
    got = litert_runner.line_draws(np.random.default_rng([9, 2]), 5)
    streams = draws.numpy_streams(9, 3)
    assert got.shape == (5, 4) and got.dtype == np.float32
    for step in range(5):
        uniforms, normals = draws.numpy_next_draws(streams)
        np.testing.assert_array_equal(got[step, :2], uniforms[2])
        np.testing.assert_allclose(got[step, 2:], normals[2], atol=1e-6, rtol=0)
