"""The named configurations a run starts from: `python train.py --preset NAME`.

- `paper`: the network and optimiser of Graves (2013), sections 4-5 (3 x 400 LSTM, K = 10,
  M = 20, centred RMSProp with momentum, derivative clipping).
- `demo`: a smaller synthesis network for the embedded corpus (~20 points per character) on a
  2-core CPU: short pieces, then whole lines, with guided attention.
- `tiny`: minute sizes for tests.

`preset(name)` returns one; `--set key=value` (`Config.with_overrides`) changes it.
"""

from handwriting.config import Config, ConfigError, DataConfig, ModelConfig, TrainConfig

PRESETS = {
    "paper": Config(
        model=ModelConfig(
            kind="synthesis",
            units=400,
            layers=3,
            window_gaussians=10,
            mixtures=20,
            window_step_init=0.04,
        ),
        train=TrainConfig(
            optimizer="graves",
            learning_rate=1e-4,
            momentum=0.9,
            rms_decay=0.95,
            rms_epsilon=1e-4,
            clip_norm=0.0,
            output_gradient_clip=100.0,
            lstm_gradient_clip=10.0,
            batch_size=32,
            eval_every_steps=1000,
            checkpoint_every_steps=1000,
            sample_every_steps=2000,
            early_stopping_patience=20,
        ),
    ),
    "demo": Config(
        model=ModelConfig(
            kind="synthesis",
            units=256,
            layers=3,
            window_gaussians=10,
            mixtures=20,
            window_step_init=0.05,
        ),
        train=TrainConfig(
            optimizer="adam",
            # Measured on the embedded corpus, 15 minutes on 2 cores: 1e-3 with pieces of 400
            # points reached 67% window alignment (within one character).
            learning_rate=2e-3,
            clip_norm=10.0,
            batch_size=32,
            time_budget_minutes=15.0,
            # A curriculum: pieces of about a dozen characters for the first 400 steps (three
            # times the updates per minute of whole lines), then whole lines, so that the
            # network learns to write a line to its end. Measured on the embedded corpus
            # (BENCHMARKS.md, "Legibility"): with guided attention, whole-line validation
            # alignment 51% at step 400 and 99.5% at step 600; trained on pieces only, 54% at
            # step 600, and free-running lines lose their way after a dozen characters.
            curriculum_steps=400,
            curriculum_max_points=250,
            max_points=2000,
            # Guided attention, annealed to 0 over the first 1,000 steps: training alignment
            # 80.8% at step 200 with it, 62.8% without (same seed, same pieces).
            guided_attention=1.0,
            guided_attention_steps=1000,
            eval_every_steps=200,
            eval_batches=8,
            sample_every_steps=400,
            checkpoint_every_steps=200,
            early_stopping_patience=10,
            # Along whole-line training from the shipped network (BENCHMARKS.md, "Whole lines
            # after pieces"), the lowest validation loss (step 300) wrote at CER 0.43, its
            # neighbours at 0.25-0.27: keep the network the reader reads best.
            keep="legibility",
        ),
    ),
    "tiny": Config(
        model=ModelConfig(units=8, layers=3, window_gaussians=2, mixtures=3, window_step_init=0.2),
        train=TrainConfig(
            batch_size=4,
            epochs=1,
            max_steps=4,
            max_points=64,
            eval_every_steps=2,
            eval_batches=1,
            sample_every_steps=0,
            checkpoint_every_steps=2,
        ),
        data=DataConfig(bucket_boundaries=(16, 32), shuffle_buffer=16),
    ),
}


def preset(name: str) -> Config:
    """Returns the preset called `name` (`paper`, `demo` or `tiny`)."""
    if name not in PRESETS:
        raise ConfigError(f"preset: unknown preset {name!r}; known: {sorted(PRESETS)}")
    return PRESETS[name]
