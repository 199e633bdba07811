"""The TFLite sampler: one step of the synthesis network and the sampling draw, builtin ops only.

Signature `step` (B lines, U characters, S = the packed state's width):

(B is fixed when converting: 1 for the exported samplers.)

    inputs                                       outputs
    point      float32 (B, 3)  x_t, normalised    point    float32 (B, 3)  x_{t+1}, normalised
    state      float32 (B, S)  packed state       state    float32 (B, S)  the state after x_t
    chars      int32   (B, U)  alphabet ids       phi      float32 (B, U)  window weights phi(t, u)
    chars_mask float32 (B, U)  1 real, 0 padding  phi_end  float32 (B)     phi(t, U), past the end
    uniforms   float32 (B, 2)  draws in [0, 1)    head     float32 (B, 1 + 6M) mixture parameters
    normals    float32 (B, 2)  standard normals
    bias       float32 (B)     sampling bias

The packed state is the model's flat state `(h1, c1, kappa, w, h2, c2, ...)` concatenated along
the last axis (widths in the metadata); zeros is the initial state. A line stops when
`phi_end > max(phi)` (the point returned with that step is not used). The draws come from
`numpy.random.default_rng([seed, line])` as `handwriting.draws` describes.

Metadata (alphabet, normalisation statistics, sizes, the start point) is stored as JSON both
inside the flatbuffer (metadata entry `handwriting`) and beside it (`sampler.json`).
"""

import json

import numpy as np
import tensorflow as tf

from handwriting import mixture, sample

SIGNATURE = "step"
METADATA_NAME = "handwriting"
METADATA_VERSION = 1
FLOAT_FILENAME = "sampler_float32.tflite"
INT8_FILENAME = "sampler_int8.tflite"
METADATA_FILENAME = "sampler.json"


def state_widths(model) -> list:
    """Widths of the flat state's tensors, in order: `(H, H, K, V, H, H, ...)`."""
    return [int(s.shape[-1]) for s in model.initial_state(1)]


def step_function(model, batch_size=1):
    """Returns the `tf.function` of one sampling step (see the module docstring).

    Args:
        model: a float32 synthesis `HandwritingModel`.
        batch_size: B, fixed in the signature (the text length U stays dynamic). The
            converter cannot lower the window's `(B, 1, U)` reshape when both are dynamic,
            and static batch shapes are also what the CPU kernels run fastest.
    """
    widths = state_widths(model)
    b = int(batch_size)

    @tf.function(
        input_signature=[
            tf.TensorSpec([b, 3], tf.float32, name="point"),
            tf.TensorSpec([b, sum(widths)], tf.float32, name="state"),
            tf.TensorSpec([b, None], tf.int32, name="chars"),
            tf.TensorSpec([b, None], tf.float32, name="chars_mask"),
            tf.TensorSpec([b, 2], tf.float32, name="uniforms"),
            tf.TensorSpec([b, 2], tf.float32, name="normals"),
            tf.TensorSpec([b], tf.float32, name="bias"),
        ]
    )
    def step(point, state, chars, chars_mask, uniforms, normals, bias):
        parts = tf.split(state, widths, axis=-1)
        head, phi, new_state = model.step(point, chars, chars_mask, tuple(parts))
        lengths = tf.reduce_sum(chars_mask, axis=-1)
        phi_end = sample.end_of_text_weight(model, new_state, lengths)
        next_point = mixture.sample_point(head, bias, uniforms, normals)
        packed = tf.concat([tf.cast(s, tf.float32) for s in new_state], axis=-1)
        return {
            "point": next_point,
            "state": packed,
            "phi": phi,
            "phi_end": phi_end,
            "head": head,
        }

    return step


def convert(model, *, quantize: bool, batch_size: int = 1) -> bytes:
    """Converts the step of `model` to a TFLite flatbuffer of builtin ops only.

    Args:
        model: a float32 synthesis `HandwritingModel`.
        quantize: int8 dynamic-range quantisation of the weights (activations stay float).
        batch_size: B of the signature (the exported samplers use 1: one line at a time).
    """
    import tempfile

    import keras

    # Through a Keras export archive: the signature gets its name and the weights are frozen
    # into constants (which dynamic-range quantisation needs); a plain tf.Module keeps Keras
    # variables as TFLite resource variables.
    archive = keras.export.ExportArchive()
    archive.track(model)
    step = step_function(model, batch_size)
    archive.add_endpoint(name=SIGNATURE, fn=step, input_signature=step.input_signature)
    with tempfile.TemporaryDirectory(prefix="tflite-step-") as directory:
        archive.write_out(directory, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(directory, signature_keys=[SIGNATURE])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        return converter.convert()


def metadata(synth, model) -> dict:
    """The JSON a runner needs besides the flatbuffer."""
    start = sample.normalize(synth, np.zeros((1, 3), np.float32))[0]
    return {
        "format": "handwriting-tflite-sampler",
        "version": METADATA_VERSION,
        "signature": SIGNATURE,
        "alphabet": synth.alphabet.to_json(),
        "normalization": {
            "offset_mean": [float(v) for v in synth.offset_mean],
            "offset_std": [float(v) for v in synth.offset_std],
        },
        "state_widths": state_widths(model),
        "mixtures": int(model.mixtures),
        "window_gaussians": int(model.window_gaussians),
        "start_point": [float(v) for v in start],
        "points_per_char": sample.POINTS_PER_CHAR,
        "max_text_chars": sample.MAX_TEXT_CHARS,
        "draws": "numpy.random.default_rng([seed, line]).random(4) per step: u0, u1 uniforms; "
        "normals sqrt(-2 log(1 - u2)) * (cos, sin)(2 pi u3)",
    }


def embed_metadata(flatbuffer: bytes, meta: dict) -> bytes:
    """Returns `flatbuffer` with `meta` as JSON in its metadata entry `handwriting`."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != METADATA_NAME.encode()]
    model.metadata.append(entry)
    builder = flatbuffers.Builder(len(flatbuffer) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def read_metadata(flatbuffer: bytes) -> dict:
    """Reads the `handwriting` metadata entry back (None when absent)."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(flatbuffer, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() == METADATA_NAME.encode():
            data = model.Buffers(entry.Buffer()).DataAsNumpy()
            return json.loads(bytes(data).decode("utf-8"))
    return None


def builtin_ops(flatbuffer: bytes) -> set:
    """The names of the operators a flatbuffer uses (custom and Flex ops by their custom code)."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(flatbuffer, 0)
    names = {code: name for name, code in vars(schema.BuiltinOperator).items() if name.isupper()}
    used = set()
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            used.add("CUSTOM:" + code.CustomCode().decode())
        else:
            used.add(names.get(builtin, str(builtin)))
    return used
