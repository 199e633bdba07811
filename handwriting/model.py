"""The handwriting networks of Graves (2013): synthesis (section 5) and prediction (section 4).

    synthesis:  x_t -> [LSTM-1 + window] -> h1, w
                [x_t, h1, w] -> LSTM-2 -> h2;  [x_t, h2, w] -> LSTM-3 -> h3;  ...
                [h1, h2, h3] -> head (1 + 6M values, see `handwriting.mixture`)
    prediction: the same stack without the window: LSTM-n reads [x_t, h(n-1)].

Skip connections run from the input (and the window) to every layer and from every layer to
the head (Graves eq. 1-5 and 52-55).

Only LSTM-1 and the window must run point by point. Everything else that does not depend on
the recurrence is one matmul over the whole sequence: the input projection of every layer
and the head. The plain LSTM layers (`handwriting.lstm.LSTMLayer`) run their recurrence in a
`tf.while_loop` with a hand-written backward pass; every layer reads its inputs in the order
of `handwriting.lstm.layer_inputs`. With the `mixed_bfloat16` policy the matmuls run in
bfloat16, while the head, the loss, the window (phi, kappa) and the cell states c stay
float32.

`HandwritingModel` takes the batch dict of `handwriting.data` and returns the head tensor
`(B, T, 1 + 6M)`; `forward` also returns the attention phi, the window position kappa and
the final state. `initial_state` / `step` run the whole network one point at a time with an
explicit flat state tuple, for sampling and export. `train_step` / `test_step` compute the
masked loss and the metrics of one batch; `handwriting.training` runs them on every replica of
its `tf.distribute` strategy (`fit` / `evaluate` also work on one device).

Axes: B batch, T pen steps, U characters, V alphabet, K window Gaussians, M mixtures,
H units.
"""

import keras
import tensorflow as tf

from handwriting import mixture
from handwriting.guided_attention import guided_attention
from handwriting.lstm import LSTMLayer, clip_gradient, layer_inputs
from handwriting.window import WindowCell, unroll_window

KINDS = ("synthesis", "prediction")
POINT_FEATURES = 3  # (dx, dy, eos)


@keras.saving.register_keras_serializable(package="handwriting")
class HandwritingModel(keras.Model):
    """The synthesis or prediction network with its mixture head, loss and metrics.

    Args:
        alphabet_size: V, ids of the alphabet (`Alphabet.size`).
        kind: "synthesis" (reads the text through the window) or "prediction".
        units: H, LSTM cells per layer.
        layers: stacked LSTM layers (>= 1).
        window_gaussians: K, Gaussians of the window (synthesis only).
        mixtures: M, components of the output mixture.
        window_step_init: initial window step exp(kappa_hat), about 1 / points per character.
        lstm_gradient_clip: clip of d(per-line loss)/d(LSTM pre-activations); 0: off.
        output_gradient_clip: clip of d(per-line loss)/d(head outputs); 0: off.
        clip_norm: global-norm clip of the gradient of the mean per-line loss in `train_step`;
            0: off.
        guided_attention: weight of the guided-attention loss (`handwriting.guided_attention`)
            at optimiser step 0, falling linearly to 0 at `guided_attention_steps`; 0: off.
        guided_attention_steps: see `guided_attention`.

    Call arguments:
        inputs: dict with `strokes` `(B, T, 3)`, and for synthesis `chars` `(B, U)` int ids and
            `chars_mask` `(B, U)` bool. Padding points must come after a line's real points.

    Returns:
        `(B, T, 1 + 6M)` the head output (see `handwriting.mixture`).
    """

    def __init__(
        self,
        alphabet_size,
        kind="synthesis",
        units=400,
        layers=3,
        window_gaussians=10,
        mixtures=20,
        window_step_init=0.04,
        lstm_gradient_clip=0.0,
        output_gradient_clip=0.0,
        clip_norm=0.0,
        guided_attention=0.0,
        guided_attention_steps=0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if kind not in KINDS:
            raise ValueError(f"`kind` must be one of {KINDS}, received kind={kind!r}")
        for name, value in (
            ("alphabet_size", alphabet_size),
            ("units", units),
            ("layers", layers),
            ("window_gaussians", window_gaussians),
            ("mixtures", mixtures),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{name}` must be a positive int, received {name}={value!r}")
        for name, value in (
            ("lstm_gradient_clip", lstm_gradient_clip),
            ("output_gradient_clip", output_gradient_clip),
            ("clip_norm", clip_norm),
        ):
            if not value >= 0:
                raise ValueError(f"`{name}` must be >= 0 (0: off), received {name}={value!r}")
        self.alphabet_size = alphabet_size
        self.kind = kind
        self.units = units
        self.num_layers = layers
        self.window_gaussians = window_gaussians
        self.mixtures = mixtures
        self.window_step_init = float(window_step_init)
        self.lstm_gradient_clip = float(lstm_gradient_clip)
        self.output_gradient_clip = float(output_gradient_clip)
        self.clip_norm = float(clip_norm)
        if not (guided_attention >= 0 and guided_attention_steps >= 0):
            raise ValueError(
                "`guided_attention` and `guided_attention_steps` must be >= 0, received "
                f"{guided_attention!r} and {guided_attention_steps!r}"
            )
        self.guided_attention = float(guided_attention) if kind == "synthesis" else 0.0
        self.guided_attention_steps = int(guided_attention_steps)

        policy = self.dtype_policy
        window_size = alphabet_size if kind == "synthesis" else 0
        if kind == "synthesis":
            self.window_cell = WindowCell(
                units,
                window_gaussians,
                alphabet_size,
                window_step_init=window_step_init,
                gradient_clip=lstm_gradient_clip,
                dtype=policy,
                name="window_cell",
            )
            self.window_cell.build((None, POINT_FEATURES))
            first = []
        else:
            first = [LSTMLayer(units, lstm_gradient_clip, dtype=policy, name="lstm_1")]
            first[0].build((None, POINT_FEATURES))
        upper = []
        for n in range(2, layers + 1):
            layer = LSTMLayer(units, lstm_gradient_clip, dtype=policy, name=f"lstm_{n}")
            layer.build((None, POINT_FEATURES + units + window_size))
            upper.append(layer)
        self.lstm_layers = first + upper
        # The mixture parameters are float32 under every policy.
        self.head = keras.layers.Dense(mixture.head_size(mixtures), dtype="float32", name="head")
        self.head.build((None, layers * units))
        self.built = True

        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.nats_per_line_tracker = keras.metrics.Mean(name="nats_per_line")
        self.nats_per_point_tracker = keras.metrics.Mean(name="nats_per_point")
        self.grad_norm_tracker = keras.metrics.Mean(name="grad_norm")
        self.alignment_accuracy_tracker = keras.metrics.Mean(name="alignment_accuracy")
        self.alignment_exact_tracker = keras.metrics.Mean(name="alignment_exact")
        self.guided_attention_tracker = keras.metrics.Mean(name="guided_attention")
        # Whether the data carry an alignment, so that the two above mean something; the
        # trainer sets it from the validation split before training.
        self.scores_alignment = True

    # ---- the network ----

    @property
    def is_synthesis(self) -> bool:
        return self.kind == "synthesis"

    def initial_state(self, batch_size):
        """The zero state as a flat tuple.

        synthesis: `(h1, c1, kappa, w, h2, c2, ..., hN, cN)`; prediction: `(h1, c1, ..., hN, cN)`.
        h and w are in the compute dtype; c and kappa float32.
        """
        state = []
        if self.is_synthesis:
            state += self.window_cell.get_initial_state(batch_size)
        for layer in self.lstm_layers:
            state += layer.get_initial_state(batch_size)
        return tuple(state)

    def _split_state(self, state):
        state = list(state)
        expected = 2 * self.num_layers + (2 if self.is_synthesis else 0)
        if len(state) != expected:
            raise ValueError(
                f"`state` must hold {expected} tensors for a {self.kind} network of "
                f"{self.num_layers} layers, received {len(state)}"
            )
        cell_state, state = (state[:4], state[4:]) if self.is_synthesis else (None, state)
        return cell_state, [state[2 * i : 2 * i + 2] for i in range(len(self.lstm_layers))]

    def _text(self, chars, chars_mask):
        onehot = tf.one_hot(tf.cast(chars, tf.int32), self.alphabet_size, dtype=self.compute_dtype)
        if chars_mask is None:
            chars_mask = tf.not_equal(chars, 0)
        return onehot, tf.cast(chars_mask, tf.float32)

    def forward(self, inputs, state=None, training=False):
        """Runs the network over whole sequences.

        Args:
            inputs: the batch dict (see the class docstring).
            state: optional flat state tuple to start from (default: zeros).
            training: unused (the network has no dropout); kept for Keras.

        Returns:
            A dict: `head` `(B, T, 1 + 6M)` float32; for synthesis also `phi` `(B, T, U)` and
            `kappa` `(B, T, K)` float32; `state`, the flat state after the last point.
        """
        points = tf.convert_to_tensor(inputs["strokes"])
        if state is None:
            state = self.initial_state(tf.shape(points)[0])
        cell_state, layer_states = self._split_state(state)
        x = tf.transpose(tf.cast(points, self.compute_dtype), [1, 0, 2])  # [T, B, 3]
        outputs, final_state = {}, []
        hidden, window_vector = [], None
        if self.is_synthesis:
            onehot, mask = self._text(inputs["chars"], inputs.get("chars_mask"))
            cell = self.window_cell
            h, window_vector, phi, kappa, cell_state = unroll_window(
                cell, cell.project_inputs(x), cell_state, onehot, mask
            )
            final_state += cell_state
            outputs["phi"] = tf.transpose(phi, [1, 0, 2])
            outputs["kappa"] = tf.transpose(kappa, [1, 0, 2])
            hidden.append(h)
        final_state += self._plain_layers(x, window_vector, hidden, layer_states, "unroll")
        hidden = tf.concat(hidden, axis=-1)  # [T, B, layers * H]
        # Flattened to one 2-D matmul (see `handwriting.lstm.matmul_last_axis`).
        head = self.head(tf.reshape(hidden, [-1, hidden.shape[-1]]))
        size = mixture.head_size(self.mixtures)
        head = tf.reshape(head, tf.concat([tf.shape(hidden)[:2], [size]], axis=0))  # [T, B, 1+6M]
        head = clip_gradient(head, self.output_gradient_clip)
        outputs["head"] = tf.transpose(head, [1, 0, 2])
        outputs["state"] = tuple(final_state)
        return outputs

    def call(self, inputs, training=None):
        return self.forward(inputs, training=bool(training))["head"]

    def step(self, point, chars, chars_mask, state):
        """Runs the whole network for one point per line.

        Args:
            point: `(B, 3)` the current input point.
            chars: `(B, U)` int ids of the text (ignored by the prediction network; may be
                None there).
            chars_mask: `(B, U)` bool or 0/1, or None for `chars != 0`.
            state: the flat state tuple (`initial_state` or a previous `step`'s).

        Returns:
            `(head, phi, new_state)`: head `(B, 1 + 6M)` float32, the attention phi `(B, U)`
            float32 (`(B, 0)` for the prediction network), and the new flat state tuple.
        """
        cell_state, layer_states = self._split_state(state)
        x = tf.cast(point, self.compute_dtype)  # [B, 3]
        hidden, new_state, window_vector = [], [], None
        if self.is_synthesis:
            onehot, mask = self._text(chars, chars_mask)
            (h, window_vector, phi), cell_state = self.window_cell(
                x, cell_state, chars_onehot=onehot, chars_mask=mask
            )
            new_state += cell_state
            hidden.append(h)
        else:
            phi = tf.zeros([tf.shape(x)[0], 0], tf.float32)
        new_state += self._plain_layers(x, window_vector, hidden, layer_states, "step")
        head = self.head(tf.concat(hidden, axis=-1))
        return head, phi, tuple(new_state)

    def _plain_layers(self, x, window_vector, hidden, layer_states, how):
        """Runs the plain LSTM layers, each on `layer_inputs` of the points, the layer below
        and the window; appends their outputs to `hidden` and returns their new states.

        `how` is "unroll" (`x` `(T, B, 3)`, whole sequences) or "step" (`x` `(B, 3)`).
        """
        new_state = []
        for layer, layer_state in zip(self.lstm_layers, layer_states, strict=True):
            below = hidden[-1] if hidden else None
            layer_input = tf.concat(layer_inputs(x, below, window_vector), axis=-1)
            h, layer_state = getattr(layer, how)(layer.project(layer_input), layer_state)
            new_state += layer_state
            hidden.append(h)
        return new_state

    # ---- training ----

    @property
    def metrics(self):
        metrics = [
            self.loss_tracker,
            self.nats_per_line_tracker,
            self.nats_per_point_tracker,
            self.grad_norm_tracker,
        ]
        if self.is_synthesis and self.scores_alignment:
            metrics += [self.alignment_accuracy_tracker, self.alignment_exact_tracker]
        if self.guided_attention:
            metrics.append(self.guided_attention_tracker)
        return metrics

    def _loss_and_metrics(self, data, training):
        inputs, targets, sample_weight = _unpack(data)
        outputs = self.forward(inputs, training=training)
        loss = mixture.sequence_loss(outputs["head"], targets, sample_weight)
        has_points = tf.cast(loss.line_points > 0, tf.float32)
        lines = tf.reduce_sum(has_points)
        self.loss_tracker.update_state(loss.nats_per_line(), sample_weight=lines)
        self.nats_per_line_tracker.update_state(loss.line_nll, sample_weight=has_points)
        self.nats_per_point_tracker.update_state(
            loss.line_nll / tf.maximum(loss.line_points, 1e-9), sample_weight=loss.line_points
        )
        if self.is_synthesis and self.scores_alignment and "alignment" in inputs:
            self._update_alignment(outputs["phi"], inputs["alignment"], sample_weight)
        guided = None
        if training and self.guided_attention:
            alignment = inputs.get("alignment")
            if alignment is None:
                alignment = -tf.ones(tf.shape(targets)[:2], tf.int32)
            guided = guided_attention(
                outputs["phi"], alignment, sample_weight > 0, inputs["chars_mask"]
            )  # [B]
            self.guided_attention_tracker.update_state(
                tf.reduce_sum(guided) / tf.maximum(tf.reduce_sum(loss.line_points), 1.0)
            )
        return loss, lines, guided

    def guided_attention_weight(self):
        """The guided attention's weight at the optimiser's current step (annealed to 0)."""
        step = tf.cast(self.optimizer.iterations, tf.float32)
        steps = max(self.guided_attention_steps, 1)
        return self.guided_attention * tf.maximum(0.0, 1.0 - step / steps)

    def _update_alignment(self, phi, alignment, sample_weight):
        """Window argmax vs the character being written, over points with a known one."""
        alignment = tf.cast(alignment, tf.int32)
        valid = tf.cast((alignment >= 0) & (tf.cast(sample_weight, tf.float32) > 0), tf.float32)
        attended = tf.argmax(phi, axis=-1, output_type=tf.int32)  # [B, T]
        distance = tf.abs(attended - alignment)
        self.alignment_accuracy_tracker.update_state(
            tf.cast(distance <= 1, tf.float32), sample_weight=valid
        )
        self.alignment_exact_tracker.update_state(
            tf.cast(distance == 0, tf.float32), sample_weight=valid
        )

    def train_step(self, data):
        with tf.GradientTape() as tape:
            loss, lines, guided = self._loss_and_metrics(data, training=True)
            # The per-line losses summed: every derivative is one of a per-line loss, the unit
            # of Graves' clip bounds; the gradient is divided by the line count below.
            total = tf.reduce_sum(loss.line_nll)
            if guided is not None:
                total += self.guided_attention_weight() * tf.reduce_sum(guided)
        variables = self.trainable_variables
        grads = tape.gradient(total, variables)
        context = tf.distribute.get_replica_context()
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if context is not None and replicas > 1:
            lines = context.all_reduce(tf.distribute.ReduceOp.SUM, lines)
        grads = [g / tf.maximum(lines, 1.0) for g in grads]
        if context is not None and replicas > 1:
            # Sum over replicas here so that the norm and the clip see the whole gradient;
            # the optimizer sums the replicas' shares again, hence the division after.
            grads = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        norm = tf.linalg.global_norm(grads)
        if self.clip_norm:
            grads, _ = tf.clip_by_global_norm(grads, self.clip_norm, use_norm=norm)
        if context is not None and replicas > 1:
            grads = [g / replicas for g in grads]
        self.optimizer.apply(grads, variables)
        self.grad_norm_tracker.update_state(norm)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        self._loss_and_metrics(data, training=False)
        trained_only = (self.grad_norm_tracker, self.guided_attention_tracker)
        return {m.name: m.result() for m in self.metrics if m not in trained_only}

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "alphabet_size": self.alphabet_size,
                "kind": self.kind,
                "units": self.units,
                "layers": self.num_layers,
                "window_gaussians": self.window_gaussians,
                "mixtures": self.mixtures,
                "window_step_init": self.window_step_init,
                "lstm_gradient_clip": self.lstm_gradient_clip,
                "output_gradient_clip": self.output_gradient_clip,
                "clip_norm": self.clip_norm,
                "guided_attention": self.guided_attention,
                "guided_attention_steps": self.guided_attention_steps,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _unpack(data):
    if not isinstance(data, tuple | list) or len(data) not in (2, 3):
        raise ValueError(
            "a batch must be (inputs, targets) or (inputs, targets, sample_weight), "
            f"received {type(data).__name__}"
        )
    inputs, targets = data[0], data[1]
    if len(data) == 3 and data[2] is not None:
        sample_weight = data[2]
    elif "strokes_mask" in inputs:
        sample_weight = tf.cast(inputs["strokes_mask"], tf.float32)
    else:
        sample_weight = tf.ones(tf.shape(targets)[:2], tf.float32)
    return inputs, targets, sample_weight


def build_model(model_config, alphabet_size, train_config=None) -> HandwritingModel:
    """Builds the network of a `ModelConfig` (and the clip settings of a `TrainConfig`).

    Args:
        model_config: `handwriting.config.ModelConfig`.
        alphabet_size: V, `Alphabet.size` of the data.
        train_config: optional `handwriting.config.TrainConfig`; its gradient clips go into
            the model (they act in the backward pass and `train_step`).
    """
    clips = {}
    if train_config is not None:
        clips = {
            "lstm_gradient_clip": train_config.lstm_gradient_clip,
            "output_gradient_clip": train_config.output_gradient_clip,
            "clip_norm": train_config.clip_norm,
            "guided_attention": train_config.guided_attention,
            "guided_attention_steps": train_config.guided_attention_steps,
        }
    return HandwritingModel(
        alphabet_size=alphabet_size,
        kind=model_config.kind,
        units=model_config.units,
        layers=model_config.layers,
        window_gaussians=model_config.window_gaussians,
        mixtures=model_config.mixtures,
        window_step_init=model_config.window_step_init,
        dtype=model_config.dtype_policy,
        **clips,
    )


def build_optimizer(train_config) -> keras.optimizers.Optimizer:
    """The optimiser of a `TrainConfig`: Adam, or Graves' centred RMSProp with momentum.

    Graves eq. 38-41 is `keras.optimizers.RMSprop(centered=True)`: n and g are the running
    second and first moments with decay rms_decay, the step is
    momentum * previous - learning_rate * grad / sqrt(n - g^2 + rms_epsilon).
    Gradient clipping is done by `HandwritingModel.train_step`, not here. With
    `lr_decay_steps`, the step size follows `keras.optimizers.schedules.CosineDecay` of the
    optimiser's own step count, so a resumed run carries on along the same curve.
    """
    learning_rate = train_config.learning_rate
    if train_config.lr_decay_steps:
        learning_rate = keras.optimizers.schedules.CosineDecay(
            learning_rate,
            decay_steps=train_config.lr_decay_steps,
            alpha=train_config.lr_final_fraction,
        )
    if train_config.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate)
    if train_config.optimizer == "graves":
        return keras.optimizers.RMSprop(
            learning_rate=learning_rate,
            rho=train_config.rms_decay,
            momentum=train_config.momentum,
            epsilon=train_config.rms_epsilon,
            centered=True,
        )
    raise ValueError(
        f"`optimizer` must be 'adam' or 'graves', received optimizer={train_config.optimizer!r}"
    )
