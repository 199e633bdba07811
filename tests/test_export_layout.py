"""What the library knows of an export folder (`handwriting/export_layout.py`), and that the
library reads exports without importing the exporter (the `export` package depends on it)."""

import ast
import json
import os
import pathlib

import export
from handwriting import export_layout
from handwriting.export_layout import METADATA_FILENAME, SAMPLER_FORMAT, is_previous_export

LIBRARY = pathlib.Path(__file__).resolve().parent.parent / "handwriting"
# A `sampler.json` with the fields the exporter writes (`EXPORT_MARK_FIELDS`) and one more.
MARKED = {
    "format": SAMPLER_FORMAT,
    "version": 2,
    "signature": "step",
    "alphabet": {"chars": "ab"},
    "normalization": {"offset_mean": [0, 0], "offset_std": [1, 1]},
    "state_widths": [3, 3],
    "mixtures": 2,
}


def test_a_folder_is_an_export_only_with_the_exporters_sampler_json(tmp_path):
    folder = tmp_path / "exported"
    assert not is_previous_export(folder)  # missing
    folder.mkdir()
    assert not is_previous_export(folder)  # empty
    meta = folder / METADATA_FILENAME
    unmarked = {key: value for key, value in MARKED.items() if key != "state_widths"}
    for text in ("not json", "[]", "\xff", json.dumps({"format": SAMPLER_FORMAT})):
        meta.write_text(text, encoding="latin-1")
        assert not is_previous_export(folder), text
    for fake in ({**MARKED, "format": "handwriting-strokes"}, unmarked):
        meta.write_text(json.dumps(fake))
        assert not is_previous_export(folder), fake
    meta.write_text(json.dumps(MARKED))
    assert is_previous_export(folder)
    assert not is_previous_export(meta)  # a file is no folder
    # A `sampler.json` that is no regular file is refused without being opened (a FIFO blocks).
    meta.unlink()
    os.mkfifo(meta)
    assert not is_previous_export(folder)
    meta.unlink()
    meta.mkdir()
    assert not is_previous_export(folder)


def test_the_exporter_re_exports_the_librarys_test():
    assert export.is_previous_export is export_layout.is_previous_export


def _imported_modules(tree) -> list:
    """The absolute module names a parsed module imports (`import a.b`, `from a.b import c`)."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def test_the_library_never_imports_the_exporter():
    """`handwriting` is the library and `export` depends on it: an import the other way (even
    inside a function) is a cycle; the library runs `python -m export` as a child instead."""
    sources = sorted(LIBRARY.rglob("*.py"))
    assert len(sources) > 30  # the library's modules were found
    offenders = []
    for path in sources:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for name in _imported_modules(tree):
            if name.split(".")[0] == "export":
                offenders.append(f"{path.relative_to(LIBRARY.parent)}: imports {name}")
    assert offenders == []


def test_the_import_check_sees_imports_inside_functions():
    source = "def f():\n    from export import is_previous_export\n    import export.tflite\n"
    assert _imported_modules(ast.parse(source)) == ["export", "export.tflite"]
