"""Draws `docs/web.png`: the page after writing a sentence in a hand written on its pad.

    python web/tools/screenshot.py [--model DIR] [-o docs/web.png]

Starts the page's server (`handwriting.serve`) on a free port of 127.0.0.1, opens it in
Debian's headless chromium (Playwright), writes a line on the pad with the mouse (the pointer
events replay a line of the model's `styles.json`, the hand a person would give), types what
it says, takes it as the style, writes a sentence and saves a screenshot of the page.
"""

import argparse
import json
import os
import sys
import threading

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHROMIUM = "/usr/bin/chromium"
SENTENCE = "Written in the browser, in a hand drawn on its pad."
TIMEOUT_MS = 300_000


def replay_line(page, strokes):
    """Writes `strokes` ((T, 3) data units, y up) on the pad with the mouse, its ink scaled
    to the pad's band and the whole line fitted to its width."""
    pad = page.locator("#pad")
    pad.scroll_into_view_if_needed()
    box = pad.bounding_box()
    positions = np.cumsum(strokes[:, :2], axis=0) * [1, -1]  # y down
    low, high = positions.min(axis=0), positions.max(axis=0)
    scale = min(0.5 * box["height"] / (high[1] - low[1]), 0.9 * box["width"] / (high[0] - low[0]))
    xy = (positions - low) * scale + [
        box["x"] + 0.05 * box["width"],
        box["y"] + 0.25 * box["height"],
    ]
    down = False
    for (x, y), end in zip(xy, strokes[:, 2] > 0.5, strict=True):
        page.mouse.move(float(x), float(y))
        if not down:
            page.mouse.down()
            down = True
        if end:
            page.mouse.up()
            down = False
    if down:
        page.mouse.up()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: the demo model)")
    parser.add_argument("-o", "--output", default=os.path.join(ROOT, "docs", "web.png"))
    parser.add_argument("--style", type=int, default=1, help="the styles.json line to replay")
    parser.add_argument("--seed", type=int, default=2)
    args = parser.parse_args(argv)
    sys.path.insert(0, ROOT)
    from playwright.sync_api import sync_playwright

    from handwriting import export_cache, serve

    export_dir = export_cache.ensure_export(args.model)
    with open(os.path.join(export_dir, "styles.json"), encoding="utf-8") as f:
        line = json.load(f)["lines"][args.style]
    httpd = serve.make_server(export_dir, port=0, quiet=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM)
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            page.goto(serve.url_of(httpd))
            page.wait_for_selector("body[data-state=ready]", timeout=TIMEOUT_MS)
            replay_line(page, np.asarray(line["strokes"], np.float64))
            page.fill("#pad-text", line["text"])
            page.click("#use-pad")
            page.fill("#text", SENTENCE)
            page.fill("#bias", "1.5")
            page.fill("#seed", str(args.seed))
            page.click("#write")
            page.wait_for_selector("body[data-state=done]", timeout=TIMEOUT_MS)
            page.locator("#styles-title").scroll_into_view_if_needed()
            page.screenshot(path=args.output, full_page=True)
            print(f"wrote {args.output}: {page.inner_text('#status')}")
            browser.close()
    finally:
        httpd.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
