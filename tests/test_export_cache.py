"""The page's export cache (`handwriting/export_cache.py`): the exporter as a child process.

A real export into the cache is made by tests/test_web.py's `exported` fixture; here, the
child's environment and the errors of an export that fails.
"""

import os
import shutil
import subprocess
import sys

import pytest

import export
import handwriting
from handwriting import export_cache, rundir
from handwriting.errors import SampleError, ServeError


def test_the_exporter_child_imports_the_packages_of_this_process(monkeypatch):
    cwd, env = export_cache.exporter_environment()
    probe = "import export, handwriting; print(export.__file__); print(handwriting.__file__)"
    found = subprocess.run(
        [sys.executable, "-c", probe], cwd=cwd, env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert found == [export.__file__, handwriting.__file__]
    # The inherited entries follow, a relative one still naming the folder it named here.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(["relative/lib", "", "/elsewhere"]))
    path = export_cache.exporter_environment()[1]["PYTHONPATH"].split(os.pathsep)
    assert path[-2:] == [os.path.abspath("relative/lib"), "/elsewhere"]


def a_model_folder(tmp_path, model_bytes=None):
    """A copy of the demo model's files in `tmp_path / "run"` (`model.keras` replaced by
    `model_bytes` when given)."""
    run = tmp_path / "run"
    run.mkdir()
    for name in export_cache.FINGERPRINT_FILES:
        shutil.copyfile(os.path.join(rundir.DEFAULT_MODEL_DIR, name), run / name)
    if model_bytes is not None:
        (run / rundir.MODEL_FILENAME).write_bytes(model_bytes)
    return run


def test_a_model_folder_without_its_files_is_refused_before_any_export(tmp_path):
    with pytest.raises(SampleError, match="no such model folder"):
        export_cache.ensure_export(str(tmp_path / "none"), log=pytest.fail)
    run = a_model_folder(tmp_path)
    (run / rundir.DATASET_FILENAME).unlink()
    with pytest.raises(SampleError, match=f"no {rundir.DATASET_FILENAME}"):
        export_cache.ensure_export(str(run), log=pytest.fail)


@pytest.mark.slow  # each export is a child process that imports TensorFlow
def test_a_failed_export_names_the_cache_folder_and_says_why(tmp_path):
    # The cache can go neither beside the model (a folder of the user's) nor below a file.
    run = a_model_folder(tmp_path)
    (tmp_path / "run.export").mkdir()
    (tmp_path / "run.export" / "notes.txt").write_text("mine")
    not_a_folder = tmp_path / "cache-root"
    not_a_folder.write_text("a file")
    target = export_cache.cache_dir(run, not_a_folder)
    assert target.startswith(str(not_a_folder) + os.sep)
    lines = []
    with pytest.raises(ServeError) as refused:
        export_cache.ensure_export(str(run), cache_root=not_a_folder, log=lines.append)
    assert str(refused.value) == (
        f"the page's export cache {target}: {not_a_folder} is a file, so {target} cannot be "
        "created below it"
    )
    assert lines == [f"exporting {run} for the page into {target} (once; takes a minute)"]
    assert sorted(os.listdir(tmp_path / "run.export")) == ["notes.txt"]
    # A model the exporter cannot read: its message, and no cache left behind.
    shutil.rmtree(tmp_path / "run.export")
    (run / rundir.MODEL_FILENAME).write_bytes(b"not a model")
    with pytest.raises(ServeError) as unreadable:
        export_cache.ensure_export(str(run), log=lambda line: None)
    message = str(unreadable.value)
    assert message.startswith(f"the page's export cache {tmp_path / 'run.export'}: ")
    assert f"{run / rundir.MODEL_FILENAME}: not a complete .keras file" in message
    assert sorted(os.listdir(tmp_path)) == ["cache-root", "run"]
