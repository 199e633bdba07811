"""The export folder: `export()` writes every export of a model into one folder, atomically.

`python -m export` (`export/__main__.py`) is its command line; `python -m handwriting serve`
and the page's "Make it my hand" run it as a child process. The package re-exports `export`,
`OutputError` and `is_previous_export` (`from export import export`); what makes a folder an
export (its file names, `is_previous_export`) is the library's: `handwriting.export_layout`.
"""

import json
import os
import shutil
import tempfile

from handwriting import files, rundir
from handwriting.export_layout import (
    FLOAT_FILENAME,
    INT8_FILENAME,
    METADATA_FILENAME,
    is_previous_export,
)

# The folder of the SavedModel inside an export.
SAVEDMODEL_DIRNAME = "savedmodel"
# Names of a refused folder's files listed in its error message.
LISTED_NAMES = 5


class OutputError(ValueError):
    """An `--out` the export may not write to; the message says what is wrong and where."""


def export(model_dir, out_dir, *, int8=True, text_length=None) -> dict:
    """Writes every export of the model in `model_dir` into the folder `out_dir`.

    `out_dir` must be a new folder, an empty one, or one holding a previous export (a
    `sampler.json` as the exporter writes it). The export is built in a temporary folder
    beside `out_dir`, then moved in: a new folder in one rename; into an existing one entry by
    entry, each rename replacing the previous export's entry. Only the entries the exporter
    writes (`export_entries`) are replaced or removed; other files of a previous export's
    folder are kept.

    Args:
        model_dir: a training run's or an export's directory.
        out_dir: the export directory.
        int8: also write the int8 TFLite sampler.
        text_length: the characters per line the TFLite samplers read (default
            `export.tflite.TEXT_LENGTH`).

    Returns a dict of file name -> size in bytes.

    Raises:
        OutputError: `out_dir` may not receive the export (checked before any slow work): a
            file, a folder holding other files, the model's folder or one inside it.
    """
    from export import savedmodel, tflite

    text_length = tflite.TEXT_LENGTH if text_length is None else text_length
    if isinstance(text_length, bool) or not isinstance(text_length, int) or text_length < 1:
        raise ValueError(f"`text_length` must be a positive int, received {text_length!r}")
    check_output(model_dir, out_dir)
    synth = rundir.load(model_dir)
    synth = _float32(synth)
    target = os.path.realpath(out_dir)
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    work = tempfile.mkdtemp(prefix="." + os.path.basename(target) + ".", dir=parent)
    os.chmod(work, 0o777 & ~files.umask())  # mkdtemp's 0700 would become the export folder's
    try:
        savedmodel.save(synth, os.path.join(work, SAVEDMODEL_DIRNAME))
        meta = tflite.metadata(synth, synth.model, text_length)
        variants = [(FLOAT_FILENAME, False)] + ([(INT8_FILENAME, True)] if int8 else [])
        for name, quantize in variants:
            flatbuffer = tflite.convert(synth.model, quantize=quantize, text_length=text_length)
            files.write_bytes(os.path.join(work, name), tflite.embed_metadata(flatbuffer, meta))
        text = json.dumps(meta, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        files.write_text(os.path.join(work, METADATA_FILENAME), text)
        for name in (rundir.MODEL_FILENAME, rundir.CONFIG_FILENAME, rundir.DATASET_FILENAME):
            shutil.copyfile(os.path.join(model_dir, name), os.path.join(work, name))
        sizes = {}
        for root, _, names in os.walk(work):
            for name in names:
                path = os.path.join(root, name)
                sizes[os.path.relpath(path, work)] = os.path.getsize(path)
        # Checked again: the folder may have changed during the export.
        check_output(model_dir, out_dir)
        if os.path.isdir(target):
            _move_into(work, target)
        else:
            os.replace(work, target)
        return sizes
    finally:
        shutil.rmtree(work, ignore_errors=True)


def export_entries() -> tuple:
    """The names the exporter writes into its folder: the only ones it replaces or removes."""
    return (
        SAVEDMODEL_DIRNAME,
        FLOAT_FILENAME,
        INT8_FILENAME,
        rundir.MODEL_FILENAME,
        rundir.CONFIG_FILENAME,
        rundir.DATASET_FILENAME,
        METADATA_FILENAME,  # last: moved in last, the folder stays an export throughout
    )


def check_output(model_dir, out_dir) -> None:
    """Raises `OutputError` unless `out_dir` may receive an export of `model_dir`.

    Accepted: a folder that does not exist yet (below a writable folder), an empty folder, or
    a previous export (`is_previous_export`; its other files are kept). Refused: a file, a
    folder holding other files, `--model`'s folder or a folder inside it (unless a previous
    export), a folder holding `--model`.
    """
    out_dir = os.fspath(out_dir)
    if not out_dir:
        raise OutputError("--out is empty; give a new or empty folder")
    target = os.path.realpath(out_dir)  # also `out/` for a file `out`, or a link's folder
    if os.path.lexists(target) and not os.path.isdir(target):
        kind = "a file" if os.path.isfile(target) else "not a folder"
        raise OutputError(f"{out_dir} is {kind}; choose a new or empty folder")
    exists = os.path.isdir(target)
    problem = None if exists else files.creation_problem(target)
    if problem:
        raise OutputError(problem)
    previous = exists and is_previous_export(target)
    if model_dir is not None and os.path.isdir(model_dir):
        model = os.path.realpath(model_dir)
        if not previous and target == model:
            raise OutputError(
                f"--out {out_dir} is the --model folder; choose a new or empty folder outside it"
            )
        if not previous and _inside(target, model):
            raise OutputError(
                f"--out {out_dir} is inside the --model folder {model_dir}; "
                "choose a new or empty folder outside it"
            )
        if _inside(model, target) and (
            not previous or os.path.relpath(model, target).split(os.sep)[0] in export_entries()
        ):
            raise OutputError(
                f"--model {model_dir} is inside --out {out_dir}; "
                "choose a new or empty folder outside it"
            )
    if not exists:
        return
    try:
        names = sorted(os.listdir(target))
    except OSError as e:
        raise OutputError(f"{out_dir}: cannot be read ({e.strerror})") from None
    if names and not previous:
        listed = ", ".join(names[:LISTED_NAMES]) + (", ..." if len(names) > LISTED_NAMES else "")
        raise OutputError(
            f"{out_dir} holds files that are not an export ({listed}); choose a new or empty folder"
        )
    for directory in (target, os.path.dirname(target)):  # the export is built beside it
        if not os.access(directory, os.W_OK | os.X_OK):
            raise OutputError(f"{directory}: no permission to write there")


def _move_into(work, target) -> None:
    """Moves the entries of `work` into the existing folder `target`, replacing the exporter's
    entries there (also those this export did not write, such as a stale int8 sampler) and
    leaving every other entry alone. A file is replaced by one rename; a folder is first moved
    aside. On an error the entries moved aside are put back where nothing replaced them."""
    aside = tempfile.mkdtemp(prefix=".previous.", dir=work)
    try:
        for name in export_entries():
            new, old = os.path.join(work, name), os.path.join(target, name)
            if os.path.lexists(old) and (
                not os.path.lexists(new) or os.path.isdir(new) or os.path.isdir(old)
            ):
                os.replace(old, os.path.join(aside, name))
            if os.path.lexists(new):
                os.replace(new, old)
    except BaseException:
        for name in os.listdir(aside):
            if not os.path.lexists(os.path.join(target, name)):
                os.replace(os.path.join(aside, name), os.path.join(target, name))
        raise


def _inside(path, folder) -> bool:
    """Whether the absolute `path` lies below the absolute `folder`."""
    return path != folder and os.path.commonpath([path, folder]) == folder


def _float32(synth):
    """The same network in float32 (exports run float32 kernels), weights copied."""
    import dataclasses

    from handwriting import model as model_lib

    if synth.model.dtype_policy.name == "float32":
        return synth
    model_config = dataclasses.replace(synth.config.model, dtype_policy="float32")
    model = model_lib.build_model(model_config, synth.alphabet.size)
    model.set_weights(synth.model.get_weights())
    return dataclasses.replace(synth, model=model)
