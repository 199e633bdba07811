"""Model directories (`handwriting.rundir.load`) and the `write` command, with a tiny model.

`model.keras` is truncated, flipped, stripped of a member, or re-zipped with code in its
config (a Lambda layer, a function of `os`, `builtins` or `keras.utils.get_file`): loading
must fail with an error naming the file, or give the very same weights, and nothing in the
file may run (a marker file the code would write never appears). The `write` command gets
hostile text and absurd options: exit 0 with a whole output file, or exit 2 with one line
naming the option or the text, and no output file.
"""

import base64
import contextlib
import dataclasses
import functools
import io
import json
import marshal
import os
import random
import tempfile
import zipfile

import numpy as np
from hypothesis import strategies as st

from handwriting.errors import SampleError

MODEL_ATTACKS = ("truncate", "flip", "drop member", "code", "nested code")


@dataclasses.dataclass(frozen=True)
class ModelCase:
    attack: str
    seed: int


def model_cases():
    return st.builds(ModelCase, st.sampled_from(MODEL_ATTACKS), st.integers(0, 2**32 - 1))


@functools.cache
def tiny_model() -> str:
    """A model directory of the `tiny` preset with random weights, made once per process."""
    import keras

    from handwriting import model as model_lib
    from handwriting import presets
    from handwriting.alphabet import PRINTABLE_ASCII, Alphabet
    from handwriting.dataset_info import DatasetInfo

    directory = tempfile.mkdtemp(prefix="fuzz-model-")
    keras.utils.set_random_seed(3)
    cfg = presets.preset("tiny")
    alphabet = Alphabet(PRINTABLE_ASCII)
    model_lib.build_model(cfg.model, alphabet.size).save(os.path.join(directory, "model.keras"))
    cfg.save(directory)
    DatasetInfo(alphabet, (0.5, -0.2), (3.0, 2.0), splits={}).save(directory)
    return directory


def warm_up() -> None:
    """Builds the tiny model and traces its sampler once, so that no case pays for it."""
    check_command(CommandCase("hi", (), ".json"))


def _code_objects(marker: str) -> list:
    """Config entries that would write `marker` if Keras ran them."""
    writes_marker = eval(f"lambda x: (open({marker!r}, 'w').close(), x)[1]")  # the payload
    lambda_code = base64.b64encode(marshal.dumps(writes_marker.__code__)).decode()
    folder, name = os.path.split(marker)
    return [
        {
            "module": "keras.layers",
            "class_name": "Lambda",
            "config": {
                "name": "lambda",
                "function": {
                    "class_name": "__lambda__",
                    "config": {"code": lambda_code, "defaults": None, "closure": None},
                },
            },
        },
        {"module": "os", "class_name": "system", "config": f"touch {marker}"},
        {"module": "builtins", "class_name": "exec", "config": f"open({marker!r}, 'w')"},
        {
            "module": "keras.utils",
            "class_name": "get_file",
            "config": {
                "fname": name,
                "origin": "file:///etc/hostname",
                "cache_dir": folder,
                "cache_subdir": "",
            },
        },
        {
            "class_name": "function",
            "config": "system",
            "module": "os",
            "registered_name": "system",
        },
    ]


def _rezip(data: bytes, change) -> bytes:
    """The .keras archive with `change(name, bytes) -> bytes or None` applied to members."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            content = change(info.filename, source.read(info))
            if content is not None:
                target.writestr(info.filename, content)
    return out.getvalue()


def check_model(case: ModelCase) -> str:
    import shutil

    from handwriting import rundir

    rng = random.Random(case.seed)
    good = tiny_model()
    with open(os.path.join(good, "model.keras"), "rb") as f:
        whole = f.read()
    with tempfile.TemporaryDirectory() as folder:
        directory = os.path.join(folder, "model")
        shutil.copytree(good, directory)
        marker = os.path.join(folder, "ran")
        path = os.path.join(directory, "model.keras")
        if case.attack == "truncate":
            data = whole[: rng.randrange(len(whole))]
        elif case.attack == "flip":
            data = bytearray(whole)
            for _ in range(rng.randint(1, 3)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            data = bytes(data)
        elif case.attack == "drop member":
            gone = rng.choice(["config.json", "model.weights.h5", "metadata.json"])
            data = _rezip(whole, lambda name, content: None if name == gone else content)
        else:
            injected = rng.choice(_code_objects(marker))

            def change(name, content):
                if name != "config.json":
                    return content
                if case.attack == "code":
                    return json.dumps(injected)
                config = json.loads(content)
                config["config"][rng.choice(sorted(config["config"]))] = injected
                return json.dumps(config)

            data = _rezip(whole, change)
        with open(path, "wb") as f:
            f.write(data)
        try:
            synth = rundir.load(directory)
        except SampleError as e:
            assert str(e).startswith(f"{path}: "), str(e)
            outcome = "refused"
        else:
            reference = rundir.load(good)
            for a, b in zip(synth.model.get_weights(), reference.model.get_weights(), strict=True):
                np.testing.assert_array_equal(a, b)
            outcome = "accepted, same weights"
        assert not os.path.exists(marker), f"code in model.keras ran ({case.attack})"
    return outcome


# ----------------------------------------------------------------------------------------------
# python -m handwriting write


@dataclasses.dataclass(frozen=True)
class CommandCase:
    text: str
    options: tuple
    output: str


def command_cases():
    text = st.sampled_from(
        [
            "hi",
            "",
            "   ",
            "a\0b",
            "Tab\there",
            "שלום",
            "hello 😀",
            "\u202eevil",
            "x" * 100_000,
            "two\nlines",
            "ok.",
        ]
    )
    option = st.sampled_from(
        [
            ("--width", "0"),
            ("--width", "-3"),
            ("--width", str(10**30)),
            ("--width", "5"),
            ("--bias", "nan"),
            ("--bias", "inf"),
            ("--bias", "-1"),
            ("--bias", "1e308"),
            ("--bias", "2"),
            ("--seed", "-1"),
            ("--seed", str(2**32)),
            ("--seed", str(10**40)),
            ("--seed", "7"),
            ("--height", "0"),
            ("--height", str(10**12)),
            ("--height", "64"),
            ("--width", "abc"),
            ("--bias", "1,5"),
        ]
    )
    options = st.lists(option, max_size=2, unique_by=lambda o: o[0]).map(tuple)
    return st.builds(CommandCase, text, options, st.sampled_from([".svg", ".json", ".png"]))


def check_command(case: CommandCase) -> str:
    from handwriting import cli

    model = tiny_model()
    with tempfile.TemporaryDirectory() as folder:
        output = os.path.join(folder, "out" + case.output)
        argv = ["write", case.text, "-o", output, "--model", model]
        for name, value in case.options:
            argv += [f"{name}={value}"]
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            try:
                status = cli.main(argv)
            except SystemExit as e:  # argparse's usage errors
                status = e.code
        message = stderr.getvalue()
        if status == 0:
            assert os.path.getsize(output) > 0
            if case.output == ".json":
                with open(output, encoding="utf-8") as f:
                    assert json.load(f)["lines"]
            return "written"
        assert status == 2, (status, message)
        assert not os.path.exists(output), "an output file was left after an error"
        assert "Traceback" not in message, message
        last = message.strip().splitlines()[-1]
        assert last.startswith("error: ") or ": error: " in last, message
        named = [name for name, _ in case.options if name in last]
        assert named or "text" in last, last
        return "refused: " + (named[0] if named else "text")
