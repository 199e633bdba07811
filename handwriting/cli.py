"""The command line: `python -m handwriting write "text" -o out.svg|.png|.gif|.json [options]`.

Errors in what the user gave (unknown characters, empty or oversized text, control characters,
a missing model or prime file) end with exit status 2 and a one-line message, never a
traceback. Newlines in the text break lines; other control characters are refused.
"""

import argparse
import os
import sys

from handwriting import sample

OUTPUT_KINDS = (".svg", ".png", ".gif", ".json")

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m handwriting",
        description="Text to handwriting with the network of Graves (2013).",
        epilog=EPILOG.format(limit=sample.MAX_TEXT_CHARS),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    write = commands.add_parser(
        "write",
        help="write text as handwriting to an SVG, PNG, GIF or stroke JSON file",
        description="Write text as handwriting.",
        epilog=EPILOG.format(limit=sample.MAX_TEXT_CHARS),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    write.add_argument("text", help="the text to write")
    write.add_argument(
        "-o", "--output", required=True, help="output file: .svg, .png, .gif (animated) or .json"
    )
    write.add_argument(
        "--model", default=None, help="a training run's or export's directory (default: demo model)"
    )
    write.add_argument("--bias", type=float, default=1.0, help="sampling bias >= 0 (default 1)")
    write.add_argument("--seed", type=int, default=0, help="random seed in [0, 2**32) (default 0)")
    style = write.add_mutually_exclusive_group()
    style.add_argument("--style", help="prime with this data-set line id (or a model style)")
    style.add_argument("--prime", help="prime with your handwriting: IAM-OnDB XML or stroke JSON")
    write.add_argument("--prime-text", help="the transcription of the --prime file")
    write.add_argument("--data", help="the data set folder for --style (default: the run's)")
    write.add_argument(
        "--width", type=int, default=sample.DEFAULT_WIDTH, help="characters per line (default 60)"
    )
    write.add_argument("--align", choices=("left", "center", "right"), default="left")
    write.add_argument("--line-height", type=int, default=64, help="PNG/GIF px per line")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _write(args, parser)
    except sample.SampleError as e:
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
    if args.line_height < 8:
        parser.error(f"--line-height must be >= 8, received {args.line_height}")
    if not args.text.strip():
        raise sample.SampleError("text is empty; give at least one character to write")
    if len(args.text) > sample.MAX_TEXT_CHARS:
        raise sample.SampleError(
            f"text has {len(args.text)} characters; the limit is {sample.MAX_TEXT_CHARS}"
        )
    synth = sample.load(args.model)
    prime = None
    if args.prime is not None:
        prime = sample.load_prime(args.prime, args.prime_text)
    elif args.style is not None:
        prime = sample.prime_from_dataset(synth, args.style, args.data)
    lines = sample.write_paragraph(
        synth, args.text, width=args.width, bias=args.bias, seed=args.seed, prime=prime
    )
    from handwriting import files, render

    strokes = [line.strokes for line in lines]
    if kind == ".svg":
        files.write_text(args.output, render.to_svg(strokes, align=args.align))
    elif kind == ".png":
        image = render.to_image(strokes, line_height_px=args.line_height, align=args.align)
        render.save_png(image, args.output)
    elif kind == ".gif":
        render.to_gif(strokes, args.output, line_height_px=args.line_height, align=args.align)
    else:
        sample.save_strokes_json(lines, args.output)
    unfinished = [i + 1 for i, line in enumerate(lines) if not line.finished]
    if unfinished:
        print(f"note: lines {unfinished} ran out of points before the end", file=sys.stderr)
    print(f"wrote {args.output} ({len(lines)} lines, {sum(len(s) for s in strokes)} points)")
    return 0
