"""A seeded slice of `make fuzz` that runs TensorFlow: whole `data_prep` builds of damaged
sources, damaged or tampered `model.keras` files, and the `write` command under absurd
options (`fuzz/`, RELIABILITY.md). A handful of cases each: they take a second or more."""

import pytest
from hypothesis import given

from fuzz import model_cases, prep_cases
from fuzz.targets import slice_settings as slice_of

pytestmark = pytest.mark.slow


@slice_of(6)
@given(prep_cases.build_cases())
def test_a_build_accounts_for_every_line_and_leaves_no_partial_shard(case):
    prep_cases.check_build(case)


@pytest.mark.parametrize("attack", model_cases.MODEL_ATTACKS)
def test_a_damaged_or_tampered_model_file_is_named_and_runs_nothing(attack):
    for seed in (0, 1):
        outcome = model_cases.check_model(model_cases.ModelCase(attack, seed))
        if attack in ("truncate", "drop member", "code"):
            assert outcome == "refused"
        else:  # a flip in a field nothing reads, code where the model reads no config
            assert outcome in ("refused", "accepted, same weights")


@slice_of(4)
@given(model_cases.command_cases())
def test_the_write_command_writes_a_whole_file_or_names_the_option(case):
    model_cases.check_command(case)


def test_the_code_payload_is_live_so_that_refusing_it_means_something(tmp_path):
    import json
    import os

    import keras
    import numpy as np

    from handwriting import rundir
    from handwriting.errors import SampleError

    marker = str(tmp_path / "ran")
    good = model_cases.tiny_model()
    with open(os.path.join(good, "model.keras"), "rb") as f:
        whole = f.read()
    payload = model_cases._code_objects(marker)[0]  # a Lambda whose function writes `marker`
    tampered = model_cases._rezip(
        whole, lambda name, content: json.dumps(payload) if name == "config.json" else content
    )
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.json", "dataset.json"):
        with open(os.path.join(good, name), "rb") as f:
            (run / name).write_bytes(f.read())
    (run / "model.keras").write_bytes(tampered)
    with pytest.raises(SampleError) as caught:
        rundir.load(run)
    assert str(caught.value).startswith(f"{run / 'model.keras'}: cannot be loaded (ValueError: ")
    assert "Lambda" in str(caught.value) and not os.path.exists(marker)
    # Without safe_mode, Keras would run it: the marker appears.
    loaded = keras.saving.load_model(run / "model.keras", compile=False, safe_mode=False)
    loaded(np.zeros((1, 2), np.float32))
    assert os.path.exists(marker)
