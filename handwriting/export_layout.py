"""The export folder: the names of the files `python -m export` writes, and how to tell one.

What the library knows of an export, so that reading one needs no import of the exporter
(the `export` package depends on the library, never the reverse). `python -m export` writes:

    savedmodel/              the SavedModel (`export.savedmodel`)
    sampler_float32.tflite   the TFLite step, float32 weights (`export.tflite`)
    sampler_int8.tflite      the same, int8 weights (unless `--no-int8`)
    sampler.json             the samplers' metadata: alphabet, normalisation, sizes; its
                             `format` and fields (`EXPORT_MARK_FIELDS`) mark the folder
    model.keras, config.json, dataset.json
                             the source model (`handwriting.rundir`), so that the folder also
                             works as `--model`

A folder holding such a `sampler.json` is a previous export (`is_previous_export`): the
exporter may replace its outputs, and the page's server serves it as it is.
"""

import os

from handwriting import files

FLOAT_FILENAME = "sampler_float32.tflite"
INT8_FILENAME = "sampler_int8.tflite"
METADATA_FILENAME = "sampler.json"
# `sampler.json`'s `format` (as `export.tflite.metadata` writes it) and the fields that mark a
# folder as a previous export.
SAMPLER_FORMAT = "handwriting-tflite-sampler"
EXPORT_MARK_FIELDS = ("format", "version", "signature", "alphabet", "normalization", "state_widths")


def is_previous_export(directory) -> bool:
    """Whether `directory` holds an export: a `sampler.json` that parses to the exporter's
    format with the fields it writes (`EXPORT_MARK_FIELDS`)."""
    try:
        meta = files.read_json(os.path.join(directory, METADATA_FILENAME))
    except (OSError, ValueError):  # FileNotFoundError; files.JSONFileError: not a file, not JSON
        return False
    return (
        isinstance(meta, dict)
        and meta.get("format") == SAMPLER_FORMAT
        and all(field in meta for field in EXPORT_MARK_FIELDS)
    )
