"""Pictures of a synthesis network in training: held-out sentences and its attention.

`Previews.write` puts them in TensorBoard during training (`logs/samples`: `samples` and
`attention`, at the optimiser step), with the legibility score (`legibility/cer`, the reader's
CER on samples, and `legibility/ceiling`, its CER on the validation strokes);
`Previews.save` writes samples.png and attention.png.
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf

from handwriting import render, rundir
from handwriting import sample as sample_lib
from handwriting.legibility import HELD_OUT_TEXTS

# The held-out sentences drawn: the first six of the legibility score's (every letter, and
# capitals, digits and punctuation).
PREVIEW_TEXTS = HELD_OUT_TEXTS[:6]
# Sampling bias b of the held-out samples (Graves eq. 61-62): neat but not frozen.
SAMPLE_BIAS = 1.0
# Seed of the held-out samples: the same strokes' randomness at every step, so the images show
# the network changing rather than the draws.
SAMPLE_SEED = 0
# Height in pixels of one line of handwriting in the sample images.
SAMPLE_LINE_PX = 64
# Width in pixels of the sample images: long lines shrink to fit, short ones leave room for
# their labels; the same size at every step.
SAMPLE_WIDTH_PX = 1024


@dataclasses.dataclass(frozen=True)
class ValidationLine:
    """One validation line, unpadded: the batch dict of a single line and its text."""

    inputs: dict
    text: str


def validation_line(batches, alphabet) -> ValidationLine | None:
    """The first line of the first of `batches` (the validation split, in a fixed order)."""
    for inputs, _, _ in batches.take(1):
        steps = int(tf.reduce_sum(tf.cast(inputs["strokes_mask"][0], tf.int32)))
        chars = int(tf.reduce_sum(tf.cast(inputs["chars_mask"][0], tf.int32)))
        line = {
            "strokes": inputs["strokes"][:1, :steps],
            "strokes_mask": inputs["strokes_mask"][:1, :steps],
            "chars": inputs["chars"][:1, :chars],
            "chars_mask": inputs["chars_mask"][:1, :chars],
        }
        return ValidationLine(line, alphabet.decode(line["chars"][0].numpy()))
    return None


def attention_map(model, line: ValidationLine) -> np.ndarray:
    """`render.attention_image` of the window's phi(t, u) over a validation line."""
    phi = model.forward(line.inputs)["phi"][0].numpy()  # [T, U]
    return render.attention_image(phi, line.text)


def sample_sheet(synth, texts) -> np.ndarray:
    """The held-out `texts` written at `SAMPLE_BIAS`, one line each, labelled."""
    samples = sample_lib.generate(synth, list(texts), bias=SAMPLE_BIAS, seed=SAMPLE_SEED)
    return render.to_image(
        [s.strokes for s in samples],
        labels=[f"{s.text}  (bias {SAMPLE_BIAS:g})" for s in samples],
        line_height_px=SAMPLE_LINE_PX,
        width_px=SAMPLE_WIDTH_PX,
    )


class Previews:
    """The held-out sentences and the attention map of one synthesis network.

    Args:
        synth: `rundir.Synthesizer` around the network in training.
        texts: the sentences to write; those with characters outside the alphabet are left
            out (and said so through `log`).
        valid: the validation batches; the attention is drawn over their first line.
        run_dir: the run directory the pictures go to.
        log: prints one line.
        legibility: None, or a function `synth -> {name: value}` (`legibility.Legibility`)
            whose values are logged as `legibility/<name>` at every step but the first.
    """

    def __init__(
        self, synth: rundir.Synthesizer, texts, valid, run_dir, log=print, legibility=None
    ):
        self.synth = synth
        self.legibility = legibility
        self.log = log
        self.run_dir = os.fspath(run_dir)
        self.writer = None  # of logs/samples, made at the first `write`
        self.texts = []
        for text in texts:
            unknown = sorted({c for _, c in synth.alphabet.unknown_chars(text)})
            if unknown:
                log(f"Sample text {text!r} left out: {unknown} are not in the data's alphabet")
            else:
                self.texts.append(text)
        self.line = validation_line(valid, synth.alphabet)

    def write(self, step: int) -> dict:
        """Writes the TensorBoard images `samples` and `attention` at `step`; returns the
        legibility values logged (`{}` when none)."""
        values = {}
        if self.writer is None:
            logs = os.path.join(self.run_dir, rundir.LOG_DIR, "samples")
            self.writer = tf.summary.create_file_writer(logs)
        with self.writer.as_default(step=step):
            if self.texts:
                tf.summary.image("samples", sample_sheet(self.synth, self.texts)[None])
            if self.line is not None:
                tf.summary.image("attention", attention_map(self.synth.model, self.line)[None])
            if self.legibility is not None and step > 0:  # an untrained network reads as noise
                values = self.legibility(self.synth)
                for name, value in values.items():
                    tf.summary.scalar(f"legibility/{name}", value)
                if "cer" in values:
                    self.log(f"step {step}: legibility (reader CER at bias 1) {values['cer']:.3f}")
        self.writer.flush()
        return values

    def save(self) -> list:
        """Writes samples.png and attention.png into the run directory; returns their paths."""
        written = []
        if self.texts:
            written.append(os.path.join(self.run_dir, rundir.SAMPLES_PNG))
            render.save_png(sample_sheet(self.synth, self.texts), written[-1])
        if self.line is not None:
            written.append(os.path.join(self.run_dir, rundir.ATTENTION_PNG))
            render.save_png(attention_map(self.synth.model, self.line), written[-1])
        return written
