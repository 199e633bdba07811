"""What a training run reads: the training stream of each step (the curriculum's pieces and
batch size, then `train.max_points` and `train.batch_size`), how its lines are used, and the
validation batches.

`handwriting.training` runs the loop over them; `data.load_dataset` builds the pipeline.
"""

import tensorflow as tf

from handwriting import data
from handwriting.config import Config
from handwriting.errors import TrainingError


def max_points_at(config: Config, step: int) -> int:
    """The longest training piece at optimiser step `step`: the curriculum's, then
    `train.max_points`."""
    settings = config.train
    return (
        settings.curriculum_max_points if step < settings.curriculum_steps else settings.max_points
    )


def batch_size_at(config: Config, step: int) -> int:
    """Lines per batch at optimiser step `step`: `train.curriculum_batch_size` during the
    curriculum (when set), then `train.batch_size`."""
    settings = config.train
    if step < settings.curriculum_steps and settings.curriculum_batch_size:
        return settings.curriculum_batch_size
    return settings.batch_size


def stream_changes(config: Config, step: int) -> bool:
    """True when the batches of step `step` are cut or sized unlike those of the step before
    (the curriculum's end): the training stream is then made anew."""
    return (max_points_at(config, step), batch_size_at(config, step)) != (
        max_points_at(config, step - 1),
        batch_size_at(config, step - 1),
    )


def _pipeline_arguments(config: Config, step: int | None = None) -> dict:
    # The batches of optimiser step `step` (the curriculum's, then the run's own); those after
    # the curriculum when None. Lines over max_points are cut into pieces. A synthesis piece
    # must read only the characters it writes, which needs the line's alignment: long lines
    # without one are trained whole up to train.max_line_points. Prediction lines are cut
    # whatever they carry.
    after = step is None
    return dict(
        batch_size=config.train.batch_size if after else batch_size_at(config, step),
        max_points=config.train.max_points if after else max_points_at(config, step),
        long_lines="split_aligned" if config.model.kind == "synthesis" else "split",
        unaligned_max_points=config.train.max_line_points,
        joined_lines=config.train.joined_lines,
        bucket_boundaries=list(config.data.bucket_boundaries),
        shuffle_buffer=config.data.shuffle_buffer,
    )


def training_stream(config: Config, step: int = 0) -> tf.data.Dataset:
    """The endless, seeded, shuffled stream of training batches at optimiser step `step`,
    whole (not per replica)."""
    return data.load_dataset(
        config.data.dir,
        "train",
        shuffle=True,
        seed=config.train.seed,
        repeat=True,
        **_pipeline_arguments(config, step),
    )


def describe_lines(config: Config, step: int = 0) -> str:
    """How many training lines are used whole, cut into pieces, or left out (and why)."""
    arguments = _pipeline_arguments(config, step)
    plan = data.line_plan(
        config.data.dir,
        "train",
        max_points=arguments["max_points"],
        long_lines=arguments["long_lines"],
        unaligned_max_points=arguments["unaligned_max_points"],
    )
    left_out = sum(plan["left_out"].values())
    reasons = "".join(f"; {n} {reason}" for reason, n in sorted(plan["left_out"].items()))
    return (
        f"Training lines (pieces of at most {arguments['max_points']} points): "
        f"{plan['whole']} used whole, {plan['cut']} cut into pieces, {left_out} left out"
        + (f" ({reasons[2:]})" if left_out else "")
        + f"; batches of {arguments['batch_size']} lines"
        + (
            f"; {arguments['joined_lines']:.0%} of lines read joined to another of their writer"
            if arguments["joined_lines"]
            else ""
        )
    )


def validation_batches(config: Config) -> tf.data.Dataset:
    """The validation batches, in a fixed order, cached: the same lines at every evaluation.

    Whole lines, whatever `train.max_points` cuts training lines to: the loss is then in nats
    per line as the paper reports it, and the window is scored on following a whole line.
    The shards are verified first (`data.load_dataset`), so that a damaged one is named with
    its record, not met as TensorFlow's "corrupted record" while the cache fills.
    """
    arguments = dict(_pipeline_arguments(config), max_points=None, joined_lines=0.0)
    valid = data.load_dataset(config.data.dir, "valid", shuffle=False, repeat=False, **arguments)
    if config.train.eval_batches:
        valid = valid.take(config.train.eval_batches)
    valid = valid.cache()
    batches = sum(1 for _ in valid)  # fills the cache
    if batches == 0:
        raise TrainingError(
            f"{config.data.dir}: the valid split has no line of 2 points or more; "
            "nothing to evaluate on"
        )
    return valid.apply(tf.data.experimental.assert_cardinality(batches))


def has_alignment(valid) -> bool:
    """True when some validation point has a known character (alignment >= 0)."""
    return any(bool(tf.reduce_any(inputs["alignment"] >= 0)) for inputs, _, _ in valid)
