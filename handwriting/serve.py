"""`python -m handwriting serve`: the browser page (`web/`) and the exported model, over HTTP.

    server = make_server(export_dir, host="127.0.0.1", port=8000)
    server.serve_forever()

The page runs the exported TFLite step in the browser (LiteRT.js in a Web Worker), so the
server mostly hands out files, all from the local disk:

    /                the page, `web/index.html`
    /<path>          a regular file below `web/` (the page's scripts, styles, `vendor/`)
    /model/<name>    one of `MODEL_FILES` of the export (the samplers, their metadata and the
                     model's `styles.json`)
    /my-model/<name> the same of the personal model, once the page has made one

and runs "Make it my hand" (`handwriting.adapt_jobs`): the model adapted to lines the person
wrote on the page's pad, one job at a time, in a child process:

    GET /api/adapt         the job's state as JSON (state, step, held-out nats per point,
                           elapsed seconds and budget, error) and the limits of a request
                           (`min_lines`: the lines the page asks for first, ...)
    POST /api/adapt        starts a job on the stroke JSON of the lines (application/json, at
                           most `MAX_REQUEST_BYTES`): 202, or a JSON `{"error"}` with 400 (bad
                           lines), 409 (a job is running), 411, 413 (too large) or 415
    DELETE /api/adapt      stops the running job (409 when none)
    GET /api/models        the models the page can run: the base model and, once made, the
                           personal one, each with its URL and fingerprint (`sampler_fingerprint`)
    GET /api/my-hand.zip   the personal model's export folder, zipped

Adapted models go to the work folder (`make_server(work_dir=...)`, `serve --work`; default
`default_work_dir()`, in the user's cache folder), never into the package's or the
page's folder. Anything else is refused: a path that leaves `web/` (`..`, an encoded slash or
backslash, a link pointing outside), a hidden file, another method. The same layout published
on a static host (the files of `web/` with the export's files in `model/`) is the whole page,
without "Make it my hand".

The export the page reads comes from `handwriting.export_cache.ensure_export`: an export's
folder as it is, or a training run's exported once into a cache.
"""

import functools
import hashlib
import http.server
import ipaddress
import json
import os
import shutil
import sys
import urllib.parse

from handwriting import adapt_jobs, export_cache, files, rundir
from handwriting.adapt_jobs import MAX_REQUEST_BYTES, AdaptJobs, RequestError
from handwriting.alphabet import Alphabet
from handwriting.errors import ServeError
from handwriting.export_layout import FLOAT_FILENAME, INT8_FILENAME, METADATA_FILENAME

# The page's folder: `web/` beside the package.
WEB_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "web")
# What `make web` writes into `web/vendor/` (LiteRT.js bundled from npm, its wasm runtimes).
VENDOR_FILES = ("vendor/litert.js", "vendor/wasm/litert_wasm_internal.wasm")
# The URL folder of the export's files, and the only files of the export it serves.
MODEL_URL = "/model/"
MODEL_FILES = (FLOAT_FILENAME, INT8_FILENAME, METADATA_FILENAME, rundir.STYLES_FILENAME)
# The URL folder of the personal model's export (the same `MODEL_FILES`).
PERSONAL_MODEL_URL = "/my-model/"
# The page's requests about "Make it my hand" (see the module's doc).
API_URL = "/api/"
ADAPT_URL = "/api/adapt"
MODELS_URL = "/api/models"
ZIP_URL = "/api/my-hand.zip"
# Seconds a connection may wait on its client: a slow or silent client holds no thread longer.
REQUEST_TIMEOUT = 30
# A refused request's body is read and dropped up to this size, so that its client reads the
# answer rather than a reset connection; a larger one is not read, the connection is closed.
DISCARD_BYTES = 64 * 1024 * 1024
# The kinds of file served, by extension (any other is not found).
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".wasm": "application/wasm",
    ".tflite": "application/octet-stream",  # the model's samplers (under /model/ only)
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".md": "text/plain; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}
# Everything the page loads comes from this server: no CDN, no other host. LiteRT.js compiles
# WebAssembly ('wasm-unsafe-eval'); downloads and the PNG are blob: and data: URLs.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; "
    "connect-src 'self'; img-src 'self' blob: data:; style-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# `/model/styles.json` of a model that has none (the page then shows no thumbnails).
NO_STYLES = b'{"lines": []}\n'
DEFAULT_HOST = "127.0.0.1"
# The names of this machine a Host header may give when the server listens on it only.
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
DEFAULT_PORT = 8000


# ---------------------------------------------------------------------------------------------
# The page's folders and models


def check_web_dir(web_dir=WEB_DIR) -> None:
    """Raises `ServeError` unless `web_dir` holds the page and the files `make web` installs."""
    if not os.path.isfile(os.path.join(web_dir, "index.html")):
        raise ServeError(f"{web_dir}: no index.html; the page's folder is missing")
    missing = [name for name in VENDOR_FILES if not os.path.isfile(os.path.join(web_dir, name))]
    if missing:
        raise ServeError(
            f"{web_dir}: {', '.join(missing)} missing; `make web` installs LiteRT.js from npm"
        )


def default_work_dir() -> str:
    """Where the page's adapted models go by default: `$XDG_CACHE_HOME/handwriting/adapted`,
    else `~/.cache/handwriting/adapted` (beside the exports' cache)."""
    return os.path.join(export_cache.user_cache_home(), "adapted")


@functools.lru_cache(maxsize=8)
def sampler_fingerprint(export_dir):
    """sha256 of an export's float32 sampler: which network the page runs (None: no sampler).

    Cached by folder: an export the server hands out is not rewritten while it runs.
    """
    digest = hashlib.sha256()
    try:
        with open(os.path.join(export_dir, FLOAT_FILENAME), "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# The server


class PageHandler(http.server.BaseHTTPRequestHandler):
    """Serves the page's folder, the models' `MODEL_FILES` and the `/api/` requests."""

    server_version = "handwriting"
    web_dir = WEB_DIR  # set per server by `make_server`
    export_dir = None
    quiet = False
    timeout = REQUEST_TIMEOUT
    loopback = True  # bound to this machine only: the Host header must name it too

    def _host_refused(self) -> bool:
        """Refuses (421) a request whose Host header does not name this machine when the
        server listens on it only: a page of another site whose name was made to point at
        127.0.0.1 (DNS rebinding) could otherwise start jobs and read the person's lines."""
        if not self.loopback:
            return False
        host = urllib.parse.urlsplit("//" + (self.headers.get("Host") or "")).hostname or ""
        if host in LOOPBACK_NAMES:
            return False
        self.close_connection = True  # a body sent with it is not read
        self._send_json(421, {"error": f"Host {host!r}: this server answers {LOOPBACK_NAMES}"})
        return True

    def do_GET(self):  # the names BaseHTTPRequestHandler calls
        if not self._host_refused():
            self._get(with_body=True)

    def do_HEAD(self):
        if not self._host_refused():
            self._get(with_body=False)

    def do_POST(self):
        self._adapt_request(lambda jobs: jobs.start(self._read_body()), 202)

    def do_DELETE(self):
        self._adapt_request(lambda jobs: jobs.cancel(), 200)

    def _adapt_request(self, act, status):
        """POST and DELETE, of `/api/adapt` only: `act(jobs)`'s status as JSON, or its error."""
        if self._host_refused():
            return
        if self._url_path() != ADAPT_URL:
            self._refuse_method()
            return
        try:
            answer = act(self.server.jobs)
        except RequestError as e:
            self._send_json(e.status, {"error": str(e)})
            return
        self._send_json(status, answer)

    def _refuse_method(self):
        self.send_error(405, "only GET and HEAD (and POST, DELETE of /api/adapt)")

    do_PUT = do_PATCH = do_OPTIONS = _refuse_method

    def _url_path(self) -> str:
        return urllib.parse.urlsplit(self.path).path

    def _get(self, with_body):
        path = self._url_path()
        if path == ADAPT_URL:
            self._send_json(200, self.server.jobs.status(), with_body)
        elif path == MODELS_URL:
            self._send_json(200, {"models": self._models()}, with_body)
        elif path == ZIP_URL:
            self._send_zip(with_body)
        elif path.startswith(API_URL):
            self._send_json(404, {"error": f"{path}: no such request"}, with_body)
        else:
            self._send(with_body)

    def _models(self) -> list:
        """The models the page can run: the base model, then the personal one if any."""
        models = [
            {
                "id": "base",
                "label": "Base model",
                "url": MODEL_URL.lstrip("/"),
                "fingerprint": sampler_fingerprint(self.export_dir),
            }
        ]
        personal = self.server.jobs.personal
        if personal is not None:
            models.append(
                {
                    "id": "mine",
                    "label": "My hand",
                    "url": PERSONAL_MODEL_URL.lstrip("/"),
                    "fingerprint": sampler_fingerprint(personal.export_dir),
                    "download": ZIP_URL.lstrip("/"),
                    "folder": personal.export_dir,
                    "adapt": personal.record,
                }
            )
        return models

    def _personal_dir(self):
        personal = self.server.jobs.personal
        return None if personal is None else personal.export_dir

    def _send(self, with_body):
        path, status = resolve(self.path, self.web_dir, self.export_dir, self._personal_dir())
        if path is None and status == 404 and self._url_path() in _STYLES_URLS:
            data, path = NO_STYLES, "styles.json"  # a model without styles: none to show
        elif path is None:
            self.send_error(status, "refused" if status == 403 else "not found")
            return
        else:
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError:
                self.send_error(404, "not found")
                return
        self.send_response(200)
        kind = CONTENT_TYPES.get(os.path.splitext(path)[1].lower(), "application/octet-stream")
        self._send_headers(kind, len(data))
        if with_body:
            self.wfile.write(data)

    def _send_headers(self, kind, length, cache="no-cache"):
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(length))
        self.send_header("Cache-Control", cache)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        self.end_headers()

    def _send_json(self, status, obj, with_body=True):
        data = (json.dumps(obj) + "\n").encode("utf-8")
        self.send_response(status)
        self._send_headers("application/json", len(data), cache="no-store")
        if with_body:
            self.wfile.write(data)

    def _send_zip(self, with_body):
        personal = self.server.jobs.personal
        try:
            f = open(personal.zip_path, "rb") if personal is not None else None
        except OSError:
            f = None
        if f is None:
            self._send_json(404, {"error": "no personal model yet: make it my hand first"})
            return
        with f:
            self.send_response(200)
            self.send_header("Content-Disposition", f'attachment; filename="{ZIP_NAME}"')
            self._send_headers("application/zip", os.fstat(f.fileno()).st_size)
            if with_body:
                shutil.copyfileobj(f, self.wfile)

    def _read_body(self) -> bytes:
        """The request's body: JSON of at most `MAX_REQUEST_BYTES`, else `RequestError`."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise RequestError("send the lines with a Content-Length, not in chunks", 411)
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            raise RequestError("the request has no valid Content-Length", 411)
        if length > MAX_REQUEST_BYTES:
            self._discard(length)
            raise RequestError(
                f"the request has {length:,} bytes; the server reads at most "
                f"{MAX_REQUEST_BYTES >> 20} MiB ({adapt_jobs.MAX_PAGE_LINES} lines)",
                413,
            )
        if self.headers.get_content_type() != "application/json":
            self._discard(length)
            raise RequestError("send the lines as application/json (the stroke JSON)", 415)
        data = self.rfile.read(length)
        if len(data) < length:
            self.close_connection = True
            raise RequestError(f"the request ended after {len(data)} of {length} bytes")
        return data

    def _discard(self, length):
        """Reads and drops a refused body (up to `DISCARD_BYTES`, a second per read at most),
        then closes the connection."""
        self.close_connection = True
        if length > DISCARD_BYTES:
            return
        self.connection.settimeout(1.0)
        try:
            while length > 0:
                chunk = self.rfile.read(min(length, 1 << 16))
                if not chunk:
                    break
                length -= len(chunk)
        except OSError:  # the client stopped sending or went away
            pass

    def log_message(self, format, *args):
        if not self.quiet:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")


# The URLs of the models' styles: an empty list when a model has none.
_STYLES_URLS = (MODEL_URL + rundir.STYLES_FILENAME, PERSONAL_MODEL_URL + rundir.STYLES_FILENAME)
# The name of the personal model's zip when downloaded.
ZIP_NAME = "my-hand.zip"


def resolve(url_path, web_dir, export_dir, personal_dir=None) -> tuple:
    """The file a request path names: `(path, 200)`, or `(None, 403 or 404)`.

    403 for a path that is not plainly a file below the page's folder (`..`, a hidden name,
    a backslash, NUL, a link leading outside), 404 for one that does not exist there.
    `/model/` names the files of `export_dir`, `/my-model/` those of `personal_dir`.
    """
    path = urllib.parse.urlsplit(url_path).path
    try:
        decoded = urllib.parse.unquote(path, errors="strict")
    except UnicodeDecodeError:
        return None, 403
    if "\0" in decoded or "\\" in decoded or not decoded.startswith("/"):
        return None, 403
    parts = decoded.split("/")[1:]
    if any(part.startswith(".") for part in parts) or "" in parts[:-1]:
        return None, 403  # `..`, hidden names, doubled slashes: not a plain path
    models = ((MODEL_URL, export_dir), (PERSONAL_MODEL_URL, personal_dir))
    model = next(((url, d) for url, d in models if decoded.startswith(url)), None)
    if model is not None:
        url, directory = model
        name = decoded[len(url) :]
        if directory is None or name not in MODEL_FILES:
            return None, 404
        candidate, root = os.path.join(directory, name), directory
    else:
        relative = "/".join(parts) or "index.html"
        if decoded.endswith("/") and decoded != "/":
            relative += "/index.html"
        candidate, root = os.path.join(web_dir, *relative.split("/")), web_dir
    real, real_root = os.path.realpath(candidate), os.path.realpath(root)
    if os.path.commonpath([real, real_root]) != real_root:
        return None, 403  # a link leading out of the folder
    if os.path.splitext(real)[1].lower() not in CONTENT_TYPES:
        return None, 404  # only the kinds of file a page is made of (not web/tools/*.py)
    if not os.path.isfile(real):
        return None, 404
    return real, 200


class PageServer(http.server.ThreadingHTTPServer):
    """The page's HTTP server (a thread per request) with its adaptation jobs (`jobs`);
    `server_close` also stops a running job."""

    daemon_threads = True

    def __init__(self, address, handler, jobs: AdaptJobs):
        self.jobs = jobs
        super().__init__(address, handler)

    def server_close(self):
        super().server_close()
        self.jobs.close()


def check_work_dir(work_dir, web_dir=WEB_DIR) -> str:
    """The absolute `work_dir`; `ServeError` when it lies in the package's or the page's
    folder (the page's would hand the person's lines out)."""
    work_dir = os.path.abspath(work_dir)
    real = os.path.realpath(work_dir)
    package = os.path.dirname(os.path.abspath(__file__))
    for folder, what in ((package, "the package's folder"), (web_dir, "the page's folder")):
        folder = os.path.realpath(folder)
        if os.path.commonpath([real, folder]) == folder:
            raise ServeError(
                f"--work {work_dir}: inside {what} {folder}; adapted models go elsewhere "
                f"(default {default_work_dir()})"
            )
    return work_dir


def make_server(
    export_dir,
    *,
    host=DEFAULT_HOST,
    port=DEFAULT_PORT,
    web_dir=WEB_DIR,
    quiet=False,
    work_dir=None,
    adapt_settings=None,
):
    """An HTTP server of the page, the export and "Make it my hand"; not started.

    Args:
        export_dir: the page's export (`ensure_export`), also the model adapting starts from.
        host, port: where it listens; `port` 0 takes a free port (`server.server_address`
            tells which).
        web_dir: the page's folder.
        quiet: no log of requests and jobs.
        work_dir: where adapted models go (default `default_work_dir()`).
        adapt_settings: `adapt_jobs.AdaptSettings` of the jobs (default: adapt's defaults).

    Raises:
        ServeError: the page's folder is incomplete, or `work_dir` lies inside the package's
            or the page's folder.
    """
    check_web_dir(web_dir)
    work_dir = check_work_dir(work_dir or default_work_dir(), web_dir)
    handler = type(
        "Handler",
        (PageHandler,),
        {
            "web_dir": os.path.abspath(web_dir),
            "export_dir": export_dir,
            "quiet": quiet,
            "loopback": _is_loopback(host),
        },
    )
    log = _silent if quiet else _print
    jobs = AdaptJobs(export_dir, work_dir, export_alphabet(export_dir), adapt_settings, log=log)
    return PageServer((host, port), handler, jobs)


def _is_loopback(host) -> bool:
    """Whether `host` (an address or name to listen on) is this machine only."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def export_alphabet(export_dir):
    """The `Alphabet` of an export's `sampler.json`, or None when it cannot be read."""
    try:
        return Alphabet.from_json(
            files.read_json(os.path.join(export_dir, METADATA_FILENAME))["alphabet"]
        )
    except (OSError, ValueError, KeyError, TypeError):  # files.JSONFileError is a ValueError
        return None


def _print(line) -> None:
    print(line, flush=True)


def _silent(line) -> None:
    pass


def url_of(server) -> str:
    """The page's URL on `server`."""
    host, port = server.server_address[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"
