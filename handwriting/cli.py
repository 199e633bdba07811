"""The command line: `python -m handwriting write "text" -o out.svg|.png|.gif|.json [options]`,
`styles` (the styles `--style` takes), `score` (the legibility score of a model) and `serve`
(the browser page, `handwriting.serve`).

Errors in what the user gave (unknown characters, empty or oversized text, control characters,
a missing model or prime file) end with exit status 2 and a one-line message, never a
traceback. Newlines in the text break lines; other control characters are refused.
"""

import argparse
import json
import math
import os
import signal
import sys
import threading

from handwriting import adapt as adapt_lib
from handwriting import files, rundir, sample
from handwriting.errors import SampleError
from handwriting.legibility import BIASES, DEFAULT_READER_DIR, SEEDS, format_table, sample_sheet
from handwriting.legibility import score as legibility_score
from handwriting.reader import ReaderError, load_reader
from handwriting.strokes import load_prime, save_strokes_json
from handwriting.styles import dataset_line_ids, load_styles, prime_from_dataset, save_styles
from handwriting.text import DEFAULT_WIDTH, MAX_TEXT_CHARS

OUTPUT_KINDS = (".svg", ".png", ".gif", ".json")
# Pixels per line of handwriting in PNGs and GIFs: sized for a screen (a short phrase comes out
# about 400 x 150 pixels).
DEFAULT_LINE_PX = 128
# The most pixels per line: a poster's; beyond, one line's picture outgrows memory.
MAX_LINE_PX = 1024
# Data-set lines `styles` (and `write --style list`) lists per split.
DEFAULT_STYLE_LIMIT = 20

EPILOG = """examples:
  python -m handwriting write "Hello world" -o hello.svg
  python -m handwriting write "Neat and tidy" -o neat.png --bias 2 --seed 7
  python -m handwriting write "$(cat letter.txt)" -o letter.svg --width 50 --align center
  python -m handwriting write "In my style" -o mine.gif \\
      --prime my_line.xml --prime-text "the quick fox"
  python -m handwriting write "As that writer" -o copy.svg --style a01-000u-01 --model runs/demo

Text: at most {limit} characters; newlines start new lines, long text is wrapped at --width
characters; characters outside the model's alphabet and other control characters are errors.
"""


def _add_model_argument(
    command, help="a training run's or export's directory (default: demo model)"
) -> None:
    command.add_argument("--model", default=None, help=help)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m handwriting",
        description="Text to handwriting with the network of Graves (2013).",
        epilog=EPILOG.format(limit=MAX_TEXT_CHARS),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    write = commands.add_parser(
        "write",
        help="write text as handwriting to an SVG, PNG, GIF or stroke JSON file",
        description="Write text as handwriting.",
        epilog=EPILOG.format(limit=MAX_TEXT_CHARS),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    write.add_argument("text", help="the text to write")
    write.add_argument(
        "-o", "--output", required=True, help="output file: .svg, .png, .gif (animated) or .json"
    )
    _add_model_argument(write)
    write.add_argument("--bias", type=float, default=1.0, help="sampling bias >= 0 (default 1)")
    write.add_argument("--seed", type=int, default=0, help="random seed in [0, 2**32) (default 0)")
    style = write.add_mutually_exclusive_group()
    style.add_argument("--style", help="prime with this data-set line id (or a model style)")
    style.add_argument("--prime", help="prime with your handwriting: IAM-OnDB XML or stroke JSON")
    write.add_argument("--prime-text", help="the transcription of the --prime file")
    write.add_argument("--data", help="the data set folder for --style (default: the run's)")
    write.add_argument(
        "--width", type=int, default=DEFAULT_WIDTH, help="characters per line (default 60)"
    )
    write.add_argument("--align", choices=("left", "center", "right"), default="left")
    write.add_argument(
        "--height",
        "--line-height",
        dest="height",
        type=int,
        default=DEFAULT_LINE_PX,
        metavar="PX",
        help=f"PNG/GIF: pixels per line of handwriting (default {DEFAULT_LINE_PX})",
    )
    styles = commands.add_parser(
        "styles",
        help="list the styles --style takes, with an optional picture of them",
        description="List the styles that `write --style` takes: the model's own (styles.json) "
        "and the lines of its data set, when that is here.",
    )
    _add_model_argument(styles)
    styles.add_argument("--data", help="the data set folder (default: the run's)")
    styles.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_STYLE_LIMIT,
        help=f"data-set lines listed per split (default {DEFAULT_STYLE_LIMIT})",
    )
    styles.add_argument("-o", "--output", help="also draw the model's styles to this .png")
    styles.add_argument(
        "--add",
        nargs="+",
        metavar="ID",
        help="copy these lines of the data set into the model's styles.json",
    )
    score = commands.add_parser(
        "score",
        help="the legibility of a model: a reader's character error rate on its samples",
        description="Writes held-out sentences with several seeds at several sampling biases, "
        "reads them with a trained reader, and prints the character error rate (CER) per bias, "
        "with the reader's CER on the validation split's true strokes as the ceiling.",
    )
    _add_model_argument(score)
    score.add_argument("--reader", default=None, help="a reader directory (default: the shipped)")
    score.add_argument(
        "--data",
        help="the data set of the ceiling (default: the run's; without it, the "
        "reader's recorded validation CER)",
    )
    score.add_argument(
        "--seeds", type=int, default=len(SEEDS), help=f"seeds per sentence (default {len(SEEDS)})"
    )
    score.add_argument(
        "--bias",
        type=float,
        nargs="+",
        default=list(BIASES),
        help=f"sampling biases (default {' '.join(format(b, 'g') for b in BIASES)})",
    )
    score.add_argument("--json", action="store_true", help="print the score as JSON")
    score.add_argument(
        "--picture",
        metavar="PNG",
        help="also draw the first 8 sentences at bias 1 (seed 0), each labelled with what the "
        "reader read and its CER",
    )
    nll = commands.add_parser(
        "nll",
        help="how likely given handwriting is under a model (nats per point, teacher-forced)",
        description="Prints the mean negative log-likelihood of given lines under a model, the "
        "network reading each line's true points (teacher forcing), optionally after a prime. "
        "Lower is more likely: closer to the model's hand.",
    )
    _add_model_argument(nll)
    nll.add_argument("--lines", required=True, help="stroke JSON of the lines, each with its text")
    nll.add_argument("--prime", help="read this line first: IAM-OnDB XML or stroke JSON")
    nll.add_argument("--prime-text", help="the transcription of the --prime file")
    nll.add_argument("--json", action="store_true", help="print the figures as JSON")
    adapt = commands.add_parser(
        "adapt",
        help="fine-tune a model on a few lines of one writer's handwriting",
        description="Fine-tunes a synthesis model on a writer's lines (stroke JSON, each line "
        "with its text), holding some out to stop before it overfits (from a single line: a "
        "fixed number of steps), and writes a model directory that write, export and serve "
        "take.",
    )
    _add_model_argument(adapt, "the model to start from (default: the demo model)")
    adapt.add_argument("--lines", required=True, help="stroke JSON of the writer's lines")
    adapt.add_argument("--out", required=True, help="a new or empty folder for the result")
    adapt.add_argument(
        "--minutes",
        type=float,
        default=adapt_lib.DEFAULT_MINUTES,
        help=f"time budget in minutes (default {adapt_lib.DEFAULT_MINUTES:g})",
    )
    adapt.add_argument(
        "--steps",
        type=int,
        default=None,
        help=f"steps at most (default {adapt_lib.DEFAULT_STEPS}; from a single line, which "
        f"leaves none to hold out, exactly {adapt_lib.ONE_LINE_STEPS})",
    )
    adapt.add_argument(
        "--learning-rate",
        type=float,
        default=adapt_lib.LEARNING_RATE,
        help=f"Adam's step size (default {adapt_lib.LEARNING_RATE:g})",
    )
    adapt.add_argument(
        "--part",
        choices=adapt_lib.PARTS,
        default="all",
        help="what moves: the whole network, or the upper LSTMs and the head (default all)",
    )
    adapt.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    adapt.add_argument(
        "--progress",
        metavar="FILE",
        help="write the progress as JSON to FILE (replaced atomically) for another program",
    )
    serve = commands.add_parser(
        "serve",
        help="the browser page: write in your own hand, generated in the browser",
        description="Serves the browser page (web/) and the model exported for it (exported "
        "once and cached: beside the model, or in the user's cache folder when the model's "
        "folder cannot hold it). Everything the page loads comes from this server. The page's "
        '"Make it my hand" adapts the model to lines written on its pad (python -m handwriting '
        "adapt, then python -m export, in the background) and writes the result into --work.",
    )
    _add_model_argument(serve)
    serve.add_argument(
        "--work",
        metavar="DIR",
        help="the folder of the models adapted in the page, one folder each with its export "
        "and zip (default: $XDG_CACHE_HOME/handwriting/adapted, else "
        "~/.cache/handwriting/adapted)",
    )
    serve.add_argument(
        "--adapt-minutes",
        type=float,
        default=adapt_lib.DEFAULT_MINUTES,
        help=f"time budget of an adaptation in the page (default {adapt_lib.DEFAULT_MINUTES:g})",
    )
    serve.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0: any)")
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only)",
    )
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "styles":
            return _styles(args, parser)
        if args.command == "score":
            return _score(args, parser)
        if args.command == "nll":
            return _nll(args, parser)
        if args.command == "adapt":
            return _adapt(args)
        if args.command == "serve":
            return _serve(args, parser)
        return _write(args, parser)
    except (SampleError, ReaderError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _write(args, parser) -> int:
    kind = os.path.splitext(args.output)[1].lower()
    if kind not in OUTPUT_KINDS:
        parser.error(f"--output must end with one of {', '.join(OUTPUT_KINDS)}: {args.output!r}")
    if args.prime_text is not None and args.prime is None:
        parser.error("--prime-text goes with --prime FILE")
    if args.width < 1:
        parser.error(f"--width must be >= 1, received {args.width}")
    if not 8 <= args.height <= MAX_LINE_PX:
        parser.error(f"--height must be in [8, {MAX_LINE_PX}], received {args.height}")
    if not (math.isfinite(args.bias) and args.bias >= 0):
        parser.error(f"--bias must be a number >= 0, received {args.bias}")
    if not 0 <= args.seed < 2**32:
        parser.error(f"--seed must be in [0, 2**32), received {args.seed}")
    problem = files.output_problem(args.output)
    if problem:
        raise SampleError(f"--output: {problem}")
    if not args.text.strip():
        raise SampleError("text is empty; give at least one character to write")
    if len(args.text) > MAX_TEXT_CHARS:
        raise SampleError(f"text has {len(args.text)} characters; the limit is {MAX_TEXT_CHARS}")
    synth = sample.load(args.model)
    if args.style == "list":
        _list_styles(synth, args.data, limit=DEFAULT_STYLE_LIMIT)
        return 0
    prime = None
    if args.prime is not None:
        prime = load_prime(args.prime, args.prime_text)
    elif args.style is not None:
        prime = prime_from_dataset(synth, args.style, args.data)
    lines = sample.write_paragraph(
        synth, args.text, width=args.width, bias=args.bias, seed=args.seed, prime=prime
    )
    from handwriting import render

    strokes = [line.strokes for line in lines]
    if kind == ".svg":
        files.write_text(args.output, render.to_svg(strokes, align=args.align))
    elif kind == ".png":
        image = render.to_image(strokes, line_height_px=args.height, align=args.align)
        render.save_png(image, args.output)
    elif kind == ".gif":
        render.to_gif(strokes, args.output, line_height_px=args.height, align=args.align)
    else:
        save_strokes_json(lines, args.output)
    unfinished = [i + 1 for i, line in enumerate(lines) if not line.finished]
    if unfinished:
        print(f"note: lines {unfinished} ran out of points before the end", file=sys.stderr)
    print(f"wrote {args.output} ({len(lines)} lines, {sum(len(s) for s in strokes)} points)")
    return 0


def _styles(args, parser) -> int:
    if args.limit < 0:
        parser.error(f"--limit must be >= 0, received {args.limit}")
    if args.output is not None:
        if os.path.splitext(args.output)[1].lower() != ".png":
            parser.error(f"--output must end with .png: {args.output!r}")
        problem = files.output_problem(args.output)
        if problem:
            raise SampleError(f"--output: {problem}")
    synth = sample.load(args.model)
    if args.add:
        styles = load_styles(synth.directory)
        for line_id in args.add:
            styles[line_id] = prime_from_dataset(synth, line_id, args.data)
        path = save_styles(synth.directory, styles)
        print(f"wrote {path} ({len(styles)} styles)")
    styles = _list_styles(synth, args.data, limit=args.limit)
    if args.output is not None:
        if not styles:
            raise SampleError(
                f"{synth.directory}: the model has no {rundir.STYLES_FILENAME}; nothing to draw"
            )
        from handwriting import render

        ids = sorted(styles)
        image = render.to_image(
            [styles[i].strokes for i in ids],
            labels=[f"{i}: {styles[i].text}" for i in ids],
            line_height_px=64,
        )
        render.save_png(image, args.output)
        print(f"wrote {args.output} ({len(ids)} styles)")
    return 0


def _score(args, parser) -> int:
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, received {args.seeds}")
    for bias in args.bias:
        if not (math.isfinite(bias) and bias >= 0):
            parser.error(f"--bias must be numbers >= 0, received {bias}")
    if args.picture is not None:
        if os.path.splitext(args.picture)[1].lower() != ".png":
            parser.error(f"--picture must end with .png: {args.picture!r}")
        if 1.0 not in args.bias:
            parser.error("--picture draws the samples at bias 1: keep 1 among --bias")
        problem = files.output_problem(args.picture)
        if problem:
            raise SampleError(f"--picture: {problem}")
    synth = sample.load(args.model)
    reader = load_reader(args.reader if args.reader is not None else DEFAULT_READER_DIR)
    result = legibility_score(
        synth, reader, biases=args.bias, seeds=tuple(range(args.seeds)), data_dir=args.data
    )
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        print(format_table(result))
    if args.picture is not None:
        from handwriting import render

        render.save_png(sample_sheet(result), args.picture)
        if not args.json:
            print(f"wrote {args.picture}")
    return 0


def _nll(args, parser) -> int:
    if args.prime_text is not None and args.prime is None:
        parser.error("--prime-text goes with --prime FILE")
    from handwriting.likelihood import line_likelihoods, summary
    from handwriting.strokes import load_lines

    synth = sample.load(args.model)
    lines = load_lines(args.lines)
    prime = load_prime(args.prime, args.prime_text) if args.prime is not None else None
    found = line_likelihoods(synth, lines, prime, source=args.lines)
    figures = summary(found)
    if args.json:
        per_line = [{"text": f.text, "nats": f.nats, "points": f.points} for f in found]
        print(json.dumps({"model": synth.directory, **figures, "per_line": per_line}))
        return 0
    print(f"{'nats/point':>10} {'points':>7}  text")
    for f in found:
        print(f"{f.nats_per_point:10.4f} {f.points:7d}  {f.text}")
    print(
        f"{figures['nats_per_point']:10.4f} {sum(f.points for f in found):7d}  "
        f"all {figures['lines']} lines ({figures['nats_per_line']:.2f} nats per line)"
        + (f", primed with {prime.source}" if prime is not None else "")
    )
    return 0


def _serve(args, parser) -> int:
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be in [0, 65535], received {args.port}")
    if not (math.isfinite(args.adapt_minutes) and args.adapt_minutes > 0):
        parser.error(f"--adapt-minutes must be > 0, received {args.adapt_minutes}")
    from handwriting import serve
    from handwriting.adapt_jobs import AdaptSettings
    from handwriting.export_cache import ensure_export

    try:
        serve.check_web_dir()
        export_dir = ensure_export(args.model)
        server = serve.make_server(
            export_dir,
            host=args.host,
            port=args.port,
            work_dir=args.work,
            adapt_settings=AdaptSettings(minutes=args.adapt_minutes),
        )
    except serve.ServeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the port is taken, the address is not this machine's
        print(f"error: --host {args.host} --port {args.port}: {e.strerror or e}", file=sys.stderr)
        return 2
    print(f"serving the page on {serve.url_of(server)} (model: {export_dir}); Ctrl-C stops")
    print(f'models adapted in the page ("Make it my hand") go to {server.jobs.work_dir} (--work)')
    sys.stdout.flush()
    if threading.current_thread() is threading.main_thread():
        # SIGTERM ends the server as Ctrl-C does: a running adaptation is stopped with it.
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


def _adapt(args) -> int:
    from handwriting.strokes import load_lines

    if args.progress and files.output_problem(args.progress):
        raise SampleError(f"--progress: {files.output_problem(args.progress)}")
    adapt_lib.adapt(
        args.model,
        load_lines(args.lines),
        args.out,
        minutes=args.minutes,
        steps=args.steps,
        learning_rate=args.learning_rate,
        part=args.part,
        seed=args.seed,
        source=args.lines,
        progress=adapt_lib.progress_file(args.progress) if args.progress else None,
    )
    return 0


def _list_styles(synth, data_dir, *, limit: int) -> dict:
    """Prints the style ids `--style` takes: the model's, then the data set's (up to `limit`).

    Returns the model's styles, `{id: Prime}`.
    """
    styles = load_styles(synth.directory)
    if styles:
        print(f"Styles of the model ({os.path.join(synth.directory, rundir.STYLES_FILENAME)}):")
        for line_id in sorted(styles):
            print(f"  {line_id:<16} {styles[line_id].text}")
    listed = dataset_line_ids(synth, data_dir, limit=limit) if limit else None
    if listed is not None:
        where, splits = listed
        for split, (total, lines) in splits.items():
            more = f", the first {len(lines)}" if len(lines) < total else ""
            print(f"Lines of the data set {where}, split {split} ({total} lines{more}):")
            for line_id, text in lines:
                print(f"  {line_id:<16} {text}")
    elif limit:
        where = data_dir or synth.config.data.dir
        print(f"The model's data set ({where}) is not here; --data DIR lists the lines of one.")
    print("Write in one of them: python -m handwriting write TEXT -o out.svg --style ID")
    return styles
