"""Exports of a trained synthesis network: a SavedModel and TFLite samplers (float32, int8).

`python -m export --model RUN_DIR --out EXPORT_DIR` writes:

- `savedmodel/`: signature `generate(text, bias, seed) -> {strokes, finished}` (`savedmodel`).
- `sampler_float32.tflite`, `sampler_int8.tflite`: one sampling step, builtin ops only, the
  metadata embedded (`tflite`); `sampler.json`: the same metadata beside them.
- `model.keras`, `config.json`, `dataset.json`: the source model, so the export directory also
  works as `--model` for `python -m handwriting write`.

`export/litert_runner.py EXPORT_DIR "text" -o out.svg` samples with LiteRT and numpy alone.
"""

from export.folder import OutputError, export
from handwriting.export_layout import is_previous_export

__all__ = ["OutputError", "export", "is_previous_export"]
