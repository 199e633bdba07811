"""Adapting a trained synthesis model to one writer, from a few lines of their handwriting.

Priming carries a writer's style only as far as the network has learned hands like theirs.
Adapting fine-tunes the network on the writer's own lines (the stroke JSON that `--prime` reads
and the page saves, each line with its text), on the user's machine, in minutes:

1. The lines are checked (`likelihood.check_lines`); the last `held_out_lines(n)` of them are
   held out, the rest train. A single line is all there is to learn from: nothing is held
   out, and adaptation runs a fixed number of steps (`ONE_LINE_STEPS`, measured) and keeps
   the last.
2. Every step is one Adam update on all training lines at once (teacher forcing, the same
   per-line loss as training, the network's own gradient clip), with a small learning rate.
   `part` chooses what moves: the whole network, or only the upper LSTM layers and the output
   head (the window and LSTM-1, which read the text, stay as trained).
3. Every `EVAL_EVERY` steps the held-out lines' nats per point (`likelihood`) are measured; the
   best weights are kept, and adaptation stops when they have not improved for `PATIENCE`
   evaluations, at the step limit, or at the time budget.
4. A `progress` callback is told where adaptation is before the first step and after each
   (`AdaptProgress`); `--progress FILE` writes it as JSON for another program to follow
   (`python -m handwriting serve` runs adaptation as a child process and reads it).
5. The result is a model directory (`config.json`, `dataset.json`, `model.keras`) that
   `write`, `export` and `serve` take, with the writer's lines as its `styles.json` (ids
   `line-1`, ...) and `adapt.json`, the record: lines, steps, minutes, held-out nats per point
   before and after.

    python -m handwriting adapt --lines mine.json --out runs/mine [--model DIR] [--minutes 5]
        [--progress progress.json]
"""

import dataclasses
import json
import math
import os
import time

import keras

from handwriting import files, rundir
from handwriting.errors import SampleError
from handwriting.likelihood import check_lines, line_batch, line_likelihoods, summary
from handwriting.strokes import Prime
from handwriting.styles import save_styles

ADAPT_FILENAME = rundir.ADAPT_FILENAME
# Fewest lines. From one line, adaptation cannot hold any out to know when to stop, and
# runs ONE_LINE_STEPS steps.
MIN_LINES = 1
# Steps on a single line (nothing held out to stop on). Measured with the shipped model on the
# embedded corpus' 7 validation writers (BENCHMARKS.md, "Adapting on one line"): their other
# lines were likeliest after 6-10 steps (at 8, 0.37-1.63 nats per point likelier than under
# the base model), and for 5 of 7 less likely than under the base model by step 20.
ONE_LINE_STEPS = 8
# Time budget of `adapt` by default, in minutes.
DEFAULT_MINUTES = 5.0
# Steps at most (one step: one update on all training lines).
DEFAULT_STEPS = 300
# Adam's step size: small, so that a few lines move the network without wrecking it.
LEARNING_RATE = 3e-4
# Steps between measurements of the held-out lines.
EVAL_EVERY = 10
# Measurements without a better held-out figure before adaptation stops.
PATIENCE = 5
PARTS = ("all", "upper")
# Seconds between two writes of `progress_file`'s JSON (a measurement is always written).
PROGRESS_INTERVAL = 0.5


def held_out_lines(count: int) -> int:
    """Lines held out of `count` for early stopping: one in five, at least one; none of one."""
    return 0 if count == 1 else max(1, count // 5)


@dataclasses.dataclass(frozen=True)
class AdaptResult:
    """What `adapt` did; `to_json` is the `adapt.json` it writes."""

    out_dir: str
    base_model: str
    lines: int
    held_out: int
    steps: int
    best_step: int
    minutes: float
    stop_reason: str
    held_out_before: float | None  # nats per point of the held-out lines under the base model
    held_out_after: float | None  # ... under the adapted model (both None: none held out)
    part: str
    learning_rate: float

    def to_json(self) -> dict:
        return {"format_version": 1, **dataclasses.asdict(self)}


@dataclasses.dataclass(frozen=True)
class AdaptProgress:
    """Where `adapt` is; its `progress` callback gets one before the first step and after each.

    Figures are mean nats per point (lower: closer to the writer's hand).
    """

    step: int  # steps done
    steps: int  # the step limit
    loss: float | None  # the training lines' figure at this step (None before the first)
    held_out: float | None  # the held-out lines' figure at the latest measurement
    held_out_before: float | None  # ... under the base model
    best_held_out: float | None  # the best measured, whose weights are kept
    # (the three None when no line is held out: adapting on a single line)
    best_step: int
    seconds: float  # since `adapt` started (loading the model included)
    budget_seconds: float  # the time budget

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def progress_file(path, interval: float = PROGRESS_INTERVAL):
    """A `progress` callback that writes the latest `AdaptProgress` as JSON to `path`,
    atomically: before the first step, at every measurement of the held-out lines, and
    otherwise at most every `interval` seconds."""
    written = -math.inf  # when it last wrote

    def write(progress: AdaptProgress) -> None:
        nonlocal written
        now = time.monotonic()
        measured = progress.step % EVAL_EVERY == 0
        if measured or progress.step == progress.steps or now - written >= interval:
            files.write_text(path, json.dumps(progress.to_json()) + "\n")
            written = now

    return write


def _trainable(model, part: str) -> None:
    """Freezes the window and LSTM-1 for part "upper"; everything trains for "all"."""
    model.window_cell.trainable = part == "all"


def adapt(
    model_dir,
    lines,
    out_dir,
    *,
    minutes: float = DEFAULT_MINUTES,
    steps: int | None = None,
    learning_rate: float = LEARNING_RATE,
    part: str = "all",
    seed: int = 0,
    source: str = "",
    log=print,
    verbose: int = 1,
    progress=None,
) -> AdaptResult:
    """Fine-tunes the model in `model_dir` on a writer's `lines`; writes `out_dir`.

    Args:
        model_dir: a model directory (None: the shipped demo model).
        lines: `[(text, strokes), ...]`, strokes raw `(N, 3)` with the origin first (as
            `strokes.load_lines` reads them), at least `MIN_LINES`.
        out_dir: a new or empty folder for the adapted model.
        minutes: time budget; steps: step limit (None: `DEFAULT_STEPS`, or `ONE_LINE_STEPS`
            for a single line); learning_rate: Adam's step size.
        part: "all" (the whole network) or "upper" (the upper LSTMs and the head).
        seed: fixes the order of nothing random but Keras' state (reproducible updates).
        source: where the lines come from, for messages.
        log: prints one line; verbose: 1 for a progress bar, 0 for none.
        progress: None, or called with an `AdaptProgress` before the first step and after
            each (`progress_file` makes one that writes a file).

    Raises:
        SampleError: too few or malformed lines, a bad argument, an unusable model or
            `out_dir`.
    """
    if part not in PARTS:
        raise SampleError(f"`part` must be one of {PARTS}, received {part!r}")
    if steps is not None and not (isinstance(steps, int) and steps >= 1):
        raise SampleError(f"`steps` must be an int >= 1, received {steps!r}")
    if not (math.isfinite(minutes) and minutes > 0):
        raise SampleError(f"`minutes` must be > 0, received {minutes!r}")
    if not (math.isfinite(learning_rate) and learning_rate > 0):
        raise SampleError(f"`learning_rate` must be > 0, received {learning_rate!r}")
    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir) and (not os.path.isdir(out_dir) or os.listdir(out_dir)):
        raise SampleError(f"{out_dir}: exists and is not an empty folder; choose a new one")
    problem = files.creation_problem(out_dir)
    if problem:
        raise SampleError(problem)
    lines = list(lines)
    if len(lines) < MIN_LINES:
        raise SampleError(
            f"{source or 'lines'}: no line; adapting needs at least {MIN_LINES} line with its text"
        )
    started = time.monotonic()
    keras.utils.set_random_seed(seed)
    synth = rundir.load(model_dir)
    checked = check_lines(synth, lines, source=source)
    held = held_out_lines(len(checked))
    training_lines, held_lines = checked[: len(checked) - held], checked[len(checked) - held :]
    if steps is None:
        steps = DEFAULT_STEPS if held_lines else ONE_LINE_STEPS
    model = synth.model
    _trainable(model, part)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), jit_compile=False)
    inputs, targets, weight = line_batch(synth, training_lines)

    def held_out_nll() -> float | None:
        if not held_lines:
            return None
        return summary(line_likelihoods(synth, held_lines))["nats_per_point"]

    before = best = held_out_nll()
    best_weights, best_step, step, wait = model.get_weights(), 0, 0, 0
    if held_lines:
        held_text = f"{held} held out ({before:.4f} nats per point before)"
    else:
        held_text = "none held out (a single line: the last step is kept)"
    log(
        f"Adapting {synth.directory} on {len(training_lines)} line(s), {held_text}; part "
        f"{part}, learning rate {learning_rate:g}, at most {steps} steps or {minutes:g} minutes"
    )
    bar = keras.utils.Progbar(steps, verbose=verbose, stateful_metrics=["held_out"])
    reason = f"reached {steps} steps"
    latest, loss = before, None

    def report() -> None:
        if progress is not None:
            progress(
                AdaptProgress(
                    step=step,
                    steps=steps,
                    loss=loss,
                    held_out=latest,
                    held_out_before=before,
                    best_held_out=best,
                    best_step=best_step,
                    seconds=time.monotonic() - started,
                    budget_seconds=60.0 * minutes,
                )
            )

    report()
    while step < steps:
        logs = model.train_on_batch(inputs, targets, sample_weight=weight, return_dict=True)
        step += 1
        if not math.isfinite(float(logs["loss"])):
            raise SampleError(
                f"step {step}: the loss is {float(logs['loss'])}; lower the learning rate"
            )
        loss = float(logs["nats_per_point"])
        values = [("nats_per_point", loss)]
        if not held_lines:
            best_step = step
        elif step % EVAL_EVERY == 0:
            latest = held_out_nll()
            values.append(("held_out", latest))
            if latest < best:
                best, best_weights, best_step, wait = latest, model.get_weights(), step, 0
            else:
                wait += 1
        bar.update(step, values)
        report()
        if wait >= PATIENCE:
            reason = f"stopped early: the held-out lines got no better in {PATIENCE} checks"
            break
        if time.monotonic() - started >= 60.0 * minutes:
            reason = f"used its time budget of {minutes:g} minutes"
            break
    if held_lines:
        model.set_weights(best_weights)
    result = AdaptResult(
        out_dir=out_dir,
        base_model=synth.directory,
        lines=len(training_lines),
        held_out=held,
        steps=step,
        best_step=best_step,
        minutes=(time.monotonic() - started) / 60.0,
        stop_reason=reason,
        held_out_before=before,
        held_out_after=best,
        part=part,
        learning_rate=learning_rate,
    )
    _write(out_dir, synth, model, checked, result)
    if held_lines:
        kept = f"held-out {best:.4f} nats per point (was {before:.4f})"
    else:
        kept = "nothing held out to measure it on"
    log(f"\n{reason}; kept step {best_step}: {kept}. Wrote {out_dir}")
    return result


def _write(out_dir, synth, model, lines, result) -> None:
    from handwriting.training import export_model

    os.makedirs(out_dir, exist_ok=True)
    synth.config.save(out_dir)
    with open(os.path.join(synth.directory, rundir.DATASET_FILENAME), encoding="utf-8") as f:
        files.write_text(os.path.join(out_dir, rundir.DATASET_FILENAME), f.read())
    styles = {
        f"line-{i}": Prime(strokes=strokes, text=text, source=f"line {i}")
        for i, (text, strokes) in enumerate(lines, start=1)
    }
    save_styles(out_dir, styles)
    files.write_text(
        os.path.join(out_dir, ADAPT_FILENAME), json.dumps(result.to_json(), indent=2) + "\n"
    )
    export_model(model, os.path.join(out_dir, rundir.MODEL_FILENAME))  # last: a whole model
