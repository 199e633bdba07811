"""The browser page (`web/`, `handwriting/serve.py`) in a real headless Chromium.

Playwright drives Debian's `chromium` (`make browser` installs it; `make web` installs
LiteRT.js). The page runs a tiny random-weight network exported with the project's exporter;
what it writes is held against the LiteRT runner (`export/litert_runner.py`) and, with a
prime, against the library's sampler (`handwriting.sample.generate`), for the same seed.
"""

import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from model_fixtures import write_tiny_model

from export import litert_runner
from handwriting import rundir, sample, serve
from handwriting.strokes import load_prime
from handwriting.styles import load_styles
from handwriting.text import wrap

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
OFFSET_MEAN, OFFSET_STD = (0.5, -1.0), (4.0, 3.0)
# What the page may print that is no fault of it: LiteRT's native log lines (it logs its
# INFO and WARNING lines, such as "no NPU", through console.error) and headless Chromium's
# lack of a WebGPU adapter, which LiteRT reports when it sets up its environment.
HARMLESS_CONSOLE = re.compile(
    r"^(INFO|WARNING): (\[[\w./]+:\d+\]|Created TensorFlow Lite)"
    r"|^Failed to create default WebGPU device: Error: No GPU adapter found"
)
TIMEOUT_MS = 120_000  # generous: the machine is shared with training runs


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny model's folder and the export `serve.ensure_export` made of it (beside it)."""
    model_dir = tmp_path_factory.mktemp("web") / "tiny"
    model_dir.mkdir()
    write_tiny_model(model_dir, seed=11, offset_mean=OFFSET_MEAN, offset_std=OFFSET_STD)
    # Two of the demo model's styles travel with it (the cache gets its styles.json).
    with open(os.path.join(rundir.DEFAULT_MODEL_DIR, rundir.STYLES_FILENAME)) as f:
        lines = json.load(f)["lines"][:2]
    (model_dir / rundir.STYLES_FILENAME).write_text(json.dumps({"lines": lines}))
    out = serve.ensure_export(str(model_dir), log=lambda line: None)
    return str(model_dir), out


@pytest.fixture(scope="module")
def server(exported):
    serve.check_web_dir()  # names `make web` when LiteRT.js is missing
    httpd = serve.make_server(exported[1], port=0, quiet=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield serve.url_of(httpd)
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        chromium.close()


class OpenPage:
    """A page of the server with its console errors and the URLs it requested."""

    def __init__(self, browser, url):
        self.context = browser.new_context(accept_downloads=True)
        self.page = self.context.new_page()
        self.errors, self.requests = [], []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.goto(url)
        self.page.wait_for_selector("body:not([data-state=loading])", timeout=TIMEOUT_MS)
        assert self.state == "ready", self.page.inner_text("#status")

    def _console(self, message):
        if message.type in ("error", "warning") and not HARMLESS_CONSOLE.search(message.text):
            self.errors.append(f"console.{message.type}: {message.text}")

    @property
    def state(self):
        return self.page.get_attribute("body", "data-state")

    def write(self, text, *, bias, seed, width=None):
        page = self.page
        page.fill("#text", text)
        page.fill("#bias", str(bias))
        page.fill("#seed", str(seed))
        if width is not None:
            page.fill("#width", str(width))
        page.click("#write")
        page.wait_for_selector("body[data-state=done], body[data-state=error]", timeout=TIMEOUT_MS)
        assert self.state == "done", page.inner_text("#status")

    def download(self, button):
        with self.page.expect_download() as info:
            self.page.click(button)
        return info.value

    def strokes_json(self):
        with open(self.download("#save-json").path(), encoding="utf-8") as f:
            return json.load(f)

    def close(self):
        self.context.close()


@pytest.fixture
def page(browser, server):
    opened = OpenPage(browser, server)
    yield opened
    opened.close()


def test_page_loads_without_console_errors_and_only_from_its_server(page, server):
    assert "Ready" in page.page.inner_text("#status")
    # "The model's own" and the model's two styles, drawn as thumbnails.
    assert page.page.locator("#style-list button.style").count() == 3
    assert page.page.locator("#style-list .thumbnail svg path").count() > 10
    page.write("hello", bias=1, seed=0)
    page.page.check("#int8")  # the int8 sampler: compiled on first use
    page.write("hello", bias=1, seed=0)
    assert page.page.evaluate("handwritingPage.lastRun.variant") == "int8"
    assert page.errors == []
    outside = [u for u in page.requests if not u.startswith((server, "data:", "blob:"))]
    assert outside == []


def test_written_strokes_match_the_python_runner(page, exported):
    text = "hi there, how are you\nabc"
    page.write(text, bias=0.5, seed=3, width=12)
    written = page.strokes_json()
    lines = wrap(text, 12)
    assert (
        [line["text"] for line in written["lines"]] == lines == ["hi there,", "how are you", "abc"]
    )
    assert written["format"] == "handwriting-strokes"
    expected = litert_runner.Sampler(exported[1]).write_lines(lines, 0.5, 3)
    for line, (strokes, _) in zip(written["lines"], expected, strict=True):
        got = np.asarray(line["strokes"], np.float32)
        assert got.shape == strokes.shape
        np.testing.assert_allclose(got, strokes, atol=1e-3, rtol=0)
    # The picture on the page: a group per line, a path per stroke.
    svg = ET.fromstring(page.page.inner_html("#output"))
    groups = svg.findall(".//{http://www.w3.org/2000/svg}g[@data-text]")
    assert [g.get("data-text") for g in groups] == lines
    for group, (strokes, _) in zip(groups, expected, strict=True):
        assert len(group.findall("{http://www.w3.org/2000/svg}path")) == int(strokes[:, 2].sum())
    assert page.errors == []


def draw_line(page):
    """Writes two strokes on the pad with the mouse (pointer events): a wave and a bar."""
    page.locator("#pad").scroll_into_view_if_needed()
    box = page.locator("#pad").bounding_box()
    left, top, height = box["x"], box["y"], box["height"]
    page.mouse.move(left + 20, top + 0.6 * height)
    page.mouse.down()
    for i in range(1, 60):
        x = left + 20 + 4 * i
        y = top + (0.55 + 0.2 * np.sin(i / 4)) * height
        page.mouse.move(x, y)
    page.mouse.up()
    page.mouse.move(left + 40, top + 0.3 * height)
    page.mouse.down()
    page.mouse.move(left + 120, top + 0.32 * height, steps=12)
    page.mouse.up()


def test_a_line_drawn_on_the_pad_becomes_the_prime(page, exported, tmp_path):
    p = page.page
    page.write("ok", bias=0.2, seed=5)
    unprimed = page.strokes_json()["lines"][0]["strokes"]
    draw_line(p)
    p.fill("#pad-text", "mw")
    saved = page.download("#save-line")
    path = tmp_path / "my-line.json"
    saved.save_as(path)
    # What the command line's --prime reads: the cleaning of a prime file holds for it.
    prime = load_prime(str(path))
    assert prime.text == "mw"
    assert int(prime.strokes[:, 2].sum()) == 2 and prime.strokes[-1, 2] == 1
    assert np.all(prime.strokes[0, :2] == 0)  # the first point at the origin
    # The pad's band is scaled to the median ink height of the model's styles; the drawing
    # spans about 0.8 of the band.
    line_height = np.median(
        [np.ptp(np.cumsum(style.strokes[:, 1])) for style in load_styles(exported[0]).values()]
    )
    height = np.ptp(np.cumsum(prime.strokes[:, 1]))
    assert 0.6 * line_height < height < 1.0 * line_height
    # Loaded back, it is the style; the page writes in it.
    p.set_input_files("#load-line", str(path))
    p.wait_for_selector("#style-list button[data-key=mine][aria-checked=true]")
    page.write("ok", bias=0.2, seed=5)
    primed = page.strokes_json()["lines"][0]["strokes"]
    assert np.asarray(primed).shape != np.asarray(unprimed).shape or not np.allclose(
        primed, unprimed
    )
    synth = sample.load(exported[1])
    expected = sample.generate(synth, ["ok"], bias=0.2, seed=5, prime=prime)[0].strokes
    np.testing.assert_allclose(np.asarray(primed, np.float32), expected, atol=1e-3, rtol=0)
    assert page.errors == []


def test_a_shipped_style_is_the_prime(page, exported):
    styles = load_styles(exported[0])
    line_id = sorted(styles)[1]
    page.page.click(f"#style-list button[data-key='style:{line_id}']")
    page.write("so it goes", bias=0.7, seed=9)
    written = page.strokes_json()["lines"][0]["strokes"]
    synth = sample.load(exported[1])
    expected = sample.generate(synth, ["so it goes"], bias=0.7, seed=9, prime=styles[line_id])
    np.testing.assert_allclose(np.asarray(written, np.float32), expected[0].strokes, atol=1e-3)
    assert page.errors == []


def test_the_pages_draws_are_numpys(page):
    """web/draws.js against numpy.random.default_rng([seed, line]), bit for bit."""
    cases = [[0, 0], [7, 3], [2**32 - 1, 2**32 - 1], [123456789, 5], [1, 2**31]]
    got = page.page.evaluate(
        """cases => import('./draws.js').then(() => cases.map(([seed, line]) => {
            const stream = self.HandwritingDraws.seedStream(seed, line);
            return Array.from({length: 9}, () => self.HandwritingDraws.nextDouble(stream));
        }))""",
        cases,
    )
    assert got == [np.random.default_rng(case).random(9).tolist() for case in cases]


def test_a_prime_too_short_too_long_or_in_unknown_characters_is_refused(page, tmp_path):
    p = page.page
    p.locator("#pad").scroll_into_view_if_needed()
    box = p.locator("#pad").bounding_box()
    p.mouse.click(box["x"] + 50, box["y"] + 50)  # one point
    p.fill("#pad-text", "a")
    p.click("#use-pad")
    assert "at least 2" in p.inner_text("#pad-message")
    p.click("#clear")
    draw_line(p)
    assert p.inner_text("#pad-message").startswith("2 strokes")
    p.click("#undo")
    assert p.inner_text("#pad-message").startswith("1 stroke,")
    draw_line(p)
    assert p.inner_text("#pad-message").startswith("3 strokes")
    p.fill("#pad-text", "naïve")
    p.click("#use-pad")
    message = p.inner_text("#pad-message")
    assert "'ï' (U+00EF)" in message and "not in the model's alphabet" in message
    assert p.locator("#style-list button[data-key=mine]").count() == 0
    p.click("#clear")
    p.fill("#pad-text", "ab")
    p.click("#use-pad")
    assert "Write a line on the pad first" in p.inner_text("#pad-message")
    # Files: the limits of a prime file, each refusal naming the file.
    long_line = tmp_path / "long.json"
    strokes = [[1.0, 0.5, float(i % 50 == 49)] for i in range(4001)]
    long_line.write_text(json.dumps({"lines": [{"text": "long", "strokes": strokes}]}))
    p.set_input_files("#load-line", str(long_line))
    p.wait_for_selector("#pad-message:has-text('long.json')")
    assert "4001 points" in p.inner_text("#pad-message")
    assert "at most 4000" in p.inner_text("#pad-message")
    untitled = tmp_path / "untitled.json"
    untitled.write_text(json.dumps({"strokes": strokes[:10]}))
    p.fill("#pad-text", "")
    p.set_input_files("#load-line", str(untitled))
    p.wait_for_selector("#pad-message:has-text('untitled.json')")
    assert "holds no text" in p.inner_text("#pad-message")
    broken = tmp_path / "broken.json"
    broken.write_text('{"strokes": [[1, 2, "x"]], "text": "a"}')
    p.set_input_files("#load-line", str(broken))
    p.wait_for_selector("#pad-message:has-text('broken.json')")
    assert "not a number" in p.inner_text("#pad-message")
    assert p.locator("#style-list button[data-key=mine]").count() == 0
    assert page.errors == []


def test_downloads_are_a_valid_svg_and_png(page, tmp_path):
    from PIL import Image

    page.write("abc de", bias=1, seed=2)
    svg_path = tmp_path / "out.svg"
    page.download("#save-svg").save_as(svg_path)
    root = ET.parse(svg_path).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert float(root.get("width")) > 0 and float(root.get("height")) > 0
    assert root.findall(".//{http://www.w3.org/2000/svg}path")
    png_path = tmp_path / "out.png"
    page.download("#save-png").save_as(png_path)
    with Image.open(png_path) as image:
        assert image.format == "PNG"
        pixels = np.asarray(image.convert("L"))
    assert pixels.shape[0] >= 64 and pixels.min() < 128 and pixels.max() == 255  # ink on white
    assert page.errors == []


def test_an_out_of_alphabet_character_is_marked_and_never_sent(page):
    p = page.page
    p.fill("#text", "café\tau lait")
    problems = p.inner_text("#text-problems")
    assert "'é' (U+00E9) is not in the model's alphabet" in problems
    assert "(U+0009) is a control character" in problems
    marks = p.locator("#text-marks mark")
    assert marks.count() == 2 and marks.first.inner_text() == "é"
    assert p.is_disabled("#write")
    p.locator("#write").dispatch_event("click")  # even a click that reaches the button
    assert p.evaluate("handwritingPage.requests") == 0
    assert page.state == "ready"
    p.fill("#text", "cafe au lait")
    assert p.inner_text("#text-problems") == "" and p.is_enabled("#write")


def test_wrapping_is_the_command_lines(page):
    rng = np.random.default_rng(0)
    cases = [["a  b\n\n  c dddddddddddddd e", 4], ["supercalifragilistic is long", 7]]
    for _ in range(100):
        words = ["".join(rng.choice(list("ab"), rng.integers(1, 12))) for _ in range(8)]
        text = "".join(w + str(rng.choice([" ", "  ", "\n", " \n "])) for w in words)
        cases.append([text, int(rng.integers(1, 15))])
    got = page.page.evaluate(
        "cases => import('./text.js').then(m => cases.map(([t, w]) => m.wrap(t, w)))", cases
    )
    assert got == [wrap(text, width) for text, width in cases]


def get(url, path, method="GET"):
    host, port = url.split("//")[1].rstrip("/").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request(method, path)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, dict(response.getheaders()), body


def test_the_server_refuses_paths_outside_its_folder(server, exported, tmp_path):
    status, headers, body = get(server, "/")
    assert status == 200 and b"<!doctype html>" in body
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert get(server, "/model/sampler.json")[0] == 200
    assert get(server, "/model/sampler_float32.tflite")[0] == 200
    for path in (
        "/../Makefile",
        "/%2e%2e/Makefile",
        "/vendor/../../Makefile",
        "/vendor/%2e%2e/%2e%2e/setup.cfg",
        "/..%2fMakefile",
        "/%5c..%5cMakefile",
        "/vendor/.installed",
        "/model/../../Makefile",
        "//etc/passwd",
    ):
        assert get(server, path)[0] in (403, 404), path
    for path in ("/model/model.keras", "/model/config.json", "/nothing.html"):
        assert get(server, path)[0] == 404, path
    assert get(server, "/", method="POST")[0] == 405
    # A link inside the page's folder that leads out of it is refused.
    web = tmp_path / "web"
    web.mkdir()
    shutil.copy(os.path.join(serve.WEB_DIR, "index.html"), web)
    (web / "outside.txt").symlink_to(os.path.abspath("setup.cfg"))
    assert serve.resolve("/outside.txt", str(web), None) == (None, 403)
    assert serve.resolve("/index.html", str(web), None) == (str(web / "index.html"), 200)
    assert serve.resolve("/", str(web), None) == (str(web / "index.html"), 200)


def test_serve_binds_to_loopback_by_default_and_reuses_its_cache(exported, tmp_path):
    model_dir, out = exported
    assert out == os.path.realpath(model_dir) + ".export"  # the cache beside the model
    assert serve.ensure_export(model_dir, log=pytest.fail) == out  # current: not made again
    # The shipped demo model's cache goes to the user's cache folder, not into the package.
    demo = serve.cache_dir(rundir.DEFAULT_MODEL_DIR, "/tmp/cache-root")
    assert demo.startswith("/tmp/cache-root/demo-")
    # So does the cache of a model whose `<folder>.export` is a folder of the user's.
    other = tmp_path / "run"
    other.mkdir()
    assert serve.cache_dir(other, "/tmp/cache-root") == str(tmp_path / "run.export")
    (tmp_path / "run.export").mkdir()
    (tmp_path / "run.export" / "notes.txt").write_text("mine")
    assert serve.cache_dir(other, "/tmp/cache-root").startswith("/tmp/cache-root/run-")
    from handwriting.cli import build_parser

    assert build_parser().parse_args(["serve"]).host == "127.0.0.1"
    process = subprocess.Popen(
        [sys.executable, "-m", "handwriting", "serve", "--model", out, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, line + process.stderr.read() if process.poll() is not None else line
        port = int(match.group(1))
        assert listening_addresses(port) == ["127.0.0.1"]
        assert get(f"http://127.0.0.1:{port}/", "/")[0] == 200
    finally:
        process.terminate()
        process.wait(timeout=30)


def listening_addresses(port):
    """The IPv4 and IPv6 addresses of the sockets listening on TCP `port` (/proc/net/tcp*)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        with open(table) as f:
            next(f)
            for row in f:
                local, state = row.split()[1], row.split()[3]
                address, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                    if len(address) == 8:
                        found.append(".".join(str(b) for b in bytes.fromhex(address)[::-1]))
                    else:
                        found.append(address)
    return found
