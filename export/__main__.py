"""`python -m export --model DIR --out DIR`: SavedModel and TFLite samplers of a trained model."""

import argparse
import json
import os
import shutil
import sys
import tempfile

from handwriting import files

EPILOG = """examples:
  python -m export --model runs/demo --out exported
  python export/litert_runner.py exported "hello world" -o hello.svg --bias 1 --seed 7
"""


def export(model_dir, out_dir, *, int8=True, text_length=None) -> dict:
    """Writes every export of the model in `model_dir` to `out_dir`, replacing it atomically.

    Args:
        model_dir: a training run's or an export's directory.
        out_dir: the export directory.
        int8: also write the int8 TFLite sampler.
        text_length: the characters per line the TFLite samplers read (default
            `export.tflite.TEXT_LENGTH`).

    Returns a dict of file name -> size in bytes.
    """
    from export import savedmodel, tflite
    from handwriting import config as config_lib
    from handwriting import sample
    from handwriting.dataset_info import FILENAME as DATASET_FILENAME

    text_length = tflite.TEXT_LENGTH if text_length is None else text_length
    if isinstance(text_length, bool) or not isinstance(text_length, int) or text_length < 1:
        raise ValueError(f"`text_length` must be a positive int, received {text_length!r}")
    synth = sample.load(model_dir)
    synth = _float32(synth)
    out_dir = os.path.abspath(out_dir)
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    work = tempfile.mkdtemp(prefix="." + os.path.basename(out_dir) + ".", dir=parent)
    try:
        savedmodel.save(synth, os.path.join(work, "savedmodel"))
        meta = tflite.metadata(synth, synth.model, text_length)
        variants = [(tflite.FLOAT_FILENAME, False)] + (
            [(tflite.INT8_FILENAME, True)] if int8 else []
        )
        for name, quantize in variants:
            flatbuffer = tflite.convert(synth.model, quantize=quantize, text_length=text_length)
            files.write_bytes(os.path.join(work, name), tflite.embed_metadata(flatbuffer, meta))
        text = json.dumps(meta, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        files.write_text(os.path.join(work, tflite.METADATA_FILENAME), text)
        for name in (sample.MODEL_FILENAME, config_lib.FILENAME, DATASET_FILENAME):
            shutil.copyfile(os.path.join(model_dir, name), os.path.join(work, name))
        sizes = {}
        for root, _, names in os.walk(work):
            for name in names:
                path = os.path.join(root, name)
                sizes[os.path.relpath(path, work)] = os.path.getsize(path)
        old = None
        if os.path.exists(out_dir):
            old = tempfile.mkdtemp(prefix="." + os.path.basename(out_dir) + ".old.", dir=parent)
            os.replace(out_dir, os.path.join(old, "previous"))
        os.replace(work, out_dir)
        if old:
            shutil.rmtree(old, ignore_errors=True)
        return sizes
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m export",
        description="Export a trained synthesis network as a SavedModel and TFLite samplers.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, help="a training run's or export's directory")
    parser.add_argument("--out", required=True, help="the export directory (replaced)")
    parser.add_argument("--no-int8", action="store_true", help="skip the int8 TFLite sampler")
    parser.add_argument(
        "--text-length",
        type=int,
        default=None,
        help="characters per line the TFLite samplers read (default: tflite.TEXT_LENGTH)",
    )
    args = parser.parse_args(argv)
    if args.text_length is not None and args.text_length < 1:
        parser.error(f"--text-length must be >= 1, received {args.text_length}")
    from handwriting.sample import SampleError

    try:
        sizes = export(args.model, args.out, int8=not args.no_int8, text_length=args.text_length)
    except SampleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name in sorted(sizes):
        if not name.startswith("savedmodel/") or name.endswith(".pb"):
            print(f"{sizes[name]:>12,d}  {os.path.join(args.out, name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
