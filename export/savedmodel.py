"""The SavedModel export: `generate(text, bias, seed) -> strokes`, sampling loop inside.

Loading needs TensorFlow only, no project code:

    generator = tf.saved_model.load("export/savedmodel")
    out = generator.signatures["generate"](
        text=tf.constant("hello"), bias=tf.constant(1.0), seed=tf.constant(7, tf.int64))
    out["strokes"]   # (T, 3) float32 (dx, dy, eos) in the training data's units, y up
    out["finished"]  # bool: the window passed the end of the text (else: point budget)

Text is split into Unicode characters and mapped to the model's alphabet by a sorted table of
code points (no lookup-table resource); a character outside it gets the unknown id. The loop is
`handwriting.sample.sampling_loop` with the model's weights frozen in, between the library's
`point_budget` and `finish_line`, so a seed gives the strokes `handwriting.sample.generate`
gives for a single line.
"""

import numpy as np
import tensorflow as tf

from handwriting import sample
from handwriting.alphabet import FIRST_CHAR_ID, UNKNOWN_ID

SIGNATURE = "generate"


def generate_function(synth):
    """Returns the `tf.function` of the `generate` signature for a loaded `Synthesizer`."""
    model = synth.model
    chars = synth.alphabet.chars
    order = np.argsort([ord(c) for c in chars])
    code_points = tf.constant([ord(chars[i]) for i in order], tf.int32)  # sorted
    ids = tf.constant([int(i) + FIRST_CHAR_ID for i in order], tf.int32)
    start = tf.constant(sample.normalize(synth, np.zeros((1, 3), np.float32))[0])

    @tf.function(
        input_signature=[
            tf.TensorSpec([], tf.string, name="text"),
            tf.TensorSpec([], tf.float32, name="bias"),
            tf.TensorSpec([], tf.int64, name="seed"),
        ]
    )
    def generate(text, bias, seed):
        decoded = tf.strings.unicode_decode(text, "UTF-8")  # [U] code points
        slot = tf.minimum(tf.searchsorted(code_points, decoded), tf.size(code_points) - 1)
        known = tf.gather(code_points, slot) == decoded
        text_ids = tf.where(known, tf.gather(ids, slot), UNKNOWN_ID)[None]  # [1, U]
        out = sample.sampling_loop(
            model,
            text_ids,
            tf.ones_like(text_ids, tf.bool),
            sample.point_budget(tf.shape(text_ids)[1:]),  # [1]
            tf.maximum(bias, 0.0)[None],
            seed,
            tf.zeros([0, 3], tf.float32),
            start,
        )
        strokes = sample.finish_line(synth, out["points"][: out["counts"][0], 0])
        return {"strokes": strokes, "finished": out["finished"][0]}

    return generate


def save(synth, directory) -> None:
    """Writes the SavedModel of `synth` to `directory` (which must not exist yet)."""
    import keras

    archive = keras.export.ExportArchive()
    archive.track(synth.model)
    function = generate_function(synth)
    archive.add_endpoint(name=SIGNATURE, fn=function, input_signature=function.input_signature)
    archive.write_out(directory, verbose=False)
