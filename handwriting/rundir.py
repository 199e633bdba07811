"""The run directory: every file name once, and loading a trained model from one.

A training run's directory holds everything that sampling and export read back, so no number
is typed twice; an export's directory holds the same first three files beside its samplers:

    config.json        the whole configuration (`handwriting.config`)
    dataset.json       the data set's description: alphabet and normalisation statistics
                       (`handwriting.dataset_info`)
    model.keras        the network at its best validation loss so far (what `load` reads)
    styles.json        optional: named style primes (`handwriting.sample.load_styles`)
    checkpoint/        the latest training state: `state.json` and the weights file it names
    logs/              TensorBoard: train/ and validation/ (scalars at the optimiser step),
                       samples/ (handwriting of held-out sentences, the attention map)
    samples.png        held-out sentences written at bias 1 by the best network (at the end)
    attention.png      phi(t, u) of the best network over a validation line (at the end)
"""

import dataclasses
import json
import os
import zipfile

from handwriting import config as config_lib
from handwriting import dataset_info
from handwriting.alphabet import Alphabet
from handwriting.config import Config, ConfigError
from handwriting.dataset_info import DatasetError, DatasetInfo
from handwriting.errors import SampleError

CONFIG_FILENAME = config_lib.FILENAME
DATASET_FILENAME = dataset_info.FILENAME
# Where the shipped demo model lives; `load()` without a directory reads it.
DEFAULT_MODEL_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "demo")
# The weights file of a model directory (a training run's or an export's).
MODEL_FILENAME = "model.keras"
# Optional file of a model directory with named style primes (`sample.load_styles`).
STYLES_FILENAME = "styles.json"
CHECKPOINT_DIR = "checkpoint"
# The training state inside checkpoint/ (`handwriting.training.TrainingState`).
STATE_FILENAME = "state.json"
LOG_DIR = "logs"
SAMPLES_PNG = "samples.png"
ATTENTION_PNG = "attention.png"


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

    _check_keras_archive(weights)
    try:
        model = keras.saving.load_model(weights, compile=False)
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


def _check_keras_archive(path) -> None:
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
        with open(path, encoding="utf-8") as f:
            return DatasetInfo.from_json(json.load(f), where=path)
    except FileNotFoundError:
        raise SampleError(f"{path}: not found; the alphabet and statistics live there") from None
    except json.JSONDecodeError as e:
        raise SampleError(f"{path}: not valid JSON: line {e.lineno}: {e.msg}") from None
    except DatasetError as e:
        raise SampleError(str(e)) from None
