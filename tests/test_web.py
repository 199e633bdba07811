"""The browser page (`web/`, `handwriting/serve.py`) in a real headless Chromium.

Playwright drives Debian's `chromium` (`make browser` installs it; `make web` installs
LiteRT.js). The page runs a tiny random-weight network exported with the project's exporter;
what it writes is held against the LiteRT runner (`export/litert_runner.py`) and, with a
prime, against the library's sampler (`handwriting.sample.generate`), for the same seed.
"Make it my hand" runs a real adaptation (a few steps) on the server, in a child process.
"""

import contextlib
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
import zipfile

import numpy as np
import pytest
from model_fixtures import write_tiny_model

from export import litert_runner
from handwriting import adapt_jobs, cli, export_cache, rundir, sample, serve
from handwriting.strokes import STROKES_FORMAT, load_prime
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
# A few steps of adaptation, enough to move a tiny random network (tests/test_adapt.py).
TINY_ADAPT = adapt_jobs.AdaptSettings(minutes=1.0, steps=20, learning_rate=0.01)
# Chromium's line for a request the server refused, when the page asks for it on purpose.
REFUSED_REQUEST = "Failed to load resource: the server responded with a status of 400"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny model's folder and the export `export_cache.ensure_export` made of it (beside it)."""
    model_dir = tmp_path_factory.mktemp("web") / "tiny"
    model_dir.mkdir()
    write_tiny_model(model_dir, seed=11, offset_mean=OFFSET_MEAN, offset_std=OFFSET_STD)
    # Two of the demo model's styles travel with it (the cache gets its styles.json).
    with open(os.path.join(rundir.DEFAULT_MODEL_DIR, rundir.STYLES_FILENAME)) as f:
        lines = json.load(f)["lines"][:2]
    (model_dir / rundir.STYLES_FILENAME).write_text(json.dumps({"lines": lines}))
    lines = []
    out = export_cache.ensure_export(str(model_dir), log=lines.append)
    # The exporter ran as a child process; its lines (the files it wrote) reach `log`.
    assert any(line.endswith(os.path.join(out, "sampler_int8.tflite")) for line in lines), lines
    return str(model_dir), out


@contextlib.contextmanager
def running_server(export_dir, **options):
    """A started `serve.make_server` on a free port: `(url, server)`; shut down after."""
    httpd = serve.make_server(export_dir, port=0, quiet=True, **options)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield serve.url_of(httpd), httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def server(exported, tmp_path_factory):
    serve.check_web_dir()  # names `make web` when LiteRT.js is missing
    with running_server(exported[1], work_dir=tmp_path_factory.mktemp("work")) as (url, _):
        yield url


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


def draw_line(page, wave=0):
    """Writes two strokes on the pad with the mouse (pointer events): a wave and a bar; `wave`
    makes the wave another."""
    page.locator("#pad").scroll_into_view_if_needed()
    box = page.locator("#pad").bounding_box()
    left, top, height = box["x"], box["y"], box["height"]
    page.mouse.move(left + 20, top + 0.6 * height)
    page.mouse.down()
    for i in range(1, 60):
        x = left + 20 + 4 * i
        y = top + (0.55 + (0.2 - 0.02 * wave) * np.sin(i / (4 + wave))) * height
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


def get(url, path, method="GET", body=None, headers=None):
    host, port = url.split("//")[1].rstrip("/").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, dict(response.getheaders()), data


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
    assert export_cache.ensure_export(model_dir, log=pytest.fail) == out  # current: not made again
    # The shipped demo model's cache goes to the user's cache folder, not into the package.
    demo = export_cache.cache_dir(rundir.DEFAULT_MODEL_DIR, "/tmp/cache-root")
    assert demo.startswith("/tmp/cache-root/demo-")
    # So does the cache of a model whose `<folder>.export` is a folder of the user's.
    other = tmp_path / "run"
    other.mkdir()
    assert export_cache.cache_dir(other, "/tmp/cache-root") == str(tmp_path / "run.export")
    (tmp_path / "run.export").mkdir()
    (tmp_path / "run.export" / "notes.txt").write_text("mine")
    assert export_cache.cache_dir(other, "/tmp/cache-root").startswith("/tmp/cache-root/run-")
    from handwriting.cli import build_parser

    assert build_parser().parse_args(["serve"]).host == "127.0.0.1"
    work = tmp_path / "work"
    command = [sys.executable, "-m", "handwriting", "serve", "--model", out, "--port", "0"]
    process = subprocess.Popen(
        [*command, "--work", str(work)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, line + process.stderr.read() if process.poll() is not None else line
        assert f"go to {work} (--work)" in process.stdout.readline()  # said where
        port = int(match.group(1))
        assert listening_addresses(port) == ["127.0.0.1"]
        assert get(f"http://127.0.0.1:{port}/", "/")[0] == 200
        # Another site's name made to point at 127.0.0.1 (DNS rebinding) is refused.
        for method in ("GET", "POST"):
            status, _, body = get(
                f"http://127.0.0.1:{port}/", "/api/adapt", method, b"{}", {"Host": "evil.test"}
            )
            assert status == 421 and b"evil.test" in body
        assert (
            get(f"http://127.0.0.1:{port}/", "/", headers={"Host": f"localhost:{port}"})[0] == 200
        )
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


# ---------------------------------------------------------------------------------------------
# Make it my hand


def stroke_lines(texts, seed=0):
    """The stroke JSON of made-up lines with `texts`: a wobbly walk of 40 points each."""
    rng = np.random.default_rng(seed)
    lines = []
    for text in texts:
        strokes = np.zeros((40, 3))
        strokes[1:, 0] = rng.normal(1.0, 0.5, 39)
        strokes[1:, 1] = rng.normal(0.0, 2.0, 39)
        strokes[[19, 39], 2] = 1
        lines.append({"text": text, "strokes": strokes.round(4).tolist()})
    return json.dumps({"format": STROKES_FORMAT, "version": 1, "lines": lines}).encode()


def post(url, body, content_type="application/json"):
    status, _, data = get(url, "/api/adapt", "POST", body, {"Content-Type": content_type})
    return status, json.loads(data)


def raw_request(url, request: bytes) -> bytes:
    """Sends `request` as it is and returns all the server answers before it closes."""
    host, port = url.split("//")[1].rstrip("/").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(1 << 16):
            answer += chunk
    return answer


def test_adapt_requests_are_checked_and_one_job_runs_at_a_time(exported, tmp_path):
    work = tmp_path / "work"
    with running_server(exported[1], work_dir=work, adapt_settings=TINY_ADAPT) as (url, httpd):
        status, headers, data = get(url, "/api/adapt")
        limits = json.loads(data)
        assert status == 200 and headers["Content-Type"] == "application/json"
        assert limits["min_lines"] == adapt_jobs.MIN_PAGE_LINES == 5
        assert limits["state"] == "idle" and limits["work_dir"] == str(work)
        models = json.loads(get(url, "/api/models")[2])["models"]
        assert [m["id"] for m in models] == ["base"]
        assert models[0]["fingerprint"] == serve.sampler_fingerprint(exported[1])
        texts = ["abc", "def", "ghi", "jkl", "mno"]
        # Bad requests: a 400 (411, 413, 415) with a JSON error that says what is wrong.
        for body, content_type, code, message in [
            (stroke_lines(texts[:4]), "application/json", 400, "4 line(s); making your hand "),
            (b'{"lines": [', "application/json", 400, "not valid JSON: line 1"),
            (b"[1, 2]", "application/json", 400, 'expected {"lines": '),
            (stroke_lines(["abc", "na\u00efve", *texts[2:]]), "application/json", 400, "line 2"),
            (stroke_lines(texts).replace(b'"abc"', b"null"), "application/json", 400, "no text"),
            (stroke_lines(texts * 11), "application/json", 400, "at most 50"),
            (stroke_lines(texts), "text/plain", 415, "application/json"),
        ]:
            status, answer = post(url, body, content_type)
            assert status == code and message in answer["error"], (message, answer)
        short = json.loads(stroke_lines(texts))
        short["lines"][3]["strokes"] = short["lines"][3]["strokes"][:2]
        assert post(url, json.dumps(short).encode())[1]["error"].startswith(
            "the lines sent: line 4: 2 points; a line has 3 to 4000"
        )
        # Too large: refused unread (a claimed 10 GB) or read and dropped (9 MiB), and the
        # server goes on.
        claim = b"POST /api/adapt HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        answer = raw_request(url, claim + b"Content-Length: 10000000000\r\n\r\n")
        assert answer.startswith(b"HTTP/1.0 413") and b"at most 8 MiB" in answer
        status, error = post(url, b" " * (9 << 20))
        assert status == 413 and "9,437,184 bytes" in error["error"]
        answer = raw_request(url, claim + b"Transfer-Encoding: chunked\r\n\r\n")
        assert answer.startswith(b"HTTP/1.0 411")
        assert get(url, "/api/adapt")[0] == 200
        assert get(url, "/api/models", "POST")[0] == 405
        assert get(url, "/api/nothing")[0] == 404
        assert get(url, "/api/my-hand.zip")[0] == 404  # no personal model yet
        assert get(url, "/my-model/sampler.json")[0] == 404
        assert get(url, "/api/adapt", "DELETE")[0] == 409  # nothing to stop
        assert not work.exists()  # nothing was started

        # One job at a time; a second is refused while it runs, and it can be stopped.
        status, started = post(url, stroke_lines(texts))
        assert status == 202 and started["state"] == "adapting" and started["lines"] == 5
        folder = started["folder"]
        assert os.path.dirname(folder) == str(work) and os.path.isfile(f"{folder}/lines.json")
        status, error = post(url, stroke_lines(texts))
        assert status == 409 and "already running" in error["error"]
        status, _, data = get(url, "/api/adapt", "DELETE")
        assert status == 200 and json.loads(data)["state"] == "cancelled"
        assert os.listdir(work) == []  # the stopped job's folder is removed
        # A job running when the server shuts down is stopped with it.
        status, started = post(url, stroke_lines(texts))
        assert status == 202
    assert os.listdir(work) == [] and httpd.jobs.status()["state"] == "cancelled"
    # Adapted models never go into the package's folder or the page's.
    for inside in (rundir.DEFAULT_MODEL_DIR, os.path.join(serve.WEB_DIR, "mine")):
        with pytest.raises(serve.ServeError, match="adapted models go elsewhere"):
            serve.make_server(exported[1], port=0, work_dir=inside)


def test_make_it_my_hand_adapts_and_the_page_writes_with_the_personal_model(
    browser, exported, tmp_path
):
    work = tmp_path / "work"
    with running_server(exported[1], work_dir=work, adapt_settings=TINY_ADAPT) as (url, _):
        page = OpenPage(browser, url)
        try:
            check_making_my_hand(page, url, exported, tmp_path)
        finally:
            page.close()


def check_making_my_hand(page, url, exported, tmp_path):
    p = page.page
    base = p.evaluate("handwritingPage.model")
    assert base["id"] == "base" and p.input_value("#model") == "base"
    page.write("in my hand", bias=0.5, seed=4)
    base_strokes = page.strokes_json()["lines"][0]["strokes"]
    # Lines written on the pad, each with its text; the button waits for the fifth.
    texts = ["mw", "wave", "ink", "hello", "abc"]
    for number, text in enumerate(texts[:4]):
        draw_line(p, wave=number)
        p.fill("#pad-text", text)
        p.click("#add-line")
        assert p.input_value("#pad-text") == "" and p.is_disabled("#adapt")
    assert p.inner_text("#hand-message").startswith("4 of 5 lines: write 1 more")
    assert p.locator("#my-lines li").count() == 4
    # A line the server refuses (put in past the page's own checks): its error is shown.
    p.evaluate(
        """() => {
            const hand = handwritingPage.hand;
            hand.lines.push({text: "na\u00efve", strokes: hand.lines[0].strokes});
            hand.show();
        }"""
    )
    p.click("#adapt")
    p.wait_for_selector("#hand-message:has-text('Not started')")
    message = p.inner_text("#hand-message")
    assert "line 5 holds characters outside the model's alphabet" in message
    p.click("#my-lines li:nth-child(5) button.remove")
    draw_line(p, wave=4)
    p.fill("#pad-text", texts[4])
    p.click("#add-line")
    assert p.is_enabled("#adapt")

    p.click("#adapt")
    p.wait_for_selector("#hand[data-state=done], #hand[data-state=failed]", timeout=TIMEOUT_MS)
    assert p.get_attribute("#hand", "data-state") == "done", p.inner_text("#hand-message")
    # Its progress was followed: adapting (steps, held-out figures), exporting, done.
    assert p.evaluate("handwritingPage.hand.seen") == ["adapting", "exporting", "done"]
    status = json.loads(get(url, "/api/adapt")[2])
    assert status["step"] == status["steps"] == TINY_ADAPT.steps and status["error"] is None
    assert status["best_held_out"] < status["held_out_before"]
    assert "your held-out line" in p.inner_text("#hand-message")
    # The page now writes with the personal model: another network, the person's styles.
    p.wait_for_selector("body[data-model=mine][data-state=ready]", timeout=TIMEOUT_MS)
    mine = p.evaluate("handwritingPage.model")
    assert mine["fingerprint"] and mine["fingerprint"] != base["fingerprint"]
    assert mine["fingerprint"] == serve.sampler_fingerprint(mine["folder"])
    assert os.path.commonpath([mine["folder"], status["folder"]]) == status["folder"]
    assert p.input_value("#model") == "mine"
    labels = p.locator("#style-list button.style span").all_inner_texts()
    assert labels == ["The model's own", *texts]
    page.write("in my hand", bias=0.5, seed=4)
    mine_strokes = page.strokes_json()["lines"][0]["strokes"]
    assert np.shape(mine_strokes) != np.shape(base_strokes) or not np.allclose(
        mine_strokes, base_strokes
    )
    # The zip: a model folder for the LiteRT runner (the page's strokes) and the command line.
    page.download("#download-hand").save_as(tmp_path / "my-hand.zip")
    with zipfile.ZipFile(tmp_path / "my-hand.zip") as archive:
        archive.extractall(tmp_path / "unzipped")
    folder = tmp_path / "unzipped" / adapt_jobs.ZIP_FOLDER
    for name in ("sampler_float32.tflite", "model.keras", "styles.json", "adapt.json"):
        assert (folder / name).is_file(), name
    expected = litert_runner.Sampler(str(folder)).write_lines(["in my hand"], 0.5, 4)[0][0]
    np.testing.assert_allclose(np.asarray(mine_strokes, np.float32), expected, atol=1e-3, rtol=0)
    svg = tmp_path / "mine.svg"
    assert cli.main(["write", "mw", "-o", str(svg), "--model", str(folder)]) == 0
    assert svg.read_text().startswith("<svg")
    # The base model stays: chosen again, it writes what it wrote.
    p.select_option("#model", "base")
    p.wait_for_selector("body[data-model=base][data-state=ready]", timeout=TIMEOUT_MS)
    page.write("in my hand", bias=0.5, seed=4)
    assert page.strokes_json()["lines"][0]["strokes"] == base_strokes
    assert [e for e in page.errors if REFUSED_REQUEST not in e] == []
