"""A small, safe-by-default HTTP server for local pages (the labeller, the studio).

Standard library only (``http.server``): a local page needs a handful of routes, it runs on a GPU
box that may have nothing but the venv, and no framework means nothing to install or keep
updated. Everything that makes such a server safe lives here once, so every page gets it for
free and never a second copy:

* who may call it (``common.local_access``): binds ``127.0.0.1`` by default (reach a remote box
  through ``ssh -L``); a ``Host`` allow-list on every request (DNS rebinding); requests sent by
  another site's page (``Sec-Fetch-Site`` cross-site or same-site, or a foreign ``Origin``) get
  403 on every route but the page's own files; bound beyond loopback, a warning, and a token
  that the printed URL carries (stored in a cookie when the page opens; scripts send a header);
* slow or idle clients cost no worker: one event loop reads every connection and hands a
  request to a worker only when it is complete (headers and body); a request must arrive within
  ``ServerLimits.request_deadline_s`` of the connection (or of the previous answer on a kept-alive
  one), not per read; answers are sent by the loop, so a client that reads slowly holds no worker
  either; at most ``max_connections`` are open (the one closest to its deadline makes room);
* a client that resets or drops its connection is one debug line, never a traceback;
* strict headers on every answer: a Content-Security-Policy (pages: scripts, styles and images
  only from this server; everything else: nothing), ``nosniff``, no referrer, no framing;
* POST bodies: ``Content-Type: application/json`` only (a cross-site form cannot send that
  without a CORS preflight, which is never granted), ``Content-Length`` required and bounded, no
  chunked bodies; malformed JSON, too deep JSON included, is a 400, never a 500;
* every malformed request is a 4xx; an unexpected error is a JSON 500 and the server keeps running;
* files are served only when they are regular files whose resolved path lies inside the given
  folder (no symlink out, no ``..``, no device or FIFO).

API::

    from common.localserver import LocalRequestHandler, LocalServer, RequestError, ServerLimits

    class Handler(LocalRequestHandler):
        page_dir = STATIC_DIR                       # the page's own files: exempt from the cross-site
        page_files = {"/": "index.html", "/static/app.js": "app.js"}   # rule and the token

        def get(self, path):                        # path without the query string
            if path.startswith("/files/"):
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

import io
import json
import logging
import mimetypes
import os
import queue
import selectors
import socket
import stat
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

from common.http_framing import Framed, Refused, Waiting, frame_request
from common.local_access import (
    LOOPBACK_NAMES,
    AccessRules,
    host_header_names_loopback,
    is_loopback,
    reachable_address,
    split_token_query,
)

logger = logging.getLogger(__name__)

PAGE_CSP = ("default-src 'self'; img-src 'self'; script-src 'self'; style-src 'self'; object-src 'none'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
DATA_CSP = "default-src 'none'; frame-ancestors 'none'; sandbox"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".json": "application/json",
                 ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".svg": "image/svg+xml",
                 ".ico": "image/x-icon"}
SAFE_HEADERS: tuple[tuple[str, str], ...] = (
    ("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"), ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Resource-Policy", "same-origin"))
"""Sent with every answer, the event loop's own (408, 414, 431) included."""
QUIET_ERRORS = (ConnectionError, TimeoutError)
"""A client that resets, drops or stalls its connection: normal for a closed tab; one debug line."""


@dataclass(frozen=True)
class ServerLimits:
    """Bounds of one local server (defaults fit one person's page plus scripted bursts)."""

    max_body_bytes: int = 1 << 20     # larger POST bodies get 413 and are not read
    max_json_depth: int = 32          # deeper JSON bodies get 400 (handlers may walk them recursively)
    max_file_bytes: int = 64 << 20    # larger files are not served (413)
    max_header_bytes: int = 64 << 10  # a request line and headers larger than this get 414 / 431
    backlog: int = 1024               # listen() queue: a burst of connections waits instead of failing
    max_threads: int = 32             # workers running complete requests (reading and sending need none)
    max_connections: int = 512        # open connections; beyond, the waiting one nearest its deadline closes
    request_deadline_s: float = 10.0  # a whole request must arrive within this of the connection / last answer
    send_timeout_s: float = 30.0      # an answer the client has not taken within this closes the connection

    def __post_init__(self) -> None:
        if self.max_threads < 1 or self.max_connections < 1:
            raise ValueError("max_threads and max_connections must be >= 1")
        if not (self.request_deadline_s > 0 and self.send_timeout_s > 0):
            raise ValueError("request_deadline_s and send_timeout_s must be > 0")


class RequestError(Exception):
    """A client error that becomes a JSON ``{"error": message}`` answer with ``status`` (4xx)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = int(status)
        self.message = message


def error_response(status: int, message: str) -> bytes:
    """A complete JSON error answer that closes the connection (for the loop, which has no handler)."""
    body = json.dumps({"error": message}).encode("utf-8")
    phrase = HTTPStatus(status).phrase
    lines = [f"HTTP/1.1 {int(status)} {phrase}", "Content-Type: application/json", f"Content-Length: {len(body)}",
             f"Content-Security-Policy: {DATA_CSP}", *(f"{k}: {v}" for k, v in SAFE_HEADERS), "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


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


class _Request:
    """What a worker gets from the loop: the socket (for its address only) and one complete request."""

    __slots__ = ("data", "sock")

    def __init__(self, sock: socket.socket, data: bytes) -> None:
        self.sock = sock
        self.data = data


class LocalRequestHandler(BaseHTTPRequestHandler):
    """Base handler: subclasses implement ``get(path)`` and ``post(path)``; see the module docstring.

    One instance answers one complete request read by the server's loop: ``rfile`` holds exactly
    its bytes and ``wfile`` collects the answer, which the loop sends. The handler never blocks
    on the client.
    """

    server: LocalServer
    protocol_version = "HTTP/1.1"
    server_version = "localpage/1"
    default_request_version = "HTTP/1.0"  # error replies to garbage always carry a status line
    page_dir: Path | None = None           # folder of the page's own files
    page_files: ClassVar[Mapping[str, str]] = {}  # URL path -> file in page_dir (no cross-site rule, no token)
    page_csp: str = PAGE_CSP

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
        for key, value in SAFE_HEADERS:
            self.send_header(key, value)
        for key, value in (extra or {}).items():
            self.send_header(key, value)
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
        self.send_bytes(HTTPStatus.OK, file.read_bytes(), ctype, {"Cache-Control": "no-cache"}, csp=self.page_csp)

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
        request: _Request = self.request
        self.connection = request.sock
        self.rfile = io.BytesIO(request.data)
        self.wfile = io.BytesIO()

    def handle(self) -> None:
        self.close_connection = True
        self.handle_one_request()

    def finish(self) -> None:
        pass

    def answer(self) -> bytes:
        """Everything this handler wrote (the loop sends it)."""
        return self.wfile.getvalue()

    def handle_expect_100(self) -> bool:
        return True  # the loop already sent "100 Continue" before reading the body

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's parser answers a few malformed requests with 5xx; they are client errors."""
        if code == HTTPStatus.HTTP_VERSION_NOT_SUPPORTED:
            code, message = HTTPStatus.BAD_REQUEST, "unsupported HTTP version"
        elif code == HTTPStatus.NOT_IMPLEMENTED:
            code, message = HTTPStatus.METHOD_NOT_ALLOWED, "method not allowed"
        super().send_error(code, message, explain)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        logger.debug("%s %s", self.address_string(), format % args)

    def _local_address(self) -> str:
        try:
            return str(self.connection.getsockname()[0])
        except OSError:
            return ""

    def _send_page_file(self, method: str, path: str) -> None:
        """The page's own files; the printed URL's ``?token=`` becomes a cookie, then the same URL without it."""
        access = self.server.access
        token, rest = split_token_query(urlsplit(self.path).query)
        if token is not None and access.token is not None:
            if not access.token_matches(token):
                raise RequestError(HTTPStatus.FORBIDDEN, "wrong access token: open the URL the server printed")
            self.send_bytes(HTTPStatus.SEE_OTHER, b"", "text/plain",
                            {"Location": path + (f"?{rest}" if rest else ""), "Set-Cookie": access.token_cookie(),
                             "Cache-Control": "no-store"})
            return
        name = self.page_files[path]
        if self.page_dir is None or not name:
            self.send_bytes(HTTPStatus.NO_CONTENT, b"", "text/plain")
            return
        self.send_static(Path(self.page_dir) / name)

    def _dispatch(self, method: str) -> None:
        try:
            access = self.server.access
            host = self.headers.get("Host", "")
            refusal = access.host_refusal(host, self._local_address())
            if refusal:
                raise RequestError(HTTPStatus.FORBIDDEN, refusal)
            path = urlsplit(self.path).path
            if method in ("GET", "HEAD") and path in self.page_files:
                self._send_page_file(method, path)
                return
            refusal = access.cross_site_refusal(self.headers, host) or access.token_refusal(self.headers)
            if refusal:
                raise RequestError(HTTPStatus.FORBIDDEN, refusal)
            if method in ("GET", "HEAD"):
                self.get(path)
            else:
                self.post(path)
        except RequestError as exc:
            self.send_json(exc.status, {"error": exc.message})
        except Exception:  # noqa: BLE001 - a bug must not stop the page
            logger.exception("internal error on %s %s", method, self.path[:200])
            self.close_connection = True
            self.wfile, self._headers_buffer = io.BytesIO(), []  # drop a half-written answer
            self.send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error (see the server log)"})

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


class _Conn:
    """One open connection as the loop sees it."""

    __slots__ = ("addr", "close_after", "continued", "deadline", "inbox", "outbox", "sock", "state")

    READING, BUSY, SENDING, CLOSED = "reading", "busy", "sending", "closed"

    def __init__(self, sock: socket.socket, addr: Any, deadline: float) -> None:
        self.sock = sock
        self.addr = addr
        self.inbox = bytearray()    # bytes read and not yet handed to a worker
        self.outbox = memoryview(b"")
        self.deadline = deadline
        self.state = _Conn.READING
        self.close_after = False
        self.continued = False      # "100 Continue" sent for the request being read


class LocalServer(HTTPServer):
    """The shared local server: one event loop for all socket I/O, a pool of workers for complete requests.

    The loop accepts, reads each connection until a whole request is in (``common.http_framing``),
    queues it for a worker, and sends the worker's answer; idle, slow and half-open connections
    cost a little memory, never a worker. ``AccessRules`` (``common.local_access``) are built
    once after binding; ``context`` is whatever object the handlers need.
    """

    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[LocalRequestHandler], context: Any = None,
                 limits: ServerLimits = ServerLimits(), allow_hosts: Iterable[str] = ()) -> None:
        self.context = context
        self.limits = limits
        self.request_queue_size = int(limits.backlog)  # used by listen() in server_activate
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._finished: deque[tuple[_Conn, bytes, bool]] = deque()
        self._conns: set[_Conn] = set()
        self._workers: list[threading.Thread] = []
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()
        self._wake_r, self._wake_w = socket.socketpair()  # workers wake the loop when an answer is ready
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        try:
            super().__init__(address, handler)
        except BaseException:
            self._wake_r.close()
            self._wake_w.close()
            raise
        self.access = AccessRules(address[0], self.server_address[1], allow_hosts)

    # ---- what a person is told -------------------------------------------------------------------
    @property
    def loopback_only(self) -> bool:
        return not self.access.exposed

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        shown = host
        if host in ("0.0.0.0", "", "::"):
            shown = reachable_address()
        if ":" in shown:
            shown = f"[{shown}]"
        token = f"?token={self.access.token}" if self.access.token else ""
        return f"http://{shown}:{port}/{token}"

    def exposure_warning(self, what: str) -> str | None:
        """None on loopback; else a warning naming the bind, ``what`` a visitor can do, and the Host allow-list."""
        return self.access.warning(what, self.server_address[1])

    # ---- the loop --------------------------------------------------------------------------------
    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Serve until ``shutdown()`` (from another thread) or an exception such as KeyboardInterrupt."""
        self._stop.clear()
        self._stopped.clear()
        selector = selectors.DefaultSelector()
        try:
            self.socket.setblocking(False)
            selector.register(self.socket, selectors.EVENT_READ, None)
            selector.register(self._wake_r, selectors.EVENT_READ, "wake")
            self._workers = [threading.Thread(target=self._work, name="localserver-worker", daemon=True)
                             for _ in range(self.limits.max_threads)]
            for worker in self._workers:
                worker.start()
            while not self._stop.is_set():
                for key, mask in selector.select(self._timeout(poll_interval)):
                    if key.data is None:
                        self._accept(selector)
                    elif key.data == "wake":
                        self._drain_wake()
                    else:
                        self._guarded(selector, key.data, self._send if mask & selectors.EVENT_WRITE else self._read)
                self._take_finished(selector)
                self._expire(selector)
        finally:
            self._wind_down(selector)

    def _guarded(self, selector: selectors.BaseSelector, conn: _Conn, step, *args: Any, **kwargs: Any) -> None:
        """A bug while handling one connection closes that connection, never the server."""
        try:
            step(selector, conn, *args, **kwargs)
        except Exception:  # noqa: BLE001 - log and keep serving the others
            logger.exception("error on the connection from %s; closed", conn.addr)
            if conn in self._conns:
                self._close(selector, conn)

    def _timeout(self, poll_interval: float) -> float:
        waiting = [c.deadline for c in self._conns if c.state in (_Conn.READING, _Conn.SENDING)]
        if not waiting:
            return poll_interval
        return max(0.0, min(poll_interval, min(waiting) - time.monotonic()))

    def _accept(self, selector: selectors.BaseSelector) -> None:
        while True:
            try:
                sock, addr = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. out of file descriptors: the backlog keeps the rest waiting
                logger.warning("cannot accept a connection: %s", exc.strerror or exc)
                return
            if len(self._conns) >= self.limits.max_connections and not self._make_room(selector):
                self._close(selector, _Conn(sock, addr, 0.0))
                continue
            sock.setblocking(False)
            conn = _Conn(sock, addr, time.monotonic() + self.limits.request_deadline_s)
            self._conns.add(conn)
            selector.register(sock, selectors.EVENT_READ, conn)

    def _make_room(self, selector: selectors.BaseSelector) -> bool:
        """Close the waiting connection nearest its deadline (a slow or idle one); False if all are busy."""
        waiting = [c for c in self._conns if c.state == _Conn.READING]
        if not waiting:
            return False
        self._close(selector, min(waiting, key=lambda c: c.deadline))
        return True

    def _read(self, selector: selectors.BaseSelector, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            logger.debug("%s: connection dropped while sending its request (%s)", conn.addr, exc)
            self._close(selector, conn)
            return
        if not data:
            self._close(selector, conn)
            return
        conn.inbox += data
        self._frame(selector, conn)

    def _frame(self, selector: selectors.BaseSelector, conn: _Conn) -> None:
        """Hand a complete request to a worker, refuse an impossible one, or keep reading."""
        framed = frame_request(conn.inbox, self.limits.max_header_bytes, self.limits.max_body_bytes)
        if framed is None:
            return
        if isinstance(framed, Waiting):
            if framed.expects_continue and not conn.continued:
                conn.continued = True
                self._reply(selector, conn, b"HTTP/1.1 100 Continue\r\n\r\n", close=False, keep_reading=True)
            return
        if isinstance(framed, Refused):
            self._reply(selector, conn, error_response(framed.status, framed.message), close=True)
            return
        assert isinstance(framed, Framed)
        request, conn.inbox = bytes(conn.inbox[:framed.size]), conn.inbox[framed.size:]
        conn.close_after, conn.continued = framed.close, False
        conn.state = _Conn.BUSY
        selector.unregister(conn.sock)
        self._jobs.put((conn, request))

    def _work(self) -> None:
        """A worker: run complete requests; the answer goes back to the loop."""
        while True:
            job = self._jobs.get()
            if job is None:
                return
            conn, request = job
            answer, close = b"", True
            try:
                handler = self.RequestHandlerClass(_Request(conn.sock, request), conn.addr, self)
                answer, close = handler.answer(), bool(handler.close_connection)
            except QUIET_ERRORS as exc:
                logger.debug("%s: connection lost while answering (%s)", conn.addr, exc)
            except Exception:  # noqa: BLE001 - log and keep serving
                logger.exception("error while serving %s", conn.addr)
            self._finished.append((conn, answer, close))
            self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:  # the pipe is full (the loop is already awake) or closed (stopping)
            pass

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    def _take_finished(self, selector: selectors.BaseSelector) -> None:
        while self._finished:
            conn, answer, close = self._finished.popleft()
            if conn.state == _Conn.BUSY:
                self._guarded(selector, conn, self._reply, answer, close=close or conn.close_after)

    def _reply(self, selector: selectors.BaseSelector, conn: _Conn, data: bytes, *, close: bool,
               keep_reading: bool = False) -> None:
        """Send ``data`` (what does not fit now is sent as the client reads), then read on or close."""
        if keep_reading:  # "100 Continue": tiny, and the body is still to be read
            try:
                conn.sock.send(data)
            except OSError:
                self._close(selector, conn)
            return
        registered = conn.state in (_Conn.READING, _Conn.SENDING)
        conn.outbox, conn.close_after = memoryview(data), close
        conn.state, conn.deadline = _Conn.SENDING, time.monotonic() + self.limits.send_timeout_s
        if registered:
            selector.modify(conn.sock, selectors.EVENT_WRITE, conn)
        else:
            selector.register(conn.sock, selectors.EVENT_WRITE, conn)
        self._send(selector, conn)

    def _send(self, selector: selectors.BaseSelector, conn: _Conn) -> None:
        try:
            while conn.outbox:
                sent = conn.sock.send(conn.outbox)
                conn.outbox = conn.outbox[sent:]
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            logger.debug("%s: connection dropped while taking its answer (%s)", conn.addr, exc)
            self._close(selector, conn)
            return
        if conn.close_after:
            self._close(selector, conn)
            return
        conn.state, conn.deadline = _Conn.READING, time.monotonic() + self.limits.request_deadline_s
        selector.modify(conn.sock, selectors.EVENT_READ, conn)
        if conn.inbox:  # a pipelined request already read
            self._frame(selector, conn)

    def _expire(self, selector: selectors.BaseSelector) -> None:
        now = time.monotonic()
        for conn in [c for c in self._conns if c.state in (_Conn.READING, _Conn.SENDING) and c.deadline <= now]:
            if conn.state == _Conn.READING and conn.inbox.strip():
                logger.debug("%s: request not complete within %.0f s; closed", conn.addr,
                             self.limits.request_deadline_s)
                self._reply(selector, conn, error_response(
                    HTTPStatus.REQUEST_TIMEOUT,
                    f"the request did not arrive within {self.limits.request_deadline_s:g} s"), close=True)
                if conn in self._conns:
                    self._close(selector, conn)  # best effort: no second wait for a stalled client
            else:
                self._close(selector, conn)

    def _close(self, selector: selectors.BaseSelector, conn: _Conn) -> None:
        self._conns.discard(conn)
        if conn.state in (_Conn.READING, _Conn.SENDING):
            try:
                selector.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
        conn.state = _Conn.CLOSED
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        conn.sock.close()

    def _wind_down(self, selector: selectors.BaseSelector) -> None:
        """Let running requests finish (a decision being written, say), then close every connection."""
        for _ in self._workers:
            self._jobs.put(None)
        deadline = time.monotonic() + 5.0
        for worker in self._workers:
            worker.join(timeout=max(0.0, deadline - time.monotonic()))
        self._workers = []
        for conn in list(self._conns):
            self._close(selector, conn)
        self._finished.clear()
        selector.close()
        self._stopped.set()

    # ---- socketserver's surface -------------------------------------------------------------------
    def handle_request(self) -> None:  # pragma: no cover - guard
        raise NotImplementedError("LocalServer serves with serve_forever() only")

    def shutdown(self) -> None:
        """Stop ``serve_forever`` (running in another thread) and wait until it has."""
        self._stop.set()
        self._wake()
        self._stopped.wait()

    def server_close(self) -> None:
        self._stop.set()
        self._wake()
        super().server_close()
        self._wake_r.close()
        self._wake_w.close()


__all__ = [
    "CONTENT_TYPES",
    "DATA_CSP",
    "LOOPBACK_NAMES",
    "PAGE_CSP",
    "QUIET_ERRORS",
    "SAFE_HEADERS",
    "LocalRequestHandler",
    "LocalServer",
    "RequestError",
    "ServerLimits",
    "error_response",
    "host_header_names_loopback",
    "is_loopback",
    "json_depth",
    "read_regular_file",
    "regular_file_inside",
]
