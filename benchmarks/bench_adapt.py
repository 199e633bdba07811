"""Style fidelity: how close to a writer's hand a model comes, unprimed, primed and adapted.

For each writer W of the data set's validation split (writers never seen in training), the
mean nats per point of W's held-out lines (`HELD_OUT` lines, teacher forcing, none of them
used for priming or adapting) under:

- the base model, unprimed;
- the base model primed with one of W's lines;
- the model adapted on k of W's lines (`handwriting.adapt`, which holds one of the k out to
  stop early), for each k of `--k`;

lower is closer to W's hand; and the reader's CER of the adapted model's samples of the
held-out sentences at bias 1 (one seed), so that legibility is seen not to collapse.

    python -m benchmarks.bench_adapt --model handwriting/assets/demo --data data/corpus
    python -m benchmarks --only adapt

`--one-line-steps 4 6 8 ...` measures instead how many steps suit adapting on a single line
(which holds nothing out to stop on): for each writer, the held-out lines' nats per point after
adapting on one line for each of those step counts (`adapt.ONE_LINE_STEPS` was chosen so).

`--figure PNG` also draws, for each writer, one of W's held-out lines and its text written by
the base, the primed and the adapted model (the largest k) at bias 1, seed 0 (as in
docs/adapt-styles.png).
"""

import argparse
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HELD_OUT = 10  # lines of each writer scored
KS = (1, 3, 5, 10)  # lines adapted on (`--k`)
BENCH_KS = (5,)  # ... in `make bench`, which also takes only the first BENCH_WRITERS writers
BENCH_WRITERS = 2
MINUTES = 5.0  # adaptation budget per run


def writer_lines(data_dir, split="valid") -> dict:
    """`{writer_id: [(text, strokes), ...]}` of a split, in shard order."""
    import tensorflow as tf

    from handwriting import records
    from handwriting.dataset_info import DatasetInfo

    info = DatasetInfo.load(data_dir, verify=False)
    out = {}
    for serialized in tf.data.TFRecordDataset(info.shard_paths(data_dir, split)):
        line = records.parse_line(serialized)
        writer = line["writer_id"].numpy().decode("utf-8")
        text = line["text"].numpy().decode("utf-8")
        out.setdefault(writer, []).append((text, line["strokes"].numpy()))
    return out


def writer_rows(model_dir, writer, lines, ks, minutes, workdir, picture=None) -> list:
    """The benchmark rows of one writer; with `picture` (a list), appends `(label, strokes)`
    of W's first held-out line and of its text written by each model to it."""
    from handwriting import ctc, legibility, sample
    from handwriting.adapt import adapt
    from handwriting.likelihood import line_likelihoods, summary
    from handwriting.reader import load_reader
    from handwriting.strokes import Prime

    synth = sample.load(model_dir)
    held = lines[:HELD_OUT]
    rest = lines[HELD_OUT:]
    prime = Prime(strokes=rest[0][1], text=rest[0][0], source=f"{writer}: a line")
    figures = {
        "base": summary(line_likelihoods(synth, held))["nats_per_point"],
        "primed": summary(line_likelihoods(synth, held, prime))["nats_per_point"],
    }
    reader = load_reader(legibility.DEFAULT_READER_DIR)
    text = held[0][0]
    if picture is not None:
        picture.append((f"{writer}, a held-out line", held[0][1]))
        for name, kwargs in (("base", {}), ("primed with another line", {"prime": prime})):
            drawn = sample.generate(synth, text, bias=1.0, seed=0, **kwargs)[0].strokes
            picture.append((f"{writer}, {name}", drawn))
    cer = {}
    for k in ks:
        out = os.path.join(workdir, f"{writer}-k{k}")
        result = adapt(model_dir, rest[:k], out, minutes=minutes, log=lambda *a: None, verbose=0)
        adapted = sample.load(out)
        if picture is not None and k == max(ks):
            drawn = sample.generate(adapted, text, bias=1.0, seed=0)[0].strokes
            picture.append((f"{writer}, adapted on {k} lines", drawn))
        figures[f"adapted k={k}"] = summary(line_likelihoods(adapted, held))["nats_per_point"]
        found = legibility.sample_readings(
            adapted, reader, legibility.HELD_OUT_TEXTS, bias=1.0, seeds=(0,)
        )
        cer[k] = (ctc.cer([f.text for f in found], [f.reading for f in found]),)
        cer[k] += (result.minutes, result.steps)
    rows = [
        {"benchmark": f"{writer}: {name}", "value": value, "unit": "nats/point"}
        for name, value in figures.items()
    ]
    for k, (rate, minutes_used, steps) in cer.items():
        rows.append(
            {
                "benchmark": f"{writer}: adapted k={k}, reader CER at bias 1",
                "value": rate,
                "unit": "CER",
                "goal": "<= 0.15",
                "note": f"adapted in {minutes_used:.1f} min, {steps} steps",
            }
        )
    return rows


def one_line_rows(model_dir, writer, lines, step_counts, workdir) -> list:
    """Held-out nats per point of one writer after adapting on one line for each step count."""
    from handwriting import sample
    from handwriting.adapt import adapt
    from handwriting.likelihood import line_likelihoods, summary

    held, line = lines[:HELD_OUT], lines[HELD_OUT : HELD_OUT + 1]
    rows = [
        {
            "benchmark": f"{writer}: base",
            "value": summary(line_likelihoods(sample.load(model_dir), held))["nats_per_point"],
            "unit": "nats/point",
        }
    ]
    for steps in step_counts:
        out = os.path.join(workdir, f"{writer}-one-line-{steps}")
        adapt(model_dir, line, out, steps=steps, log=lambda *a: None, verbose=0)
        figure = summary(line_likelihoods(sample.load(out), held))["nats_per_point"]
        rows.append(
            {
                "benchmark": f"{writer}: adapted on 1 line, {steps} steps",
                "value": figure,
                "unit": "nats/point",
            }
        )
    return rows


def run(args):
    model_dir = getattr(args, "model", None) or os.path.join(ROOT, "handwriting", "assets", "demo")
    data_dir = getattr(args, "data", None) or os.path.join(ROOT, "data", "corpus")
    if not os.path.isfile(os.path.join(data_dir, "dataset.json")):
        print(f"# adapt: no data set in {data_dir}; left out", file=sys.stderr)
        return []
    ks = tuple(getattr(args, "k", None) or BENCH_KS)
    writers = writer_lines(data_dir)
    limit = getattr(args, "writers", BENCH_WRITERS) or len(writers)
    rows = []
    figure = getattr(args, "figure", None)
    picture = [] if figure else None
    one_line = tuple(getattr(args, "one_line_steps", None) or ())
    with tempfile.TemporaryDirectory() as workdir:
        for writer in sorted(writers)[:limit]:
            k = 1 if one_line else max(ks)
            if len(writers[writer]) < HELD_OUT + k:  # k lines besides the held-out ones
                print(
                    f"# adapt: writer {writer} left out: {len(writers[writer])} lines, "
                    f"{HELD_OUT} held out + k = {k} needed",
                    file=sys.stderr,
                )
                continue
            if one_line:
                rows += one_line_rows(model_dir, writer, writers[writer], one_line, workdir)
                continue
            minutes = getattr(args, "minutes", MINUTES)
            rows += writer_rows(model_dir, writer, writers[writer], ks, minutes, workdir, picture)
    if figure:
        from handwriting import render

        labels, strokes = zip(*picture, strict=True)
        image = render.to_image(list(strokes), labels=list(labels), line_height_px=72)
        render.save_png(image, figure)
        print(f"# wrote {figure}", file=sys.stderr)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_adapt", description=__doc__)
    parser.add_argument("--model", help="the base model (default: the shipped demo model)")
    parser.add_argument("--data", help="the data set (default data/corpus)")
    parser.add_argument(
        "--k", type=int, nargs="+", default=list(KS), help=f"lines adapted on (default {KS})"
    )
    parser.add_argument("--writers", type=int, default=0, help="first N writers (0: all)")
    parser.add_argument("--minutes", type=float, default=MINUTES, help="budget per adaptation")
    parser.add_argument(
        "--one-line-steps",
        type=int,
        nargs="+",
        metavar="STEPS",
        help="instead: held-out nats per point after adapting on one line for each step count",
    )
    parser.add_argument(
        "--figure", help="also draw each writer's line, base, primed and adapted into this PNG"
    )
    args = parser.parse_args(argv)
    for row in run(args):
        print(
            f"{row['benchmark']:<48} {row['value']:>9.4f} {row['unit']:<10} {row.get('note', '')}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
