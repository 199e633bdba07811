"""Writes the embedded corpus in the folder layout of IAM-OnDB.

    DIR/lineStrokes/a01/a01-000/a01-000u-01.xml   one line's strokes (whiteboard XML)
    DIR/ascii/a01/a01-000/a01-000u.txt            the form's transcription (OCR:/CSR: parts)
    DIR/original/a01/a01-000/strokesu.xml         the form's writer id
    DIR/alignment/a01/a01-000/a01-000u-01.txt     per point: index of the character written
    DIR/trainset.txt, testset_v.txt, testset_t.txt, testset_f.txt   form ids, writer-disjoint
    DIR/synth.json                                the arguments and counts of the corpus
    DIR/.complete                                 written last

Writer `i` (from 0) writes forms `<w>-000`, `<w>-001`, ... where `<w>` is a letter and two
digits (`a00` .. `z99`); its id is `10001 + i`. Every form is rendered from its own seed, so
the output does not depend on how many processes render it: same arguments, same bytes.
The four trees are written into `DIR/.staging` and moved into place when all are complete;
the split lists, `synth.json` and `.complete` are then written atomically.
"""

import concurrent.futures
import dataclasses
import json
import multiprocessing
import os
import shutil

import numpy as np

from data_prep.synth import pen, style, text
from handwriting import files

TREES = ("lineStrokes", "ascii", "original", "alignment")
SPLIT_FILES = ("trainset.txt", "testset_v.txt", "testset_t.txt", "testset_f.txt")
# Share of writers in each held-out list (near IAM-OnDB's); trainset takes the rest.
HELD_OUT_SHARES = {"testset_v.txt": 0.12, "testset_t.txt": 0.12, "testset_f.txt": 0.30}
LINES_PER_FORM = (6, 10)  # a form holds this many lines (the writer's last form may hold fewer)
MAX_WRITERS = 26 * 100  # writer folders a00 .. z99
MANIFEST = "synth.json"
COMPLETE = ".complete"
STAGING = ".staging"

# Seed streams: every random draw descends from (seed, stream, index).
TEXT_STREAM, WRITER_STREAM, FORM_STREAM, PLAN_STREAM = 0, 1, 2, 3


class CorpusError(ValueError):
    """Arguments or a target folder the generator cannot use."""


@dataclasses.dataclass(frozen=True)
class FormPlan:
    """One form to render: who writes which lines."""

    form_id: str  # e.g. "a01-000u"
    folder: str  # e.g. "a01/a01-000"
    writer_index: int  # 0-based
    form_index: int  # 0-based over the corpus; seeds the form's rendering
    lines: tuple  # the texts, in order


def writer_id(index: int) -> str:
    return str(10001 + index)


def _writer_prefix(index: int) -> str:
    return f"{chr(ord('a') + index // 100)}{index % 100:02d}"


def writer_style(seed: int, index: int, faces) -> style.Style:
    """The style of writer `index` of the corpus with `seed`."""
    return style.sample_writer(np.random.default_rng([seed, WRITER_STREAM, index]), faces)


def split_writers(writers: int, seed: int) -> dict:
    """Returns `split file -> sorted writer indices`, disjoint, every writer in one."""
    order = np.random.default_rng([seed, PLAN_STREAM]).permutation(writers).tolist()
    counts = {}
    for name, share in HELD_OUT_SHARES.items():
        wanted = round(share * writers)
        # Every list gets a writer once there are enough that trainset keeps most of them.
        minimum = 1 if writers >= (2 if name == "testset_v.txt" else 4) else 0
        counts[name] = max(minimum, wanted)
    splits, taken = {}, 0
    for name in ("testset_v.txt", "testset_t.txt", "testset_f.txt"):
        splits[name] = sorted(order[taken : taken + counts[name]])
        taken += counts[name]
    splits["trainset.txt"] = sorted(order[taken:])
    return {name: splits[name] for name in SPLIT_FILES}


def plan_corpus(lines: int, writers: int, seed: int) -> list:
    """Every form of the corpus, in writer order, with its unique lines of text."""
    if writers < 1 or writers > MAX_WRITERS:
        raise CorpusError(f"--writers must be between 1 and {MAX_WRITERS}, received {writers}")
    if lines < writers:
        raise CorpusError(f"--lines ({lines}) must be at least --writers ({writers})")
    source = text.TextSource(text.load_words(), np.random.default_rng([seed, TEXT_STREAM]))
    sizes = np.random.default_rng([seed, PLAN_STREAM, 1])
    taken = set()
    forms = []
    for w in range(writers):
        remaining = lines // writers + (1 if w < lines % writers else 0)
        prefix = _writer_prefix(w)
        suffix = "uvwxyz"[w % 6]
        number = 0
        while remaining > 0:
            count = min(remaining, int(sizes.integers(LINES_PER_FORM[0], LINES_PER_FORM[1] + 1)))
            if number > 999:
                raise CorpusError(f"writer {w} would need more than 1000 forms; add writers")
            folder = f"{prefix}/{prefix}-{number:03d}"
            forms.append(
                FormPlan(
                    form_id=f"{prefix}-{number:03d}{suffix}",
                    folder=folder,
                    writer_index=w,
                    form_index=len(forms),
                    lines=tuple(text.unique_lines(source, count, taken)),
                )
            )
            remaining -= count
            number += 1
    return forms


def _keep_every_char(xy: np.ndarray, line: pen.PenLine) -> None:
    """Moves a point by one unit where rounding made every point of a character a repeat.

    Readers drop a point equal to its predecessor in the same stroke; this keeps each
    character's points from vanishing that way.
    """
    same_stroke = ~line.stroke_end[:-1]
    repeat = np.r_[False, same_stroke & np.all(xy[1:] == xy[:-1], axis=1)]
    if not repeat.any():
        return
    kept = np.unique(line.chars[~repeat])
    for char in np.setdiff1d(np.unique(line.chars), kept):
        first = int(np.flatnonzero(line.chars == char)[0])
        xy[first, 0] += 1


def _seconds(ms: int) -> str:
    return f"{ms // 1000}.{ms % 1000:03d}"


def _line_xml(strokes: list, board: tuple) -> str:
    """One `lineStrokes` file; `strokes` are `(xy int (n, 2), ms int (n,))` pairs."""
    x_min, y_min, x_max, y_max = board
    out = [
        '<?xml version="1.0" encoding="ISO-8859-1"?>\n',
        "<WhiteboardCaptureSession>\n",
        "  <WhiteboardDescription>\n",
        '    <SensorLocation corner="top_left"/>\n',
        f'    <DiagonallyOppositeCoords x="{x_max}" y="{y_max}"/>\n',
        f'    <VerticallyOppositeCoords x="{x_min}" y="{y_max}"/>\n',
        f'    <HorizontallyOppositeCoords x="{x_max}" y="{y_min}"/>\n',
        "  </WhiteboardDescription>\n",
        "  <StrokeSet>\n",
    ]
    for xy, ms in strokes:
        out.append(
            f'    <Stroke colour="black" start_time="{_seconds(int(ms[0]))}" '
            f'end_time="{_seconds(int(ms[-1]))}">\n'
        )
        out.extend(
            f'      <Point x="{x}" y="{y}" time="{_seconds(t)}"/>\n'
            for (x, y), t in zip(xy.tolist(), ms.tolist(), strict=True)
        )
        out.append("    </Stroke>\n")
    out.append("  </StrokeSet>\n</WhiteboardCaptureSession>\n")
    return "".join(out)


def _ascii_text(form_id: str, lines: tuple) -> str:
    body = "\n".join(lines)
    return (
        f"Form: {form_id}\nSource: embedded corpus (python -m data_prep synth)\n"
        f"OCR:\n\n{body}\n\nCSR:\n\n{body}\n"
    )


def _original_xml(form_id: str, writer: str) -> str:
    return (
        '<?xml version="1.0" encoding="ISO-8859-1"?>\n'
        "<WhiteboardCaptureSession>\n"
        "  <General>\n"
        f'    <Form id="{form_id}" writerID="{writer}"/>\n'
        "  </General>\n"
        "</WhiteboardCaptureSession>\n"
    )


def render_form(plan: FormPlan, seed: int, faces) -> dict:
    """Renders one form; returns `relative path -> file bytes` and the form's point count."""
    writer = writer_style(seed, plan.writer_index, faces)
    rng = np.random.default_rng([seed, FORM_STREAM, plan.form_index])
    left = int(rng.integers(300, 1500))
    top = int(rng.integers(500, 1200))
    pitch = writer.x_height * rng.uniform(3.6, 4.6)  # baseline to baseline
    clock = int(rng.integers(100_000, 3_000_000))  # ms on the board's clock
    written = []
    for k, line_text in enumerate(plan.lines):
        line = pen.write_line(line_text, style.line_style(writer, rng), rng)
        origin_x = left + rng.normal(0.0, 0.3) * writer.x_height
        origin_y = top + (k + 1) * pitch
        xy = np.empty((len(line.points), 2), np.int64)
        xy[:, 0] = np.rint(origin_x + line.points[:, 0])
        xy[:, 1] = np.rint(origin_y - line.points[:, 1])  # the board's y grows downwards
        _keep_every_char(xy, line)
        ms = clock + line.times
        clock = int(ms[-1]) + int(rng.integers(1200, 4000))  # moving to the next line
        written.append((xy, ms, line))
    every = np.concatenate([xy for xy, _, _ in written])
    margin = 50
    board = (
        int(every[:, 0].min()) - margin,
        int(every[:, 1].min()) - margin,
        int(every[:, 0].max()) + margin,
        int(every[:, 1].max()) + margin,
    )
    out = {}
    points = 0
    for k, (xy, ms, line) in enumerate(written, start=1):
        bounds = np.flatnonzero(line.stroke_end) + 1
        strokes = list(zip(np.split(xy, bounds[:-1]), np.split(ms, bounds[:-1]), strict=True))
        name = f"{plan.folder}/{plan.form_id}-{k:02d}"
        out[f"lineStrokes/{name}.xml"] = _line_xml(strokes, board).encode("ascii")
        out[f"alignment/{name}.txt"] = (" ".join(map(str, line.chars.tolist())) + "\n").encode()
        points += len(xy)
    suffix = plan.form_id[len(plan.folder.split("/")[1]) :]
    out[f"ascii/{plan.folder}/{plan.form_id}.txt"] = _ascii_text(plan.form_id, plan.lines).encode(
        "ascii"
    )
    out[f"original/{plan.folder}/strokes{suffix}.xml"] = _original_xml(
        plan.form_id, writer_id(plan.writer_index)
    ).encode("ascii")
    return {"files": out, "points": points}


def _render_into(staging: str, plan: FormPlan, seed: int, faces) -> int:
    """Renders `plan` into the staging folder; returns its point count."""
    result = render_form(plan, seed, faces)
    for relative, data in result["files"].items():
        path = os.path.join(staging, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    return result["points"]


def _render_batch(args) -> list:
    staging, plans, seed, faces = args
    return [_render_into(staging, plan, seed, faces) for plan in plans]


def _prepare(directory: str) -> str:
    """Empties a previous corpus in `directory` (only its own files); returns the staging path."""
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise CorpusError(f"{directory}: exists and is not a folder")
    os.makedirs(directory, exist_ok=True)
    ours = set(TREES) | set(SPLIT_FILES) | {MANIFEST, COMPLETE, STAGING}
    present = set(os.listdir(directory))
    if present and MANIFEST not in present and present != {STAGING}:
        raise CorpusError(
            f"{directory}: not empty and holds no {MANIFEST}, so it is not an embedded corpus; "
            "choose an empty or new folder"
        )
    foreign = sorted(present - ours)
    if foreign:
        raise CorpusError(f"{directory}: holds files the generator did not write: {foreign[:5]}")
    for name in (COMPLETE, *SPLIT_FILES):
        if name in present:
            os.remove(os.path.join(directory, name))
    for name in (STAGING, *TREES):
        if name in present:
            shutil.rmtree(os.path.join(directory, name))
    staging = os.path.join(directory, STAGING)
    os.makedirs(staging)
    return staging


def write_corpus(
    directory, lines: int, writers: int, seed: int, faces=None, workers: int = 1
) -> dict:
    """Writes the corpus into `directory`; returns its summary (also saved as `synth.json`).

    Args:
        directory: the target folder; new, empty, or holding an earlier embedded corpus.
        lines: number of text lines.
        writers: number of writers (styles); lines are shared out evenly.
        seed: fixes every draw: text, styles, splits and pen paths.
        faces: face names to draw writers from (default: all in `style.FACE_WEIGHTS`).
        workers: processes rendering forms; the output does not depend on it.
    """
    directory = os.fspath(directory)
    faces = tuple(faces or style.FACE_WEIGHTS)
    style.sample_writer(np.random.default_rng(0), faces)  # checks the face names early
    if workers < 1:
        raise CorpusError(f"workers must be at least 1, received {workers}")
    plans = plan_corpus(lines, writers, seed)
    staging = _prepare(directory)
    summary = {
        "generator": "python -m data_prep synth",
        "complete": False,
        "lines": lines,
        "writers": writers,
        "seed": seed,
        "faces": list(faces),
    }
    # Marks the folder as the generator's before anything else lands in it.
    files.write_text(os.path.join(directory, MANIFEST), json.dumps(summary, indent=2) + "\n")
    size = max(1, min(8, len(plans) // (4 * workers)))  # a few batches per worker
    batches = [plans[i : i + size] for i in range(0, len(plans), size)]
    jobs = [(staging, batch, seed, faces) for batch in batches]
    if workers == 1 or len(batches) == 1:
        points = [p for job in jobs for p in _render_batch(job)]
    else:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            points = [p for result in pool.map(_render_batch, jobs) for p in result]
    for tree in TREES:
        os.replace(os.path.join(staging, tree), os.path.join(directory, tree))
    os.rmdir(staging)
    split_of = {w: name for name, ws in split_writers(writers, seed).items() for w in ws}
    characters = sum(len(t) - t.count(" ") for p in plans for t in p.lines)
    summary.update(
        complete=True, forms=len(plans), points=int(sum(points)), characters=characters, splits={}
    )
    for name in SPLIT_FILES:
        members = [p for p in plans if split_of[p.writer_index] == name]
        files.write_text(os.path.join(directory, name), "".join(f"{p.form_id}\n" for p in members))
        summary["splits"][name] = {
            "forms": len(members),
            "lines": sum(len(p.lines) for p in members),
            "writers": len({p.writer_index for p in members}),
        }
    files.write_text(os.path.join(directory, MANIFEST), json.dumps(summary, indent=2) + "\n")
    os.sync()  # the corpus is on disk before it is declared complete
    files.write_text(os.path.join(directory, COMPLETE), "")
    return summary
