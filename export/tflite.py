"""The TFLite sampler: one step of the synthesis network and the sampling draw, builtin ops only.

Signature `step`; every shape is fixed when converting (B lines, L = the text length the
sampler reads, V alphabet ids, S = the packed state's width, M mixtures):

    inputs                                        outputs
    point     float32 (B, 3)     x_t, normalised   point    float32 (B, 3)  x_{t+1}, normalised
    state     float32 (B, S)     packed state      state    float32 (B, S)  the state after x_t
    text      float32 (B, L, V)  one-hot text      passed   uint8   (B)     1: the window passed
    text_mask float32 (B, L)     1 real, 0 pad     phi      float32 (B, L)  weights phi(t, u)
    draws     float32 (B, 4)     u_c, u_e, z_x, z_y phi_end float32 (B)     phi(t, U), past the end
    bias      float32 (B)        sampling bias     head     float32 (B, 1 + 6M) mixture output

`text` is the one-hot of the alphabet ids with all-zero rows at padding; `text` and
`text_mask` stay the same for a whole line, so a runner sets them once. The packed state is
the model's flat state `(h1, c1, kappa, w, h2, c2, ...)` concatenated along the last axis
(widths in the metadata); zeros is the initial state. `passed` is the stop rule
(`handwriting.window.window_has_passed`): a line stops at the first step where it is true,
and the point returned with that step is not used. It is uint8 (1 true, 0 false) rather than
bool because LiteRT.js, which runs the step in the browser page (`web/`), reads and writes
float32, int32 and uint8 tensors only. `draws` are the four numbers of
`handwriting.mixture.sample_point` (two uniforms, two standard normals) from
`numpy.random.default_rng([seed, line])` as `handwriting.draws` describes.

A second signature, `write`, is the same step with the three outputs a writing loop reads
(`point`, `state`, `passed`), the same weights: LiteRT.js makes a new buffer for every output
on every call, and in the page's worker a call with three outputs cost 22–46 µs against
48–77 µs with six (a trivial model of the demo's shapes; BENCHMARKS.md, "The page's step").
The file grows by 0.3% (float32) and 3% (int8).

Why fixed shapes: LiteRT hands static-shape float graphs to the XNNPACK delegate, whose
kernels are several times faster than the built-in ones; a text longer than L is refused
by the runner. The step is written from the model's weights with one matrix product per
LSTM layer: the input and recurrent kernels stacked, so LSTM-n reads its inputs in the
model's order (`handwriting.lstm.layer_inputs`) and then its own h, `concat([x, h(n-1), w,
h_n])` (LSTM-1: `concat([x, w, h1])`), through one FULLY_CONNECTED; the window
(`WindowCell.window_params`, `window.attention`), the LSTM update, the head and the draw are
the model's own functions. The exports' test holds the step equal to
`HandwritingModel.step`.

Metadata (alphabet, normalisation statistics, sizes, the start point) is stored as JSON both
inside the flatbuffer (metadata entry `handwriting`) and beside it (`sampler.json`).

Checksum. A flatbuffer has none, and the interpreter's verifier checks its structure, not its
numbers: a changed byte in a weight runs as another weight. The embedded metadata therefore
also holds `sha256`, the digest of the whole file with the digest's own 64 hex digits written
as zeros (`seal`); the runner recomputes it before it trusts the file.
"""

import hashlib
import json

import numpy as np
import tensorflow as tf

from handwriting import export_layout, mixture, sample
from handwriting.lstm import layer_inputs, lstm_update
from handwriting.window import attention, end_of_text_weight, window_has_passed

SIGNATURE = "step"
WRITE_SIGNATURE = "write"  # the step's point, state and passed only (the page's worker)
WRITE_OUTPUTS = ("point", "state", "passed")
METADATA_NAME = "handwriting"
METADATA_VERSION = 2
# The samplers' file names and `sampler.json`'s: the export folder's, defined by the library
# (`handwriting.export_layout`), which reads exports without this package.
FLOAT_FILENAME = export_layout.FLOAT_FILENAME
INT8_FILENAME = export_layout.INT8_FILENAME
METADATA_FILENAME = export_layout.METADATA_FILENAME
# L, the characters the exported samplers read (a longer line is refused): a handwritten
# line holds 40 to 80; the window over 128 positions costs well under 1% of a step.
TEXT_LENGTH = 128
# The embedded metadata's key of the file's checksum, and its value while the file is sealed.
DIGEST_KEY = "sha256"
UNSEALED_DIGEST = "0" * 64


def state_widths(model) -> list:
    """Widths of the flat state's tensors, in order: `(H, H, K, V, H, H, ...)`."""
    return [int(s.shape[-1]) for s in model.initial_state(1)]


def fused_kernels(model) -> list:
    """Each LSTM layer's input and recurrent kernels stacked, with its bias, as numpy.

    Returns:
        `[(kernel, bias), ...]`, one per layer: LSTM-1 `(3 + V + H, 4H)` for
        `concat([x, w, h1])`, LSTM-n `(3 + H + V + H, 4H)` for `concat([x, h(n-1), w, hn])`:
        the rows of `layer_inputs`' order, then the recurrent kernel's.
    """
    cell = model.window_cell
    rows = layer_inputs(cell.input_kernel, window_vector=cell.window_kernel)
    first = [*rows, cell.recurrent_kernel]  # [x, w, h1]
    layers = [(np.concatenate([v.numpy() for v in first]), cell.bias.numpy())]
    for layer in model.lstm_layers:
        # The rows of `layer.kernel` are in `layer_inputs`' order already: the model feeds it so.
        kernel = np.concatenate([layer.kernel.numpy(), layer.recurrent_kernel.numpy()])
        layers.append((kernel, layer.bias.numpy()))
    return layers


def step_function(model, batch_size=1, text_length=TEXT_LENGTH):
    """Returns the `tf.function` of one sampling step (see the module docstring).

    Args:
        model: a float32 synthesis `HandwritingModel`.
        batch_size: B, lines stepped together.
        text_length: L, the text positions the step reads.
    """
    if model.dtype_policy.name != "float32" or not model.is_synthesis:
        raise ValueError(
            "the TFLite step needs a float32 synthesis network, received a "
            f"{model.dtype_policy.name} {model.kind} network"
        )
    widths = state_widths(model)
    kernels = fused_kernels(model)
    cell = model.window_cell
    b, length, size = int(batch_size), int(text_length), int(model.alphabet_size)

    @tf.function(
        input_signature=[
            tf.TensorSpec([b, 3], tf.float32, name="point"),
            tf.TensorSpec([b, sum(widths)], tf.float32, name="state"),
            tf.TensorSpec([b, length, size], tf.float32, name="text"),
            tf.TensorSpec([b, length], tf.float32, name="text_mask"),
            tf.TensorSpec([b, 4], tf.float32, name="draws"),
            tf.TensorSpec([b], tf.float32, name="bias"),
        ]
    )
    def step(point, state, text, text_mask, draws, bias):
        layers = [(tf.constant(k), tf.constant(b)) for k, b in kernels]  # constants of the graph
        h1, c1, kappa, w, *upper = tf.split(state, widths, axis=-1)
        kernel, layer_bias = layers[0]
        inputs = [*layer_inputs(point, window_vector=w), h1]  # [x, w_{t-1}, h1_{t-1}]
        gates = tf.matmul(tf.concat(inputs, axis=-1), kernel) + layer_bias
        h1, c1, _ = lstm_update(gates, c1)
        alpha, beta, kappa_step = cell.window_params(h1)  # [B, K], eq. 48-50
        kappa = kappa + kappa_step  # eq. 51
        phi = attention(alpha, beta, kappa, text_mask)  # [B, L], eq. 46
        w = tf.squeeze(tf.matmul(tf.expand_dims(phi, 1), text), axis=1)  # [B, V], eq. 47
        hidden, new_state = [h1], [h1, c1, kappa, w]
        for n, (kernel, layer_bias) in enumerate(layers[1:]):
            h, c = upper[2 * n], upper[2 * n + 1]
            inputs = [*layer_inputs(point, hidden[-1], w), h]  # [x, h(n-1), w_t, h_{t-1}]
            gates = tf.matmul(tf.concat(inputs, axis=-1), kernel) + layer_bias
            h, c, _ = lstm_update(gates, c)
            hidden.append(h)
            new_state += [h, c]
        head = model.head(tf.concat(hidden, axis=-1))  # [B, 1 + 6M]
        lengths = tf.reduce_sum(text_mask, axis=-1)  # [B]
        phi_end = end_of_text_weight(cell, new_state, lengths)
        return {
            "point": mixture.sample_point(head, bias, draws[:, :2], draws[:, 2:]),
            "state": tf.concat(new_state, axis=-1),
            "passed": tf.cast(window_has_passed(phi, phi_end), tf.uint8),  # LiteRT.js: no bool
            "phi": phi,
            "phi_end": phi_end,
            "head": head,
        }

    return step


def convert(model, *, quantize: bool, batch_size: int = 1, text_length: int = TEXT_LENGTH):
    """Converts the step of `model` to a TFLite flatbuffer of builtin ops only.

    Args:
        model: a float32 synthesis `HandwritingModel`.
        quantize: int8 dynamic-range quantisation of the weights (activations stay float).
        batch_size: B of the signature (the exported samplers use 1: one line at a time).
        text_length: L of the signature.
    """
    import tempfile

    import keras

    # Through a Keras export archive: the signature gets its name and the weights are frozen
    # into constants (which dynamic-range quantisation needs); a plain tf.Module keeps Keras
    # variables as TFLite resource variables.
    archive = keras.export.ExportArchive()
    archive.track(model)
    step = step_function(model, batch_size, text_length)
    archive.add_endpoint(name=SIGNATURE, fn=step, input_signature=step.input_signature)

    @tf.function(input_signature=step.input_signature)
    def write(point, state, text, text_mask, draws, bias):
        outputs = step(point, state, text, text_mask, draws, bias)
        return {name: outputs[name] for name in WRITE_OUTPUTS}

    archive.add_endpoint(name=WRITE_SIGNATURE, fn=write, input_signature=step.input_signature)
    with tempfile.TemporaryDirectory(prefix="tflite-step-") as directory:
        archive.write_out(directory, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(
            directory, signature_keys=[SIGNATURE, WRITE_SIGNATURE]
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        return converter.convert()


def metadata(synth, model, text_length: int = TEXT_LENGTH) -> dict:
    """The JSON a runner needs besides the flatbuffer (`text_length`: the step's L)."""
    start = sample.normalize(synth, np.zeros((1, 3), np.float32))[0]
    return {
        "format": export_layout.SAMPLER_FORMAT,
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
        "text_length": int(text_length),
        "draws": "numpy.random.default_rng([seed, line]).random(4) per step: u0, u1 uniforms; "
        "normals sqrt(-2 log(1 - u2)) * (cos, sin)(2 pi u3); the input draws = "
        "(u0, u1, normal x, normal y)",
    }


def embed_metadata(flatbuffer: bytes, meta: dict) -> bytes:
    """Returns `flatbuffer` with `meta` as JSON in its metadata entry `handwriting`, sealed
    with the file's checksum (`seal`)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)
    buffer = schema.BufferT()
    sealed = {**meta, DIGEST_KEY: UNSEALED_DIGEST}  # `seal` writes the digest in
    buffer.data = np.frombuffer(json.dumps(sealed, sort_keys=True).encode("utf-8"), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != METADATA_NAME.encode()]
    model.metadata.append(entry)
    builder = flatbuffers.Builder(len(flatbuffer) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return seal(bytes(builder.Output()))


def digest_field(digest: str) -> bytes:
    """The bytes of the checksum's field as `json.dumps(..., sort_keys=True)` writes it."""
    return json.dumps({DIGEST_KEY: digest})[1:-1].encode("utf-8")


def seal(flatbuffer: bytes) -> bytes:
    """Writes the file's checksum into its embedded metadata (which holds `UNSEALED_DIGEST`):
    the sha256 of the file as it is, then put in place of the zeros (the same length, so no
    other byte moves). `export/litert_runner.py` checks it the other way round."""
    unsealed = digest_field(UNSEALED_DIGEST)
    if flatbuffer.count(unsealed) != 1:
        raise ValueError("the flatbuffer must hold the unsealed checksum field exactly once")
    return flatbuffer.replace(unsealed, digest_field(hashlib.sha256(flatbuffer).hexdigest()))


def read_metadata(flatbuffer: bytes) -> dict:
    """Reads the `handwriting` metadata entry back, without the file's checksum (None when
    absent)."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(flatbuffer, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() == METADATA_NAME.encode():
            data = model.Buffers(entry.Buffer()).DataAsNumpy()
            meta = json.loads(bytes(data).decode("utf-8"))
            meta.pop(DIGEST_KEY, None)
            return meta
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
