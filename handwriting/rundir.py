"""The run directory: every file name once, loading a trained model, and a run's progress.

A training run's directory holds everything that sampling and export read back, so no number
is typed twice; an export's directory holds the same first three files beside its samplers:

    config.json        the whole configuration (`handwriting.config`)
    dataset.json       the data set's description: alphabet and normalisation statistics
                       (`handwriting.dataset_info`)
    model.keras        the best network so far (what `load` reads): by validation loss, or by
                       legibility score with train.keep=legibility
    styles.json        optional: named style primes (`handwriting.sample.load_styles`)
    checkpoint/        the latest training state: `state.json` (`TrainingState`) and the
                       files of the checkpoint it names: the weights and optimiser slots, and
                       the position of the training data's iterator
    logs/              TensorBoard: train/ and validation/ (scalars at the optimiser step),
                       samples/ (handwriting of held-out sentences, the attention map)
    samples.png        held-out sentences written at bias 1 by the best network (at the end)
    attention.png      phi(t, u) of the best network over a validation line (at the end)
    legibility.json    the legibility score of the best network (`handwriting.legibility`;
                       written by train.py at the end)
"""

import dataclasses
import hashlib
import json
import math
import os
import zipfile

from handwriting import config as config_lib
from handwriting import dataset_info, files, presets
from handwriting.alphabet import Alphabet
from handwriting.config import Config, ConfigError
from handwriting.dataset_info import DatasetError, DatasetInfo
from handwriting.errors import SampleError, TrainingError

CONFIG_FILENAME = config_lib.FILENAME
DATASET_FILENAME = dataset_info.FILENAME
# Where the shipped demo model lives; `load()` without a directory reads it.
DEFAULT_MODEL_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "demo")
# The weights file of a model directory (a training run's or an export's).
MODEL_FILENAME = "model.keras"
# Optional file of a model directory with named style primes (`sample.load_styles`).
STYLES_FILENAME = "styles.json"
# The record of an adapted model (`handwriting.adapt`): lines, steps, held-out figures.
ADAPT_FILENAME = "adapt.json"
CHECKPOINT_DIR = "checkpoint"
# Inside checkpoint/: the training state (`TrainingState`), and the files of the checkpoint of
# step N that it names: the network and optimiser (`Model.save_weights`), and the prefix of
# the `tf.train.Checkpoint` of the training data's iterator (`.index`, `.data-*` files).
STATE_FILENAME = "state.json"
WEIGHTS_FILENAME = "step-{step:09d}.weights.h5"
ITERATOR_PREFIX = "step-{step:09d}.iterator"
LOG_DIR = "logs"
SAMPLES_PNG = "samples.png"
ATTENTION_PNG = "attention.png"
LEGIBILITY_FILENAME = "legibility.json"


@dataclasses.dataclass(frozen=True)
class Synthesizer:
    """A trained synthesis network with everything sampling needs."""

    model: object  # handwriting.model.HandwritingModel, kind "synthesis"
    config: Config  # the run's configuration
    alphabet: Alphabet  # the alphabet the model was trained with
    offset_mean: tuple  # (mean dx, mean dy) of the training data
    offset_std: tuple  # (std dx, std dy) of the training data
    directory: str = ""  # where it was loaded from


def load(directory=None) -> Synthesizer:
    """Loads a model directory: `config.json`, `dataset.json` and `model.keras`.

    Args:
        directory: a training run's directory or an export's; None: the shipped demo model.

    Raises:
        SampleError: the directory or one of its files is missing or unusable.
    """
    directory = os.fspath(directory) if directory is not None else DEFAULT_MODEL_DIR
    if not os.path.isdir(directory):
        if directory == DEFAULT_MODEL_DIR:
            raise SampleError(
                f"the demo model is not installed ({directory} is missing); train it with "
                "`make train` or pass --model DIR"
            )
        raise SampleError(f"{directory}: no such model directory")
    weights = os.path.join(directory, MODEL_FILENAME)
    if not os.path.isfile(weights):
        raise SampleError(
            f"{directory}: no {MODEL_FILENAME}; a model directory holds {MODEL_FILENAME}, "
            f"{CONFIG_FILENAME} and {DATASET_FILENAME}"
        )
    try:
        config = Config.load(directory)
    except ConfigError as e:
        raise SampleError(str(e)) from None
    info = _load_dataset_info(directory)
    import keras

    from handwriting import model as model_lib  # registers the model's classes with Keras

    check_keras_archive(weights)
    try:
        # safe_mode (Keras' default, stated): a Lambda's code or a function named in the
        # file's config is refused, never run.
        model = keras.saving.load_model(weights, compile=False, safe_mode=True)
    except Exception as e:  # a corrupt or foreign file: say which, not a traceback
        raise SampleError(f"{weights}: cannot be loaded ({type(e).__name__}: {e})") from None
    if not isinstance(model, model_lib.HandwritingModel) or not model.is_synthesis:
        raise SampleError(f"{weights}: not a synthesis network; only those can write text")
    if model.alphabet_size != info.alphabet.size:
        raise SampleError(
            f"{weights}: the network reads {model.alphabet_size} character ids but "
            f"{DATASET_FILENAME} has an alphabet of {info.alphabet.size}"
        )
    return Synthesizer(
        model=model,
        config=config,
        alphabet=info.alphabet,
        offset_mean=tuple(info.offset_mean),
        offset_std=tuple(info.offset_std),
        directory=directory,
    )


def check_keras_archive(path) -> None:
    """Refuses a `.keras` file that is not a whole zip archive: truncated, or a byte changed.

    Keras says "File not found" for both; every member's CRC is checked here instead.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            broken = archive.testzip()
    except (zipfile.BadZipFile, EOFError) as e:
        raise SampleError(
            f"{path}: not a complete .keras file (truncated or corrupt: {e}); copy or export "
            "it again"
        ) from None
    except OSError as e:
        raise SampleError(f"{path}: cannot be read ({e.strerror or e})") from None
    if broken is not None:
        raise SampleError(
            f"{path}: corrupt .keras file ({broken} fails its checksum); copy or export it again"
        )


def _load_dataset_info(directory) -> DatasetInfo:
    path = os.path.join(directory, DATASET_FILENAME)
    try:
        return DatasetInfo.from_json(files.read_json(path), where=path)
    except FileNotFoundError:
        raise SampleError(f"{path}: not found; the alphabet and statistics live there") from None
    except (files.JSONFileError, DatasetError) as e:
        raise SampleError(str(e)) from None


# ---------------------------------------------------------------------------------------------
# A training run's progress (checkpoint/state.json) and the checks before it starts or resumes

# 4: the best legibility score (3: without it; 2: without the sha256 of every checkpoint file
# and of state.json's own fields; both read).
STATE_FORMAT_VERSION = 4
STATE_FORMAT_VERSIONS = (2, 3, 4)  # what `TrainingState.load` reads
# The fields each older format lacks; they take their defaults when it is read.
_NEWER_FIELDS = {2: {"files", "best_cer", "best_cer_step"}, 3: {"best_cer", "best_cer_step"}}


@dataclasses.dataclass(frozen=True)
class TrainingState:
    """What `checkpoint/state.json` records: a run's progress and its checkpoint's files."""

    step: int  # optimiser steps done = batches drawn from the training stream
    weights: str  # file name, inside checkpoint/, of the network and optimiser weights
    iterator: str  # prefix, inside checkpoint/, of the training data iterator's checkpoint
    elapsed_seconds: float  # training time so far, all sessions together
    best_val_loss: float | None  # lowest validation nats per line so far (model.keras)
    best_step: int  # the step of best_val_loss
    early_stopping_wait: int  # validations since the last improvement
    # File name inside checkpoint/ -> sha256 of its bytes, for every file of the checkpoint
    # (`checkpoint.write` fills it in): HDF5 and TensorFlow's iterator files carry no checksum
    # of their own, so a changed byte in a weight would otherwise load as another weight.
    files: dict = dataclasses.field(default_factory=dict)
    # The lowest legibility score so far (the reader's CER on samples at a sample step) and
    # its step; model.keras holds that network when the run keeps by legibility (train.keep).
    best_cer: float | None = None
    best_cer_step: int = 0

    def validated(self, step: int, val_loss: float) -> "TrainingState":
        """The state after a validation at `step`: a new best loss, or one more without."""
        if math.isfinite(val_loss) and (
            self.best_val_loss is None or val_loss < self.best_val_loss
        ):
            return dataclasses.replace(
                self, best_val_loss=float(val_loss), best_step=step, early_stopping_wait=0
            )
        return dataclasses.replace(self, early_stopping_wait=self.early_stopping_wait + 1)

    def holds(self, name: str) -> bool:
        """True when `name`, a file inside checkpoint/, belongs to this state's checkpoint."""
        return name == self.weights or name.startswith(self.iterator + ".")

    def to_json(self) -> dict:
        """The JSON of state.json; its `sha256` is that of the other fields (`_fields_digest`),
        so a changed byte anywhere in the file is found when it is read."""
        obj = {"format_version": STATE_FORMAT_VERSION, **dataclasses.asdict(self)}
        return {**obj, "sha256": _fields_digest(obj)}

    def save(self, run_dir) -> None:
        """Writes `run_dir/checkpoint/state.json` atomically."""
        text = json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n"
        files.write_text(os.path.join(run_dir, CHECKPOINT_DIR, STATE_FILENAME), text)

    @classmethod
    def load(cls, run_dir) -> "TrainingState | None":
        """Reads `run_dir/checkpoint/state.json`; None when there is none.

        Raises:
            TrainingError: state.json is not one this version wrote, was changed after it was
                written, or names a checkpoint file that is missing or whose bytes differ from
                those written (the message names the file).
        """
        path = os.path.join(run_dir, CHECKPOINT_DIR, STATE_FILENAME)
        try:
            obj = files.read_json(path)
        except FileNotFoundError:
            return None
        except files.JSONFileError as e:
            raise TrainingError(str(e)) from None
        version = obj.get("format_version") if isinstance(obj, dict) else obj
        if version not in STATE_FORMAT_VERSIONS:
            raise TrainingError(
                f"{path}: format_version must be one of {list(STATE_FORMAT_VERSIONS)}, received "
                f"{version!r}"
            )
        fields = {f.name for f in dataclasses.fields(cls)} - _NEWER_FIELDS.get(version, set())
        if version == 2 and ("files" in obj or "sha256" in obj):
            raise TrainingError(f"{path}: format_version 2 holds no checksums, but this one does")
        if version != 2 and obj.get("sha256") != _fields_digest(obj):
            raise TrainingError(
                f"{path}: its sha256 does not match its contents; the file was changed after it "
                "was written. Restore it, or start the run again in another --logdir"
            )
        missing = sorted(fields - set(obj))
        if missing:
            raise TrainingError(f"{path}: missing fields {missing}")
        state = cls(**{k: obj[k] for k in fields})
        directory = os.path.join(run_dir, CHECKPOINT_DIR)
        for name in (state.weights, state.iterator + ".index", *state.files):
            if not os.path.isfile(os.path.join(directory, name)):
                raise TrainingError(f"{path}: names {name}, which is missing")
        for name, digest in state.files.items():
            if dataset_info.sha256_file(os.path.join(directory, name)) != digest:
                raise TrainingError(
                    f"{os.path.join(directory, name)}: sha256 does not match {path}; the "
                    "checkpoint file was damaged after it was written. Restore it, or start "
                    "the run again in another --logdir"
                )
        return state


def _fields_digest(obj: dict) -> str:
    """The sha256 of a state.json object's fields but `sha256` (canonical JSON)."""
    fields = {k: v for k, v in obj.items() if k != "sha256"}
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


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
    if resume and os.path.isfile(os.path.join(run_dir, CONFIG_FILENAME)):
        base = Config.load(run_dir)
    else:
        base = presets.preset(preset_name)
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


def check_run_dir(run_dir, config: Config, resume: bool, log) -> TrainingState | None:
    """Refuses to mix runs in one directory; returns the state to resume from, if any.

    Raises:
        TrainingError: `run_dir` holds another run, or this one without `resume`, or
            `resume` would change the model.
    """
    if not os.path.isfile(os.path.join(run_dir, CONFIG_FILENAME)):
        if os.path.isdir(os.path.join(run_dir, CHECKPOINT_DIR)):
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


def _encoding_differences(alphabet, offset_mean, offset_std, info: DatasetInfo) -> list:
    """What of the text and point encoding differs from `info`'s: the alphabet, the statistics."""
    problems = []
    if alphabet != info.alphabet:
        problems.append("the alphabet")
    if tuple(offset_mean) != tuple(info.offset_mean) or tuple(offset_std) != tuple(info.offset_std):
        problems.append("the normalisation statistics")
    return problems


def initial_weights(config: Config, info: DatasetInfo, log) -> list:
    """The weights of `config.train.init_from`'s model, for a new run of `config` on `info`.

    The alphabet must be `info`'s (a character id must mean the same character). Other
    normalisation statistics (a corpus rebuilt or changed, another data set) are allowed and
    said when they differ by more than 0.1%: the network starts from offsets in other units and
    learns the new ones.

    Raises:
        TrainingError: the directory cannot be loaded, or holds another network (its `model`
            section differs) or another alphabet.
    """
    directory = config.train.init_from
    try:
        source = load(directory)
    except SampleError as e:
        raise TrainingError(f"train.init_from: {e}") from None
    shape = _differences(source.config, config, sections=("model",))
    if shape:
        raise TrainingError(
            f"train.init_from: {directory} holds another network ({'; '.join(shape)}); start "
            "from a model of this run's configuration"
        )
    if source.alphabet != info.alphabet:
        raise TrainingError(
            f"train.init_from: {directory}: its alphabet differs from that of "
            f"{os.path.join(config.data.dir, DATASET_FILENAME)}; a network cannot switch "
            "character ids"
        )
    old = (*source.offset_mean, *source.offset_std)
    new = (*info.offset_mean, *info.offset_std)
    if any(abs(a - b) > 1e-3 * abs(b) for a, b in zip(old, new, strict=True)):
        log(
            f"{directory} was trained on offsets of mean {source.offset_mean} and std "
            f"{source.offset_std}; these data have {tuple(info.offset_mean)} and "
            f"{tuple(info.offset_std)}"
        )
    return source.model.get_weights()


def check_dataset(run_dir, info: DatasetInfo, data_dir) -> None:
    """A resumed run must read text with its alphabet and points with its statistics."""
    path = os.path.join(run_dir, DATASET_FILENAME)
    if not os.path.isfile(path):
        return
    try:
        with open(path, encoding="utf-8") as f:
            stored = DatasetInfo.from_json(json.load(f), where=path)
    except json.JSONDecodeError as e:
        raise TrainingError(f"{path}: not valid JSON: line {e.lineno}: {e.msg}") from None
    problems = _encoding_differences(stored.alphabet, stored.offset_mean, stored.offset_std, info)
    if problems:
        raise TrainingError(
            f"{os.path.join(data_dir, DATASET_FILENAME)}: {' and '.join(problems)} differ from "
            f"those the run was trained with ({path}); a network cannot switch data encodings"
        )
