"""`python -m handwriting serve`: the browser page (`web/`) and the exported model, over HTTP.

    server = make_server(export_dir, host="127.0.0.1", port=8000)
    server.serve_forever()

The page runs the exported TFLite step in the browser (LiteRT.js in a Web Worker), so the
server only hands out files, all from the local disk:

    /                the page, `web/index.html`
    /<path>          a regular file below `web/` (the page's scripts, styles, `vendor/`)
    /model/<name>    one of `MODEL_FILES` of the export (the samplers, their metadata and the
                     model's `styles.json`)

Anything else is refused: a path that leaves `web/` (`..`, an encoded slash or backslash, a
link pointing outside), a hidden file, a method other than GET and HEAD. The same layout
published on a static host (the files of `web/` with the export's files in `model/`) is the
whole page.

`ensure_export` finds or makes the export the page needs. A folder `python -m export` wrote
is served as it is; a training run's folder is exported once into a cache beside it
(`<folder>.export`) or, when that cannot be written there (the shipped demo model among the
package's files, a read-only folder), into the user's cache folder
(`$XDG_CACHE_HOME/handwriting/exports`, else `~/.cache/...`). The cache records the
fingerprint of the model's files and is made again when they change.
"""

import hashlib
import http.server
import json
import os
import shutil
import sys
import urllib.parse

from handwriting import files, rundir
from handwriting.errors import SampleError

# The page's folder: `web/` beside the package.
WEB_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "web")
# What `make web` writes into `web/vendor/` (LiteRT.js bundled from npm, its wasm runtimes).
VENDOR_FILES = ("vendor/litert.js", "vendor/wasm/litert_wasm_internal.wasm")
# The URL folder of the export's files, and the only files of the export it serves.
MODEL_URL = "/model/"
FLOAT_FILENAME = "sampler_float32.tflite"
INT8_FILENAME = "sampler_int8.tflite"
METADATA_FILENAME = "sampler.json"
MODEL_FILES = (FLOAT_FILENAME, INT8_FILENAME, METADATA_FILENAME, rundir.STYLES_FILENAME)
# The cache's record of what it was exported from (`ensure_export`); the exporter keeps files
# it did not write, so this one survives a new export into the same folder.
SOURCE_FILENAME = "export-source.json"
# Bumped when the exporter's output changes in a way the page depends on (1: the step's
# `passed` is uint8, which LiteRT.js can read); an older cache is exported again.
CACHE_FORMAT = 1
# The model's files whose content the cache's fingerprint covers.
FINGERPRINT_FILES = (rundir.MODEL_FILENAME, rundir.CONFIG_FILENAME, rundir.DATASET_FILENAME)
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
DEFAULT_PORT = 8000


class ServeError(ValueError):
    """The page cannot be served; the message says what is missing and how to get it."""


# ---------------------------------------------------------------------------------------------
# The export the page reads


def check_web_dir(web_dir=WEB_DIR) -> None:
    """Raises `ServeError` unless `web_dir` holds the page and the files `make web` installs."""
    if not os.path.isfile(os.path.join(web_dir, "index.html")):
        raise ServeError(f"{web_dir}: no index.html; the page's folder is missing")
    missing = [name for name in VENDOR_FILES if not os.path.isfile(os.path.join(web_dir, name))]
    if missing:
        raise ServeError(
            f"{web_dir}: {', '.join(missing)} missing; `make web` installs LiteRT.js from npm"
        )


def ensure_export(model_dir=None, *, cache_root=None, log=print) -> str:
    """Returns a folder holding a current export of `model_dir`, exporting it when needed.

    Args:
        model_dir: a training run's folder or an export's; None: the shipped demo model.
        cache_root: where caches go when the model's own folder cannot hold one (default
            `user_cache_root()`).
        log: called with a line of progress (the export takes a while).

    Raises:
        SampleError: the model folder is missing or unusable.
        ServeError: the cache folder cannot receive the export.
    """
    model_dir = os.path.abspath(model_dir if model_dir is not None else rundir.DEFAULT_MODEL_DIR)
    if not os.path.isdir(model_dir):
        raise SampleError(f"--model {model_dir}: no such model folder")
    if _is_current_export(model_dir):
        return model_dir
    for name in FINGERPRINT_FILES:
        if not os.path.isfile(os.path.join(model_dir, name)):
            raise SampleError(
                f"--model {model_dir}: no {name}; give a training run's folder or an export's "
                f"(`python -m export`)"
            )
    target = cache_dir(model_dir, cache_root)
    fingerprint = model_fingerprint(model_dir)
    if not (_is_current_export(target) and _recorded_fingerprint(target) == fingerprint):
        from export import OutputError, export

        log(f"exporting {model_dir} for the page into {target} (once; takes a minute)")
        try:
            export(model_dir, target, int8=True)
        except OutputError as e:
            raise ServeError(f"the page's export cache: {e}") from None
        record = {"model": model_dir, "fingerprint": fingerprint, "cache_format": CACHE_FORMAT}
        files.write_text(os.path.join(target, SOURCE_FILENAME), json.dumps(record) + "\n")
    styles = os.path.join(model_dir, rundir.STYLES_FILENAME)
    if os.path.isfile(styles):  # the styles travel with the model: refreshed on every start
        shutil.copyfile(styles, os.path.join(target, rundir.STYLES_FILENAME))
    return target


def cache_dir(model_dir, cache_root=None) -> str:
    """Where the export of `model_dir` is cached: `<model_dir>.export` beside it when that
    can be written (new, empty or a previous export) and the model is not one of the
    package's files; else a folder of the user's cache named after the model and a hash of
    its path."""
    model_dir = os.path.realpath(model_dir)
    beside = model_dir + ".export"
    package = os.path.dirname(os.path.abspath(__file__))
    inside_package = os.path.commonpath([model_dir, package]) == package
    if not inside_package and files.creation_problem(beside) is None:
        if not os.path.lexists(beside) or _usable_cache(beside):
            return beside
    root = cache_root or user_cache_root()
    digest = hashlib.sha256(model_dir.encode("utf-8")).hexdigest()[:12]
    return os.path.join(root, f"{os.path.basename(model_dir)}-{digest}")


def _usable_cache(directory) -> bool:
    """Whether the existing `directory` may receive the cache: a writable folder, empty or a
    previous export (a folder of the user's that happens to have the name is left alone)."""
    from export import is_previous_export

    if os.path.islink(directory) or not os.path.isdir(directory):
        return False
    if not os.access(directory, os.W_OK | os.X_OK):
        return False
    return not os.listdir(directory) or is_previous_export(directory)


def user_cache_root() -> str:
    """`$XDG_CACHE_HOME/handwriting/exports`, else `~/.cache/handwriting/exports`."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "handwriting", "exports")


def model_fingerprint(model_dir) -> str:
    """sha256 over the content of the model's `FINGERPRINT_FILES` and `CACHE_FORMAT`."""
    digest = hashlib.sha256(f"cache format {CACHE_FORMAT}\n".encode())
    for name in FINGERPRINT_FILES:
        digest.update(name.encode() + b"\0")
        with open(os.path.join(model_dir, name), "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _recorded_fingerprint(directory):
    try:
        with open(os.path.join(directory, SOURCE_FILENAME), encoding="utf-8") as f:
            record = json.load(f)
        return record.get("fingerprint") if isinstance(record, dict) else None
    except (OSError, ValueError):
        return None


def _is_current_export(directory) -> bool:
    """Whether `directory` holds an export whose float32 step LiteRT.js can run: its
    `sampler.json`, and a step whose every output is float32, int32 or uint8 (exports
    before `passed` became uint8 give a bool)."""
    from export import is_previous_export

    path = os.path.join(directory, FLOAT_FILENAME)
    if not (is_previous_export(directory) and os.path.isfile(path)):
        return False
    with open(path, "rb") as f:
        content = f.read()
    return step_output_types(content) <= {"FLOAT32", "INT32", "UINT8"}


def step_output_types(flatbuffer: bytes) -> set:
    """The element type names of the outputs of a TFLite model's first subgraph."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(flatbuffer, 0)
    names = {code: name for name, code in vars(schema.TensorType).items() if name.isupper()}
    graph = model.Subgraphs(0)
    return {names[graph.Tensors(graph.Outputs(i)).Type()] for i in range(graph.OutputsLength())}


# ---------------------------------------------------------------------------------------------
# The server


class PageHandler(http.server.BaseHTTPRequestHandler):
    """Serves the page's folder and the export's `MODEL_FILES`, nothing else (GET, HEAD)."""

    server_version = "handwriting"
    web_dir = WEB_DIR  # set per server by `make_server`
    export_dir = None
    quiet = False

    def do_GET(self):  # the names BaseHTTPRequestHandler calls
        self._send(with_body=True)

    def do_HEAD(self):
        self._send(with_body=False)

    def _refuse_method(self):
        self.send_error(405, "only GET and HEAD")

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse_method

    def _send(self, with_body):
        path, status = resolve(self.path, self.web_dir, self.export_dir)
        if path is None and status == 404 and self.path == MODEL_URL + rundir.STYLES_FILENAME:
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
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        self.end_headers()
        if with_body:
            self.wfile.write(data)

    def log_message(self, format, *args):
        if not self.quiet:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")


def resolve(url_path, web_dir, export_dir) -> tuple:
    """The file a request path names: `(path, 200)`, or `(None, 403 or 404)`.

    403 for a path that is not plainly a file below the page's folder (`..`, a hidden name,
    a backslash, NUL, a link leading outside), 404 for one that does not exist there.
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
    if decoded.startswith(MODEL_URL):
        name = decoded[len(MODEL_URL) :]
        if export_dir is None or name not in MODEL_FILES:
            return None, 404
        candidate, root = os.path.join(export_dir, name), export_dir
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


def make_server(export_dir, *, host=DEFAULT_HOST, port=DEFAULT_PORT, web_dir=WEB_DIR, quiet=False):
    """An HTTP server (threads per request) of the page and the export; not started.

    `port` 0 takes a free port (`server.server_address` tells which).
    """
    check_web_dir(web_dir)
    handler = type(
        "Handler",
        (PageHandler,),
        {"web_dir": os.path.abspath(web_dir), "export_dir": export_dir, "quiet": quiet},
    )
    server = http.server.ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def url_of(server) -> str:
    """The page's URL on `server`."""
    host, port = server.server_address[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"
