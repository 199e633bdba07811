import dataclasses
import json
import os

import pytest

from handwriting import presets
from handwriting.config import Config, ConfigError, DataConfig, ModelConfig, TrainConfig


def test_presets_are_valid_and_paper_matches_graves():
    for name in ("paper", "demo", "tiny"):
        assert isinstance(presets.preset(name), Config)
    paper = presets.preset("paper")
    assert (paper.model.units, paper.model.layers) == (400, 3)
    assert (paper.model.window_gaussians, paper.model.mixtures) == (10, 20)
    assert paper.train.optimizer == "graves"
    assert paper.train.learning_rate == 1e-4
    assert paper.train.momentum == 0.9
    assert paper.train.output_gradient_clip == 100.0
    assert paper.train.lstm_gradient_clip == 10.0
    demo = presets.preset("demo")
    assert (demo.model.units, demo.train.optimizer, demo.train.batch_size) == (256, "adam", 32)


def test_unknown_preset():
    with pytest.raises(
        ConfigError, match=r"preset: unknown preset 'big'; known: \['demo', 'paper', 'tiny'\]"
    ):
        presets.preset("big")


def test_overrides_parse_each_type():
    base = presets.preset("tiny")
    cfg = base.with_overrides(
        [
            "train.learning_rate=3e-4",
            "model.units=17",
            "model.kind=prediction",
            "data.bucket_boundaries=10, 20,40",
            "data.dir=/tmp/x",
            "train.time_budget_minutes=2",
        ]
    )
    assert cfg.train.learning_rate == 3e-4
    assert cfg.model.units == 17
    assert cfg.model.kind == "prediction"
    assert cfg.data.bucket_boundaries == (10, 20, 40)
    assert cfg.data.dir == "/tmp/x"
    assert cfg.train.time_budget_minutes == 2.0
    assert base.model.units == 8  # the original is untouched
    assert cfg.with_overrides(["data.bucket_boundaries="]).data.bucket_boundaries == ()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.batch_size=abc", "train.batch_size: expected an int, received 'abc'"),
        ("train.learning_rate=fast", "train.learning_rate: expected a float, received 'fast'"),
        ("train.lr=1", "train.lr: unknown field of train; known: ["),
        ("optim.lr=1", "optim.lr: unknown key; keys read section.field with section one of"),
        ("units=3", "units: unknown key"),
        ("train.batch_size", "'train.batch_size': an override must read section.field=value"),
        ("train.batch_size=0", "train.batch_size: must be >= 1, received 0"),
        ("train.lr_decay_steps=-1", "train.lr_decay_steps: must be >= 0, received -1"),
        (
            "train.curriculum_batch_size=-2",
            "train.curriculum_batch_size: must be >= 0, received -2",
        ),
        ("train.lr_final_fraction=1.5", "train.lr_final_fraction: must be in [0, 1], received 1.5"),
        ("train.joined_lines=-0.1", "train.joined_lines: must be in [0, 1], received -0.1"),
        (
            "model.kind=poetry",
            "model.kind: must be one of ('synthesis', 'prediction'), received 'poetry'",
        ),
        ("data.bucket_boundaries=3,2", "data.bucket_boundaries: must be strictly increasing"),
        ("data.bucket_boundaries=3,x", "data.bucket_boundaries: expected comma-separated ints"),
    ],
)
def test_override_errors_name_the_key(override, message):
    with pytest.raises(ConfigError) as info:
        presets.preset("tiny").with_overrides([override])
    assert message in str(info.value)


def test_frozen():
    cfg = presets.preset("tiny")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.model.units = 3  # type: ignore[misc]


def test_json_round_trip_and_save_load(tmp_path):
    cfg = presets.preset("demo").with_overrides(["data.bucket_boundaries=5,9", "train.seed=7"])
    obj = json.loads(json.dumps(cfg.to_json()))
    assert Config.from_json(obj) == cfg
    path = cfg.save(tmp_path)
    assert path == os.path.join(tmp_path, "config.json")
    assert os.listdir(tmp_path) == ["config.json"]  # no temporary file left behind
    assert Config.load(tmp_path) == cfg
    # Missing fields take their defaults; ints are accepted for floats.
    partial = Config.from_json({"format_version": 1, "train": {"learning_rate": 1}})
    assert partial.train.learning_rate == 1.0
    assert partial.model == ModelConfig() and partial.data == DataConfig()


def test_load_errors_name_the_file_and_key(tmp_path):
    with pytest.raises(ConfigError, match=r"config.json: not found"):
        Config.load(tmp_path)
    (tmp_path / "config.json").write_text("{oops")
    with pytest.raises(ConfigError, match=r"config.json: not valid JSON: line 1"):
        Config.load(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"format_version": 1, "model": {"depth": 3}}))
    with pytest.raises(ConfigError, match=r"unknown fields of model: \['depth'\]"):
        Config.load(tmp_path)
    bad_type = {"format_version": 1, "train": {"batch_size": "32"}}
    with pytest.raises(ConfigError, match=r"train.batch_size: expected an int, received '32'"):
        Config.from_json(bad_type)
    with pytest.raises(ConfigError, match=r"format_version must be 1, received 2"):
        Config.from_json({"format_version": 2})


def test_type_and_range_errors_in_a_file_name_the_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"format_version": 1, "train": {"batch_size": "32"}}))
    with pytest.raises(ConfigError) as raised:
        Config.load(tmp_path)
    assert str(raised.value) == f"{path}: train.batch_size: expected an int, received '32'"
    path.write_text(json.dumps({"format_version": 1, "model": {"units": 0}}))
    with pytest.raises(ConfigError) as raised:
        Config.load(tmp_path)
    assert str(raised.value) == f"{path}: model.units: must be >= 1, received 0"
    path.write_text(json.dumps({"format_version": 1, "data": [1, 2]}))
    with pytest.raises(ConfigError, match=r"config.json: section data must be a JSON object"):
        Config.load(tmp_path)


def test_sections_validate_on_construction():
    with pytest.raises(ConfigError, match=r"train.optimizer: must be one of"):
        TrainConfig(optimizer="sgd").validate()
    with pytest.raises(ConfigError, match=r"model.dtype_policy: must be one of"):
        Config(model=ModelConfig(dtype_policy="float16"))
    with pytest.raises(ConfigError, match=r"train: expected a TrainConfig"):
        Config(train={"batch_size": 3})


def test_keep_names_a_known_criterion_and_legibility_needs_sample_steps():
    with pytest.raises(
        ConfigError, match=r"train.keep: must be one of \('val_loss', 'legibility'\)"
    ):
        presets.preset("tiny").with_overrides(["train.keep=cer"])
    with pytest.raises(
        ConfigError, match=r"train.sample_every_steps: must be > 0 with train.keep=legibility"
    ):
        presets.preset("tiny").with_overrides(
            ["train.keep=legibility", "train.sample_every_steps=0"]
        )
    kept = presets.preset("tiny").with_overrides(
        ["train.keep=legibility", "train.sample_every_steps=2"]
    )
    assert kept.train.keep == "legibility"
