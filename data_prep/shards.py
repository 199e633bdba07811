"""Clean lines to `OUT/{split}-NNNNN-of-NNNNN.tfrecord` shards and `OUT/dataset.json`.

A build is planned before anything is written: `OUT/.prep-plan.json` lists each shard's line
ids and the fingerprint of the input and settings. After each shard is written (atomically)
the plan records its sha256, counts and offset moments, so a killed run, run again, keeps the
shards it finished, writes the rest, and combines the normalisation statistics from the
recorded moments in shard order: the result is byte-identical to an uninterrupted build.
`dataset.json` is written last and the plan removed; a run that finds a complete build of
the same input and settings says so and writes nothing.
"""

import contextlib
import hashlib
import json
import os
import re

import numpy as np

from data_prep import clean, iam_ondb
from handwriting import files
from handwriting.alphabet import Alphabet
from handwriting.dataset_info import FILENAME, DatasetError, DatasetInfo, Shard, Split, sha256_file

PLAN_FILE = ".prep-plan.json"
# Bumped whenever reading or cleaning changes what a shard holds, so old builds are redone.
# 2: deterministic serialisation, implausible coordinates skipped, only regular files read.
# 3: text files with a UTF-8 byte order mark read (split lists, transcriptions, alignments).
PREP_VERSION = 3
DEFAULT_LINES_PER_SHARD = 2000  # IAM-OnDB's graves train split (10,741 lines): six shards
SHARD_NAME = re.compile(r"[a-z]+-[0-9]{5}-of-[0-9]{5}\.tfrecord")
# Temporary files that `handwriting.files.atomic_path` leaves when a process is killed.
OWN_TEMP = re.compile(
    r"\.([a-z]+-[0-9]{5}-of-[0-9]{5}\.tfrecord|dataset\.json|\.prep-plan\.json)\..*\.tmp"
)


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def build_fingerprint(input_digest: str, mode: str, lines_per_shard: int) -> str:
    """sha256 of what decides the output: the input, the split mode, the shard size, the code."""
    settings = {
        "input": input_digest,
        "split": mode,
        "lines_per_shard": lines_per_shard,
        "prep": PREP_VERSION,
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def build_alphabet(texts) -> Alphabet:
    """The characters of `texts`, sorted by code point."""
    return Alphabet("".join(sorted(set().union(*map(set, texts)))))


def plan_shards(splits: dict, lines_per_shard: int) -> list:
    """Cuts every split into shards of at most `lines_per_shard` lines.

    Returns:
        A list of `(name, split, lines)`, splits in the order given, shards in order.
    """
    if lines_per_shard < 1:
        raise ValueError(f"`lines_per_shard` must be >= 1, received {lines_per_shard}")
    plan = []
    for split, lines in splits.items():
        count = -(-len(lines) // lines_per_shard)
        for index in range(count):
            chunk = lines[index * lines_per_shard : (index + 1) * lines_per_shard]
            plan.append((shard_name(split, index, count), split, chunk))
    return plan


def check_output_folder(out) -> None:
    """Raises `PrepError` when `out` cannot be the output folder: it exists and is not a
    folder, or the nearest existing path above it is not a folder."""
    out = os.fspath(out)
    if os.path.lexists(out):
        if not os.path.isdir(out):
            raise iam_ondb.PrepError(f"{out}: exists and is not a folder")
        return
    parent = os.path.dirname(os.path.abspath(out))
    while not os.path.lexists(parent) and os.path.dirname(parent) != parent:
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise iam_ondb.PrepError(f"{out}: {parent} is not a folder")


def implausible_lines(lines) -> list:
    """The lines (worst first) with an offset that is not finite or beyond `clean.MAX_OFFSET`:
    the reader skips them, so any here come from elsewhere and would wreck the statistics."""

    def largest(line):
        offsets = np.abs(np.asarray(line.strokes, np.float64)[:, :2])
        return np.inf if not np.isfinite(offsets).all() else float(offsets.max(initial=0.0))

    found = [(largest(line), line) for line in lines]
    found = [(size, line) for size, line in found if size > clean.MAX_OFFSET]
    return [line for _, line in sorted(found, key=lambda item: (-item[0], item[1].line_id))]


def _name_lines(lines, shown: int = 5) -> str:
    names = ", ".join(line.file or line.line_id for line in lines[:shown])
    return names + (f" and {len(lines) - shown} more" if len(lines) > shown else "")


def existing_build(out, fingerprint: str):
    """Returns the `DatasetInfo` in `out` when it is a complete, unaltered build of
    `fingerprint`, else None."""
    try:
        info = DatasetInfo.load(out, verify=True)
    except DatasetError:
        return None
    return info if info.source.get("fingerprint") == fingerprint else None


def _load_plan(out: str, fingerprint: str, plan: list) -> dict:
    """Returns the finished-shard records of a plan left by an earlier run of the same build."""
    path = os.path.join(out, PLAN_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            old = json.load(f)
        same = old["fingerprint"] == fingerprint and old["shards"] == _plan_json(plan)
        return dict(old["done"]) if same else {}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _plan_json(plan: list) -> list:
    return [
        {"name": name, "split": split, "line_ids": [line.line_id for line in lines]}
        for name, split, lines in plan
    ]


def _save_plan(out: str, fingerprint: str, plan: list, done: dict) -> None:
    text = json.dumps(
        {"fingerprint": fingerprint, "shards": _plan_json(plan), "done": done}, sort_keys=True
    )
    files.write_text(os.path.join(out, PLAN_FILE), text + "\n")


def _remove_stale(out: str, keep: set) -> None:
    """Removes this tool's temporary files and shards of another build; nothing else."""
    for name in sorted(os.listdir(out)):
        if OWN_TEMP.fullmatch(name) or (SHARD_NAME.fullmatch(name) and name not in keep):
            os.remove(os.path.join(out, name))


def _write_shard(path: str, lines: list, alphabet: Alphabet) -> None:
    import tensorflow as tf  # only the writer needs TensorFlow; reading and planning do not

    from handwriting import records

    with files.atomic_path(path) as tmp, tf.io.TFRecordWriter(tmp) as writer:
        for line in lines:
            writer.write(
                records.encode_line(
                    line.strokes,
                    line.text,
                    alphabet.encode(line.text),
                    line.line_id,
                    line.writer_id,
                    line.alignment,
                )
            )


def _shard_record(path: str, lines: list) -> dict:
    moments = (0, np.zeros(2), np.zeros(2))
    for line in lines:
        moments = clean.combine_moments(moments, clean.offset_moments(line.strokes))
    n, mean, m2 = moments
    return {
        "sha256": sha256_file(path),
        "lines": len(lines),
        "points": int(sum(line.strokes.shape[0] for line in lines)),
        "moments": [int(n), [float(v) for v in mean], [float(v) for v in m2]],
    }


def write_dataset(
    out,
    corpus: iam_ondb.Corpus,
    source: dict,
    fingerprint: str,
    lines_per_shard: int,
    log=print,
    on_shard_written=None,
) -> DatasetInfo:
    """Writes (or finishes writing) the shards and `dataset.json` of a corpus.

    Args:
        out: the output folder (created when missing).
        corpus: the clean lines, from `iam_ondb.read_corpus`.
        source: what `dataset.json` says about the source (the fingerprint is added).
        fingerprint: from `build_fingerprint`; a plan with another fingerprint is discarded.
        lines_per_shard: the most lines in one shard.
        log: called with one line of progress at a time.
        on_shard_written: called with a shard's name once it and its plan record are on disk.

    Returns:
        The `DatasetInfo` written.

    Raises:
        iam_ondb.PrepError: the train split has no lines or no finite spread in its offsets, a
            line has an implausible offset, or `out` cannot be made a folder.
    """
    out = os.fspath(out)
    train = corpus.splits.get("train", [])
    if not train:
        raise iam_ondb.PrepError(f"{source.get('path', out)}: no usable line in the train split")
    implausible = implausible_lines(line for lines in corpus.splits.values() for line in lines)
    if implausible:
        raise iam_ondb.PrepError(
            f"{source.get('path', out)}: offsets not finite or beyond {clean.MAX_OFFSET:g} "
            f"in {_name_lines(implausible)}"
        )
    alphabet = build_alphabet(line.text for line in train)
    plan = plan_shards(corpus.splits, lines_per_shard)
    check_output_folder(out)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise iam_ondb.PrepError(f"{out}: cannot make the folder ({e.strerror or e})") from None
    done = _load_plan(out, fingerprint, plan)
    if not done and os.path.exists(os.path.join(out, FILENAME)):
        os.remove(os.path.join(out, FILENAME))  # describes another build, about to be replaced
    _remove_stale(out, keep={name for name in done})
    _save_plan(out, fingerprint, plan, done)
    for name, _, lines in plan:
        path = os.path.join(out, name)
        record = done.get(name)
        if record is not None and os.path.isfile(path) and sha256_file(path) == record["sha256"]:
            log(f"kept {name} ({record['lines']} lines, finished earlier)")
            continue
        _write_shard(path, lines, alphabet)
        done[name] = _shard_record(path, lines)
        _save_plan(out, fingerprint, plan, done)
        log(f"wrote {name} ({len(lines)} lines, {done[name]['points']} points)")
        if on_shard_written is not None:
            on_shard_written(name)
    moments = (0, np.zeros(2), np.zeros(2))
    for name, split, _ in plan:
        if split == "train":
            n, mean, m2 = done[name]["moments"]
            moments = clean.combine_moments(moments, (n, np.array(mean), np.array(m2)))
    n, mean, m2 = moments
    std = np.sqrt(m2 / n)
    if not (np.isfinite(mean).all() and np.isfinite(std).all()):
        raise iam_ondb.PrepError(
            f"{source.get('path', out)}: the train offsets have no finite statistics "
            f"(mean {mean}, std {std}); the largest offsets are in "
            f"{_name_lines(_largest_offsets(train))}"
        )
    if not (std > 0).all():
        raise iam_ondb.PrepError(
            f"{source.get('path', out)}: the train offsets have no spread (std {std})"
        )
    outside = {}
    for split, lines in corpus.splits.items():
        count = sum(len(alphabet.unknown_chars(line.text)) for line in lines)
        if count:
            outside[split] = count
    counts = {}
    for skip in corpus.skips:
        counts[skip.reason] = counts.get(skip.reason, 0) + 1
    info = DatasetInfo(
        alphabet=alphabet,
        offset_mean=tuple(float(v) for v in mean),
        offset_std=tuple(float(v) for v in std),
        splits={
            split: Split(
                tuple(Shard(name, **_shard_fields(done[name])) for name, s, _ in plan if s == split)
            )
            for split in corpus.splits
        },
        source={
            **source,
            "fingerprint": fingerprint,
            "lines_without_writer_id": corpus.lines_without_writer,
            "chars_outside_alphabet": outside,
        },
        skipped={
            "counts": dict(sorted(counts.items())),
            "lines": [s.to_json() for s in corpus.skips],
        },
    )
    info.save(out)
    os.remove(os.path.join(out, PLAN_FILE))
    return info


def _largest_offsets(lines, count: int = 3) -> list:
    size = {line.line_id: float(np.abs(line.strokes[:, :2]).max(initial=0.0)) for line in lines}
    return sorted(lines, key=lambda line: (-size[line.line_id], line.line_id))[:count]


def _shard_fields(record: dict) -> dict:
    return {"sha256": record["sha256"], "lines": record["lines"], "points": record["points"]}


def format_report(skipped: dict, examples: int = 10) -> str:
    """The skip report for a terminal: counts per reason, then a few examples of each."""
    counts = skipped.get("counts", {})
    if not counts:
        return "skipped: nothing"
    out = [f"skipped: {sum(counts.values())} (every one is listed in {FILENAME})"]
    for reason, count in counts.items():
        out.append(f"  {reason}: {count}")
        shown = [s for s in skipped["lines"] if s["reason"] == reason][:examples]
        out.extend(f"    {s['line_id']}: {s['detail']}" for s in shown)
        if count > len(shown):
            out.append(f"    ... and {count - len(shown)} more")
    return "\n".join(out)


def build(
    src,
    out,
    mode: str = "graves",
    workers: int = 1,
    lines_per_shard: int = DEFAULT_LINES_PER_SHARD,
    log=print,
    on_shard_written=None,
):
    """Builds the shards of an IAM-OnDB source folder: scan, read, clean, write.

    Returns:
        `(info, fresh)`: the `DatasetInfo`, and False when `out` already held this build.
    """
    check_output_folder(out)  # before the work, not after it
    inventory = iam_ondb.scan_source(src)
    fingerprint = build_fingerprint(inventory.digest, mode, lines_per_shard)
    info = existing_build(out, fingerprint)
    if info is not None:
        # A run killed between writing dataset.json and removing the plan leaves the plan.
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(out, PLAN_FILE))
        return info, False
    count = len(inventory.paths("lineStrokes"))
    log(f"reading {inventory.name}: {count} stroke files, {workers} workers")
    corpus = iam_ondb.read_corpus(inventory, mode=mode, workers=workers)
    source = {
        "kind": "iam-ondb",
        "path": inventory.name,
        "split": mode,
        "lines_per_shard": lines_per_shard,
        "writer_id_problems": inventory.writer_notes,  # form id -> why its writer is unknown
    }
    info = write_dataset(
        out,
        corpus,
        source,
        fingerprint,
        lines_per_shard,
        log=log,
        on_shard_written=on_shard_written,
    )
    return info, True
