"""Training: resume, the distribution strategy, callbacks, and `train`.

A run directory (`handwriting.rundir`) holds everything that sampling and export read back.

Schedule. `keras.Model.fit` runs rounds (Keras epochs) of `train.eval_every_steps` steps over
an endless, seeded, shuffled stream of batches; each round ends with the validation split
(nats per line, the early-stopping criterion). Rounds are aligned to the global step: round r
covers steps `[r * eval_every_steps, (r + 1) * eval_every_steps)`, so a resumed run evaluates
at the same steps as an uninterrupted one. Training ends at `train.max_steps` (or after
`train.epochs` passes over the training lines), at the time budget, or by early stopping;
every way ends with a validation and a checkpoint.

Exact resume. A checkpoint holds the weights, the optimiser slots and step counter, and the
early-stopping count; the data position is the number of batches drawn, which equals the
optimiser step. The batch stream is a pure function of the seed, so a resumed run rebuilds it
and skips that many batches (`Dataset.skip`), and the next batch is the one the interrupted
run would have drawn. (`fit` creates its data iterator itself, so the iterator cannot be put in
a `tf.train.Checkpoint`; and Keras' `BackupAndRestore` restores only the epoch index, restarting
an interrupted epoch from its first batch.) Checkpoints are written atomically and never with
NaN or infinite weights.
"""

import contextlib
import dataclasses
import json
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf

from handwriting import data, files, render, rundir
from handwriting import sample as sample_lib
from handwriting.config import Config, ConfigError, preset
from handwriting.dataset_info import FILENAME as DATASET_FILENAME
from handwriting.dataset_info import DatasetInfo
from handwriting.model import build_model, build_optimizer

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")
# Sentences with every letter of the alphabet, in no training corpus: the samples written to
# TensorBoard during training and to samples.png at the end.
HELD_OUT_TEXTS = (
    "the quick brown fox jumps over the lazy dog",
    "Sphinx of black quartz, judge my vow.",
    "Pack my box with five dozen liquor jugs!",
)
# Sampling bias b of the held-out samples (Graves eq. 61-62): neat but not frozen.
SAMPLE_BIAS = 1.0
# Seed of the held-out samples: the same strokes' randomness at every step, so the images show
# the network changing rather than the draws.
SAMPLE_SEED = 0
# Height in pixels of one line of handwriting in the sample images.
SAMPLE_LINE_PX = 64
# Width in pixels of the sample images: long lines shrink to fit, short ones leave room for
# their labels; the same size at every step.
SAMPLE_WIDTH_PX = 1024


class TrainingError(RuntimeError):
    """Training cannot start or go on; the message says why and what to do."""


STATE_FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class TrainingState:
    """What `checkpoint/state.json` records besides the weights file."""

    step: int  # optimiser steps done = batches drawn from the training stream
    weights: str  # file name, inside checkpoint/, of the network and optimiser weights
    elapsed_seconds: float  # training time so far, all sessions together
    best_val_loss: float | None  # lowest validation nats per line so far (model.keras)
    best_step: int  # the step of best_val_loss
    early_stopping_wait: int  # evaluations since the last improvement
    early_stopping_best: float | None  # the early-stopping reference value

    def to_json(self) -> dict:
        return {"format_version": STATE_FORMAT_VERSION, **dataclasses.asdict(self)}

    @classmethod
    def load(cls, run_dir) -> "TrainingState | None":
        """Reads `run_dir/checkpoint/state.json`; None when there is none."""
        path = os.path.join(run_dir, rundir.CHECKPOINT_DIR, rundir.STATE_FILENAME)
        try:
            with open(path, encoding="utf-8") as f:
                obj = json.load(f)
        except FileNotFoundError:
            return None
        except json.JSONDecodeError as e:
            raise TrainingError(f"{path}: not valid JSON: line {e.lineno}: {e.msg}") from None
        if not isinstance(obj, dict) or obj.get("format_version") != STATE_FORMAT_VERSION:
            raise TrainingError(
                f"{path}: format_version must be {STATE_FORMAT_VERSION}, received "
                f"{obj.get('format_version') if isinstance(obj, dict) else obj!r}"
            )
        fields = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(fields - set(obj))
        if missing:
            raise TrainingError(f"{path}: missing fields {missing}")
        state = cls(**{k: obj[k] for k in fields})
        weights = os.path.join(run_dir, rundir.CHECKPOINT_DIR, state.weights)
        if not os.path.isfile(weights):
            raise TrainingError(f"{path}: names {state.weights}, which is missing")
        return state


@dataclasses.dataclass(frozen=True)
class TrainingResult:
    """What `train` did."""

    run_dir: str
    step: int  # optimiser steps done in total
    stop_reason: str  # why training ended, in words
    best_val_loss: float | None  # nats per line of model.keras
    best_step: int
    history: dict  # metric name -> values of the rounds run by this call, in order
    files: tuple  # paths written at the end (model, images)


# ---------------------------------------------------------------------------------------------
# Configuration and the run directory


def resolve_config(run_dir, preset_name, overrides, resume) -> Config:
    """The configuration of a run: the stored one when resuming, else the preset's.

    Args:
        run_dir: the run directory.
        preset_name: `paper`, `demo` or `tiny`; ignored when resuming a stored run.
        overrides: `section.field=value` strings applied last (`Config.with_overrides`).
        resume: continue the run stored in `run_dir` (when there is one).

    Raises:
        ConfigError: an unknown preset, key or value; the message names it.
    """
    stored = os.path.join(run_dir, rundir.CONFIG_FILENAME)
    if resume and os.path.isfile(stored):
        base = Config.load(run_dir)
    else:
        base = preset(preset_name)
    return base.with_overrides(list(overrides))


def _differences(old: Config, new: Config, sections=("model", "train", "data")) -> list:
    """`section.field: old -> new` for every field that differs."""
    out = []
    old_json, new_json = old.to_json(), new.to_json()
    for section in sections:
        for key in sorted(new_json[section]):
            a, b = old_json[section].get(key), new_json[section][key]
            if a != b:
                out.append(f"{section}.{key}: {a!r} -> {b!r}")
    return out


def _check_run_dir(run_dir, config: Config, resume: bool, log) -> TrainingState | None:
    """Refuses to mix runs in one directory; returns the state to resume from, if any."""
    if not os.path.isfile(os.path.join(run_dir, rundir.CONFIG_FILENAME)):
        if os.path.isdir(os.path.join(run_dir, rundir.CHECKPOINT_DIR)):
            raise TrainingError(
                f"{run_dir}: holds a checkpoint but no config.json; it is not a run directory "
                "this version wrote; choose another --logdir"
            )
        return None
    stored = Config.load(run_dir)
    state = TrainingState.load(run_dir)
    progress = f"at step {state.step}" if state else "with no checkpoint yet"
    if not resume:
        changed = _differences(stored, config)
        if not changed and state is None:
            return None  # the same run, stopped before its first checkpoint: start it again
        if changed:
            raise TrainingError(
                f"{run_dir}: holds a run with another configuration ({progress}; differs in "
                f"{'; '.join(changed)}). Pass --resume to continue that run (with its stored "
                "configuration), or choose another --logdir"
            )
        raise TrainingError(
            f"{run_dir}: already holds this run ({progress}). Pass --resume to continue it, "
            "or choose another --logdir"
        )
    shape = _differences(stored, config, sections=("model",))
    if shape:
        raise TrainingError(
            f"{run_dir}: the model cannot change when a run is resumed ({'; '.join(shape)}); "
            "start a new run in another --logdir"
        )
    changed = _differences(stored, config, sections=("train", "data"))
    if changed:
        log(f"Resuming with changed settings: {'; '.join(changed)}")
    return state


def _check_dataset(run_dir, info: DatasetInfo, data_dir) -> None:
    """A resumed run must read text with its alphabet and points with its statistics."""
    path = os.path.join(run_dir, DATASET_FILENAME)
    if not os.path.isfile(path):
        return
    try:
        with open(path, encoding="utf-8") as f:
            stored = DatasetInfo.from_json(json.load(f), where=path)
    except json.JSONDecodeError as e:
        raise TrainingError(f"{path}: not valid JSON: line {e.lineno}: {e.msg}") from None
    problems = []
    if stored.alphabet != info.alphabet:
        problems.append("the alphabet")
    if tuple(stored.offset_mean) != tuple(info.offset_mean) or tuple(stored.offset_std) != tuple(
        info.offset_std
    ):
        problems.append("the normalisation statistics")
    if problems:
        raise TrainingError(
            f"{os.path.join(data_dir, DATASET_FILENAME)}: {' and '.join(problems)} differ from "
            f"those the run was trained with ({path}); a network cannot switch data encodings"
        )


# ---------------------------------------------------------------------------------------------
# Distribution


def make_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """The `tf.distribute` strategy called `name`.

    - `auto`: `MirroredStrategy` over the GPUs when there are several, else the default
      strategy (one device: the GPU when there is one, else the CPU).
    - `one_device`: `OneDeviceStrategy` on the first GPU, or the CPU.
    - `mirrored`: `MirroredStrategy` over every GPU, or over every logical CPU device when
      there is no GPU (tests split the CPU into logical devices).
    - `multi_worker`: `MultiWorkerMirroredStrategy`; the cluster comes from `TF_CONFIG`
      (none: one worker).
    """
    if name not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {STRATEGIES}, received {name!r}")
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    if name == "auto":
        return (
            tf.distribute.MirroredStrategy(gpus) if len(gpus) > 1 else tf.distribute.get_strategy()
        )
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0] if gpus else "/cpu:0")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(
            gpus or [d.name for d in tf.config.list_logical_devices("CPU")]
        )
    return tf.distribute.MultiWorkerMirroredStrategy()


def _is_chief(strategy) -> bool:
    """Only the chief of a multi-worker cluster writes files; every other strategy is one."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    cluster = resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in cluster


# ---------------------------------------------------------------------------------------------
# Files


def _nonfinite_weight(model):
    """The path of the first weight holding NaN or Inf, optimiser slots included; else None."""
    variables = list(model.weights) + list(model.optimizer.variables)
    for variable in variables:
        value = np.asarray(variable.numpy())
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            return variable.path
    return None


def optimizer_step(model) -> int:
    """The optimiser's step counter (a mirrored variable under a distribution strategy)."""
    return int(model.optimizer.iterations.value.numpy())


def export_model(model, path) -> None:
    """Writes the network alone (no optimiser slots) as a `.keras` file, atomically."""
    clone = type(model).from_config(model.get_config())
    clone.set_weights(model.get_weights())
    with files.atomic_path(path, keep_suffix=True) as tmp:
        clone.save(tmp)


# ---------------------------------------------------------------------------------------------
# Callbacks


class _Clock:
    """Training time over all sessions of a run: the stored time plus this session's."""

    def __init__(self, previous_seconds: float):
        self.previous = float(previous_seconds)
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return self.previous + time.monotonic() - self.started


class StepTensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback with each round's summaries written at the optimiser step.

    Keras writes a round's (epoch's) train and validation scalars at the epoch index; here they
    go at the global step, so curves line up with the sample images and continue across resumes.
    """

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(optimizer_step(self.model), logs)


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """Keras' early stopping on the validation loss, whose count carries over resumes.

    `EarlyStopping` resets its count at the start of every `fit`; this one starts from
    `wait` and `best` (a resumed run's, or those of the previous `fit` of the same run).
    """

    def __init__(self, patience: int, wait: int = 0, best: float | None = None):
        super().__init__(monitor="val_loss", mode="min", patience=patience)
        self.carried_wait = int(wait)
        self.carried_best = best

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self.wait, self.best = self.carried_wait, self.carried_best

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        self.carried_wait = int(self.wait)
        self.carried_best = None if self.best is None else float(self.best)

    @property
    def exhausted(self) -> bool:
        """True when the patience has run out."""
        return self.carried_wait >= self.patience


class TrainingLimits(keras.callbacks.Callback):
    """Stops training at a step count or a time budget (Keras has neither across sessions)."""

    def __init__(self, max_steps: int, budget_seconds: float, clock: _Clock):
        super().__init__()
        self.max_steps = max_steps
        self.budget_seconds = budget_seconds
        self.clock = clock
        self.reason = None

    def check(self, step: int) -> str | None:
        """Why training must stop at `step` (and at the clock's time), or None."""
        if step >= self.max_steps:
            return f"reached {self.max_steps} steps"
        if self.budget_seconds and self.clock.elapsed() >= self.budget_seconds:
            return f"used its time budget of {self.budget_seconds / 60:g} minutes"
        return None

    def on_train_batch_end(self, batch, logs=None):
        reason = self.check(optimizer_step(self.model))
        if reason is not None:
            self.reason = reason
            self.model.stop_training = True


class Checkpointer(keras.callbacks.Callback):
    """Saves the training state and the best network; refuses NaN and Inf.

    Every `every` steps and at the end of every round (after its validation) it writes the
    weights and optimiser slots to `checkpoint/step-N.weights.h5` and then `state.json`
    naming it (each atomically; the previous weights file is removed after). When a round's
    validation loss is the lowest so far, the network alone goes to `model.keras`. A NaN or
    infinite loss, or weights holding one, stop training with `TrainingError` before anything
    is written, so the last checkpoint stays a good one.
    """

    def __init__(
        self,
        run_dir,
        every: int,
        clock: _Clock,
        early_stopping: ResumableEarlyStopping | None,
        state: TrainingState | None,
        writes_files: bool = True,
    ):
        super().__init__()
        self.run_dir = os.fspath(run_dir)
        self.every = every
        self.clock = clock
        self.early_stopping = early_stopping
        self.writes_files = writes_files
        self.saved_step = state.step if state else None
        self.weights_name = state.weights if state else None
        self.best_val_loss = state.best_val_loss if state else None
        self.best_step = state.best_step if state else 0

    @property
    def step(self) -> int:
        return optimizer_step(self.model)

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise TrainingError(
                f"step {self.step}: the training loss is {float(loss)}; stopped without "
                f"saving. {self._advice()}"
            )
        if self.step % self.every == 0:
            self.save()

    def on_epoch_end(self, epoch, logs=None):
        val_loss = (logs or {}).get("val_loss")
        if val_loss is not None and math.isfinite(float(val_loss)):
            if self.best_val_loss is None or float(val_loss) < self.best_val_loss:
                self._check_weights()
                self.best_val_loss, self.best_step = float(val_loss), self.step
                if self.writes_files:
                    export_model(self.model, os.path.join(self.run_dir, rundir.MODEL_FILENAME))
        self.save(force_state=True)

    def _advice(self) -> str:
        kept = (
            f"The checkpoint of step {self.saved_step} is kept"
            if self.saved_step is not None
            else "No checkpoint was written"
        )
        return (
            f"{kept}. Lower train.learning_rate or set train.clip_norm, then continue with "
            "--resume --set ..."
        )

    def _check_weights(self):
        bad = _nonfinite_weight(self.model)
        if bad is not None:
            raise TrainingError(
                f"step {self.step}: weight {bad} holds NaN or Inf; stopped without saving. "
                f"{self._advice()}"
            )

    def save(self, force_state=False):
        """Writes the weights (when the step is new) and `state.json`."""
        step = self.step
        if step == self.saved_step and not force_state:
            return
        self._check_weights()
        if not self.writes_files:
            self.saved_step = step
            return
        directory = os.path.join(self.run_dir, rundir.CHECKPOINT_DIR)
        old = self.weights_name
        if step != self.saved_step or old is None:
            name = f"step-{step:09d}.weights.h5"
            with files.atomic_path(os.path.join(directory, name), keep_suffix=True) as tmp:
                self.model.save_weights(tmp)
            self.weights_name = name
        early = self.early_stopping
        state = TrainingState(
            step=step,
            weights=self.weights_name,
            elapsed_seconds=self.clock.elapsed(),
            best_val_loss=self.best_val_loss,
            best_step=self.best_step,
            early_stopping_wait=early.carried_wait if early else 0,
            early_stopping_best=early.carried_best if early else None,
        )
        text = json.dumps(state.to_json(), indent=2, sort_keys=True) + "\n"
        files.write_text(os.path.join(directory, rundir.STATE_FILENAME), text)
        if old is not None and old != self.weights_name:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(directory, old))
        self.saved_step = step


@dataclasses.dataclass(frozen=True)
class _ValidationLine:
    """One validation line, unpadded: the batch dict of a single line and its text."""

    inputs: dict
    text: str


def _validation_line(dataset, alphabet) -> _ValidationLine | None:
    """The first line of the first validation batch (the split is read in a fixed order)."""
    for inputs, _, _ in dataset.take(1):
        steps = int(tf.reduce_sum(tf.cast(inputs["strokes_mask"][0], tf.int32)))
        chars = int(tf.reduce_sum(tf.cast(inputs["chars_mask"][0], tf.int32)))
        line = {
            "strokes": inputs["strokes"][:1, :steps],
            "strokes_mask": inputs["strokes_mask"][:1, :steps],
            "chars": inputs["chars"][:1, :chars],
            "chars_mask": inputs["chars_mask"][:1, :chars],
        }
        return _ValidationLine(line, alphabet.decode(line["chars"][0].numpy()))
    return None


def attention_map(model, line: _ValidationLine) -> np.ndarray:
    """`render.attention_image` of the window's phi(t, u) over a validation line."""
    phi = model.forward(line.inputs)["phi"][0].numpy()  # [T, U]
    return render.attention_image(phi, line.text)


def sample_sheet(synth, texts) -> np.ndarray:
    """The held-out `texts` written at `SAMPLE_BIAS`, one line each, labelled."""
    samples = sample_lib.generate(synth, list(texts), bias=SAMPLE_BIAS, seed=SAMPLE_SEED)
    return render.to_image(
        [s.strokes for s in samples],
        labels=[f"{s.text}  (bias {SAMPLE_BIAS:g})" for s in samples],
        line_height_px=SAMPLE_LINE_PX,
        width_px=SAMPLE_WIDTH_PX,
    )


class SampleImages(keras.callbacks.Callback):
    """Every `every` steps, writes handwriting of held-out sentences and an attention map.

    TensorBoard images under `logs/samples`: `samples` (the `texts` at `SAMPLE_BIAS`,
    `render.to_image`) and `attention` (phi(t, u) of a validation line,
    `render.attention_image`), at the optimiser step.
    """

    def __init__(self, log_dir, every: int, synth_fields: dict, texts, line):
        super().__init__()
        self.log_dir = log_dir
        self.every = every
        self.synth_fields = synth_fields
        self.texts = tuple(texts)
        self.line = line
        self.writer = None

    def on_train_batch_end(self, batch, logs=None):
        step = optimizer_step(self.model)
        if step % self.every == 0:
            self.write(step)

    def write(self, step):
        if self.writer is None:
            self.writer = tf.summary.create_file_writer(self.log_dir)
        with self.writer.as_default():
            if self.texts:
                synth = rundir.Synthesizer(model=self.model, **self.synth_fields)
                tf.summary.image("samples", sample_sheet(synth, self.texts)[None], step=step)
            if self.line is not None:
                image = attention_map(self.model, self.line)
                tf.summary.image("attention", image[None], step=step)
        self.writer.flush()

    def on_train_end(self, logs=None):
        if self.writer is not None:
            self.writer.flush()


# ---------------------------------------------------------------------------------------------
# Training


def _pipeline_arguments(config: Config) -> dict:
    # Lines over train.max_points are cut into pieces. A synthesis piece must read only the
    # characters it writes, which needs the line's alignment: long lines without one are
    # left out. Prediction lines are cut whatever they carry.
    return dict(
        batch_size=config.train.batch_size,
        max_points=config.train.max_points,
        long_lines="split_aligned" if config.model.kind == "synthesis" else "split",
        bucket_boundaries=list(config.data.bucket_boundaries),
        shuffle_buffer=config.data.shuffle_buffer,
    )


def training_stream(config: Config, start_step: int, multi_worker=False, verify=True):
    """The endless, seeded stream of training batches from batch `start_step` on.

    A fresh dataset every time: a shuffled `tf.data.Dataset` draws a new order for every
    iterator made from it, so only a new one starts the seeded sequence again.
    """
    stream = data.load_dataset(
        config.data.dir,
        "train",
        shuffle=True,
        seed=config.train.seed,
        repeat=True,
        verify=verify,
        **_pipeline_arguments(config),
    )
    if multi_worker:
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA
        )
        stream = stream.with_options(options)
    return stream.skip(start_step)  # the data position: one batch per step


def validation_batches(config: Config):
    """The validation batches, in a fixed order, cached: the same lines at every evaluation.

    Whole lines, whatever `train.max_points` cuts training lines to: the loss is then in nats
    per line as the paper reports it, and the window is scored on following a whole line.
    """
    arguments = dict(_pipeline_arguments(config), max_points=None)
    valid = data.load_dataset(
        config.data.dir,
        "valid",
        shuffle=False,
        repeat=False,
        verify=False,
        **arguments,
    )
    if config.train.eval_batches:
        valid = valid.take(config.train.eval_batches)
    valid = valid.cache()
    batches = sum(1 for _ in valid)  # fills the cache
    if batches == 0:
        raise TrainingError(
            f"{config.data.dir}: the valid split has no line of 2 points or more; "
            "nothing to evaluate on"
        )
    # A known length lets Keras read the split to its end without a warning.
    return valid.apply(tf.data.experimental.assert_cardinality(batches))


def _has_alignment(valid) -> bool:
    """True when some validation point has a known character (alignment >= 0)."""
    return any(
        bool(tf.reduce_any(inputs["alignment"] >= 0))
        for inputs, _, _ in valid
        if "alignment" in inputs
    )


def _planned_steps(config: Config, info: DatasetInfo) -> int:
    """`train.max_steps`, or the steps of `train.epochs` passes over the training lines."""
    if config.train.max_steps:
        return config.train.max_steps
    lines = info.splits["train"].lines if "train" in info.splits else 0
    return max(1, math.ceil(config.train.epochs * lines / config.train.batch_size))


def _usable_texts(texts, alphabet, log) -> tuple:
    out = []
    for text in texts:
        unknown = sorted({c for _, c in alphabet.unknown_chars(text)})
        if unknown:
            log(f"Sample text {text!r} left out: {unknown} are not in the data's alphabet")
        else:
            out.append(text)
    return tuple(out)


def train(
    config: Config,
    run_dir,
    *,
    resume: bool = False,
    strategy: str = "auto",
    callbacks=(),
    sample_texts=HELD_OUT_TEXTS,
    verbose="auto",
    log=print,
) -> TrainingResult:
    """Trains (or continues) the run in `run_dir`; see the module docstring.

    Args:
        config: the run's configuration (`resolve_config`).
        run_dir: the run directory; created when missing.
        resume: continue the run stored in `run_dir` (a directory without one starts fresh).
            Without it, a directory that holds a run is refused.
        strategy: one of `STRATEGIES` (`make_strategy`).
        callbacks: more Keras callbacks, called before the trainer's own.
        sample_texts: the held-out sentences written to TensorBoard and samples.png; those
            with characters outside the data's alphabet are left out.
        verbose: `fit`'s progress output: "auto", 0 (none), 1 (bar) or 2 (a line per round).
        log: prints one line of progress.

    Returns:
        A `TrainingResult`.

    Raises:
        TrainingError: the run directory holds another run, the data do not match it, or the
            loss or the weights became NaN or infinite.
        ConfigError, DatasetError: bad configuration or data.
    """
    run_dir = os.fspath(run_dir)
    state = _check_run_dir(run_dir, config, resume, log)
    info = DatasetInfo.load(config.data.dir)
    _check_dataset(run_dir, info, config.data.dir)
    distribution = make_strategy(strategy)
    replicas = distribution.num_replicas_in_sync
    if config.train.batch_size % replicas:
        raise ConfigError(
            f"train.batch_size: must split evenly over the {replicas} replicas of the "
            f"{strategy} strategy, received {config.train.batch_size}"
        )
    log(f"Run directory: {run_dir}")
    log("Configuration:\n" + json.dumps(config.to_json(), indent=2, sort_keys=True))
    keras.utils.set_random_seed(config.train.seed)
    valid = validation_batches(config)
    model = _restored_model(config, info.alphabet.size, distribution, run_dir, state)
    # The window's alignment is scored where the data say which character each point writes;
    # elsewhere a 0 would read as "the window learned nothing", so it is not shown at all.
    model.scores_alignment = model.is_synthesis and _has_alignment(valid)
    step = optimizer_step(model)
    chief = _is_chief(distribution)
    if chief:
        os.makedirs(run_dir, exist_ok=True)
        for folder in (run_dir, os.path.join(run_dir, rundir.CHECKPOINT_DIR)):
            stale = files.remove_stale_temporaries(folder)
            if stale:
                log(f"Removed {len(stale)} temporary file(s) a killed run left in {folder}")
        config.save(run_dir)
        info.save(run_dir)

    total_steps = _planned_steps(config, info)
    round_steps = config.train.eval_every_steps
    log(
        f"Data: {info.splits['train'].lines} training lines, alphabet of "
        f"{info.alphabet.size} ids; {replicas} replica(s) ({type(distribution).__name__}); "
        f"{model.count_params():,} parameters"
    )
    log(
        f"Training from step {step} to {total_steps} in rounds of {round_steps} steps"
        + (
            f", time budget {config.train.time_budget_minutes:g} min"
            if config.train.time_budget_minutes
            else ""
        )
    )

    clock = _Clock(state.elapsed_seconds if state else 0.0)
    limits = TrainingLimits(total_steps, 60.0 * config.train.time_budget_minutes, clock)
    early = None
    if config.train.early_stopping_patience:
        early = ResumableEarlyStopping(
            config.train.early_stopping_patience,
            wait=state.early_stopping_wait if state else 0,
            best=state.early_stopping_best if state else None,
        )
    checkpointer = Checkpointer(
        run_dir, config.train.checkpoint_every_steps, clock, early, state, writes_files=chief
    )
    log_dir = os.path.join(run_dir, rundir.LOG_DIR)
    synth_fields = dict(
        config=config,
        alphabet=info.alphabet,
        offset_mean=tuple(info.offset_mean),
        offset_std=tuple(info.offset_std),
    )
    texts = _usable_texts(sample_texts, info.alphabet, log)
    line = _validation_line(valid, info.alphabet) if model.is_synthesis else None
    own = [StepTensorBoard(log_dir, write_graph=False, profile_batch=0)] if chief else []
    own += [cb for cb in (early, limits, checkpointer) if cb is not None]
    if chief and model.is_synthesis and config.train.sample_every_steps:
        own.append(
            SampleImages(
                os.path.join(log_dir, "samples"),
                config.train.sample_every_steps,
                synth_fields,
                texts,
                line,
            )
        )
        if step == 0:
            own[-1].set_model(model)
            own[-1].write(0)  # the untrained network, for comparison

    history, reason = _run_rounds(
        model,
        config,
        valid,
        [*callbacks, *own],
        limits,
        early,
        multi_worker=strategy == "multi_worker",
        verbose=verbose,
    )
    step = optimizer_step(model)
    best_loss, best_step = checkpointer.best_val_loss, checkpointer.best_step
    log(f"Training ended at step {step}: {reason}.")
    if best_loss is not None:
        log(f"Best validation loss: {best_loss:.2f} nats per line at step {best_step}.")
    outputs = _final_outputs(model, run_dir, synth_fields, texts, line, log) if chief else ()
    return TrainingResult(
        run_dir=run_dir,
        step=step,
        stop_reason=reason,
        best_val_loss=best_loss,
        best_step=best_step,
        history=history,
        files=outputs,
    )


def _restored_model(config, alphabet_size, distribution, run_dir, state):
    """Builds and compiles the network under `distribution`; loads `state`'s weights."""
    with distribution.scope():
        model = build_model(config.model, alphabet_size, config.train)
        model.compile(optimizer=build_optimizer(config.train), jit_compile=False)
        model.optimizer.build(model.trainable_variables)  # the slots a checkpoint holds
        if state is not None:
            path = os.path.join(run_dir, rundir.CHECKPOINT_DIR, state.weights)
            model.load_weights(path)
            if optimizer_step(model) != state.step:
                raise TrainingError(
                    f"{path}: holds step {optimizer_step(model)}, state.json says {state.step}"
                )
    return model


def _stop_reason(limits: TrainingLimits, early, step: int) -> str | None:
    if early is not None and early.exhausted:
        return f"stopped early: no better validation loss in {early.patience} evaluations"
    return limits.reason or limits.check(step)


def _run_rounds(model, config, valid, callbacks, limits, early, multi_worker, verbose):
    """Calls `fit` until a stop condition holds; returns `(history, stop reason)`.

    Rounds are aligned to the global step (round r ends at step (r + 1) * eval_every_steps).
    A run resumed inside a round first finishes that round with a shorter `fit`; every `fit`
    reads a fresh training stream positioned at the current step.
    """
    round_steps = config.train.eval_every_steps
    last_round = math.ceil(limits.max_steps / round_steps)
    history = {}
    step = optimizer_step(model)
    reason = _stop_reason(limits, early, step)
    while reason is None:
        round_index, offset = divmod(step, round_steps)
        record = model.fit(
            training_stream(config, step, multi_worker, verify=not history),
            initial_epoch=round_index,
            epochs=round_index + 1 if offset else last_round,
            steps_per_epoch=round_steps - offset,
            validation_data=valid,
            callbacks=callbacks,
            shuffle=False,
            verbose=verbose,
        )
        for name, values in record.history.items():
            history.setdefault(name, []).extend(values)
        if optimizer_step(model) == step:
            raise TrainingError(f"step {step}: a round trained no step; the data stream is empty")
        step = optimizer_step(model)
        reason = _stop_reason(limits, early, step)
    return history, reason


def _final_outputs(model, run_dir, synth_fields, texts, line, log) -> tuple:
    """Writes samples.png and attention.png of the best network; returns the paths written.

    The best weights (model.keras) are loaded into the training network, whose sampling
    function is already traced.
    """
    model_path = os.path.join(run_dir, rundir.MODEL_FILENAME)
    if not os.path.isfile(model_path):
        log(f"No {rundir.MODEL_FILENAME}: no validation loss was finite, no network kept.")
        return ()
    written = [model_path]
    if model.is_synthesis:
        model.set_weights(keras.saving.load_model(model_path, compile=False).get_weights())
        if texts:
            synth = rundir.Synthesizer(model=model, **synth_fields)
            path = os.path.join(run_dir, rundir.SAMPLES_PNG)
            render.save_png(sample_sheet(synth, texts), path)
            written.append(path)
        if line is not None:
            path = os.path.join(run_dir, rundir.ATTENTION_PNG)
            render.save_png(attention_map(model, line), path)
            written.append(path)
    log("Wrote " + ", ".join(written))
    return tuple(written)
