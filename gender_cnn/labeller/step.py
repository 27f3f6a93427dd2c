"""Step 2 as a step function: take the lock, open the session, serve until Ctrl-C, report what was labelled.

The lock comes first, so files another labeller holds are never touched (not even moved aside by
``overwrite``). Shutdown compacts the CSV; if that fails every decision is still in the journal,
which every reader replays.
"""
from __future__ import annotations

import logging
import signal
import socket
import threading
import time
import webbrowser
from dataclasses import dataclass
from pathlib import Path

from common.images import list_images
from common.io import CsvSchemaError
from common.steps import Progress, StepError, announce
from gender_cnn.labeller.server import EXPOSES, LabellerApp, LabellerConfig, create_app, make_server
from gender_cnn.labeller.store import StoreLock, StoreLockedError, journal_path_for, read_import_file

logger = logging.getLogger(__name__)


class LabellerError(StepError, RuntimeError):
    """The labeller cannot start (bad input, locked labels, port in use) or could not compact at shutdown."""


@dataclass(frozen=True)
class LabellerSummary:
    labelled: int          # images of the session with a decision (unsure cells count)
    total: int             # images in the session
    this_session: int      # decided now, net of undo
    unsure: int            # decided images with an unsure cell
    rows: int              # rows in the CSV (images outside the session included)
    imported: int
    csv_path: Path
    url: str              # "" when the page was not served (--no-serve)
    seconds: float
    paused: bool = False  # --no-serve and no labels yet: a person must label first (the runner stops here)
    backup: Path | None = None  # where an import moved the earlier labels

    def line(self) -> str:
        if self.paused:
            return (f"step 2: no hand labels yet in {self.csv_path}: label the images in the browser page of "
                    "02_label_images.py, or pass existing labels: run_pipeline.py --from 2 --labels FILE")
        imported = f", {self.imported} labels imported" if self.imported else ""
        if self.backup is not None:
            imported += f"; previous labels backed up to {self.backup}"
        return (f"step 2: labelled {self.labelled}/{self.total} images ({self.this_session:+d} this session, "
                f"{self.unsure} with an unsure cell{imported}); {self.rows} rows in {self.csv_path} "
                f"[{self.seconds:.0f}s]")


def backup_aside(path: Path, stamp: str) -> Path | None:
    """Move ``path`` aside to ``<name>.bak-<stamp>`` (never over an existing backup); None when absent."""
    if not path.exists():
        return None
    target = path.with_name(f"{path.name}.bak-{stamp}")
    counter = 1
    while target.exists():
        counter += 1
        target = path.with_name(f"{path.name}.bak-{stamp}-{counter}")
    path.rename(target)
    return target


def _open_session(config: LabellerConfig) -> tuple[LabellerApp, int]:
    csv_path = Path(config.labels)
    if config.import_csv is not None:  # a bad file is refused before the lock (or anything) is made
        try:
            read_import_file(config.import_csv, known_images=[p.name for p in list_images(config.images)],
                             labeller=config.labeller)
        except (FileNotFoundError, NotADirectoryError, CsvSchemaError) as exc:
            raise LabellerError(f"--import {config.import_csv}: {exc}") from exc
    try:
        lock = StoreLock(csv_path)
    except (StoreLockedError, OSError) as exc:
        raise LabellerError(str(exc)) from exc
    try:
        if config.overwrite:  # never delete hours of work: move the old files aside
            stamp = time.strftime("%Y%m%d-%H%M%S")
            for old in (csv_path, journal_path_for(csv_path)):
                moved = backup_aside(old, stamp)
                if moved:
                    logger.warning("--overwrite: moved %s to %s", old, moved)
        return create_app(Path(config.images), csv_path, config, scores_csv=config.scores_csv,
                          oof_csv=config.oof_csv, import_csv=config.import_csv, lock=lock)
    except (FileNotFoundError, NotADirectoryError, CsvSchemaError, StoreLockedError, ValueError, OSError) as exc:
        lock.release()
        raise LabellerError(str(exc)) from exc


def _raise_interrupt(signum, frame):  # noqa: ARG001 - signal handler signature
    raise KeyboardInterrupt


def run_labeller(config: LabellerConfig, progress: Progress | None = None) -> LabellerSummary:
    """Serve the labelling page until Ctrl-C or SIGTERM; returns what the session labelled.

    What a person needs to reach the page (URL, SSH hint, review list) is announced on stdout
    (``common.steps.announce``). progress(labelled, total) at start-up and at shutdown.
    """
    say = announce
    start = time.perf_counter()
    config = config.resolved()
    if not config.serve and config.import_csv is None and not config.rule_labels and not _has_labels(config):
        return LabellerSummary(0, 0, 0, 0, 0, 0, Path(config.labels), "", time.perf_counter() - start, paused=True)
    app, imported = _open_session(config)
    decided_before = app.decided()
    if not config.serve:
        try:
            return _summary(app, imported, decided_before, "", start, progress)
        finally:
            app.close()
    try:
        server = make_server(app, config.host, config.port)
    except OSError as exc:
        app.close()
        raise LabellerError(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc} (is another "
                            "labeller running? try --port)") from exc
    if progress is not None:
        progress(decided_before, len(app.sequence))
    port = server.server_address[1]
    warning = server.exposure_warning(EXPOSES)
    if warning:
        say(warning)
    say(f"Labeller: {server.url}  ({decided_before}/{len(app.sequence)} already labelled"
        f"{f', {imported} imported' if imported else ''}; Ctrl-C to stop)")
    if app.review:
        say(f"  {len(app.review)} hand labels disagree with the model: press r in the page to review them")
    if server.loopback_only:
        say(f"  remote? on your laptop: ssh -N -L {port}:127.0.0.1:{port} <user>@{socket.gethostname()}"
            f"  then open http://localhost:{port}/")
    if config.open_browser:
        threading.Thread(target=webbrowser.open, args=(server.url,), daemon=True).start()
    _serve(server, app)
    return _summary(app, imported, decided_before, server.url, start, progress)


def _has_labels(config: LabellerConfig) -> bool:
    labels = Path(config.labels)
    return labels.is_file() or journal_path_for(labels).is_file()


def _summary(app: LabellerApp, imported: int, decided_before: int, url: str, start: float,
             progress: Progress | None) -> LabellerSummary:
    labels = app.store.labels()
    in_session = [labels[n] for n in app.sequence if n in labels]
    if progress is not None:
        progress(len(in_session), len(app.sequence))
    unsure = sum(1 for label in in_session if label.gender is None or label.quality is None)
    return LabellerSummary(labelled=len(in_session), total=len(app.sequence),
                           this_session=len(in_session) - decided_before, unsure=unsure, rows=len(labels),
                           imported=imported, csv_path=app.store.csv_path, url=url,
                           seconds=time.perf_counter() - start, backup=app.import_backup)


def _serve(server, app: LabellerApp) -> None:
    """serve_forever until Ctrl-C (SIGTERM too, in the main thread), then compact the CSV."""
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if in_main else None
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        logger.info("stopping")
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
        server.server_close()
        try:
            app.close()  # compacts the CSV and trims the journal
        except OSError as exc:
            csv_path = app.store.csv_path
            raise LabellerError(f"could not compact {csv_path} at shutdown ({exc.strerror or exc}); every decision "
                                f"is still in {journal_path_for(csv_path)} and is read from there") from exc
