"""One changed byte in a file the project wrote: a shard, a checkpoint, `model.keras`, an
exported sampler. Every flip is an error naming the file (for a shard, also the record), or,
where the format ignores the byte, a result identical to the undamaged file's; never a silent
other result (RELIABILITY.md, "Corrupted bytes").

The files are real and small: shards of the IAM-layout fixture built by `data_prep`, a
checkpoint of a two-step tiny training run, a tiny `model.keras`, a tiny model's exported
TFLite sampler. The flipped positions are drawn from a seed, a few in every region of each
format (header, payload, checksum, end).
"""

import dataclasses
import json
import os
import shutil
import struct
import zipfile

import numpy as np
import pytest
from iam_fixtures import write_fixture
from model_fixtures import write_tiny_model

from data_prep import shards
from export import folder as export_folder
from export import litert_runner, tflite
from handwriting import data, run_data, rundir, training
from handwriting.dataset_info import DatasetError, DatasetInfo, Shard, Split, sha256_file
from handwriting.errors import SampleError, TrainingError
from handwriting.presets import preset

# Real builds, a training run and an export: opt out with -m "not slow".
pytestmark = pytest.mark.slow

SEED = 14
PER_REGION = 3  # flipped positions drawn in each region of a file


def flip(path, position, mask=0x41) -> bytes:
    """XORs the byte at `position` of `path` with `mask`; returns the original bytes."""
    with open(path, "rb") as f:
        original = f.read()
    damaged = bytearray(original)
    damaged[position] ^= mask
    with open(path, "wb") as f:
        f.write(bytes(damaged))
    return original


def restore(path, original: bytes) -> None:
    with open(path, "wb") as f:
        f.write(original)


def positions(rng, regions: dict) -> list:
    """`(region, position)` pairs: `PER_REGION` positions drawn in each `[start, stop)`."""
    out = []
    for region, (start, stop) in regions.items():
        count = min(PER_REGION, stop - start)
        out += [(region, int(p)) for p in rng.choice(np.arange(start, stop), count, False)]
    return out


# Shards --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The fixture corpus built into shards of 2 lines."""
    source = write_fixture(tmp_path_factory.mktemp("source"))
    out = tmp_path_factory.mktemp("shards")
    shards.build(source.root, out, lines_per_shard=2, log=lambda line: None)
    return out


def record_regions(path) -> list:
    """Each TFRecord of a shard as a dict of its regions' `[start, stop)`: the length, its
    CRC, the serialised line, the line's CRC."""
    with open(path, "rb") as f:
        blob = f.read()
    out, offset = [], 0
    while offset < len(blob):
        (length,) = struct.unpack("<Q", blob[offset : offset + 8])
        out.append(
            {
                "length": (offset, offset + 8),
                "length CRC": (offset + 8, offset + 12),
                "payload": (offset + 12, offset + 12 + length),
                "payload CRC": (offset + 12 + length, offset + 16 + length),
            }
        )
        offset += 16 + length
    assert offset == len(blob)
    return out


def relisted(directory, info, name) -> None:
    """Writes dataset.json again with the sha256 of the shard `name` as it is now: a shard
    that was damaged before it was hashed, as a faulty disk or copy during the build leaves."""
    splits = {
        split: Split(
            tuple(
                Shard(s.name, sha256_file(os.path.join(directory, s.name)), s.lines, s.points)
                if s.name == name
                else s
                for s in content.shards
            )
        )
        for split, content in info.splits.items()
    }
    dataclasses.replace(info, splits=splits).save(directory)


def test_a_flipped_byte_in_a_shard_names_the_shard_and_its_record(built):
    info = DatasetInfo.load(built)
    listing = os.path.join(built, "dataset.json")
    with open(listing, "rb") as f:
        listed = f.read()
    rng = np.random.default_rng(SEED)
    flips = 0
    for split in ("train", "valid"):
        name = info.splits[split].shards[0].name
        path = os.path.join(built, name)
        regions = record_regions(path)
        assert len(regions) == 2
        for record, record_region in enumerate(regions):
            for region, position in positions(rng, record_region):
                original = flip(path, position)
                try:
                    # As dataset.json lists it: the shard's sha256 no longer matches.
                    with pytest.raises(DatasetError) as error:
                        data.load_dataset(built, split, batch_size=2)
                    assert str(error.value) == (
                        f"{path}: sha256 does not match dataset.json; the shard was altered or "
                        "belongs to another build"
                    ), region
                    # Damaged before it was hashed: the records' own CRCs name the record.
                    relisted(built, info, name)
                    with pytest.raises(DatasetError) as error:
                        data.load_dataset(built, split, batch_size=2)
                    assert str(error.value).startswith(
                        f"{path}: corrupt TFRecord shard after {record} good lines"
                    ), (region, str(error.value))
                    flips += 1
                finally:
                    restore(path, original)
                    restore(listing, listed)
    assert flips == 2 * 2 * 4 * PER_REGION
    assert len(list(data.load_dataset(built, "train", batch_size=2))) > 0


def test_a_flipped_byte_in_a_validation_shard_is_named_by_training(built, tmp_path):
    """Training reads the validation lines first, before the training stream checks every
    shard's sha256: a damaged shard there is named too, not a TensorFlow traceback."""
    name = DatasetInfo.load(built).splits["valid"].shards[0].name
    path = os.path.join(built, name)
    config = preset("tiny").with_overrides([f"data.dir={built}"])
    payload = record_regions(path)[1]["payload"]
    original = flip(path, (payload[0] + payload[1]) // 2)
    try:
        with pytest.raises(DatasetError, match=f"^{path}: "):
            run_data.validation_batches(config)
        with pytest.raises(DatasetError, match=f"^{path}: "):
            training.train(config, tmp_path / "run", sample_texts=(), verbose=0, log=_quiet)
    finally:
        restore(path, original)


# Checkpoints -------------------------------------------------------------------------------


def _quiet(*args):
    pass


@pytest.fixture(scope="module")
def trained(built, tmp_path_factory):
    """A two-step tiny run on the built shards: its run directory and configuration."""
    run_dir = tmp_path_factory.mktemp("run") / "run"
    config = preset("tiny").with_overrides(
        [f"data.dir={built}", "train.max_steps=2", "train.eval_every_steps=2"]
    )
    training.train(config, run_dir, sample_texts=(), verbose=0, log=_quiet)
    return run_dir, config


def file_regions(size, header=64, end=16) -> dict:
    """Header, payload and end of a file without framing of its own."""
    return {
        "header": (0, min(header, size)),
        "payload": (header, size - end),
        "end": (size - end, size),
    }


def test_every_checkpoint_file_records_its_sha256(trained):
    run_dir, _ = trained
    state = rundir.TrainingState.load(run_dir)
    directory = os.path.join(run_dir, rundir.CHECKPOINT_DIR)
    assert sorted(state.files) == sorted(n for n in os.listdir(directory) if state.holds(n))
    assert len(state.files) == 3  # the weights, the iterator's index and data
    for name, digest in state.files.items():
        assert sha256_file(os.path.join(directory, name)) == digest


def test_a_flipped_byte_in_a_checkpoint_file_is_named_on_resume(trained):
    run_dir, _ = trained
    directory = os.path.join(run_dir, rundir.CHECKPOINT_DIR)
    state_path = os.path.join(directory, rundir.STATE_FILENAME)
    rng = np.random.default_rng(SEED)
    flips = 0
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        for region, position in positions(rng, file_regions(os.path.getsize(path))):
            original = flip(path, position)
            try:
                with pytest.raises(TrainingError) as error:
                    rundir.TrainingState.load(run_dir)
                message = str(error.value)
                if name == rundir.STATE_FILENAME:  # its fields' sha256, or its JSON, fails
                    assert message.startswith(f"{state_path}: "), (region, message)
                else:
                    assert message.startswith(f"{path}: sha256 does not match {state_path}"), (
                        region,
                        message,
                    )
                flips += 1
            finally:
                restore(path, original)
    assert flips == 4 * 3 * PER_REGION
    assert rundir.TrainingState.load(run_dir).step == 2


def test_a_resume_from_a_damaged_weights_file_stops_naming_it(trained):
    run_dir, config = trained
    state = rundir.TrainingState.load(run_dir)
    path = os.path.join(run_dir, rundir.CHECKPOINT_DIR, state.weights)
    size = os.path.getsize(path)
    original = flip(path, size // 2)  # inside the HDF5 file's data: no checksum of its own
    try:
        more = config.with_overrides(["train.max_steps=4"])
        with pytest.raises(TrainingError, match=f"^{path}: sha256 does not match"):
            training.train(more, run_dir, resume=True, sample_texts=(), verbose=0, log=_quiet)
    finally:
        restore(path, original)
    assert rundir.TrainingState.load(run_dir).step == 2  # nothing was written


def test_a_finished_run_resumed_with_a_damaged_model_keras_names_it(trained):
    """A finished run resumed draws samples.png from its model.keras: checked first."""
    run_dir, config = trained
    path = os.path.join(run_dir, rundir.MODEL_FILENAME)
    member = zip_regions(path)["member data"]
    original = flip(path, (member[0] + member[1]) // 2)
    try:
        with pytest.raises(SampleError, match=f"^{path}: corrupt .keras file"):
            training.train(config, run_dir, resume=True, sample_texts=(), verbose=0, log=_quiet)
    finally:
        restore(path, original)


def test_a_state_json_of_format_2_is_still_read(trained, tmp_path):
    """Runs written before the checksums resume as before (their files unchecked)."""
    run_dir, _ = trained
    copy = tmp_path / "old"
    shutil.copytree(run_dir, copy)
    state = rundir.TrainingState.load(copy)
    old = {"format_version": 2, **dataclasses.asdict(state)}
    del old["files"]
    (copy / "checkpoint" / "state.json").write_text(json.dumps(old))
    assert rundir.TrainingState.load(copy) == dataclasses.replace(state, files={})


def test_a_state_json_of_format_3_is_still_read(trained, tmp_path):
    """Runs written before the best legibility score was recorded resume without one."""
    run_dir, _ = trained
    copy = tmp_path / "old"
    shutil.copytree(run_dir, copy)
    state = dataclasses.replace(rundir.TrainingState.load(copy), best_cer=0.25, best_cer_step=2)
    old = {"format_version": 3, **dataclasses.asdict(state)}
    del old["best_cer"], old["best_cer_step"]
    old["sha256"] = rundir._fields_digest(old)
    (copy / "checkpoint" / "state.json").write_text(json.dumps(old))
    assert rundir.TrainingState.load(copy) == dataclasses.replace(
        state, best_cer=None, best_cer_step=0
    )


# model.keras -------------------------------------------------------------------------------


def zip_regions(path) -> dict:
    """The regions of a zip archive: the weights member's local header and data, the central
    directory and the end record."""
    with zipfile.ZipFile(path) as archive:
        weights = max(archive.infolist(), key=lambda member: member.compress_size)
    assert weights.filename == "model.weights.h5"
    with open(path, "rb") as f:
        blob = f.read()
    header = weights.header_offset
    name_length, extra_length = struct.unpack("<HH", blob[header + 26 : header + 30])
    data_start = header + 30 + name_length + extra_length
    end_record = blob.rindex(b"PK\x05\x06")
    (directory_start,) = struct.unpack("<I", blob[end_record + 16 : end_record + 20])
    return {
        "local header": (header, data_start),
        "member data": (data_start, data_start + weights.compress_size),
        "central directory": (directory_start, end_record),
        "end record": (end_record, len(blob)),
    }


def test_a_flipped_byte_in_model_keras_is_named_or_changes_nothing(tmp_path):
    model_dir = write_tiny_model(tmp_path, seed=2, offset_mean=(0.0, 0.0), offset_std=(1.0, 1.0))
    weights = rundir.load(model_dir).model.get_weights()
    path = os.path.join(model_dir, rundir.MODEL_FILENAME)
    rng = np.random.default_rng(SEED)
    outcomes = {}
    for region, position in positions(rng, zip_regions(path)):
        original = flip(path, position)
        try:
            try:
                loaded = rundir.load(model_dir).model.get_weights()
            except SampleError as e:
                assert str(e).startswith(f"{path}: "), (region, str(e))
                outcome = "refused"
            else:  # a byte nothing reads (a time stamp, a version field)
                assert all(np.array_equal(a, b) for a, b in zip(loaded, weights, strict=True))
                outcome = "same weights"
            outcomes.setdefault(region, []).append(outcome)
        finally:
            restore(path, original)
    # A flip in the weights is refused (their CRC), never loaded as other weights.
    assert outcomes["member data"] == ["refused"] * PER_REGION


# The exported sampler ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    run = tmp_path_factory.mktemp("model")
    write_tiny_model(run, seed=4, offset_mean=(0.5, -1.0), offset_std=(4.0, 3.0))
    out = tmp_path_factory.mktemp("export") / "exported"
    export_folder.export(str(run), str(out), int8=False, text_length=8)
    return str(out)


def flatbuffer_regions(path) -> dict:
    """The sampler's regions: the flatbuffer's header, the largest constant (a weight
    matrix), the embedded metadata's JSON (its checksum among it), the file's end."""
    from ai_edge_litert import schema_py_generated as schema

    with open(path, "rb") as f:
        blob = f.read()
    model = schema.Model.GetRootAs(blob, 0)
    sizes = [model.Buffers(i).DataLength() for i in range(model.BuffersLength())]
    largest = model.Buffers(int(np.argmax(sizes)))
    weights = bytes(largest.DataAsNumpy())
    start = blob.index(weights)
    meta = blob.index(b'{"alphabet"')
    return {
        "header": (0, 16),
        "weights": (start, start + len(weights)),
        "metadata": (meta, blob.index(b"}", blob.index(tflite.DIGEST_KEY.encode(), meta)) + 1),
        "end": (len(blob) - 16, len(blob)),
    }


def test_the_exported_sampler_checks_its_own_bytes(exported):
    path = os.path.join(exported, tflite.FLOAT_FILENAME)
    with open(path, "rb") as f:
        blob = f.read()
    meta = tflite.read_metadata(blob)
    assert tflite.DIGEST_KEY not in meta  # the checksum belongs to the file, not the metadata
    litert_runner.Sampler(exported)  # the file as exported is accepted
    assert blob.count(tflite.digest_field(tflite.UNSEALED_DIGEST)) == 0


def test_a_flipped_byte_in_the_exported_sampler_is_named(exported):
    path = os.path.join(exported, tflite.FLOAT_FILENAME)
    rng = np.random.default_rng(SEED)
    flips = 0
    for region, position in positions(rng, flatbuffer_regions(path)):
        original = flip(path, position)
        try:
            with pytest.raises(litert_runner.RunnerError) as error:
                litert_runner.Sampler(exported)
            assert str(error.value).startswith(f"{path}: "), (region, str(error.value))
            flips += 1
        finally:
            restore(path, original)
    assert flips == 4 * PER_REGION
    strokes, _ = litert_runner.Sampler(exported).write("ab", seed=1)
    assert len(strokes) > 1
