"""The labeller's local HTTP server: a few static files, the images, and a small JSON API.

Standard library only (``http.server.ThreadingHTTPServer``): the API is four routes, the server
runs on a GPU box that may have nothing but the venv, and no framework means nothing to install
or keep updated. It binds 127.0.0.1 by default and is reached through SSH port-forwarding.

Routes::

    GET  /                  the page (static/index.html); /static/app.js, /static/style.css
    GET  /images/<name>     an image of the labelled folder (only names listed at start-up)
    GET  /api/state         sequence, labels, resume index, review list, counts
    POST /api/label         {"img", "gender", "quality"} or {"items": [...]}; one undo step
    POST /api/undo          revert the newest step

Safety: images and static files are served from a whitelist built at start-up (so ``..``,
absolute or percent-encoded paths can never reach the file system), POSTs need a JSON body of
bounded size with ``Content-Type: application/json`` (a cross-site form cannot send that without
a CORS preflight, which this server never grants), and when bound to loopback the ``Host`` header
must name loopback (blocks DNS rebinding). Every malformed request gets a 4xx; an unexpected error
gets a JSON 500 and the server keeps running.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import mimetypes
import socket
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from common.images import list_images
from gender_cnn.labeller.store import (
    ORDERS,
    Label,
    LabelStore,
    ReviewItem,
    build_review_list,
    StoreLock,
    build_sequence,
    read_import_file,
    read_model_scores,
    read_oof_scores,
)

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
_STATIC_FILES = {
    "/": "index.html",
    "/index.html": "index.html",
    "/static/app.js": "app.js",
    "/static/style.css": "style.css",
}
_CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                  ".css": "text/css; charset=utf-8"}
_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


@dataclass(frozen=True)
class LabellerConfig:
    """Settings of one labelling session (paths come from ``common.paths``)."""

    num: int = 2000                 # images in the session (name order: the first N by name)
    order: str = "name"             # name | uncertainty (needs the step-4 scores CSV)
    labeller: str = "hand"          # value of the labeller column
    compact_interval_s: float = 2.0  # how often the CSV is rewritten from the journal
    max_body_bytes: int = 1 << 20   # larger POST bodies get 413
    max_items: int = 10_000         # most images one bulk POST may change
    undo_depth: int = 500           # undo steps kept across restarts


class RequestError(Exception):
    """A client error that becomes a 4xx JSON answer."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _label_json(label: Label | None) -> dict | None:
    return None if label is None else {"gender": label.gender, "quality": label.quality}


class LabellerApp:
    """Everything the HTTP handler needs: the store, the image whitelist, order and review list."""

    def __init__(self, store: LabelStore, images: dict[str, Path], sequence: list[str],
                 review: list[ReviewItem], config: LabellerConfig) -> None:
        self.store = store
        self.images = images
        self.sequence = sequence
        self.review = review
        self.config = config
        self._stop = threading.Event()
        self._compactor: threading.Thread | None = None

    # ---- lifecycle ---------------------------------------------------------------------------
    def start_compactor(self) -> None:
        """Rewrite the CSV from the journal every few seconds while labels change."""
        def loop() -> None:
            while not self._stop.wait(self.config.compact_interval_s):
                try:
                    self.store.compact()
                except Exception:  # noqa: BLE001 - keep labelling; the journal still has it all
                    logger.exception("periodic CSV compaction failed (the journal keeps the labels)")

        self._compactor = threading.Thread(target=loop, name="labeller-compactor", daemon=True)
        self._compactor.start()

    def close(self) -> None:
        self._stop.set()
        if self._compactor is not None:
            self._compactor.join(timeout=5)
        self.store.close()

    # ---- API -------------------------------------------------------------------------------------
    def decided(self) -> int:
        return self.store.decided(self.sequence)

    def state(self) -> dict[str, Any]:
        labels = self.store.labels()
        names = set(self.sequence) | {item.img_name for item in self.review}
        return {
            "sequence": self.sequence,
            "total": len(self.sequence),
            "decided": self.decided(),
            "resume": self.store.first_undecided(self.sequence),
            "labels": {n: _label_json(labels.get(n)) for n in sorted(names)},
            "review": [item.to_json() for item in self.review],
            "order": self.config.order,
            "labeller": self.config.labeller,
            "undo_available": self.store.undo_available,
            "csv": str(self.store.csv_path),
        }

    def _parse_item(self, item: Any) -> tuple[str, Label | None]:
        if not isinstance(item, dict):
            raise RequestError(HTTPStatus.BAD_REQUEST, "each item must be a JSON object")
        name = item.get("img")
        if not isinstance(name, str) or name not in self.images:
            raise RequestError(HTTPStatus.NOT_FOUND, f"unknown image {str(name)[:100]!r}")
        if item.get("clear") is True:
            return name, None
        values = {}
        for task in ("gender", "quality"):
            if task not in item:
                raise RequestError(HTTPStatus.BAD_REQUEST, f"missing {task!r} (0, 1 or null)")
            value = item[task]
            if value is not None and (isinstance(value, bool) or value not in (0, 1)):
                raise RequestError(HTTPStatus.BAD_REQUEST, f"{task} must be 0, 1 or null, got {value!r}")
            values[task] = value
        return name, Label(values["gender"], values["quality"], self.config.labeller)

    def label(self, payload: Any) -> dict[str, Any]:
        if not isinstance(payload, dict):
            raise RequestError(HTTPStatus.BAD_REQUEST, "body must be a JSON object")
        raw_items = payload["items"] if "items" in payload else [payload]
        if not isinstance(raw_items, list) or not raw_items:
            raise RequestError(HTTPStatus.BAD_REQUEST, "items must be a non-empty list")
        if len(raw_items) > self.config.max_items:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"at most {self.config.max_items} items per request")
        changes = dict(self._parse_item(item) for item in raw_items)
        self.store.set_labels(changes)
        return {"ok": True, "labels": {n: _label_json(self.store.get(n)) for n in changes},
                "decided": self.decided(), "undo_available": self.store.undo_available}

    def undo(self) -> dict[str, Any]:
        touched = self.store.undo()
        return {"ok": True, "images": touched, "labels": {n: _label_json(self.store.get(n)) for n in touched},
                "decided": self.decided(), "undo_available": self.store.undo_available}


def create_app(images_dir: Path, csv_path: Path, config: LabellerConfig = LabellerConfig(),
               scores_csv: Path | None = None, oof_csv: Path | None = None,
               import_csv: Path | None = None, lock: bool | StoreLock = True) -> tuple[LabellerApp, int]:
    """Open the store, import if asked, and build the session; returns (app, images imported).

    ``lock``: True takes the store's lock, or pass a ``StoreLock`` already held. Raises
    ``FileNotFoundError``/``CsvSchemaError``/``StoreLockedError``/``ValueError`` with plain
    messages for bad input (the script turns them into one-line errors).
    """
    if config.order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {config.order!r}")
    all_images = {p.name: p for p in list_images(images_dir)}
    if not all_images:
        raise FileNotFoundError(f"no .jpg/.png images in {images_dir}")
    import_labels = None
    if import_csv is not None:  # validate before touching the store
        import_labels = read_import_file(import_csv, known_images=all_images, labeller=config.labeller)
    store = LabelStore(csv_path, undo_depth=config.undo_depth, lock=lock)
    try:
        imported = 0
        if import_labels is not None:  # the one import path (backup, journal folded in, then import)
            imported, backup = store.apply_import(import_labels)
            logger.info("imported %d labels from %s (%d already decided here were kept%s)", imported,
                        import_csv, len(import_labels) - imported,
                        f"; previous labels backed up to {backup}" if backup else "")
        unknown = sorted(set(store.labels()) - set(all_images))
        if unknown:
            logger.warning("%d labelled images are not in %s (kept in the CSV): %s",
                           len(unknown), images_dir, unknown[:5])
        scores = read_model_scores(scores_csv) if scores_csv is not None else {}
        if config.order == "uncertainty" and not scores:
            logger.warning("--order uncertainty: no model scores in %s; falling back to name order "
                           "for the unlabelled images", scores_csv)
        sequence = build_sequence(list(all_images), store.labels(), config.num, config.order, scores)
        review: list[ReviewItem] = []
        if oof_csv is not None:
            review = build_review_list(read_oof_scores(oof_csv), store.labels())
            review = [item for item in review if item.img_name in all_images]
            if review:
                logger.info("review list: %d hand labels disagree with the out-of-fold predictions", len(review))
    except BaseException:
        store.close()
        raise
    return LabellerApp(store, all_images, sequence, review, config), imported


class _Handler(BaseHTTPRequestHandler):
    """One request; all state lives in ``self.server.app``."""

    server: LabellerServer
    protocol_version = "HTTP/1.1"
    server_version = "labeller/1"
    timeout = 60  # seconds a connection may sit idle or half-sent
    default_request_version = "HTTP/1.0"  # error replies to garbage always carry a status line

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's parser answers a few malformed requests with 5xx; they are client errors."""
        if code == HTTPStatus.HTTP_VERSION_NOT_SUPPORTED:
            code, message = HTTPStatus.BAD_REQUEST, "unsupported HTTP version"
        elif code == HTTPStatus.NOT_IMPLEMENTED:
            code, message = HTTPStatus.METHOD_NOT_ALLOWED, "method not allowed"
        super().send_error(code, message, explain)

    # ---- plumbing ----------------------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        logger.debug("%s %s", self.address_string(), format % args)

    def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj).encode("utf-8"), "application/json",
                   {"Cache-Control": "no-store"})

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._send_json(status, {"error": message})

    def _host_allowed(self) -> bool:
        if not self.server.loopback_only:
            return True
        host = self.headers.get("Host", "")
        if host.startswith("["):
            name = host[1:].split("]", 1)[0]
        else:
            name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        return name.lower() in _LOOPBACK_NAMES

    def _dispatch(self, method: str) -> None:
        try:
            if not self._host_allowed():
                raise RequestError(HTTPStatus.FORBIDDEN, "Host header must name localhost (DNS rebinding guard)")
            path = urlsplit(self.path).path
            if method in ("GET", "HEAD"):
                self._get(path)
            else:
                self._post(path)
        except RequestError as exc:
            self._error(exc.status, exc.message)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:  # noqa: BLE001 - a bug must not stop the labelling session
            logger.exception("internal error on %s %s", method, self.path[:200])
            self.close_connection = True
            try:
                self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error (see the server log)")
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
        self._send_json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "method not allowed"})

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _method_not_allowed  # noqa: N815

    # ---- routes ------------------------------------------------------------------------------
    def _get(self, path: str) -> None:
        app = self.server.app
        if path in _STATIC_FILES:
            file = STATIC_DIR / _STATIC_FILES[path]
            self._send(HTTPStatus.OK, file.read_bytes(), _CONTENT_TYPES[file.suffix], {
                "Cache-Control": "no-cache",
                "Content-Security-Policy": "default-src 'self'; img-src 'self'; object-src 'none'; "
                                           "base-uri 'none'; frame-ancestors 'none'",
            })
        elif path.startswith("/images/"):
            # Whitelist lookup: the decoded name must be exactly one of the listed files, so
            # '..', '/', '%2e%2e' or absolute paths never reach the file system.
            name = unquote(path[len("/images/"):], errors="replace")
            file = app.images.get(name)
            if file is None or "/" in name or "\\" in name:
                raise RequestError(HTTPStatus.NOT_FOUND, "no such image")
            try:
                data = file.read_bytes()
            except OSError as exc:
                raise RequestError(HTTPStatus.NOT_FOUND, f"image unreadable: {exc.strerror}") from exc
            ctype = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
            self._send(HTTPStatus.OK, data, ctype, {"Cache-Control": "private, max-age=3600"})
        elif path == "/api/state":
            self._send_json(HTTPStatus.OK, app.state())
        elif path == "/favicon.ico":
            self._send(HTTPStatus.NO_CONTENT, b"", "text/plain")
        else:
            raise RequestError(HTTPStatus.NOT_FOUND, "not found")

    def _read_json(self) -> Any:
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
        if length > self.server.app.config.max_body_bytes:
            self.close_connection = True  # do not read it
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "body too large")
        body = self.rfile.read(length)
        if len(body) < length:
            self.close_connection = True
            raise RequestError(HTTPStatus.BAD_REQUEST, "body shorter than Content-Length")
        ctype = self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if ctype != "application/json":
            raise RequestError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json")
        try:
            return json.loads(body.decode("utf-8") if body else "{}")
        except (UnicodeDecodeError, ValueError) as exc:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"body is not valid JSON: {exc}") from None

    def _post(self, path: str) -> None:
        app = self.server.app
        if path not in ("/api/label", "/api/undo"):
            self.close_connection = True
            raise RequestError(HTTPStatus.NOT_FOUND, "not found")
        payload = self._read_json()
        if path == "/api/label":
            self._send_json(HTTPStatus.OK, app.label(payload))
        else:
            self._send_json(HTTPStatus.OK, app.undo())


class LabellerServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that carries the app; handler threads never block shutdown."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: LabellerApp) -> None:
        self.app = app
        self.loopback_only = _is_loopback(address[0])
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        if ":" in shown:
            shown = f"[{shown}]"
        return f"http://{shown}:{port}/"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_server(app: LabellerApp, host: str = "127.0.0.1", port: int = 8765) -> LabellerServer:
    """Bind (port 0 picks a free one) and start the periodic CSV compaction."""
    server = LabellerServer((host, port), app)
    app.start_compactor()
    return server


__all__ = ["LabellerApp", "LabellerConfig", "LabellerServer", "RequestError", "STATIC_DIR",
           "create_app", "make_server"]
