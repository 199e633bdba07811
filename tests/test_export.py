import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from export import __main__ as export_main
from export import litert_runner, tflite
from handwriting import config, draws, sample
from handwriting import model as model_lib
from handwriting.alphabet import PRINTABLE_ASCII, Alphabet
from handwriting.dataset_info import DatasetInfo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny random-weight model exported once: (model dir, export dir)."""
    run = tmp_path_factory.mktemp("run")
    keras.utils.set_random_seed(5)
    cfg = config.preset("tiny")
    alphabet = Alphabet(PRINTABLE_ASCII)
    model_lib.build_model(cfg.model, alphabet.size).save(run / "model.keras")
    cfg.save(run)
    DatasetInfo(alphabet=alphabet, offset_mean=(0.5, -1.0), offset_std=(4.0, 3.0), splits={}).save(
        run
    )
    out = tmp_path_factory.mktemp("export") / "exported"
    sizes = export_main.export(str(run), str(out))
    assert {"sampler_float32.tflite", "sampler_int8.tflite", "sampler.json"} <= set(sizes)
    return str(run), str(out)


def test_tflite_uses_builtin_ops_only_and_carries_metadata(exported):
    _, out = exported
    beside = json.loads(open(os.path.join(out, "sampler.json"), encoding="utf-8").read())
    assert beside["alphabet"]["chars"] == PRINTABLE_ASCII
    assert beside["normalization"] == {"offset_mean": [0.5, -1.0], "offset_std": [4.0, 3.0]}
    for name in ("sampler_float32.tflite", "sampler_int8.tflite"):
        content = open(os.path.join(out, name), "rb").read()
        ops = tflite.builtin_ops(content)
        assert not any(op.startswith("CUSTOM") or "FLEX" in op for op in ops), ops
        assert "FULLY_CONNECTED" in ops and "READ_VARIABLE" not in ops  # weights frozen
        assert tflite.read_metadata(content) == beside
    float_size = os.path.getsize(os.path.join(out, "sampler_float32.tflite"))
    assert os.path.getsize(os.path.join(out, "sampler_int8.tflite")) < float_size


def test_tflite_step_equals_keras_step(exported):
    _, out = exported
    synth = sample.load(out)
    model = synth.model
    runner = litert_runner.Sampler(out)
    rng = np.random.default_rng(0)
    widths = tflite.state_widths(model)
    text = "step by step"
    chars = synth.alphabet.encode(text).astype(np.int32)[None]
    mask = np.ones(chars.shape, np.float32)
    state = rng.normal(size=(1, sum(widths))).astype(np.float32)
    state[:, sum(widths[:2]) : sum(widths[:3])] = rng.uniform(0, 5, size=(1, widths[2]))
    point = rng.normal(size=(1, 3)).astype(np.float32)
    uniforms = rng.random((1, 2)).astype(np.float32)
    normals = rng.normal(size=(1, 2)).astype(np.float32)
    bias = np.array([0.7], np.float32)
    got = runner.step(point, state, chars, mask, uniforms, normals, bias)
    expected = tflite.step_function(model)(point, state, chars, mask, uniforms, normals, bias)
    assert set(got) == set(expected)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name].numpy(), atol=1e-5, rtol=0)


def test_tflite_float_and_tf_give_the_same_strokes(exported):
    _, out = exported
    synth = sample.load(out)
    for text, seed, bias in (("hi there", 3, 0.0), ("abc", 8, 1.5)):
        expected = sample.generate(synth, [text], bias=bias, seed=seed)[0]
        strokes, finished = litert_runner.Sampler(out).write(text, bias, seed)
        assert strokes.shape == expected.strokes.shape and finished == expected.finished
        np.testing.assert_allclose(strokes, expected.strokes, atol=1e-3, rtol=0)
    # The int8 sampler runs and gives finite strokes of the same kind.
    strokes, _ = litert_runner.Sampler(out, int8=True).write("hi there", 0.0, 3)
    assert strokes.shape[1] == 3 and np.isfinite(strokes).all()


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
    # The runner's inline Box-Muller equals handwriting.draws for the same stream.
    stream = np.random.default_rng([9, 0])
    reference = draws.numpy_streams(9, 1)
    for _ in range(3):
        raw = stream.random(4)
        uniforms, normals = draws.numpy_next_draws(reference)
        np.testing.assert_array_equal(uniforms[0], raw[:2].astype(np.float32))
        radius = np.sqrt(-2 * np.log(1 - raw[2]))
        expected = radius * np.array([np.cos(2 * np.pi * raw[3]), np.sin(2 * np.pi * raw[3])])
        np.testing.assert_allclose(normals[0], expected, atol=1e-6)
