"""Tests of the `train.py` command line (a whole run through it: tests/test_training.py)."""

import os
import subprocess
import sys

import pytest

import train as train_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_help_lists_the_flags_without_loading_tensorflow():
    out = subprocess.run(
        [sys.executable, "train.py", "--help"], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    for flag in (
        "--preset {demo,paper,tiny}",
        "--data DIR",
        "--logdir DIR",
        "--resume",
        "--steps N",
        "--epochs N",
        "--strategy {auto,one_device,mirrored,multi_worker}",
        "--seed S",
        "--set KEY=VALUE [KEY=VALUE ...]",
    ):
        assert flag in out.stdout, flag
    probe = "import sys, train; train.build_parser(); print('tensorflow' in sys.modules)"
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT
    ).stdout
    assert loaded.strip() == "False"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--set", "model.units=abc"], "model.units: expected an int, received 'abc'"),
        (["--set", "units=3"], "units: unknown key; keys read section.field"),
        (["--set", "train.batch_size"], "'train.batch_size': an override must read"),
        (["--steps", "-1"], "train.max_steps: must be >= 0, received -1"),
        (["--steps", "5", "--epochs", "2"], "argument --epochs: not allowed with argument --steps"),
        (["--strategy", "tpu"], "argument --strategy: invalid choice: 'tpu'"),
    ],
)
def test_bad_arguments_exit_with_a_message(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_cli.main(["--preset", "tiny", "--logdir", str(tmp_path / "run"), *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "run")  # nothing is written before the config is good


def test_missing_data_is_an_error_naming_the_file(tmp_path, capsys):
    code = train_cli.main(
        ["--preset", "tiny", "--data", str(tmp_path / "none"), "--logdir", str(tmp_path / "run")]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert f"train.py: error: {tmp_path / 'none' / 'dataset.json'}: not found" in err


def test_flags_become_overrides_with_set_last():
    args = train_cli.build_parser().parse_args(
        ["--data", "d", "--epochs", "3", "--seed", "5", "--set", "train.seed=6", "model.units=4"]
    )
    assert train_cli.overrides_from_args(args) == [
        "data.dir=d",
        "train.epochs=3",
        "train.max_steps=0",
        "train.seed=5",
        "train.seed=6",
        "model.units=4",
    ]


def test_strategy_choices_are_the_library_s():
    from handwriting import distribution

    assert train_cli.STRATEGY_CHOICES == distribution.STRATEGIES
