"""Tests of `handwriting.training`: real tiny runs on shards written here, real event files."""

import glob
import io
import json
import os
import string
import subprocess
import sys
import textwrap
import zipfile

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import train as train_cli
from handwriting import (
    data,
    distribution,
    legibility,
    previews,
    records,
    run_data,
    rundir,
    sample,
    training,
)
from handwriting.alphabet import PRINTABLE_ASCII, Alphabet
from handwriting.config import Config
from handwriting.dataset_info import DatasetInfo, Shard, Split, sha256_file
from handwriting.presets import preset

# Real training runs, kills and resumes: end to end, opt out with -m "not slow".
pytestmark = pytest.mark.slow

ALPHABET = Alphabet(PRINTABLE_ASCII)
WORDS = ("fox", "dog", "quick", "lazy", "jumps", "vow", "box", "jug", "sphinx", "quartz")
# 10 steps in rounds of 4 (evaluations at steps 4, 8, 10), a checkpoint every 2 steps.
OVERRIDES = [
    "train.max_steps=10",
    "train.eval_every_steps=4",
    "train.checkpoint_every_steps=2",
    "train.learning_rate=0.003",
    "train.seed=3",
]
SHORT_TEXTS = ("fox jumps",)


def _line(rng, index):
    """A line whose letters are fixed little zigzags plus noise, aligned point by point."""
    text = " ".join(rng.choice(WORDS, size=int(rng.integers(1, 3))))
    points, alignment = [np.zeros((1, 3))], [0]
    for position, char in enumerate(text):
        code = ord(char)
        count = 3 + code % 3
        angle = np.linspace(0, np.pi * (1 + code % 4), count)
        glyph = np.stack([np.cos(angle) + 1.5, np.sin(angle) * (1 + code % 5), np.zeros(count)], 1)
        glyph[:, :2] += rng.normal(0, 0.05, (count, 2))
        glyph[-1, 2] = 1.0 if char == " " or position == len(text) - 1 else 0.0
        points.append(glyph)
        alignment += [position] * count
    strokes = np.concatenate(points).astype(np.float32)
    return strokes, text, np.asarray(alignment, np.int32)


def _write_split(directory, split, lines, shards):
    out = []
    for index in range(shards):
        name = f"{split}-{index:05d}-of-{shards:05d}.tfrecord"
        path = os.path.join(directory, name)
        chosen = lines[index::shards]
        with tf.io.TFRecordWriter(path) as writer:
            for number, (strokes, text, alignment) in enumerate(chosen):
                writer.write(
                    records.encode_line(
                        strokes,
                        text,
                        ALPHABET.encode(text),
                        f"{split}-{index}-{number}",
                        "w",
                        alignment,
                    )
                )
        out.append(Shard(name, sha256_file(path), len(chosen), sum(len(x[0]) for x in chosen)))
    return Split(tuple(out))


def write_corpus(directory, train_lines=26, valid_lines=7, seed=0, aligned=True):
    rng = np.random.default_rng(seed)
    lines = [_line(rng, i) for i in range(train_lines + valid_lines)]
    if not aligned:
        lines = [(strokes, text, None) for strokes, text, _ in lines]
    offsets = np.concatenate([s[:, :2] for s, _, _ in lines[:train_lines]])
    info = DatasetInfo(
        ALPHABET,
        tuple(offsets.mean(0).tolist()),
        tuple(offsets.std(0).tolist()),
        {
            "train": _write_split(directory, "train", lines[:train_lines], 3),
            "valid": _write_split(directory, "valid", lines[train_lines:], 2),
        },
        source={"kind": "test"},
    )
    info.save(directory)
    return info


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    directory = tmp_path_factory.mktemp("corpus")
    write_corpus(directory)
    return str(directory)


def tiny_config(corpus, *extra):
    return preset("tiny").with_overrides([f"data.dir={corpus}", *OVERRIDES, *extra])


def events(run_dir, run):
    """`{tag: [(step, value or image array), ...]}` of every event file of one TensorBoard run."""
    out = {}
    for path in sorted(glob.glob(os.path.join(run_dir, "logs", run, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                tensor = tf.make_ndarray(value.tensor)
                if value.metadata.plugin_data.plugin_name == "images":
                    item = np.asarray(Image.open(io.BytesIO(tensor[2])))
                else:
                    item = float(tensor)
                out.setdefault(value.tag, []).append((event.step, item))
    return out


def checkpoint_arrays(run_dir):
    state = rundir.TrainingState.load(run_dir)
    arrays = {}
    with h5py.File(os.path.join(run_dir, "checkpoint", state.weights), "r") as f:
        f.visititems(
            lambda name, obj: (
                arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None
            )
        )
    return state, arrays


@pytest.fixture(scope="module")
def reference_run(corpus, tmp_path_factory):
    """An uninterrupted tiny run through the command line, images every 4 steps."""
    run_dir = str(tmp_path_factory.mktemp("reference") / "run")
    argv = ["--preset", "tiny", "--data", corpus, "--logdir", run_dir, "--verbose", "0"]
    argv += ["--set", *OVERRIDES, "train.sample_every_steps=4"]
    stdout = io.StringIO()
    with _redirect(stdout):
        code = train_cli.main(argv)
    return run_dir, code, stdout.getvalue()


def run_dir_data(run_dir):
    return Config.load(run_dir).data.dir


class _redirect:
    def __init__(self, stream):
        self.stream = stream

    def __enter__(self):
        self.saved, sys.stdout = sys.stdout, self.stream

    def __exit__(self, *exc):
        sys.stdout = self.saved


# A run and its directory -------------------------------------------------------------------


def test_the_first_held_out_texts_hold_every_letter():
    for text in legibility.HELD_OUT_TEXTS[:3]:
        assert set(string.ascii_lowercase) <= set(text.lower()), text
    assert previews.PREVIEW_TEXTS == legibility.HELD_OUT_TEXTS[:6]


def test_cli_run_writes_the_run_directory_and_the_loss_falls(reference_run, corpus):
    run_dir, code, stdout = reference_run
    assert code == 0
    config = Config.load(run_dir)
    assert config == tiny_config(corpus, "train.sample_every_steps=4")
    assert '"max_steps": 10' in stdout  # the whole configuration is printed
    assert stdout.rstrip().endswith(
        f"TensorBoard: tensorboard --logdir {os.path.join(run_dir, 'logs')}"
    )
    assert "Training ended at step 10: reached 10 steps." in stdout
    info = DatasetInfo.from_json(json.load(open(os.path.join(run_dir, "dataset.json"))))
    assert info.alphabet == ALPHABET
    assert info == DatasetInfo.load(corpus)

    state, arrays = checkpoint_arrays(run_dir)
    assert state.step == 10
    assert arrays["optimizer/vars/0"] == 10  # the optimiser's step counter
    assert sorted(os.listdir(os.path.join(run_dir, "checkpoint"))) == [
        "state.json",
        "step-000000010.iterator.data-00000-of-00001",  # the data iterator's position
        "step-000000010.iterator.index",
        "step-000000010.weights.h5",
    ]

    validation = [v for _, v in events(run_dir, "validation")["epoch_nats_per_line"]]
    assert len(validation) == 3  # steps 4, 8, 10
    assert validation[-1] < validation[0] - 1.0
    assert state.best_val_loss == pytest.approx(min(validation), rel=1e-6)

    synth = sample.load(run_dir)  # what sampling reads back
    assert synth.alphabet == ALPHABET and synth.config == config
    with zipfile.ZipFile(os.path.join(run_dir, "model.keras")) as archive:
        with h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as f:
            assert "optimizer" not in f  # the exported network carries no optimiser slots
    for name in ("samples.png", "attention.png"):
        image = np.asarray(Image.open(os.path.join(run_dir, name)))
        assert image.ndim == 3 and image.shape[2] == 3 and image.min() < 128


def test_tensorboard_event_files_hold_scalars_and_images(reference_run):
    run_dir, _, _ = reference_run
    train_events = events(run_dir, "train")
    for tag in (
        "epoch_loss",
        "epoch_nats_per_line",
        "epoch_nats_per_point",
        "epoch_learning_rate",
        "epoch_grad_norm",
        "epoch_alignment_accuracy",
    ):
        assert [step for step, _ in train_events[tag]] == [4, 8, 10], tag
    assert [v for _, v in train_events["epoch_learning_rate"]] == pytest.approx([0.003] * 3)
    validation = events(run_dir, "validation")
    for tag in ("epoch_loss", "epoch_nats_per_line", "epoch_nats_per_point"):
        assert [step for step, _ in validation[tag]] == [4, 8, 10], tag
    assert "epoch_alignment_accuracy" in validation
    accuracy = [v for _, v in validation["epoch_alignment_accuracy"]]
    assert all(0.0 <= a <= 1.0 for a in accuracy)
    images = events(run_dir, "samples")
    assert [step for step, _ in images["samples"]] == [0, 4, 8]
    assert [step for step, _ in images["attention"]] == [0, 4, 8]
    sheet = images["samples"][-1][1]
    assert sheet.shape[1] == previews.SAMPLE_WIDTH_PX and sheet.shape[2] == 3
    attention = images["attention"][-1][1]
    assert attention.ndim == 3 and attention.shape[0] > attention.shape[1] / 50
    # The legibility score at every sample step but the untrained network's.
    assert [step for step, _ in images["legibility/cer"]] == [4, 8]
    assert all(cer >= 0.0 for _, cer in images["legibility/cer"])
    ceiling = [value for _, value in images["legibility/ceiling"]]
    assert len(ceiling) == 2 and ceiling[0] == ceiling[1] and ceiling[0] >= 0.0


def test_the_cli_run_ends_with_the_legibility_score(reference_run):
    run_dir, _, stdout = reference_run
    with open(os.path.join(run_dir, rundir.LEGIBILITY_FILENAME)) as f:
        score = json.load(f)
    assert score["model"] == run_dir
    lines = 3 * len(legibility.HELD_OUT_TEXTS)
    assert [(row["bias"], row["lines"]) for row in score["rows"]] == [
        (0.5, lines),
        (1.0, lines),
        (2.0, lines),
    ]
    assert score["ceiling"]["lines"] == 7 and score["ceiling"]["source"] == run_dir_data(run_dir)
    for row in score["rows"]:
        assert f"samples, bias {row['bias']:g} {row['cer']:7.3f} {lines:6d}" in stdout


# Resume ------------------------------------------------------------------------------------


class _Kill(Exception):
    pass


def _kill_after(kill_step):
    def hook(model, step):
        if step == kill_step:
            raise _Kill()

    return hook


def test_kill_and_resume_continues_exactly(reference_run, corpus, tmp_path):
    run_dir = str(tmp_path / "run")
    config = tiny_config(corpus)
    with pytest.raises(_Kill):
        training.train(
            config, run_dir, after_step=[_kill_after(7)], sample_texts=(), verbose=0, log=_quiet
        )
    state = rundir.TrainingState.load(run_dir)
    assert state.step == 6  # mid-round: rounds end at 4, 8, 10
    assert state.best_step == 4

    result = training.train(config, run_dir, resume=True, sample_texts=(), verbose=0, log=_quiet)
    assert result.step == 10
    assert result.stop_reason == "reached 10 steps"
    assert len(result.history["val_loss"]) == 2  # the rest of round 2 (step 8), round 3 (10)

    reference_dir, _, _ = reference_run
    reference_state, reference = checkpoint_arrays(reference_dir)
    resumed_state, resumed = checkpoint_arrays(run_dir)
    assert resumed["optimizer/vars/0"] == reference["optimizer/vars/0"] == 10
    assert sorted(resumed) == sorted(reference)
    for name in reference:
        np.testing.assert_allclose(
            resumed[name], reference[name], rtol=1e-5, atol=1e-6, err_msg=name
        )
    reference_val = [v for _, v in events(reference_dir, "validation")["epoch_loss"]]
    np.testing.assert_allclose(result.history["val_loss"], reference_val[1:], rtol=1e-5)
    assert resumed_state.best_step == reference_state.best_step
    assert resumed_state.best_val_loss == pytest.approx(reference_state.best_val_loss, rel=1e-5)

    # A finished run resumed again has nothing left to do.
    again = training.train(config, run_dir, resume=True, sample_texts=(), verbose=0, log=_quiet)
    assert again.step == 10 and again.history == {}


def test_the_decayed_learning_rate_carries_on_along_its_curve_after_a_resume(corpus, tmp_path):
    run_dir = str(tmp_path / "run")
    config = tiny_config(corpus, "train.lr_decay_steps=6", "train.lr_final_fraction=0.2")
    with pytest.raises(_Kill):
        training.train(
            config, run_dir, after_step=[_kill_after(7)], sample_texts=(), verbose=0, log=_quiet
        )
    training.train(config, run_dir, resume=True, sample_texts=(), verbose=0, log=_quiet)

    def cosine(step):  # Loshchilov & Hutter's curve in float64, held after its last step
        done = min(step, 6) / 6
        return 0.003 * (0.2 + 0.8 * 0.5 * (1 + np.cos(np.pi * done)))

    logged = events(run_dir, "train")["epoch_learning_rate"]
    assert [step for step, _ in logged] == [4, 8, 10]
    np.testing.assert_allclose([v for _, v in logged], [cosine(s) for s in (4, 8, 10)], rtol=1e-5)


def _quiet(*args):
    pass


def _recording_pipeline(monkeypatch):
    """Makes the training split's pipeline append a fingerprint of each batch it yields:
    `(sum of its targets, steps, lines)`."""
    yielded = []
    load_dataset = data.load_dataset

    def recording(data_dir, split, **kwargs):
        batches = load_dataset(data_dir, split, **kwargs)
        if split != "train":
            return batches

        def record(inputs, targets, weights):
            tf.py_function(
                lambda t: yielded.append(
                    (float(tf.reduce_sum(t)), int(tf.shape(t)[1]), int(tf.shape(t)[0]))
                ),
                [targets],
                [],
            )
            return inputs, targets, weights

        options = tf.data.Options()
        # Run the recording map only when the loop draws a batch (no prefetch after it), and
        # leave the Python list out of the iterator's checkpoint.
        options.experimental_optimization.inject_prefetch = False
        options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.IGNORE
        return batches.map(record).with_options(options)

    monkeypatch.setattr(data, "load_dataset", recording)
    return yielded


class ScriptedLegibility:
    """A legibility function (`training.train`'s `legibility`) that returns the CER of a table
    by optimiser step, and records the weights at every step."""

    def __init__(self, cer_by_step):
        self.cer_by_step, self.step, self.weights = cer_by_step, 0, {}

    def after_step(self, model, step):
        self.step = step
        self.weights[step] = model.get_weights()

    def __call__(self, synth):
        return {"cer": self.cer_by_step[self.step]}


def _kept_weights(run_dir):
    return keras.saving.load_model(
        os.path.join(run_dir, "model.keras"), compile=False
    ).get_weights()


def _train_scored(config, run_dir, scorer, resume=False, log=_quiet):
    """`training.train` with `scorer` (a `ScriptedLegibility`) as the legibility function."""
    training.train(
        config,
        run_dir,
        resume=resume,
        after_step=[scorer.after_step],
        legibility=scorer,
        verbose=0,
        log=log,
    )


def _same_weights(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_keep_legibility_keeps_the_most_legible_network_across_a_resume(corpus, tmp_path):
    """Samples at steps 2, 4, 6, 8 and the last network (9) are scored; model.keras is the
    network of the lowest CER (step 2, where no validation runs), also when the run stops at
    step 6 and resumes."""
    cers = {2: 0.5, 4: 0.9, 6: 0.7, 8: 0.6, 9: 0.55}
    extra = ["train.max_steps=9", "train.sample_every_steps=2", "train.keep=legibility"]
    whole = ScriptedLegibility(cers)
    logs = []
    _train_scored(tiny_config(corpus, *extra), str(tmp_path / "whole"), whole, log=logs.append)
    state = rundir.TrainingState.load(str(tmp_path / "whole"))
    assert (state.step, state.best_cer, state.best_cer_step) == (9, 0.5, 2)
    assert state.best_step in (4, 8, 9)  # the validations' steps
    assert _same_weights(_kept_weights(str(tmp_path / "whole")), whole.weights[2])
    assert "model.keras is the network of step 2." in logs
    # Stopped at step 6, resumed to 9: the same network is kept.
    resumed = ScriptedLegibility(cers)
    for steps, resume in (("train.max_steps=6", False), ("train.max_steps=9", True)):
        _train_scored(
            tiny_config(corpus, *extra, steps), str(tmp_path / "resumed"), resumed, resume
        )
    assert _same_weights(_kept_weights(str(tmp_path / "resumed")), whole.weights[2])
    # The last network is scored when it is the best.
    last = ScriptedLegibility({**cers, 9: 0.1})
    _train_scored(tiny_config(corpus, *extra), str(tmp_path / "last"), last)
    assert rundir.TrainingState.load(str(tmp_path / "last")).best_cer_step == 9
    assert _same_weights(_kept_weights(str(tmp_path / "last")), last.weights[9])


def test_keep_val_loss_records_the_best_legibility_but_keeps_by_loss(corpus, tmp_path):
    scorer = ScriptedLegibility({2: 0.9, 4: 0.5, 6: 0.7, 8: 0.6, 10: 0.8})
    run_dir = str(tmp_path / "run")
    _train_scored(tiny_config(corpus, "train.sample_every_steps=2"), run_dir, scorer)
    state = rundir.TrainingState.load(run_dir)
    assert (state.best_cer, state.best_cer_step) == (0.5, 4)
    assert _same_weights(_kept_weights(run_dir), scorer.weights[state.best_step])


def test_resume_reads_no_batch_twice(corpus, tmp_path, monkeypatch):
    yielded = _recording_pipeline(monkeypatch)
    config = tiny_config(corpus, "train.max_steps=8")  # rounds end at 4, 8; checkpoints at 2, 6
    keras.utils.set_random_seed(config.train.seed)  # as `train` does: the order depends on it
    stream = iter(run_data.training_stream(config))
    for _ in range(8):
        next(stream)
    uninterrupted = list(yielded)
    assert len(uninterrupted) == 8 and len(set(uninterrupted)) == 8

    run_dir = str(tmp_path / "run")
    yielded.clear()
    with pytest.raises(_Kill):
        training.train(
            config, run_dir, after_step=[_kill_after(7)], sample_texts=(), verbose=0, log=_quiet
        )
    assert yielded == uninterrupted[:7]
    assert rundir.TrainingState.load(run_dir).step == 6

    yielded.clear()
    result = training.train(config, run_dir, resume=True, sample_texts=(), verbose=0, log=_quiet)
    assert result.step == 8
    # The resumed run draws the batches of steps 7 and 8 and nothing before them: no replay.
    assert yielded == uninterrupted[6:8]


def test_curriculum_switches_pieces_once_and_resumes_on_either_side(corpus, tmp_path, monkeypatch):
    yielded = _recording_pipeline(monkeypatch)
    config = tiny_config(
        corpus,
        "train.max_steps=8",
        "train.curriculum_steps=4",
        "train.curriculum_max_points=8",
        "train.max_points=64",
    )
    keras.utils.set_random_seed(config.train.seed)  # as `train` does: the order depends on it
    for step in (0, 4):  # the short pieces' stream, then the long ones' from its start
        stream = iter(run_data.training_stream(config, step))
        for _ in range(4):
            next(stream)
    uninterrupted = list(yielded)
    assert max(steps for _, steps, _ in uninterrupted[:4]) <= 7
    assert max(steps for _, steps, _ in uninterrupted[4:]) > 7

    for kill, saved in ((3, 2), (7, 6)):  # a checkpoint before the switch, and one after
        run_dir = str(tmp_path / f"run{kill}")
        yielded.clear()
        logged = []
        with pytest.raises(_Kill):
            training.train(
                config,
                run_dir,
                after_step=[_kill_after(kill)],
                sample_texts=(),
                verbose=0,
                log=logged.append,
            )
        assert yielded == uninterrupted[:kill]
        assert any(
            line.startswith("Training lines (pieces of at most 8 points): ") for line in logged
        )
        assert any("Step 4: the curriculum ends" in line for line in logged) == (kill > 4)
        assert rundir.TrainingState.load(run_dir).step == saved
        yielded.clear()
        result = training.train(
            config, run_dir, resume=True, sample_texts=(), verbose=0, log=_quiet
        )
        assert result.step == 8
        assert yielded == uninterrupted[saved:8]


def test_curriculum_batch_size_holds_until_the_curriculum_ends_and_across_a_resume(
    corpus, tmp_path, monkeypatch
):
    # The same pieces before and after step 4: only the batch size changes, and that alone
    # must make the stream anew.
    yielded = _recording_pipeline(monkeypatch)
    config = tiny_config(
        corpus,
        "train.max_steps=8",
        "train.curriculum_steps=4",
        "train.curriculum_batch_size=2",
        "train.curriculum_max_points=64",
        "train.max_points=64",
    )
    assert config.train.batch_size == 4
    run_dir = str(tmp_path / "run")
    logged = []
    with pytest.raises(_Kill):
        training.train(
            config,
            run_dir,
            after_step=[_kill_after(7)],
            sample_texts=(),
            verbose=0,
            log=logged.append,
        )
    assert [lines for _, _, lines in yielded] == [2, 2, 2, 2, 4, 4, 4]
    assert any(line.endswith("; batches of 2 lines") for line in logged)
    assert any(
        "Step 4: the curriculum ends" in line and "batches of 4 lines" in line for line in logged
    )
    saved = rundir.TrainingState.load(run_dir).step
    assert saved == 6
    before = list(yielded)
    yielded.clear()
    result = training.train(config, run_dir, resume=True, sample_texts=(), verbose=0, log=_quiet)
    assert result.step == 8
    # The resumed run draws what the killed one would have drawn after its checkpoint.
    assert yielded[0] == before[saved] and [lines for _, _, lines in yielded] == [4, 4]


def test_resume_removes_the_temporary_files_of_a_killed_run(corpus, tmp_path):
    run_dir = tmp_path / "run"
    config = tiny_config(corpus, "train.max_steps=2", "train.eval_every_steps=2")
    training.train(config, run_dir, sample_texts=(), verbose=0, log=_quiet)
    # What a SIGKILL inside a checkpoint write and inside a model.keras write leaves behind:
    # a weights file, the iterator's files (TensorFlow writes them through a folder) and a
    # whole iterator checkpoint that state.json does not name yet.
    checkpoint_dir = run_dir / "checkpoint"
    (checkpoint_dir / ".step-000000003.weights.h5.k2j4h5l1.tmp.weights.h5").touch()
    (checkpoint_dir / "step-000000003.iterator_temp").mkdir()
    (checkpoint_dir / "step-000000003.iterator_temp" / "part-00000-of-00001.index").touch()
    (checkpoint_dir / "step-000000003.iterator.index").touch()
    (run_dir / ".model.keras.a8b9c0d1.tmp.keras").write_bytes(b"PK")
    (run_dir / "notes.txt").write_text("a user's file stays")
    lines = []
    config = tiny_config(corpus, "train.max_steps=4", "train.eval_every_steps=2")
    training.train(config, run_dir, resume=True, sample_texts=(), verbose=0, log=lines.append)
    assert f"Removed 1 temporary file(s) a killed run left in {run_dir}" in lines
    assert f"Removed 3 temporary file(s) a killed run left in {checkpoint_dir}" in lines
    assert sorted(os.listdir(run_dir / "checkpoint")) == [
        "state.json",
        "step-000000004.iterator.data-00000-of-00001",
        "step-000000004.iterator.index",
        "step-000000004.weights.h5",
    ]
    assert not [n for n in os.listdir(run_dir) if ".tmp" in n]
    assert (run_dir / "notes.txt").read_text() == "a user's file stays"


def test_alignment_is_shown_only_where_the_data_have_one(tmp_path):
    corpus = tmp_path / "unaligned"
    corpus.mkdir()
    write_corpus(corpus, train_lines=8, valid_lines=3, aligned=False)
    run_dir = tmp_path / "run"
    config = tiny_config(str(corpus), "train.max_steps=2", "train.eval_every_steps=2")
    result = training.train(config, run_dir, sample_texts=(), verbose=0, log=_quiet)
    assert "nats_per_line" in result.history and "val_nats_per_line" in result.history
    assert not [name for name in result.history if "alignment" in name]
    for run in ("train", "validation"):
        tags = events(str(run_dir), run)
        assert "epoch_nats_per_point" in tags
        assert not [tag for tag in tags if "alignment" in tag], run


# Guards ------------------------------------------------------------------------------------


def _poison_at(poison_step):
    def hook(model, step):
        if step == poison_step:
            kernel = model.head.kernel
            kernel.assign(np.full(kernel.shape, np.nan, np.float32))

    return hook


@pytest.mark.parametrize(
    "poison_step, message",
    [
        (
            4,
            r"step 4: weight head/kernel holds NaN or Inf; stopped without saving\. "
            r"The checkpoint of step 2 is kept",
        ),
        (
            3,
            r"step 4: the training loss is nan; stopped without saving\. "
            r"The checkpoint of step 2 is kept",
        ),
    ],
)
def test_nan_stops_training_and_keeps_the_last_good_checkpoint(
    corpus, tmp_path, poison_step, message
):
    run_dir = str(tmp_path / "run")
    config = tiny_config(corpus, "train.eval_every_steps=2")
    with pytest.raises(training.TrainingError, match=message):
        training.train(
            config,
            run_dir,
            after_step=[_poison_at(poison_step)],
            sample_texts=(),
            verbose=0,
            log=_quiet,
        )
    state, arrays = checkpoint_arrays(run_dir)
    assert state.step == 2
    assert all(np.isfinite(a).all() for a in arrays.values() if a.dtype.kind == "f")


def test_refuses_a_run_directory_of_another_run(corpus, tmp_path):
    run_dir = str(tmp_path / "run")
    os.makedirs(run_dir)
    tiny_config(corpus).save(run_dir)
    other = tiny_config(corpus, "train.learning_rate=0.01")
    with pytest.raises(
        training.TrainingError,
        match=r"holds a run with another configuration \(with no checkpoint yet; differs in "
        r"train\.learning_rate: 0\.003 -> 0\.01\)\. Pass --resume",
    ):
        training.train(other, run_dir, log=_quiet)
    os.makedirs(os.path.join(run_dir, "checkpoint"))
    for name in ("step-000000002.weights.h5", "step-000000002.iterator.index"):
        open(os.path.join(run_dir, "checkpoint", name), "wb").close()
    state = rundir.TrainingState(
        2, "step-000000002.weights.h5", "step-000000002.iterator", 1.0, None, 0, 0
    )
    with open(os.path.join(run_dir, "checkpoint", "state.json"), "w") as f:
        json.dump(state.to_json(), f)
    with pytest.raises(
        training.TrainingError, match=r"already holds this run \(at step 2\)\. Pass --resume"
    ):
        training.train(tiny_config(corpus), run_dir, log=_quiet)
    bigger = tiny_config(corpus, "model.units=9")
    with pytest.raises(
        training.TrainingError, match=r"the model cannot change .*model\.units: 8 -> 9"
    ):
        training.train(bigger, run_dir, resume=True, log=_quiet)
    # --resume reads the stored configuration; --set changes what it may.
    resolved = rundir.resolve_config(run_dir, "paper", ["train.max_steps=12"], resume=True)
    assert resolved == tiny_config(corpus, "train.max_steps=12")


def test_resume_refuses_data_with_another_alphabet(corpus, tmp_path):
    run_dir = str(tmp_path / "run")
    os.makedirs(run_dir)
    config = tiny_config(corpus)
    config.save(run_dir)
    info = DatasetInfo.load(corpus)
    DatasetInfo(Alphabet("abc"), info.offset_mean, info.offset_std, info.splits).save(run_dir)
    with pytest.raises(training.TrainingError, match=r"dataset\.json: the alphabet differ"):
        training.train(config, run_dir, resume=True, log=_quiet)


def test_a_new_run_starts_from_the_weights_of_a_model_directory(reference_run, corpus, tmp_path):
    source = reference_run[0]
    start = rundir.load(source).model.get_weights()
    after_one_step = []
    logs = []
    rate = 1e-3
    config = tiny_config(
        corpus, "train.max_steps=1", f"train.learning_rate={rate}", f"train.init_from={source}"
    )
    training.train(
        config,
        str(tmp_path / "run"),
        after_step=[lambda model, step: after_one_step.append(model.get_weights())],
        sample_texts=(),
        legibility=None,
        verbose=0,
        log=logs.append,
    )
    assert f"Starting from the weights of {source}" in logs
    # Adam's first step moves every weight by lr * g / (|g| + epsilon): at most the rate (and
    # float32 round-off of weights near 1), nearly the rate where a gradient is not tiny.
    moved = max(float(np.abs(a - b).max()) for a, b in zip(after_one_step[0], start, strict=True))
    assert rate / 2 < moved <= rate + 1e-6
    assert Config.load(str(tmp_path / "run")).train.init_from == source


def test_init_from_refuses_another_network_and_a_missing_directory(reference_run, corpus, tmp_path):
    source = reference_run[0]
    config = tiny_config(corpus, f"train.init_from={source}", "model.units=9")
    with pytest.raises(
        training.TrainingError, match=r"holds another network \(model\.units: 8 -> 9\)"
    ):
        training.train(config, str(tmp_path / "a"), sample_texts=(), verbose=0, log=_quiet)
    config = tiny_config(corpus, f"train.init_from={tmp_path / 'none'}")
    with pytest.raises(training.TrainingError, match=r"train\.init_from: .*none: no such model"):
        training.train(config, str(tmp_path / "b"), sample_texts=(), verbose=0, log=_quiet)


# Strategies --------------------------------------------------------------------------------

_MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from handwriting import distribution, training
    from handwriting.presets import preset
    corpus, out = sys.argv[1], sys.argv[2]
    config = preset("tiny").with_overrides(
        [f"data.dir={corpus}", "train.max_steps=3", "train.eval_every_steps=3",
         "train.learning_rate=0.003"]
    )
    results = {}
    for name in ("mirrored", "one_device"):
        result = training.train(config, f"{out}/{name}", strategy=name, sample_texts=(),
                                verbose=0, log=lambda *a: None)
        replicas = distribution.make_strategy(name).num_replicas_in_sync
        results[name] = {"history": result.history, "replicas": replicas}
    print("RESULT " + json.dumps(results))
    """
)


def test_mirrored_over_two_cpu_devices_matches_one_device(corpus, tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", _MIRRORED_SCRIPT, corpus, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("RESULT "))
    results = json.loads(line[len("RESULT ") :])
    assert results["mirrored"]["replicas"] == 2 and results["one_device"]["replicas"] == 1
    mirrored, single = results["mirrored"]["history"], results["one_device"]["history"]
    for name in ("loss", "nats_per_line", "nats_per_point", "grad_norm", "val_loss"):
        np.testing.assert_allclose(mirrored[name], single[name], rtol=1e-4, err_msg=name)
    _, a = checkpoint_arrays(str(tmp_path / "mirrored"))
    _, b = checkpoint_arrays(str(tmp_path / "one_device"))
    for name in b:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-4, atol=1e-6, err_msg=name)


def test_make_strategy_rejects_unknown_names():
    with pytest.raises(ValueError, match=r"`strategy` must be one of .*received 'tpu'"):
        distribution.make_strategy("tpu")


def test_limits_count_the_time_of_earlier_sessions():
    limits = training.TrainingLimits(max_steps=7, budget_seconds=60.0, previous_seconds=59.0)
    assert limits.check(3) is None
    limits.previous_seconds = 60.5  # this session plus the stored time passes the budget
    assert limits.check(3) == "used its time budget of 1 minutes"
    assert limits.check(7) == "reached 7 steps"
    assert training.TrainingLimits(7, 0.0, previous_seconds=1e9).check(3) is None  # 0: none


def test_early_stopping_count_carries_over_resumes(tmp_path):
    (tmp_path / "checkpoint").mkdir()
    for name in ("step-000000008.weights.h5", "step-000000008.iterator.index"):
        (tmp_path / "checkpoint" / name).touch()
    state = rundir.TrainingState(
        8, "step-000000008.weights.h5", "step-000000008.iterator", 1.0, 50.0, 4, 1
    )
    state.save(tmp_path)
    resumed = rundir.TrainingState.load(tmp_path)  # the count a resumed run starts from
    assert (resumed.early_stopping_wait, resumed.best_val_loss) == (1, 50.0)
    worse = resumed.validated(10, 51.0)  # no better: the second evaluation without
    assert (worse.early_stopping_wait, worse.best_val_loss, worse.best_step) == (2, 50.0, 4)
    assert worse.validated(12, float("nan")).early_stopping_wait == 3
    better = worse.validated(12, 40.0)
    assert (better.early_stopping_wait, better.best_val_loss, better.best_step) == (0, 40.0, 12)
