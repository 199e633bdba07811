"""Training: the step loop over rounds, its checkpoints, and `train`.

A run directory (`handwriting.rundir`) holds everything that sampling and export read back.

Schedule. Each optimiser step is one call of a `tf.function` that draws the next batch from an
endless, seeded, shuffled stream (`run_data.training_stream`) and runs
`HandwritingModel.train_step` on every replica (`distribution.on_every_replica`). Rounds of
`train.eval_every_steps` steps are aligned to the global step: round r covers steps
`[r * eval_every_steps, (r + 1) * eval_every_steps)` and ends with the validation split (nats
per line, the early-stopping criterion), so a resumed run evaluates at the same steps as an
uninterrupted one. Training ends at `train.max_steps` (or after `train.epochs` passes over the
training lines), at the time budget, or by early stopping; every way ends with a validation
and a checkpoint.

Exact resume. The loop owns the stream's iterator. A checkpoint (`handwriting.checkpoint`,
every `train.checkpoint_every_steps` steps and after every validation) holds the weights,
the optimiser's slots and step counter, the iterator's state, the training time and the
early-stopping count; a resumed run restores them all, so it draws the batch the killed run
would have drawn next and reads no batch twice. No checkpoint holds NaN or infinite weights.

A cluster (`--strategy multi_worker`, `handwriting.distribution`). Every worker runs `train`
on the same run directory; the chief alone writes into it. Before building the network the
workers check that they start alike (step, configuration, data, checkpoint), since each
restores the checkpoint it reads; a worker lost mid-run stops the others with a
`TrainingError` that says to start them all again with --resume; and they leave `train`
together, once the chief has written the last files.
"""

import dataclasses
import json
import math
import os
import time

import keras
import tensorflow as tf

from handwriting import checkpoint, files, rundir
from handwriting.config import Config, ConfigError
from handwriting.dataset_info import DatasetInfo
from handwriting.distribution import (
    check_workers_agree,
    every_replica,
    is_chief,
    make_strategy,
    on_every_replica,
    worker_count,
    worker_losses,
)
from handwriting.errors import TrainingError
from handwriting.legibility import Legibility
from handwriting.model import build_model, build_optimizer
from handwriting.previews import PREVIEW_TEXTS, Previews
from handwriting.run_data import (
    describe_lines,
    has_alignment,
    stream_changes,
    training_stream,
    validation_batches,
)
from handwriting.rundir import TrainingState


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
# The loop


def export_model(model, path) -> None:
    """Writes the network alone (no optimiser slots) as a `.keras` file, atomically."""
    clone = type(model).from_config(model.get_config())
    clone.set_weights(model.get_weights())
    with files.atomic_path(path, keep_suffix=True) as tmp:
        clone.save(tmp)


@dataclasses.dataclass
class TrainingLimits:
    """Stops training at a step count or a time budget (0: none), over all sessions of a run."""

    max_steps: int
    budget_seconds: float
    previous_seconds: float = 0.0  # the training time of the earlier sessions
    started: float = dataclasses.field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        """The training time of all sessions so far."""
        return self.previous_seconds + time.monotonic() - self.started

    def check(self, step: int) -> str | None:
        """Why training must stop at `step` (and now), or None."""
        if step >= self.max_steps:
            return f"reached {self.max_steps} steps"
        if self.budget_seconds and self.elapsed() >= self.budget_seconds:
            return f"used its time budget of {self.budget_seconds / 60:g} minutes"
        return None


class _Loop:
    """The step loop of one `train` call: rounds, validations, checkpoints, TensorBoard.

    Metrics are read (a device sync) only where they are used: the step's loss for the NaN
    guard, and the rest for the progress bar, a round's end and TensorBoard.
    """

    def __init__(
        self, model, distribution, iterator, config: Config, run_dir, chief, previews, log
    ):
        self.model, self.iterator, self.settings = model, iterator, config.train
        self.config, self.log = config, log
        self.run_dir, self.chief = run_dir, chief
        self.train_step = on_every_replica(distribution, model.train_step, model.metrics)
        self.test_step = on_every_replica(distribution, model.test_step, model.metrics)
        # TensorBoard images every `sample_every` steps (0: none), from the chief only.
        self.sample_every = config.train.sample_every_steps if previews and chief else 0
        self.previews = previews
        logs = os.path.join(run_dir, rundir.LOG_DIR)
        runs = ("train", "validation") if chief else ()
        self.writers = {run: tf.summary.create_file_writer(os.path.join(logs, run)) for run in runs}
        self.history = {}  # metric name -> values of the rounds; "val_" for the validation's
        self.saved = None  # the state of the last checkpoint
        self.sampled = None  # the step of the last previews

    def run(self, state: TrainingState, limits, valid, after_step, verbose):
        """Trains from `state` until a stop condition holds; returns `(state, stop reason)`."""
        self.saved = state if state.weights else None
        step, every, last = state.step, self.settings.eval_every_steps, limits.max_steps
        if self.sample_every and step == 0:
            self.previews.write(0)  # the untrained network, for comparison
        reason = limits.check(step)
        while reason is None:
            start, end = step, min((step // every + 1) * every, last)
            if verbose:
                print(f"Round {step // every + 1}/{math.ceil(last / every)}")
            bar = keras.utils.Progbar(end - start, verbose=verbose)
            self.model.reset_metrics()  # a round's training metrics are its own
            while reason is None and step < end:
                logs = self.train_step(self.iterator)
                step += 1
                for hook in after_step:
                    hook(self.model, step)
                if step == self.settings.curriculum_steps and stream_changes(self.config, step):
                    self.iterator = iter(training_stream(self.config, step))
                    self.log(
                        f"\nStep {step}: the curriculum ends. {describe_lines(self.config, step)}"
                    )
                loss = float(logs["loss"])
                if not math.isfinite(loss):
                    raise TrainingError(
                        f"step {step}: the training loss is {loss}; stopped without saving. "
                        f"{self._advice()}"
                    )
                if verbose == 1:
                    bar.update(step - start, [(k, float(v)) for k, v in logs.items()])
                if self.sample_every and step % self.sample_every == 0:
                    state = self._sample(state, step)
                reason = limits.check(step)
                if step % self.settings.checkpoint_every_steps == 0 and step < end and not reason:
                    state = self._save(state, step, limits)
            logs = self._validate(step, valid)
            bar.update(step - start, list(logs.items()), finalize=True)
            state = state.validated(step, logs["val_loss"])
            by_loss = self.settings.keep == "val_loss" or state.best_cer is None
            if by_loss and state.early_stopping_wait == 0:  # the best network so far
                self._keep(step)
            patience = self.settings.early_stopping_patience
            if patience and state.early_stopping_wait >= patience:
                reason = f"stopped early: no better validation loss in {patience} evaluations"
            if reason and self.settings.keep == "legibility" and self.sampled != step:
                state = self._sample(state, step)  # the last network is scored too
            state = self._save(state, step, limits)
        return state, reason

    def _sample(self, state: TrainingState, step) -> TrainingState:
        """Writes the previews at `step`; a better legibility score than any before is
        recorded in the state, and its network kept when the run keeps by legibility."""
        self.sampled = step
        cer = self.previews.write(step).get("cer") if self.sample_every else None
        if cer is None or not math.isfinite(cer):
            return state
        if state.best_cer is not None and cer >= state.best_cer:
            return state
        if self.settings.keep == "legibility":
            self._keep(step)
            self.log(f"step {step}: kept as {rundir.MODEL_FILENAME}, the most legible so far")
        return dataclasses.replace(state, best_cer=float(cer), best_cer_step=step)

    def _keep(self, step):
        """Writes the network as model.keras (the chief alone)."""
        self._check_weights(step)
        if self.chief:
            export_model(self.model, os.path.join(self.run_dir, rundir.MODEL_FILENAME))

    def _validate(self, step, valid) -> dict:
        """The round's training metrics and the validation's; logged at `step`."""
        model = self.model
        logs = {m.name: float(m.result()) for m in model.metrics}
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
        model.reset_metrics()
        batches = iter(valid)
        for _ in range(int(valid.cardinality())):
            names = self.test_step(batches)
        val = {m.name: float(m.result()) for m in model.metrics if m.name in names}
        for run, values in (("train", logs), ("validation", val)):
            if run in self.writers:
                with self.writers[run].as_default(step=step):
                    for name, value in values.items():
                        tf.summary.scalar(f"epoch_{name}", value)
                self.writers[run].flush()
        logs.update({f"val_{name}": value for name, value in val.items()})
        for name, value in logs.items():
            self.history.setdefault(name, []).append(value)
        return logs

    def _save(self, state: TrainingState, step, limits) -> TrainingState:
        self._check_weights(step)
        state = dataclasses.replace(
            state,
            step=step,
            weights=rundir.WEIGHTS_FILENAME.format(step=step),
            iterator=rundir.ITERATOR_PREFIX.format(step=step),
            elapsed_seconds=limits.elapsed(),
        )
        if self.chief:
            state = checkpoint.write(self.run_dir, self.model, self.iterator, state)
        self.saved = state
        return state

    def _check_weights(self, step):
        bad = checkpoint.nonfinite_weight(self.model)
        if bad is not None:
            raise TrainingError(
                f"step {step}: weight {bad} holds NaN or Inf; stopped without saving. "
                f"{self._advice()}"
            )

    def _advice(self) -> str:
        kept = "No checkpoint was written"
        if self.saved:
            kept = f"The checkpoint of step {self.saved.step} is kept"
        return (
            f"{kept}. Lower train.learning_rate or set train.clip_norm, then continue with "
            "--resume --set ..."
        )


# ---------------------------------------------------------------------------------------------
# Training


def _planned_steps(config: Config, info: DatasetInfo) -> int:
    """`train.max_steps`, or the steps of `train.epochs` passes over the training lines."""
    if config.train.max_steps:
        return config.train.max_steps
    lines = info.splits["train"].lines if "train" in info.splits else 0
    return max(1, math.ceil(config.train.epochs * lines / config.train.batch_size))


def train(
    config: Config,
    run_dir,
    *,
    resume: bool = False,
    strategy: str = "auto",
    after_step=(),
    sample_texts=PREVIEW_TEXTS,
    legibility="auto",
    verbose="auto",
    log=print,
) -> TrainingResult:
    """Trains (or continues) the run in `run_dir`; see the module docstring.

    Args:
        config: the run's configuration (`rundir.resolve_config`).
        run_dir: the run directory; created when missing.
        resume: continue the run stored in `run_dir` (a directory without one starts fresh).
            Without it, a directory that holds a run is refused.
        strategy: one of `STRATEGIES` (`distribution.make_strategy`).
        after_step: functions `f(model, step)`, called after every optimiser step.
        sample_texts: the held-out sentences written to TensorBoard and samples.png; those
            with characters outside the data's alphabet are left out.
        legibility: a function `synth -> {name: value}` logged to TensorBoard at every sample
            step; "auto": `legibility.Legibility` with the shipped reader; None: none.
        verbose: progress output: "auto" (1), 0 (none), 1 (a bar) or 2 (a line per round).
        log: prints one line of progress.

    Returns:
        A `TrainingResult`.

    Raises:
        TrainingError: the run directory holds another run, the data do not match it, or the
            loss or the weights became NaN or infinite.
        ConfigError, DatasetError: bad configuration or data.
    """
    run_dir = os.fspath(run_dir)
    state = rundir.check_run_dir(run_dir, config, resume, log)
    info = DatasetInfo.load(config.data.dir)
    rundir.check_dataset(run_dir, info, config.data.dir)
    distribution = make_strategy(strategy)
    replicas = distribution.num_replicas_in_sync
    for key in ("batch_size", "curriculum_batch_size"):
        if getattr(config.train, key) % replicas:
            raise ConfigError(
                f"train.{key}: must split evenly over the {replicas} replicas of the "
                f"{strategy} strategy, received {getattr(config.train, key)}"
            )
    workers = worker_count(distribution)
    with worker_losses(distribution, run_dir):
        if workers > 1:  # before any variable: a cluster of different networks cannot build
            settings = config.to_json()  # but data.dir, a path of each machine
            settings["data"] = {k: v for k, v in settings["data"].items() if k != "dir"}
            check_workers_agree(
                distribution,
                state.step if state else 0,
                {
                    "configuration": settings,
                    "dataset.json": info.to_json(),
                    "checkpoint/state.json": state.to_json() if state else None,
                },
                run_dir,
            )
        log(f"Run directory: {run_dir}")
        log("Configuration:\n" + json.dumps(config.to_json(), indent=2, sort_keys=True))
        keras.utils.set_random_seed(config.train.seed)
        valid = validation_batches(config)
        with distribution.scope():
            model = build_model(config.model, info.alphabet.size, config.train)
            model.compile(optimizer=build_optimizer(config.train), jit_compile=False)
            model.optimizer.build(model.trainable_variables)  # the slots a checkpoint holds
            if state is not None:
                checkpoint.restore_model(model, run_dir, state)
            elif config.train.init_from:
                model.set_weights(rundir.initial_weights(config, info, log))
                log(f"Starting from the weights of {config.train.init_from}")
        # The window's alignment is scored where the data say which character each point writes;
        # elsewhere a 0 would read as "the window learned nothing", so it is not shown at all.
        model.scores_alignment = model.is_synthesis and has_alignment(valid)
        step = state.step if state is not None else 0
        if model.is_synthesis:
            log(describe_lines(config, step))
        iterator = iter(training_stream(config, step))
        if state is not None and not checkpoint.restore_iterator(iterator, run_dir, state):
            log("The data settings changed: the training stream starts again from its beginning")
            iterator = iter(training_stream(config, step))
        chief = is_chief(distribution)
        if chief:
            os.makedirs(run_dir, exist_ok=True)
            checkpoint_dir = os.path.join(run_dir, rundir.CHECKPOINT_DIR)
            for folder in (run_dir, checkpoint_dir):
                stale = files.remove_stale_temporaries(folder)
                stale += (
                    checkpoint.remove_unnamed(folder, state) if folder == checkpoint_dir else []
                )
                if stale:
                    log(f"Removed {len(stale)} temporary file(s) a killed run left in {folder}")
            config.save(run_dir)
            info.save(run_dir)

        state = state or TrainingState(0, "", "", 0.0, None, 0, 0)
        budget = config.train.time_budget_minutes
        limits = TrainingLimits(_planned_steps(config, info), 60.0 * budget, state.elapsed_seconds)
        log(
            f"Data: {info.splits['train'].lines} training lines, alphabet of "
            f"{info.alphabet.size} ids; {replicas} replica(s) ({type(distribution).__name__}); "
            f"{model.count_params():,} parameters"
        )
        log(
            f"Training from step {state.step} to {limits.max_steps} in rounds of "
            f"{config.train.eval_every_steps} steps"
            + (f", time budget {budget:g} min" if budget else "")
        )
        synth = rundir.Synthesizer(
            model, config, info.alphabet, tuple(info.offset_mean), tuple(info.offset_std)
        )
        previews = None
        if model.is_synthesis:
            if legibility == "auto":
                legibility = Legibility() if config.train.sample_every_steps and chief else None
            previews = Previews(synth, sample_texts, valid, run_dir, log, legibility)

        loop = _Loop(model, distribution, iterator, config, run_dir, chief, previews, log)
        verbose = 1 if verbose == "auto" else verbose
        state, reason = loop.run(state, limits, valid, after_step, verbose)
        log(f"Training ended at step {state.step}: {reason}.")
        if state.best_val_loss is not None:
            best = f"{state.best_val_loss:.2f} nats per line at step {state.best_step}"
            log(f"Best validation loss: {best}.")
        if state.best_cer is not None:
            log(f"Best legibility: CER {state.best_cer:.3f} at step {state.best_cer_step}.")
        if config.train.keep == "legibility" and state.best_cer is not None:
            log(f"{rundir.MODEL_FILENAME} is the network of step {state.best_cer_step}.")
        outputs = _final_outputs(model, run_dir, previews, log) if chief else ()
        if workers > 1:  # a barrier: a worker leaves once the chief has written the last files
            every_replica(distribution, [state.step])
        return TrainingResult(
            run_dir=run_dir,
            step=state.step,
            stop_reason=reason,
            best_val_loss=state.best_val_loss,
            best_step=state.best_step,
            history=loop.history,
            files=outputs,
        )


def _final_outputs(model, run_dir, previews, log) -> tuple:
    """Writes samples.png and attention.png of the best network; returns the paths written.

    The best weights (model.keras) are loaded into the training network, whose sampling
    function is already traced.
    """
    model_path = os.path.join(run_dir, rundir.MODEL_FILENAME)
    if not os.path.isfile(model_path):
        log(f"No {rundir.MODEL_FILENAME}: no validation loss was finite, no network kept.")
        return ()
    written = [model_path]
    if previews is not None:
        rundir.check_keras_archive(model_path)  # a resumed run reads one it did not write
        model.set_weights(keras.saving.load_model(model_path, compile=False).get_weights())
        written += previews.save()
    log("Wrote " + ", ".join(written))
    return tuple(written)
