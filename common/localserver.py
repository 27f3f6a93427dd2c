"""A small, safe-by-default HTTP server for local pages (the labeller; later pages reuse it).

Standard library only (``http.server``): a local page needs a handful of routes, it runs on a GPU
box that may have nothing but the venv, and no framework means nothing to install or keep
updated. Everything that makes such a server safe lives here once, so a second page gets it for
free and never a second copy:

* binds ``127.0.0.1`` by default (reach a remote box through ``ssh -L``); when bound to loopback,
  the ``Host`` header must name loopback too (blocks DNS rebinding);
* strict headers on every answer: a Content-Security-Policy (pages: scripts, styles and images
  only from this server; everything else: nothing), ``nosniff``, no referrer, no framing;
* POST bodies: ``Content-Type: application/json`` only (a cross-site form cannot send that
  without a CORS preflight, which is never granted), ``Content-Length`` required and bounded, no
  chunked bodies; malformed JSON, too deep JSON included, is a 400, never a 500;
* every malformed request is a 4xx; an unexpected error is a JSON 500 and the server keeps running;
* a listen backlog of ``ServerLimits.backlog`` and at most ``max_threads`` worker threads: a
  burst of clients waits in the kernel's queue instead of being refused or spawning a thread each;
* files are served only when they are regular files whose resolved path lies inside the given
  folder (no symlink out, no ``..``, no device or FIFO).

API::

    from common.localserver import LocalRequestHandler, LocalServer, RequestError, ServerLimits

    class Handler(LocalRequestHandler):
        def get(self, path):                        # path without the query string
            if path == "/":
                self.send_static(STATIC_DIR / "index.html")
            elif path.startswith("/files/"):
                self.send_file_in(FOLDER, path[len("/files/"):])   # 404 unless a regular file inside
            elif path == "/api/state":
                self.send_json(200, self.server.context.state())
            else:
                raise RequestError(404, "not found")

        def post(self, path):
            payload = self.read_json()              # 4xx for anything but a bounded JSON body
            self.send_json(200, self.server.context.act(payload))

    server = LocalServer(("127.0.0.1", 0), Handler, context=app, limits=ServerLimits())
    print(server.url); server.serve_forever()       # shutdown() from another thread, then server_close()

``RequestError(status, message)`` becomes ``{"error": message}`` with that status. Other
exceptions become a logged 500. ``self.server.context`` is whatever object the page needs.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import mimetypes
import os
import socket
import stat
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

logger = logging.getLogger(__name__)

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
PAGE_CSP = ("default-src 'self'; img-src 'self'; script-src 'self'; style-src 'self'; object-src 'none'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
DATA_CSP = "default-src 'none'; frame-ancestors 'none'; sandbox"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".json": "application/json",
                 ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".svg": "image/svg+xml"}


@dataclass(frozen=True)
class ServerLimits:
    """Bounds of one local server (defaults fit one person's page plus scripted bursts)."""

    max_body_bytes: int = 1 << 20    # larger POST bodies get 413 and are not read
    max_json_depth: int = 32         # deeper JSON bodies get 400 (handlers may walk them recursively)
    max_file_bytes: int = 64 << 20   # larger files are not served (413)
    backlog: int = 1024              # listen() queue: a burst of connections waits instead of failing
    max_threads: int = 32            # worker pool; when all are busy, accepting pauses
    idle_timeout_s: float = 15.0     # a kept-alive or half-sent connection is closed after this


class RequestError(Exception):
    """A client error that becomes a JSON ``{"error": message}`` answer with ``status`` (4xx)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = int(status)
        self.message = message


def is_loopback(host: str) -> bool:
    """Whether a bind address only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_header_names_loopback(host: str) -> bool:
    """``Host: localhost:8765`` / ``127.0.0.1`` / ``[::1]:80`` -> True; anything else False."""
    if host.startswith("["):
        name = host[1:].split("]", 1)[0]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name.lower() in LOOPBACK_NAMES


def regular_file_inside(folder: Path | str, name: str) -> Path | None:
    """The file ``folder/name`` if it is a regular file whose resolved path is inside ``folder``.

    ``name`` is one path component (no ``/``, ``\\``, NUL, ``.`` or ``..``); a symlink is followed
    only when its target stays inside the folder. Returns None otherwise.
    """
    if not name or name in (".", "..") or any(c in name for c in "/\\\0"):
        return None
    try:
        root = Path(folder).resolve(strict=True)
        target = (root / name).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if target == root or not target.is_relative_to(root):
        return None
    try:
        if not stat.S_ISREG(os.stat(target).st_mode):
            return None
    except OSError:
        return None
    return target


def json_depth(obj: Any) -> int:
    """Nesting depth of parsed JSON (a scalar is 0), without recursion."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def read_regular_file(path: Path, max_bytes: int) -> bytes:
    """Read a file checked by ``regular_file_inside`` without following a swapped-in symlink and
    without blocking on a FIFO; re-checks it is a regular file after opening."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise RequestError(HTTPStatus.NOT_FOUND, "not a regular file")
        if info.st_size > max_bytes:
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "file too large to serve")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read(max_bytes + 1)[:max_bytes]
    finally:
        os.close(fd)


class LocalRequestHandler(BaseHTTPRequestHandler):
    """Base handler: subclasses implement ``get(path)`` and ``post(path)``; see the module docstring."""

    server: LocalServer
    protocol_version = "HTTP/1.1"
    server_version = "localpage/1"
    default_request_version = "HTTP/1.0"  # error replies to garbage always carry a status line

    # ---- to implement ----------------------------------------------------------------------------
    def get(self, path: str) -> None:  # pragma: no cover - overridden
        raise RequestError(HTTPStatus.NOT_FOUND, "not found")

    def post(self, path: str) -> None:  # pragma: no cover - overridden
        raise RequestError(HTTPStatus.NOT_FOUND, "not found")

    # ---- helpers for routes ----------------------------------------------------------------------
    def send_bytes(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None,
                   csp: str = DATA_CSP) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", csp)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        if self.server.saturated():
            self.close_connection = True  # free the worker for the connections waiting in the backlog
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status: int, obj: Any) -> None:
        body = json.dumps(obj, allow_nan=False).encode("utf-8")
        self.send_bytes(status, body, "application/json", {"Cache-Control": "no-store"})

    def send_static(self, file: Path) -> None:
        """One of the page's own files (a fixed path chosen by the route, never from the URL)."""
        ctype = CONTENT_TYPES.get(file.suffix.lower(), "application/octet-stream")
        self.send_bytes(HTTPStatus.OK, file.read_bytes(), ctype, {"Cache-Control": "no-cache"}, csp=PAGE_CSP)

    def send_file_in(self, folder: Path | str, name: str, cache: str = "private, max-age=3600") -> None:
        """Serve ``folder/name`` (URL-decoded by the caller or not): 404 unless a regular file inside."""
        name = unquote(name, errors="replace")
        path = regular_file_inside(folder, name)
        if path is None:
            raise RequestError(HTTPStatus.NOT_FOUND, "no such file")
        try:
            data = read_regular_file(path, self.server.limits.max_file_bytes)
        except OSError as exc:
            raise RequestError(HTTPStatus.NOT_FOUND, f"file unreadable: {exc.strerror}") from exc
        ctype = CONTENT_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        self.send_bytes(HTTPStatus.OK, data, ctype, {"Cache-Control": cache})

    def read_json(self) -> Any:
        """The request body parsed as JSON; ``RequestError`` (4xx) for anything else."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "chunked bodies are not accepted; send Content-Length")
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            self.close_connection = True
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "Content-Length required")
        try:
            length = int(length_text)
            if length < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            raise RequestError(HTTPStatus.BAD_REQUEST, "bad Content-Length") from None
        if length > self.server.limits.max_body_bytes:
            self.close_connection = True  # do not read it
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "body too large")
        body = self.rfile.read(length)
        if len(body) < length:
            self.close_connection = True
            raise RequestError(HTTPStatus.BAD_REQUEST, "body shorter than Content-Length")
        ctype = self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if ctype != "application/json":
            raise RequestError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json")
        too_deep = f"body is not valid JSON here: nested deeper than {self.server.limits.max_json_depth} levels"
        try:
            payload = json.loads(body.decode("utf-8") if body else "{}")
        except RecursionError:
            raise RequestError(HTTPStatus.BAD_REQUEST, too_deep) from None
        except (UnicodeDecodeError, ValueError) as exc:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"body is not valid JSON: {exc}") from None
        if json_depth(payload) > self.server.limits.max_json_depth:
            raise RequestError(HTTPStatus.BAD_REQUEST, too_deep)
        return payload

    # ---- plumbing ----------------------------------------------------------------------------------
    def setup(self) -> None:
        self.timeout = self.server.limits.idle_timeout_s
        super().setup()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's parser answers a few malformed requests with 5xx; they are client errors."""
        if code == HTTPStatus.HTTP_VERSION_NOT_SUPPORTED:
            code, message = HTTPStatus.BAD_REQUEST, "unsupported HTTP version"
        elif code == HTTPStatus.NOT_IMPLEMENTED:
            code, message = HTTPStatus.METHOD_NOT_ALLOWED, "method not allowed"
        super().send_error(code, message, explain)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        logger.debug("%s %s", self.address_string(), format % args)

    def _dispatch(self, method: str) -> None:
        try:
            if self.server.loopback_only and not host_header_names_loopback(self.headers.get("Host", "")):
                raise RequestError(HTTPStatus.FORBIDDEN, "Host header must name localhost (DNS rebinding guard)")
            path = urlsplit(self.path).path
            if method in ("GET", "HEAD"):
                self.get(path)
            else:
                self.post(path)
        except RequestError as exc:
            self.send_json(exc.status, {"error": exc.message})
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True
        except Exception:  # noqa: BLE001 - a bug must not stop the page
            logger.exception("internal error on %s %s", method, self.path[:200])
            self.close_connection = True
            try:
                self.send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error (see the server log)"})
            except OSError:
                pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._dispatch("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch("HEAD")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def _method_not_allowed(self) -> None:
        self.close_connection = True
        self.send_json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "method not allowed"})

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _method_not_allowed  # noqa: N815


class LocalServer(HTTPServer):
    """HTTPServer with a listen backlog, a bounded worker pool and a ``context`` for the handlers."""

    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[LocalRequestHandler], context: Any = None,
                 limits: ServerLimits = ServerLimits()) -> None:
        self.context = context
        self.limits = limits
        self.request_queue_size = int(limits.backlog)  # used by listen() in server_activate
        self.loopback_only = is_loopback(address[0])
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self._slots = threading.BoundedSemaphore(limits.max_threads)
        self._active = 0
        self._active_lock = threading.Lock()
        self._stopping = threading.Event()
        super().__init__(address, handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        if ":" in shown:
            shown = f"[{shown}]"
        return f"http://{shown}:{port}/"

    def saturated(self) -> bool:
        """All workers busy: handlers close kept-alive connections so waiting clients get a turn."""
        with self._active_lock:
            return self._active >= self.limits.max_threads

    def process_request(self, request, client_address) -> None:
        # Wait for a free worker; meanwhile new connections queue in the listen backlog.
        while not self._slots.acquire(timeout=0.2):
            if self._stopping.is_set():
                self.shutdown_request(request)
                return
        with self._active_lock:
            self._active += 1
        # A daemon thread per connection, at most max_threads at once (the semaphore): a bounded
        # pool that never delays the process's exit on an idle kept-alive connection.
        thread = threading.Thread(target=self._work, args=(request, client_address), daemon=True,
                                  name="localserver-worker")
        try:
            thread.start()
        except RuntimeError:  # cannot start a thread (interpreter shutting down)
            self._done()
            self.shutdown_request(request)

    def _done(self) -> None:
        with self._active_lock:
            self._active -= 1
        self._slots.release()

    def _work(self, request, client_address) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - log and keep serving
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            self._done()

    def handle_error(self, request, client_address) -> None:
        logger.exception("error while serving %s", client_address)

    def shutdown(self) -> None:
        self._stopping.set()
        super().shutdown()

    def server_close(self) -> None:
        self._stopping.set()
        super().server_close()


__all__ = [
    "CONTENT_TYPES", "DATA_CSP", "LOOPBACK_NAMES", "LocalRequestHandler", "LocalServer", "PAGE_CSP",
    "RequestError", "ServerLimits", "host_header_names_loopback", "is_loopback", "json_depth", "read_regular_file",
    "regular_file_inside",
]
