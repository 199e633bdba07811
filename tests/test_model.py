import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from handwriting import mixture, presets
from handwriting.guided_attention import guided_attention
from handwriting.model import HandwritingModel, build_model, build_optimizer

B, T, U, V, K, M, H = 3, 7, 5, 11, 2, 4, 6
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _model(kind="synthesis", seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    args = dict(kind=kind, units=H, layers=3, window_gaussians=K, mixtures=M, window_step_init=0.3)
    args.update(kwargs)
    return HandwritingModel(V, **args)


def _batch(seed=0, lengths=(7, 5, 6), text_lengths=(5, 3, 4)):
    rng = np.random.default_rng(seed)
    strokes = rng.normal(size=(B, T, 3)).astype(np.float32)
    strokes[..., 2] = rng.random((B, T)) < 0.3
    strokes_mask = np.arange(T)[None] < np.array(lengths)[:, None]
    strokes[~strokes_mask] = 0
    chars_mask = np.arange(U)[None] < np.array(text_lengths)[:, None]
    chars = np.where(chars_mask, rng.integers(2, V, size=(B, U)), 0).astype(np.int32)
    alignment = np.where(strokes_mask, np.minimum(np.arange(T)[None] // 2, 2), -1).astype(np.int32)
    targets = np.concatenate([strokes[:, 1:], np.zeros((B, 1, 3), np.float32)], axis=1)
    inputs = {
        "strokes": strokes,
        "strokes_mask": strokes_mask,
        "chars": chars,
        "chars_mask": chars_mask,
        "alignment": alignment,
    }
    return inputs, targets, strokes_mask.astype(np.float32)


@pytest.mark.parametrize("kind", ["synthesis", "prediction"])
def test_step_by_step_equals_the_sequence(kind):
    model = _model(kind)
    inputs, _, _ = _batch()
    out = model.forward(inputs)
    assert out["head"].shape == (B, T, 1 + 6 * M)
    assert len(out["state"]) == len(model.initial_state(B))

    @tf.function(
        input_signature=[
            tf.TensorSpec([B, 3], tf.float32),
            tf.TensorSpec([B, U], tf.int32),
            tf.TensorSpec([B, U], tf.bool),
            tuple(tf.TensorSpec(s.shape, s.dtype) for s in model.initial_state(B)),
        ]
    )
    def step(point, chars, chars_mask, state):
        return model.step(point, chars, chars_mask, state)

    state = model.initial_state(B)
    heads, phis = [], []
    for t in range(T):
        head, phi, state = step(
            inputs["strokes"][:, t], inputs["chars"], inputs["chars_mask"], state
        )
        heads.append(head)
        phis.append(phi)
    np.testing.assert_allclose(np.stack(heads, 1), out["head"], atol=1e-5)
    for ours, theirs in zip(state, out["state"], strict=True):
        np.testing.assert_allclose(ours, theirs, atol=1e-5)
    if kind == "synthesis":
        assert out["phi"].shape == (B, T, U) and out["kappa"].shape == (B, T, K)
        np.testing.assert_allclose(np.stack(phis, 1), out["phi"], atol=1e-5)
    else:
        assert phis[0].shape == (B, 0)


def test_forward_continues_from_a_state():
    model = _model()
    inputs, _, _ = _batch(lengths=(7, 7, 7))
    whole = model.forward(inputs)["head"]
    first = {**inputs, "strokes": inputs["strokes"][:, :3]}
    rest = {**inputs, "strokes": inputs["strokes"][:, 3:]}
    state = model.forward(first)["state"]
    np.testing.assert_allclose(model.forward(rest, state=state)["head"], whole[:, 3:], atol=1e-5)


def test_padding_points_and_characters_change_nothing():
    model = _model()
    inputs, targets, weight = _batch()
    out = model.forward(inputs)
    loss = mixture.sequence_loss(out["head"], targets, weight)
    noisy = {k: np.array(v) for k, v in inputs.items()}
    noisy["strokes"][~inputs["strokes_mask"]] = 9.0
    noisy["chars"][~inputs["chars_mask"]] = 7
    noisy_out = model.forward(noisy)
    noisy_targets = np.where(weight[..., None] > 0, targets, 5.0)
    noisy_loss = mixture.sequence_loss(noisy_out["head"], noisy_targets, weight)
    np.testing.assert_allclose(noisy_loss.line_nll, loss.line_nll, rtol=1e-6)
    valid = inputs["strokes_mask"]
    np.testing.assert_allclose(noisy_out["head"].numpy()[valid], out["head"].numpy()[valid])


def test_metrics_of_train_and_test_steps():
    model = _model()
    model.compile(optimizer=keras.optimizers.SGD(0.0), jit_compile=False)
    inputs, targets, weight = _batch()
    out = model.forward(inputs)
    loss = mixture.sequence_loss(out["head"], targets, weight)
    attended = np.argmax(out["phi"], axis=-1)
    valid = inputs["alignment"] >= 0
    distance = np.abs(attended - inputs["alignment"])[valid]
    logs = model.evaluate(
        inputs, targets, sample_weight=weight, batch_size=B, verbose=0, return_dict=True
    )
    np.testing.assert_allclose(logs["loss"], loss.nats_per_line(), rtol=1e-5)
    np.testing.assert_allclose(logs["nats_per_line"], loss.nats_per_line(), rtol=1e-5)
    np.testing.assert_allclose(logs["nats_per_point"], np.sum(loss.line_nll) / 18, rtol=1e-5)
    np.testing.assert_allclose(logs["alignment_accuracy"], np.mean(distance <= 1), rtol=1e-6)
    np.testing.assert_allclose(logs["alignment_exact"], np.mean(distance == 0), rtol=1e-6)
    # The training gradient is the gradient of the mean per-line loss.
    with tf.GradientTape() as tape:
        mean_loss = mixture.sequence_loss(model(inputs), targets, weight).nats_per_line()
    expected_norm = tf.linalg.global_norm(tape.gradient(mean_loss, model.trainable_variables))
    logs = model.train_on_batch(inputs, targets, sample_weight=weight, return_dict=True)
    np.testing.assert_allclose(logs["grad_norm"], expected_norm, rtol=1e-4)


def test_guided_attention_joins_the_training_gradient_with_an_annealed_weight():
    inputs, targets, weight = _batch()
    model = _model(guided_attention=2.0, guided_attention_steps=4)
    model.compile(optimizer=keras.optimizers.SGD(0.0), jit_compile=False)
    out = model.forward(inputs)
    loss = mixture.sequence_loss(out["head"], targets, weight)
    guided = guided_attention(
        out["phi"], inputs["alignment"], inputs["strokes_mask"], inputs["chars_mask"]
    )
    # Step 0: weight 2. The gradient is that of the mean per-line (NLL + 2 * guided).
    with tf.GradientTape() as tape:
        out = model.forward(inputs)
        line = mixture.sequence_loss(out["head"], targets, weight).line_nll
        line += 2.0 * guided_attention(
            out["phi"], inputs["alignment"], inputs["strokes_mask"], inputs["chars_mask"]
        )
        mean_loss = tf.reduce_mean(line)
    expected_norm = tf.linalg.global_norm(tape.gradient(mean_loss, model.trainable_variables))
    logs = model.train_on_batch(inputs, targets, sample_weight=weight, return_dict=True)
    np.testing.assert_allclose(logs["grad_norm"], expected_norm, rtol=1e-4)
    np.testing.assert_allclose(logs["guided_attention"], np.sum(guided) / 18, rtol=1e-5)
    np.testing.assert_allclose(logs["loss"], loss.nats_per_line(), rtol=1e-5)  # NLL only
    weights = []
    model.optimizer.iterations.assign(0)
    for _ in range(5):
        weights.append(float(model.guided_attention_weight()))
        model.optimizer.iterations.assign_add(1)
    assert weights == pytest.approx([2.0, 1.5, 1.0, 0.5, 0.0])
    evaluated = model.evaluate(inputs, targets, sample_weight=weight, verbose=0, return_dict=True)
    assert "guided_attention" not in evaluated
    config = model.get_config()
    assert (config["guided_attention"], config["guided_attention_steps"]) == (2.0, 4)


def test_global_norm_clip_and_output_clip():
    inputs, targets, weight = _batch()
    first = _model(clip_norm=1e-3)
    first.compile(optimizer=keras.optimizers.SGD(1.0), jit_compile=False)
    before = [v.numpy() for v in first.trainable_variables]
    logs = first.train_on_batch(inputs, targets, sample_weight=weight, return_dict=True)
    step = np.sqrt(
        sum(
            np.sum((v.numpy() - b) ** 2)
            for v, b in zip(first.trainable_variables, before, strict=True)
        )
    )
    assert logs["grad_norm"] > 1e-2
    np.testing.assert_allclose(step, 1e-3, rtol=1e-3)  # SGD(1) moves by the clipped gradient
    # The output clip bounds d(per-line loss)/d(head): with a tiny bound the bias gradient
    # of the head is at most bound * points / lines.
    clipped = _model(output_gradient_clip=1e-4)
    with tf.GradientTape() as tape:
        out = clipped.forward(inputs)
        line_nll = mixture.sequence_loss(out["head"], targets, weight).line_nll
        total = tf.reduce_sum(line_nll)
    bias_grad = tape.gradient(total, clipped.head.bias).numpy()
    assert np.abs(bias_grad).max() <= 1e-4 * B * T * (1 + 1e-5)


@pytest.mark.slow
def test_fit_lowers_the_loss():
    model = _model()
    model.compile(optimizer=keras.optimizers.Adam(0.02), jit_compile=False)
    inputs, targets, weight = _batch()
    data = tf.data.Dataset.from_tensors((inputs, targets, weight)).repeat(15)
    history = model.fit(data, epochs=3, verbose=0).history
    assert history["loss"][-1] < history["loss"][0] - 1.0
    assert set(history) == {
        "loss",
        "nats_per_line",
        "nats_per_point",
        "grad_norm",
        "alignment_accuracy",
        "alignment_exact",
    }


@pytest.mark.parametrize("kind", ["synthesis", "prediction"])
def test_config_round_trip_and_save_load(kind, tmp_path):
    model = _model(kind, lstm_gradient_clip=10.0, output_gradient_clip=100.0, clip_norm=5.0)
    inputs, _, _ = _batch()
    expected = model(inputs)
    config = model.get_config()
    assert config["kind"] == kind and config["units"] == H and config["alphabet_size"] == V
    clone = HandwritingModel.from_config(config)
    assert clone.get_config() == config
    clone.set_weights(model.get_weights())
    np.testing.assert_array_equal(clone(inputs), expected)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, HandwritingModel) and loaded.get_config() == config
    np.testing.assert_array_equal(loaded(inputs), expected)


def test_build_from_config_and_optimizers():
    cfg = presets.preset("tiny")
    model = build_model(cfg.model, V, cfg.train)
    assert (model.units, model.window_gaussians, model.mixtures) == (8, 2, 3)
    assert model.clip_norm == cfg.train.clip_norm
    paper = presets.preset("paper").train
    graves = build_optimizer(paper)
    assert isinstance(graves, keras.optimizers.RMSprop)
    assert graves.centered and graves.momentum == 0.9 and graves.rho == 0.95
    assert graves.epsilon == 1e-4
    np.testing.assert_allclose(graves.learning_rate, 1e-4)
    assert isinstance(build_optimizer(cfg.train), keras.optimizers.Adam)


def test_argument_validation():
    with pytest.raises(ValueError, match=r"`kind` must be one of .*, received kind='poem'"):
        HandwritingModel(V, kind="poem")
    with pytest.raises(ValueError, match=r"`layers` must be a positive int, received layers=0"):
        HandwritingModel(V, layers=0)
    with pytest.raises(ValueError, match=r"`clip_norm` must be >= 0"):
        HandwritingModel(V, clip_norm=-1.0)
    model = _model()
    with pytest.raises(ValueError, match=r"`state` must hold 8 tensors .* received 6"):
        model.step(np.zeros((B, 3), np.float32), np.zeros((B, U), np.int32), None, (0,) * 6)


_DISTRIBUTED = """
import numpy as np, tensorflow as tf, keras
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from handwriting.distribution import on_every_replica
from handwriting.model import HandwritingModel
rng = np.random.default_rng(0)
Bg, T, U, V = 4, 6, 3, 9
inputs = {
    "strokes": rng.normal(size=(Bg, T, 3)).astype("float32"),
    "chars": rng.integers(2, V, size=(Bg, U)).astype("int32"),
    "chars_mask": np.ones((Bg, U), bool),
    "alignment": np.zeros((Bg, T), "int32"),
}
targets = rng.normal(size=(Bg, T, 3)).astype("float32")
weight = np.ones((Bg, T), "float32"); weight[1, 4:] = 0
def run(strategy):
    with strategy.scope():
        keras.utils.set_random_seed(1)
        model = HandwritingModel(
            V, units=5, layers=2, window_gaussians=2, mixtures=2, clip_norm=0.5
        )
        model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=False)
        model.optimizer.build(model.trainable_variables)
    # One training step the way handwriting.training runs it: every replica its share.
    data = tf.data.Dataset.from_tensors((inputs, targets, weight))
    logs = on_every_replica(strategy, model.train_step, model.metrics)(iter(data))
    return [v.numpy() for v in model.trainable_variables], {k: v.numpy() for k, v in logs.items()}
mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
assert mirrored.num_replicas_in_sync == 2
single, single_logs = run(tf.distribute.get_strategy())
multi, multi_logs = run(mirrored)
for a, b in zip(single, multi):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
for key in single_logs:
    np.testing.assert_allclose(single_logs[key], multi_logs[key], rtol=1e-4)
print("OK", sorted(single_logs))
"""


@pytest.mark.slow
def test_mirrored_strategy_matches_one_device():
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow")
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_DISTRIBUTED)],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK" in result.stdout


@pytest.mark.slow
def test_mixed_bfloat16_keeps_the_head_and_window_in_float32():
    model = _model(dtype="mixed_bfloat16")
    assert model.compute_dtype == "bfloat16" and model.window_cell.compute_dtype == "bfloat16"
    inputs, targets, weight = _batch()
    out = model.forward(inputs)
    assert out["head"].dtype == tf.float32
    assert out["phi"].dtype == tf.float32 and out["kappa"].dtype == tf.float32
    assert all(v.dtype == "float32" for v in model.trainable_variables)
    state = model.initial_state(B)
    heads = []
    for t in range(T):
        head, _, state = model.step(
            inputs["strokes"][:, t], inputs["chars"], inputs["chars_mask"], state
        )
        heads.append(head)
    np.testing.assert_allclose(np.stack(heads, 1), out["head"], atol=0.05)
    model.compile(optimizer=keras.optimizers.Adam(0.02), jit_compile=False)
    data = tf.data.Dataset.from_tensors((inputs, targets, weight)).repeat(15)
    history = model.fit(data, epochs=3, verbose=0).history
    assert history["loss"][-1] < history["loss"][0] - 1.0
