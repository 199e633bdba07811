"""Whole `data_prep` builds (`data_prep.shards.build`) of small sources with damaged lines.

A case is a source of a few forms, some of whose line files are attacked (`xml_cases`
attacks), a transcription now and then without its `CSR:` block, laid out as folders or as
`.tar.gz` archives. The build must account for every line: kept in a shard with exactly its
points, or listed in `dataset.json` with a reason and the file; every shard verified by its
sha256; no temporary file left behind.
"""

import dataclasses
import io
import os
import random
import tarfile
import tempfile

import numpy as np
from hypothesis import strategies as st

from data_prep import iam_ondb, shards
from fuzz import xml_cases
from handwriting import iam_xml
from handwriting.dataset_info import DatasetInfo


@dataclasses.dataclass(frozen=True)
class BuildCase:
    forms: int
    attacks: tuple  # one xml_cases attack per damaged line
    no_csr: bool  # the last form's transcription (a validation form) loses its CSR: block
    archives: bool
    seed: int


def warm_up() -> None:
    """Imports TensorFlow (the shard writer's) before the first case's clock starts."""
    import tensorflow  # noqa: F401

    from handwriting import records  # noqa: F401


def build_cases():
    attacks = st.lists(st.sampled_from([a for a in xml_cases.ATTACKS if a != "large"]), max_size=4)
    return st.builds(
        BuildCase,
        st.integers(2, 4),
        attacks.map(tuple),
        st.booleans(),
        st.booleans(),
        st.integers(0, 2**32 - 1),
    )


# Archive members that must be listed as unsafe, never read: (name, tar member type).
UNSAFE_MEMBERS = (
    ("../a01-000u-09.xml", tarfile.REGTYPE),
    ("lineStrokes/a01/a01-000/a01-000u-08.xml", tarfile.SYMTYPE),
    ("/etc/cron.d/evil", tarfile.REGTYPE),
    ("lineStrokes/a01/a01-001/a01-001u-07.xml", tarfile.CHRTYPE),
)


def write_source(case: BuildCase, root: str, rng):
    """Writes the source; returns `({line_id: (relpath, expectation, line)}, [labels of the
    unsafe archive members])`."""
    files, lines, unsafe = {}, {}, []
    damaged = list(case.attacks)
    for f in range(case.forms):
        form = f"a01-{f:03d}u"
        texts = [f"line {k} of form {f}" for k in range(1, rng.randint(1, 3) + 1)]
        body = "OCR:\n\n" + "\n".join(texts) + "\n\n"
        lost = case.no_csr and f == case.forms - 1
        if not lost:
            body += "CSR:\n\n" + "\n".join(texts) + "\n"
        files[f"ascii/a01/a01-{f:03d}/{form}.txt"] = body.encode()
        for k in range(1, len(texts) + 1):
            line = _line(rng)
            attack = damaged.pop() if damaged else "none"
            data, expectation = xml_cases.LineCase(line, attack, rng.randrange(2**32)).build()
            relpath = f"lineStrokes/a01/a01-{f:03d}/{form}-{k:02d}.xml"
            files[relpath] = data
            if lost:
                expectation = "no transcription"
            lines[f"{form}-{k:02d}"] = (relpath, expectation, line)
    forms = [f"a01-{f:03d}u" for f in range(case.forms)]
    lists = {"trainset": forms[:-1], "testset_v": forms[-1:]}
    for name in iam_ondb.SPLIT_LISTS:
        _write(root, f"{name}.txt", "".join(f"{i}\n" for i in lists.get(name, [])).encode())
    if case.archives:
        for kind in ("lineStrokes", "ascii"):
            with tarfile.open(os.path.join(root, iam_ondb.ARCHIVES[kind]), "w:gz") as tar:
                for relpath, data in sorted(files.items()):
                    if relpath.startswith(kind + "/"):
                        info = tarfile.TarInfo(relpath)
                        info.size = len(data)
                        tar.addfile(info, io.BytesIO(data))
                if kind == "lineStrokes":
                    for name, member_type in UNSAFE_MEMBERS[: rng.randint(0, len(UNSAFE_MEMBERS))]:
                        info = tarfile.TarInfo(name)
                        info.type, info.linkname = member_type, "/etc/passwd"
                        info.size = 4 if member_type == tarfile.REGTYPE else 0
                        tar.addfile(info, io.BytesIO(b"evil") if info.size else None)
                        unsafe.append(f"{iam_ondb.ARCHIVES[kind]}:{name}")
    else:
        for relpath, data in files.items():
            _write(root, relpath, data)
    return lines, unsafe


def _line(rng):
    x, y, strokes = rng.randint(500, 5000), rng.randint(500, 2000), []
    for _ in range(rng.randint(1, 4)):
        stroke = []
        for _ in range(rng.randint(1, 12)):
            x, y = x + rng.randint(-20, 30), y + rng.randint(-20, 20)
            stroke.append((x, y))
        strokes.append(tuple(stroke))
    return xml_cases.Line(tuple(strokes))


def _write(root, relpath, data):
    path = os.path.join(root, relpath)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def check_build(case: BuildCase) -> str:
    import tensorflow as tf

    from handwriting import records

    rng = random.Random(case.seed)
    with tempfile.TemporaryDirectory() as folder:
        src, out = os.path.join(folder, "IAM-OnDB"), os.path.join(folder, "out")
        os.makedirs(src)
        lines, unsafe = write_source(case, src, rng)
        try:
            shards.build(src, out, workers=1, lines_per_shard=2, log=lambda line: None)
        except iam_ondb.PrepError as e:
            message = str(e)
            # The source is named by its folder's name in dataset.json's terms.
            assert message.startswith((f"{src}: ", f"{out}: ", "IAM-OnDB: ")), message
            left = os.listdir(out) if os.path.isdir(out) else []
            assert "dataset.json" not in left and not [n for n in left if ".tmp" in n], left
            return "refused: " + message.split(": ", 1)[1].split(" (")[0]
        info = DatasetInfo.load(out, verify=True)
        names = {s.name for split in info.splits.values() for s in split.shards}
        assert sorted(os.listdir(out)) == sorted(names | {"dataset.json"}), os.listdir(out)
        kept = {}
        for split in info.splits:
            dataset = tf.data.TFRecordDataset(info.shard_paths(out, split)).map(records.parse_line)
            for example in dataset.as_numpy_iterator():
                kept[example["line_id"].decode()] = example
        listed = [s for s in info.skipped["lines"] if s["reason"] == "unsafe archive member"]
        assert sorted(s["file"] for s in listed) == sorted(unsafe), (listed, unsafe)
        for skip in listed:
            assert skip["detail"].startswith(f"{skip['file']}: "), skip
        skipped = {s["line_id"]: s for s in info.skipped["lines"] if s not in listed}
        assert sorted(kept) + sorted(skipped) != [] and not set(kept) & set(skipped)
        assert sorted([*kept, *skipped]) == sorted(lines), (sorted(kept), sorted(skipped))
        for line_id, (relpath, expectation, line) in lines.items():
            if line_id in skipped:
                skip = skipped[line_id]
                culprit = relpath.replace("lineStrokes", "ascii").rsplit("-", 1)[0] + ".txt"
                assert skip["detail"].startswith((skip["file"], culprit)), skip
                assert expectation in (None, skip["reason"]), (line_id, expectation, skip)
                if skip["reason"] != "no transcription":
                    assert skip["file"] == relpath, skip
                continue
            assert expectation in (None, "same"), (line_id, expectation, "kept")
            if expectation == "same":
                x, y, lengths = xml_cases.expected(line)
                want, _ = iam_xml.to_stroke_array(x, y, lengths)
                got = records_strokes(kept[line_id])
                np.testing.assert_array_equal(got, want)
        return "built, lines skipped" if skipped else "built"


def records_strokes(example) -> np.ndarray:
    """The raw `(T, 3)` strokes of a parsed record."""
    return np.asarray(example["strokes"], np.float32)
