"""Run configuration: frozen dataclasses, overrides, and the JSON a run writes.

A run's whole configuration is one `Config` (model, train, data). Training writes it as
`config.json` next to its checkpoints; sampling and export read it back, so no number is
typed twice. The named starting points (`paper`, `demo`, `tiny`) are in `presets`.

`Config.with_overrides(["train.learning_rate=3e-4", "model.units=256"])` returns a copy with
values parsed to each field's type; a bad key or value raises `ConfigError` naming the key.
"""

import dataclasses
import json
import math
import os
import typing

from handwriting import files

FILENAME = "config.json"
FORMAT_VERSION = 1

MODEL_KINDS = ("synthesis", "prediction")
DTYPE_POLICIES = ("float32", "mixed_bfloat16")
OPTIMIZERS = ("adam", "graves")
KEEP_CRITERIA = ("val_loss", "legibility")


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the key."""


def _require(condition: bool, key: str, message: str, value) -> None:
    if not condition:
        raise ConfigError(f"{key}: {message}, received {value!r}")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The network: what `handwriting.model.build_model` builds."""

    # "synthesis" (text-conditioned, Graves section 5) or "prediction" (unconditional, section 4).
    kind: str = "synthesis"
    # LSTM cells per layer (Graves: 400).
    units: int = 400
    # Stacked LSTM layers; the window follows the first (Graves: 3).
    layers: int = 3
    # K: Gaussian functions in the soft window (Graves eq. 46-51: 10).
    window_gaussians: int = 10
    # M: bivariate normal components of the output mixture (Graves eq. 18-23: 20).
    mixtures: int = 20
    # Initial window step exp(kappa_hat) (eq. 51), about 1 / (points per character), so that
    # the window starts out moving at roughly the pace of the pen.
    window_step_init: float = 0.04
    # Keras dtype policy: "float32", or "mixed_bfloat16" (matmuls in bfloat16; the loss, the
    # mixture parameters and the window position kappa stay float32).
    dtype_policy: str = "float32"

    def validate(self) -> None:
        _require(self.kind in MODEL_KINDS, "model.kind", f"must be one of {MODEL_KINDS}", self.kind)
        _require(self.units >= 1, "model.units", "must be >= 1", self.units)
        _require(self.layers >= 1, "model.layers", "must be >= 1", self.layers)
        _require(
            self.window_gaussians >= 1,
            "model.window_gaussians",
            "must be >= 1",
            self.window_gaussians,
        )
        _require(self.mixtures >= 1, "model.mixtures", "must be >= 1", self.mixtures)
        _require(
            self.window_step_init > 0,
            "model.window_step_init",
            "must be > 0",
            self.window_step_init,
        )
        _require(
            self.dtype_policy in DTYPE_POLICIES,
            "model.dtype_policy",
            f"must be one of {DTYPE_POLICIES}",
            self.dtype_policy,
        )


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The optimiser, the batch, and when to evaluate, sample, checkpoint and stop."""

    # "adam", or "graves": centred RMSProp with momentum (Graves eq. 38-41), i.e.
    # keras.optimizers.RMSprop(centered=True) with rho = rms_decay, epsilon = rms_epsilon.
    optimizer: str = "adam"
    # Step size (Graves: 1e-4 with his optimiser; Adam: 1e-3).
    learning_rate: float = 1e-3
    # Cosine decay of the step size (Loshchilov & Hutter 2016) from `learning_rate` to
    # `learning_rate * lr_final_fraction` over the first `lr_decay_steps` optimiser steps, then
    # held there; 0 steps: a constant step size.
    lr_decay_steps: int = 0
    lr_final_fraction: float = 0.1
    # Momentum of the "graves" optimiser (Graves: 0.9).
    momentum: float = 0.9
    # Decay of the running gradient moments of the "graves" optimiser (Graves: 0.95).
    rms_decay: float = 0.95
    # Added to the centred second moment under the square root, "graves" only (Graves: 1e-4).
    rms_epsilon: float = 1e-4
    # Global-norm clip of the whole gradient (of the mean per-line loss); 0 turns it off.
    clip_norm: float = 10.0
    # Clip of d(per-line loss)/d(head outputs) to [-v, v] (Graves: 100); 0 turns it off.
    output_gradient_clip: float = 0.0
    # Clip of d(per-line loss)/d(LSTM gate pre-activations) to [-v, v] (Graves: 10); 0: off.
    lstm_gradient_clip: float = 0.0
    # Lines per batch (all replicas together).
    batch_size: int = 32
    # Passes over the training split; training also stops at max_steps or time_budget_minutes.
    epochs: int = 100
    # Stop after this many optimiser steps; 0: no limit.
    max_steps: int = 0
    # Stop after this much wall-clock time; 0: no limit.
    time_budget_minutes: float = 0.0
    # The longest piece of a line a batch holds, in points; longer lines are cut into pieces
    # where the data say which character each point writes (a synthesis piece reads only the
    # characters it writes). A synthesis line without that alignment (IAM-OnDB) is trained
    # whole up to `max_line_points` points and left out beyond.
    max_points: int = 1200
    # The longest line without an alignment trained whole (IAM-OnDB lines reach ~1,900 points).
    max_line_points: int = 2000
    # Curriculum: the first `curriculum_steps` steps train on pieces of at most
    # `curriculum_max_points` points, then on `max_points`; 0 steps: no curriculum.
    curriculum_steps: int = 0
    curriculum_max_points: int = 250
    # Lines per batch during the curriculum; 0: `batch_size`. Pieces are shorter than whole
    # lines, so a batch of more of them reads about as many points: 32 pieces of 250 points
    # and 12 whole lines of the embedded corpus (687 points on average) both ~8,000.
    curriculum_batch_size: int = 0
    # Guided attention (Tachibana et al. 2017): an extra loss, weight `guided_attention` per
    # point at step 0 falling linearly to 0 at step `guided_attention_steps`, that pulls the
    # window towards the character each point writes (the data's alignment; the diagonal
    # where a line has none). 0: off.
    guided_attention: float = 0.0
    guided_attention_steps: int = 0
    # The chance that a training line is read joined to the next line of its writer, as one
    # sequence with the text "first second" and the join priming uses (`line_pairs`), so that
    # the network reads on past a line's end as priming makes it do. 300 steps at 0.5 from
    # the shipped network did not change what the points after the join cost (BENCHMARKS.md,
    # "The line's first point after a prime"). 0: single lines only.
    joined_lines: float = 0.0
    # A model directory (model.keras, config.json and dataset.json, as a run or an export
    # writes it; e.g. handwriting/assets/demo) whose weights a new run starts from, with a fresh
    # optimiser at step 0: its `model` section and its data's alphabet and statistics must be
    # this run's. Empty: random initialisation. A resumed run reads its own checkpoint instead.
    init_from: str = ""
    # Evaluate on the validation split every this many steps.
    eval_every_steps: int = 500
    # Validation batches per evaluation; 0: the whole split.
    eval_batches: int = 0
    # Write sample handwriting (and attention) to TensorBoard every this many steps; 0: never.
    sample_every_steps: int = 1000
    # Save a checkpoint every this many steps (and at the end).
    checkpoint_every_steps: int = 500
    # Stop after this many evaluations without a better validation loss; 0: never.
    early_stopping_patience: int = 10
    # Which network model.keras holds: "val_loss", the one with the lowest validation loss;
    # "legibility", the one whose samples the reader reads best (`handwriting.legibility`, the
    # CER logged at every sample step and at the end; before the first score, the lowest
    # validation loss). Early stopping counts validations either way.
    keep: str = "val_loss"
    # Fixes weight initialisation, shuffling and sampling.
    seed: int = 0

    def validate(self) -> None:
        _require(
            self.optimizer in OPTIMIZERS,
            "train.optimizer",
            f"must be one of {OPTIMIZERS}",
            self.optimizer,
        )
        _require(self.learning_rate > 0, "train.learning_rate", "must be > 0", self.learning_rate)
        _require(
            self.lr_decay_steps >= 0, "train.lr_decay_steps", "must be >= 0", self.lr_decay_steps
        )
        _require(
            0 <= self.lr_final_fraction <= 1,
            "train.lr_final_fraction",
            "must be in [0, 1]",
            self.lr_final_fraction,
        )
        _require(0 <= self.momentum < 1, "train.momentum", "must be in [0, 1)", self.momentum)
        _require(0 < self.rms_decay < 1, "train.rms_decay", "must be in (0, 1)", self.rms_decay)
        _require(self.rms_epsilon > 0, "train.rms_epsilon", "must be > 0", self.rms_epsilon)
        for key in ("clip_norm", "output_gradient_clip", "lstm_gradient_clip"):
            value = getattr(self, key)
            _require(value >= 0, f"train.{key}", "must be >= 0 (0 turns it off)", value)
        _require(self.batch_size >= 1, "train.batch_size", "must be >= 1", self.batch_size)
        _require(self.epochs >= 1, "train.epochs", "must be >= 1", self.epochs)
        _require(self.max_steps >= 0, "train.max_steps", "must be >= 0", self.max_steps)
        _require(
            self.time_budget_minutes >= 0,
            "train.time_budget_minutes",
            "must be >= 0",
            self.time_budget_minutes,
        )
        for key in ("max_points", "max_line_points", "curriculum_max_points"):
            _require(getattr(self, key) >= 2, f"train.{key}", "must be >= 2", getattr(self, key))
        for key in ("curriculum_steps", "curriculum_batch_size", "guided_attention_steps"):
            _require(getattr(self, key) >= 0, f"train.{key}", "must be >= 0", getattr(self, key))
        _require(
            self.guided_attention >= 0,
            "train.guided_attention",
            "must be >= 0 (0 turns it off)",
            self.guided_attention,
        )
        joined = self.joined_lines
        _require(0 <= joined <= 1, "train.joined_lines", "must be in [0, 1]", joined)
        for key in ("eval_every_steps", "checkpoint_every_steps"):
            _require(getattr(self, key) >= 1, f"train.{key}", "must be >= 1", getattr(self, key))
        for key in ("eval_batches", "sample_every_steps", "early_stopping_patience"):
            _require(getattr(self, key) >= 0, f"train.{key}", "must be >= 0", getattr(self, key))
        _require(
            self.keep in KEEP_CRITERIA, "train.keep", f"must be one of {KEEP_CRITERIA}", self.keep
        )
        _require(
            self.keep != "legibility" or self.sample_every_steps > 0,
            "train.sample_every_steps",
            "must be > 0 with train.keep=legibility (the score is taken at sample steps)",
            self.sample_every_steps,
        )


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the shards are and how lines are batched."""

    # Folder with dataset.json and the TFRecord shards (written by `python -m data_prep`).
    dir: str = "data/corpus"
    # Upper bounds (in points) of the length buckets: lines of similar length share a
    # batch, so little is padding; empty: one bucket.
    bucket_boundaries: tuple[int, ...] = (250, 400, 550, 700, 900)
    # Lines in the shuffle buffer.
    shuffle_buffer: int = 2048

    def validate(self) -> None:
        _require(bool(self.dir), "data.dir", "must not be empty", self.dir)
        bounds = self.bucket_boundaries
        _require(
            all(b >= 1 for b in bounds) and list(bounds) == sorted(set(bounds)),
            "data.bucket_boundaries",
            "must be strictly increasing positive ints",
            bounds,
        )
        _require(
            self.shuffle_buffer >= 1, "data.shuffle_buffer", "must be >= 1", self.shuffle_buffer
        )


_SECTIONS = {"model": ModelConfig, "train": TrainConfig, "data": DataConfig}


@dataclasses.dataclass(frozen=True)
class Config:
    """A whole run: `model`, `train`, `data`."""

    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    data: DataConfig = DataConfig()

    def __post_init__(self):
        for name, cls in _SECTIONS.items():
            section = getattr(self, name)
            if not isinstance(section, cls):
                raise ConfigError(f"{name}: expected a {cls.__name__}, received {section!r}")
            section.validate()

    def with_overrides(self, overrides) -> "Config":
        """Returns a copy with `section.field=value` strings applied in order.

        Values are parsed to the field's type: int, float, str, bool (true/false) or a tuple of
        ints written `a,b,c` (empty for none).
        """
        sections = {name: getattr(self, name) for name in _SECTIONS}
        for item in overrides:
            key, sep, text = item.partition("=")
            key = key.strip()
            if not sep:
                raise ConfigError(f"{item!r}: an override must read section.field=value")
            section_name, dot, field_name = key.partition(".")
            if section_name not in _SECTIONS or not dot:
                raise ConfigError(
                    f"{key}: unknown key; keys read section.field with section one of "
                    f"{sorted(_SECTIONS)}"
                )
            cls = _SECTIONS[section_name]
            types = typing.get_type_hints(cls)
            if field_name not in types:
                raise ConfigError(f"{key}: unknown field of {section_name}; known: {sorted(types)}")
            value = _parse(key, text.strip(), types[field_name])
            sections[section_name] = dataclasses.replace(
                sections[section_name], **{field_name: value}
            )
        return Config(**sections)

    def to_json(self) -> dict:
        out = {"format_version": FORMAT_VERSION}
        for name in _SECTIONS:
            section = dataclasses.asdict(getattr(self, name))
            out[name] = {k: list(v) if isinstance(v, tuple) else v for k, v in section.items()}
        return out

    @classmethod
    def from_json(cls, obj: dict, where: str = "config") -> "Config":
        """Builds a config from `to_json`'s dict; `where` names the source in errors."""
        if not isinstance(obj, dict):
            raise ConfigError(f"{where}: expected a JSON object, received {type(obj).__name__}")
        if obj.get("format_version") != FORMAT_VERSION:
            raise ConfigError(
                f"{where}: format_version must be {FORMAT_VERSION}, "
                f"received {obj.get('format_version')!r}"
            )
        unknown = sorted(set(obj) - set(_SECTIONS) - {"format_version"})
        if unknown:
            raise ConfigError(f"{where}: unknown sections {unknown}")
        sections = {}
        for name, section_cls in _SECTIONS.items():
            values = obj.get(name, {})
            if not isinstance(values, dict):
                raise ConfigError(
                    f"{where}: section {name} must be a JSON object, received {values!r}"
                )
            types = typing.get_type_hints(section_cls)
            unknown = sorted(set(values) - set(types))
            if unknown:
                raise ConfigError(f"{where}: unknown fields of {name}: {unknown}")
            try:
                sections[name] = section_cls(
                    **{k: _coerce(f"{name}.{k}", v, types[k]) for k, v in values.items()}
                )
            except ConfigError as e:
                raise ConfigError(f"{where}: {e}") from None
        try:
            return cls(**sections)
        except ConfigError as e:  # a value of the right type out of its range
            raise ConfigError(f"{where}: {e}") from None

    def save(self, directory) -> str:
        """Writes `directory/config.json` atomically; returns its path."""
        path = os.path.join(directory, FILENAME)
        files.write_text(path, json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, directory) -> "Config":
        """Reads `directory/config.json`."""
        path = os.path.join(directory, FILENAME)
        try:
            obj = files.read_json(path)
        except FileNotFoundError:
            raise ConfigError(f"{path}: not found") from None
        except files.JSONFileError as e:
            raise ConfigError(str(e)) from None
        return cls.from_json(obj, where=path)


def _parse(key: str, text: str, kind):
    """Parses an override's text to `kind`, the field's annotated type."""
    try:
        if kind is bool:
            if text.lower() not in ("true", "false"):
                raise ValueError(text)
            return text.lower() == "true"
        if kind is int:
            return int(text)
        if kind is float:
            return _finite(key, float(text))
        if kind is str:
            return text
        if typing.get_origin(kind) is tuple:
            return tuple(int(p) for p in text.split(",") if p.strip())
    except ConfigError:  # a float that is not finite
        raise
    except ValueError:
        raise ConfigError(f"{key}: expected {_type_name(kind)}, received {text!r}") from None
    raise ConfigError(f"{key}: fields of type {kind} cannot be overridden")


def _coerce(key: str, value, kind):
    """Checks a JSON value against `kind`; ints are accepted where floats are expected."""
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(kind)
    if ok is None and typing.get_origin(kind) is tuple:
        ok = isinstance(value, list) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        )
        value = tuple(value) if ok else value
    if not ok:
        raise ConfigError(f"{key}: expected {_type_name(kind)}, received {value!r}")
    return _finite(key, value) if kind is float else value


def _finite(key: str, value) -> float:
    """`value` as a finite float: JSON's Infinity, NaN and integers beyond float are refused."""
    try:
        number = float(value)
    except OverflowError:
        raise ConfigError(
            f"{key}: expected a finite float, received an integer beyond float"
        ) from None
    if not math.isfinite(number):
        raise ConfigError(f"{key}: expected a finite float, received {value!r}")
    return number


def _type_name(kind) -> str:
    if typing.get_origin(kind) is tuple:
        return "comma-separated ints"
    return {bool: "true or false", int: "an int", float: "a float", str: "a string"}[kind]
