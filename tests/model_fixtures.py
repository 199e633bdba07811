"""A model directory as training writes it, with a tiny random-weight synthesis network."""

import keras

from handwriting import model as model_lib
from handwriting import presets
from handwriting.alphabet import PRINTABLE_ASCII, Alphabet
from handwriting.dataset_info import DatasetInfo


def write_tiny_model(directory, *, seed, offset_mean, offset_std):
    """Writes `model.keras`, `config.json` and `dataset.json` of the `tiny` preset."""
    keras.utils.set_random_seed(seed)
    cfg = presets.preset("tiny")
    alphabet = Alphabet(PRINTABLE_ASCII)
    model_lib.build_model(cfg.model, alphabet.size).save(directory / "model.keras")
    cfg.save(directory)
    DatasetInfo(alphabet, offset_mean, offset_std, splits={}).save(directory)
    return str(directory)
