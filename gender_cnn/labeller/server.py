"""The labeller's local HTTP server: a few static files, the images, and a small JSON API.

The server mechanics (loopback bind, Host-header check, strict CSP, body limits, 4xx for
malformed input, listen backlog and bounded worker threads, serving only regular files inside a
folder) are ``common.localserver``'s; this module only adds the routes. It binds 127.0.0.1 by
default and is reached through SSH port-forwarding.

Routes::

    GET  /                  the page (static/index.html); /static/app.js, /static/style.css
    GET  /images/<name>     an image of the labelled folder: listed at start-up AND a regular file
                            whose resolved path is inside the folder (a symlink out is refused)
    GET  /api/state         sequence, labels, resume index, review list, counts
    GET  /api/review        the review list rebuilt now from the newest out-of-fold file (key r)
    POST /api/label         {"img", "gender", "quality"} or {"items": [...]}; one undo step
    POST /api/undo          revert the newest step

A decision that could not be written durably (disk full) is answered 507 with the reason, and
the page shows it; nothing is acknowledged before its journal line is fsynced.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from common.images import list_images
from common.io import CsvSchemaError
from common.localserver import LocalRequestHandler, LocalServer, RequestError, ServerLimits
from common.settings import (
    SettingError,
    StepConfig,
    allow_hosts_setting,
    host_setting,
    overwrite_setting,
    port_setting,
    setting,
)
from gender_cnn.demo_labels import demo_rule_labels
from gender_cnn.hand_labels import LABELLER_RE
from gender_cnn.labeller.queue import ORDERS, build_sequence, read_model_scores
from gender_cnn.labeller.review import ReviewItem, build_review_list, read_oof_scores
from gender_cnn.labeller.store import (
    JournalWriteError,
    Label,
    LabelStore,
    StoreLock,
    read_import_file,
)

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
_STATIC_FILES = {
    "/": "index.html",
    "/index.html": "index.html",
    "/static/app.js": "app.js",
    "/static/style.css": "style.css",
    "/favicon.ico": "",  # 204
}


@dataclass(frozen=True)
class LabellerConfig(StepConfig):
    """Step 2's settings: the session and, for ``run_labeller``, the paths (None = the default under ``root``)."""

    progress_unit = "label"

    images: Path | None = setting(None, path="generated_dir", help="image folder")
    labels: Path | None = setting(None, concept="hand_labels_csv", output="file")
    scores_csv: Path | None = setting(None, concept="quality_gender_csv", aliases=("--scores",),
                                      help="step 4's scores CSV, for --order uncertainty")
    oof_csv: Path | None = setting(None, flag="--oof", path="oof_predictions_csv",
                                   help="step 3's out-of-fold predictions for the review list (ignored when absent)")
    import_csv: Path | None = setting(None, flag="--import", help="import labels from a CSV (ours, or the original "
                                                                  "img_name,quality,gender); images that already "
                                                                  "have a decision keep it")
    host: str = host_setting()
    port: int = port_setting(8765)
    allow_hosts: tuple[str, ...] = allow_hosts_setting()
    open_browser: bool = setting(False, off_flag="--no-browser", help="open the page in a local browser "
                                                                      "(--no-browser: do not, the default)")
    overwrite: bool = overwrite_setting("start afresh: move the old CSV and journal aside to *.bak-<time> "
                                        "(never deleted)")
    num: int = setting(2000, low=0, help="name order: label the first NUM images by name; uncertainty order: queue "
                                         "the NUM most uncertain unlabelled images (already labelled ones stay "
                                         "reachable)")
    order: str = setting("name", choices=ORDERS, help="uncertainty: most uncertain model scores first (needs step "
                                                      "4's all_image_quality_and_gender.csv)")
    labeller: str = setting("hand", pattern=LABELLER_RE.pattern,
                            mismatch="must be 1 to 64 letters, digits, spaces or _ . @ -",
                            help="value written in the labeller column")
    compact_interval_s: float = setting(2.0, flag="--compact-interval", low=0.0, low_open=True,
                                        help="seconds between CSV rewrites from the journal")
    replace_labels: bool = setting(False, help="with --import: the file's labels replace every hand label (the old "
                                               "CSV and journal are backed up first); run_pipeline --labels does this")
    rule_labels: bool = setting(False, help="label the first --num images by the demo's rule (labeller=demo) "
                                            "instead of by hand: random-weight demos only; replaces the labels "
                                            "(backed up first)")
    serve: bool = setting(True, flag="--no-serve", negate=True,
                          help="do not serve the page: apply --import / --rule-labels, report the labels and stop "
                               "(run_pipeline's step 2; with no labels yet it reports a pause)")
    max_body_bytes: int = setting(1 << 20, flag="", low=1, help="larger POST bodies get 413")
    max_items: int = setting(10_000, flag="", low=1, help="most images one bulk POST may change")
    undo_depth: int = setting(500, flag="", low=0, help="undo steps kept across restarts")
    max_threads: int = setting(32, flag="", low=1, help="concurrent requests; more wait in the listen backlog")
    backlog: int = setting(1024, flag="", low=1, help="listen backlog (a burst of requests is queued, not refused)")

    def check(self) -> None:
        if self.rule_labels and self.import_csv is not None:
            raise SettingError("--rule-labels and --import exclude each other: pick where the labels come from")
        if self.replace_labels and self.import_csv is None:
            raise SettingError("--replace-labels needs --import FILE (the labels that replace the current ones)")

    def limits(self) -> ServerLimits:
        return ServerLimits(max_body_bytes=self.max_body_bytes, max_threads=self.max_threads, backlog=self.backlog)


def _label_json(label: Label | None) -> dict | None:
    return None if label is None else {"gender": label.gender, "quality": label.quality}


class LabellerApp:
    """Everything the HTTP handler needs: the store, the image whitelist, order and review list."""

    def __init__(self, store: LabelStore, images: dict[str, Path], sequence: list[str],
                 review: list[ReviewItem], config: LabellerConfig, images_dir: Path | None = None,
                 oof_csv: Path | None = None) -> None:
        self.store = store
        self.oof_csv = Path(oof_csv) if oof_csv is not None else None
        self.images = images
        self.images_dir = Path(images_dir) if images_dir is not None else (
            next(iter(images.values())).parent if images else Path("."))
        self.sequence = sequence
        self.review = review
        self.config = config
        self.import_backup: Path | None = None  # set by create_app when an import moved earlier labels aside
        self._stop = threading.Event()
        self._compactor: threading.Thread | None = None

    # ---- lifecycle ---------------------------------------------------------------------------
    def start_compactor(self) -> None:
        """Rewrite the CSV from the journal every few seconds while labels change."""
        def loop() -> None:
            failing = False
            while not self._stop.wait(self.config.compact_interval_s):
                try:
                    self.store.compact()
                    if failing:
                        logger.info("CSV compaction works again")
                    failing = False
                except OSError as exc:  # e.g. disk full: say it once, keep labelling (the journal has it all)
                    if not failing:
                        logger.warning("cannot rewrite %s (%s); the journal keeps every decision, retrying",
                                       self.store.csv_path, exc.strerror or exc)
                    failing = True
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

    def build_review(self) -> list[ReviewItem]:
        """Likely mistakes among the current labels, from the out-of-fold file as it is now."""
        if self.oof_csv is None or not self.oof_csv.is_file():
            return []
        review = build_review_list(read_oof_scores(self.oof_csv), self.store.labels())
        return [item for item in review if item.img_name in self.images]

    def review_now(self) -> dict[str, Any]:
        """Rebuild the review list on demand: step 3 may have written its file after start-up."""
        try:
            self.review = self.build_review()
        except CsvSchemaError as exc:
            raise RequestError(HTTPStatus.CONFLICT, f"cannot read the out-of-fold file: {exc}") from None
        return {"review": [item.to_json() for item in self.review],
                "labels": {item.img_name: _label_json(self.store.get(item.img_name)) for item in self.review},
                "oof": str(self.oof_csv) if self.oof_csv is not None else None,
                "oof_exists": bool(self.oof_csv is not None and self.oof_csv.is_file())}

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
        self._write(self.store.set_labels, changes)
        return {"ok": True, "labels": {n: _label_json(self.store.get(n)) for n in changes},
                "decided": self.decided(), "undo_available": self.store.undo_available}

    @staticmethod
    def _write(action, *args):
        """Run a store change; a write that did not reach the disk is a 507 the page shows."""
        try:
            return action(*args)
        except JournalWriteError as exc:
            logger.error("%s", exc)
            raise RequestError(HTTPStatus.INSUFFICIENT_STORAGE, str(exc)) from None

    def undo(self) -> dict[str, Any]:
        touched = self._write(self.store.undo)
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
    elif config.rule_labels:
        import_labels, import_csv = demo_rule_labels(sorted(all_images.values())[:config.num]), "the demo's rule"
    replace = config.replace_labels or config.rule_labels
    store = LabelStore(csv_path, undo_depth=config.undo_depth, lock=lock)
    try:
        imported, backup = 0, None
        if import_labels is not None:  # the one import path (backup, journal folded in, then import)
            imported, backup = store.apply_import(import_labels, replace=replace)
            logger.info("imported %d labels from %s (%s%s)", imported, import_csv,
                        "they replace every earlier label" if replace
                        else f"{len(import_labels) - imported} already decided here were kept",
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
        app = LabellerApp(store, all_images, sequence, [], config, images_dir=Path(images_dir), oof_csv=oof_csv)
        app.import_backup = backup  # where an import moved the earlier labels (None: nothing to keep)
        app.review = app.build_review()
        if app.review:
            logger.info("review list: %d hand labels disagree with the out-of-fold predictions", len(app.review))
    except BaseException:
        store.close()
        raise
    return app, imported


class _Handler(LocalRequestHandler):
    """The labeller's routes; all state lives in ``self.server.context`` (the ``LabellerApp``)."""

    server: LabellerServer
    server_version = "labeller/1"
    page_dir = STATIC_DIR
    page_files = _STATIC_FILES

    def get(self, path: str) -> None:
        app: LabellerApp = self.server.context
        if path.startswith("/images/"):
            # Listed at start-up (whitelist) AND a regular file inside the folder right now.
            name = path[len("/images/"):]
            if unquote(name, errors="replace") not in app.images:
                raise RequestError(HTTPStatus.NOT_FOUND, "no such image")
            self.send_file_in(app.images_dir, name)
        elif path == "/api/state":
            self.send_json(HTTPStatus.OK, app.state())
        elif path == "/api/review":
            self.send_json(HTTPStatus.OK, app.review_now())
        else:
            raise RequestError(HTTPStatus.NOT_FOUND, "not found")

    def post(self, path: str) -> None:
        app: LabellerApp = self.server.context
        if path not in ("/api/label", "/api/undo"):
            self.close_connection = True
            raise RequestError(HTTPStatus.NOT_FOUND, "not found")
        payload = self.read_json()
        if path == "/api/label":
            self.send_json(HTTPStatus.OK, app.label(payload))
        else:
            self.send_json(HTTPStatus.OK, app.undo())


EXPOSES = "read every hand label, change or clear any of them, and see the images"
"""What a visitor of a labeller bound beyond loopback can do (the start-up warning says it)."""


class LabellerServer(LocalServer):
    """The shared local server carrying the labeller app (also as ``.app``)."""

    def __init__(self, address: tuple[str, int], app: LabellerApp) -> None:
        self.app = app
        super().__init__(address, _Handler, context=app, limits=app.config.limits(),
                         allow_hosts=app.config.allow_hosts)


def make_server(app: LabellerApp, host: str = "127.0.0.1", port: int = 8765) -> LabellerServer:
    """Bind (port 0 picks a free one) and start the periodic CSV compaction."""
    server = LabellerServer((host, port), app)
    app.start_compactor()
    return server


__all__ = ["LabellerApp", "LabellerConfig", "LabellerServer", "RequestError", "STATIC_DIR",
           "create_app", "make_server"]
