"""Label state of the hand labeller: journal, compaction, undo, resume and import (ordering: queue.py; review: review.py).

Why a journal: a person labels for one to two hours, so no decision may ever be lost. Each
decision is appended to a JSON-lines journal next to the CSV and fsynced *before* the server
answers, so the page only moves on once the decision is on disk. A write that fails or comes up
short (disk full) is rolled back and reported, never acknowledged. The CSV
(``img_name,gender,quality,labeller``, pipeline.md) is rewritten atomically from the in-memory
state (periodically, at start-up and at shutdown). The state on disk is always "CSV + journal
replay" (``gender_cnn.hand_labels``, which every reader of hand labels uses), so a ``kill -9`` at
any moment loses nothing that was acknowledged.

A ``set`` is one undo step (one key press, or one bulk change in the grid); an ``undo`` pops the
newest ``set``. The undo stack is therefore rebuilt by replay and survives a restart. At start-up
and shutdown the journal is trimmed to the newest ``undo_depth`` undoable steps: replaying them
over the compacted CSV still gives the current state, because the current value of an image
always equals the ``new`` of the topmost stack entry touching it.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from common.io import CsvSchemaError, atomic_write_text
from gender_cnn.hand_labels import (
    Label,
    format_labels_csv,
    journal_path_for,
    label_from_floats,
    parse_journal,
    read_csv_state,
    read_label_state,
    replay,
)
from gender_cnn.label_csv import read_hand_labels

try:  # POSIX only; the lock is a convenience, not needed for correctness
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

DEFAULT_UNDO_DEPTH = 500


class StoreLockedError(RuntimeError):
    """Another labeller process already works on this labels file."""


class JournalWriteError(OSError):
    """A decision could not be written durably (disk full, I/O error); it was not recorded."""

    def __str__(self) -> str:  # the message alone, without "[Errno N]"
        return self.strerror or super().__str__()


class StoreLock:
    """An exclusive ``flock`` on ``<journal>.lock``: one writer per labels file.

    Taken *before* anything touches the CSV or journal (``--overwrite`` backups included), and
    released by the kernel when the process dies, so ``kill -9`` never leaves it stale.
    """

    def __init__(self, csv_path: Path | str, journal_path: Path | str | None = None) -> None:
        self.csv_path = Path(csv_path)
        journal = Path(journal_path) if journal_path is not None else journal_path_for(self.csv_path)
        self.path = journal.with_name(journal.name + ".lock")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.path, "a+b")  # noqa: SIM115 - held for the lock's lifetime
        if fcntl is not None:
            try:
                fcntl.flock(self._handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                self._handle.close()
                raise StoreLockedError(
                    f"another labeller is already writing {self.csv_path} (lock {self.path}); stop it first"
                ) from exc

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> StoreLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _reason(exc: OSError) -> str:
    """'disk full' for the errors a full disk or quota gives, else the OS's words."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return "disk full"
    return exc.strerror or str(exc)


def _unique_backup_path(path: Path, stamp: str) -> Path:
    target = path.with_name(f"{path.name}.bak-{stamp}")
    counter = 1
    while target.exists():
        counter += 1
        target = path.with_name(f"{path.name}.bak-{stamp}-{counter}")
    return target


class LabelStore:
    """Thread-safe label state with a write-ahead journal; see the module docstring.

    Args:
        csv_path: the labels CSV (``PipelinePaths.hand_labels_csv``).
        journal_path: defaults to ``<csv stem>.journal.jsonl`` next to the CSV.
        undo_depth: how many undo steps the trimmed journal keeps across restarts.
        lock: ``True`` takes an exclusive ``StoreLock``, or pass one already taken (the
            ``--overwrite`` path locks before it moves old files aside); ``False`` for read-mostly tests.
    """

    def __init__(self, csv_path: Path | str, journal_path: Path | str | None = None,
                 undo_depth: int = DEFAULT_UNDO_DEPTH, lock: bool | StoreLock = False) -> None:
        self.csv_path = Path(csv_path)
        self.journal_path = Path(journal_path) if journal_path is not None else journal_path_for(self.csv_path)
        self.undo_depth = int(undo_depth)
        self._lock = threading.RLock()
        self._journal = None
        self._journal_end = 0        # size of the journal up to its last complete line
        self._needs_newline = False  # a failed write could not be rolled back: start a fresh line
        self._closed = False
        self.csv_path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(lock, StoreLock):
            self._store_lock: StoreLock | None = lock
        else:
            self._store_lock = StoreLock(self.csv_path, self.journal_path) if lock else None
        try:
            self._state: dict[str, Label] = read_csv_state(self.csv_path)
            self._stack: list[dict] = []
            ops = parse_journal(self.journal_path)
            self._seq = replay(self._state, ops, self._stack)
            if ops:
                logger.info("replayed %d journal operations from %s", len(ops), self.journal_path)
            self._dirty = False
            try:
                self._checkpoint()  # folds the journal into the CSV and rewrites it without torn lines
            except OSError as exc:
                raise JournalWriteError(exc.errno or errno.EIO, f"{_reason(exc)}: cannot write {self.csv_path} at "
                                        "start-up (nothing was changed; free some space and start again)") from exc
        except BaseException:
            self._release_lock()
            raise

    # ---- persistence -------------------------------------------------------------------------
    def _release_lock(self) -> None:
        if self._store_lock is not None:
            self._store_lock.release()
            self._store_lock = None

    def _checkpoint(self) -> None:
        """Compact the CSV, then trim the journal to the undoable steps (crash-safe order)."""
        self._close_journal()
        atomic_write_text(self.csv_path, format_labels_csv(self._state))
        self._stack = self._stack[-self.undo_depth:] if self.undo_depth > 0 else []
        atomic_write_text(self.journal_path, "".join(json.dumps(op) + "\n" for op in self._stack))
        self._dirty = False
        self._open_journal()

    def _open_journal(self) -> None:
        # Append-only journal with an fsync per line: the one place outside common.io that
        # writes, because an atomic rewrite per key press would not be cheap enough.
        self._journal = open(self.journal_path, "ab", buffering=0)  # noqa: SIM115
        self._journal_end = os.fstat(self._journal.fileno()).st_size
        self._needs_newline = False
        try:
            dir_fd = os.open(self.journal_path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError:  # pragma: no cover - some filesystems refuse directory fsync
            pass

    def _close_journal(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    def _append(self, op: dict) -> None:
        """Write one whole line and fsync it, or roll back and raise ``JournalWriteError``.

        ``write`` may write fewer bytes than asked (a full disk does that before it fails), so
        the loop checks every count; a failure truncates the journal back to its last complete
        line so the torn bytes can never glue onto (and swallow) the next decision.
        """
        if self._closed or self._journal is None:
            raise RuntimeError("label store is closed")
        data = (json.dumps(op) + "\n").encode("utf-8")
        if self._needs_newline:
            data = b"\n" + data
        journal = self._journal
        start = self._journal_end
        try:
            view = memoryview(data)
            written = 0
            while written < len(data):
                count = journal.write(view[written:])
                if not count:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                written += count
            os.fsync(journal.fileno())
        except OSError as exc:
            self._roll_back(start)
            raise JournalWriteError(exc.errno or errno.EIO,
                                    f"{_reason(exc)}: decision NOT saved to {self.journal_path}") from exc
        self._journal_end = start + len(data)
        self._needs_newline = False

    def _roll_back(self, size: int) -> None:
        try:
            self._journal.truncate(size)
            os.fsync(self._journal.fileno())
        except OSError:
            self._needs_newline = True  # the torn bytes stay; the next line starts on its own
            logger.exception("could not roll back a failed journal write in %s", self.journal_path)

    def compact(self) -> bool:
        """Rewrite the CSV from the state if anything changed; returns whether it wrote."""
        with self._lock:
            if self._closed or not self._dirty:
                return False
            atomic_write_text(self.csv_path, format_labels_csv(self._state))
            self._dirty = False
            return True

    def close(self) -> None:
        """Compact the CSV and trim the journal (clean shutdown); the lock is released even on error."""
        with self._lock:
            if self._closed:
                return
            try:
                self._checkpoint()
            finally:
                self._close_journal()
                self._closed = True
                self._release_lock()

    def __enter__(self) -> LabelStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- queries -------------------------------------------------------------------------------
    def get(self, img_name: str) -> Label | None:
        with self._lock:
            return self._state.get(img_name)

    def labels(self) -> dict[str, Label]:
        with self._lock:
            return dict(self._state)

    def decided(self, names: Iterable[str] | None = None) -> int:
        """How many images have a decision (unsure counts: the person looked at it)."""
        with self._lock:
            if names is None:
                return len(self._state)
            return sum(1 for n in names if n in self._state)

    def first_undecided(self, sequence: Sequence[str]) -> int | None:
        """Index of the first image of ``sequence`` without a decision (resume point), or None."""
        with self._lock:
            for index, name in enumerate(sequence):
                if name not in self._state:
                    return index
            return None

    @property
    def undo_available(self) -> int:
        with self._lock:
            return len(self._stack)

    # ---- changes -------------------------------------------------------------------------------
    def _record(self, op: dict) -> None:
        """Journal first (raises if not durable), then apply: state never runs ahead of the disk."""
        self._append(op)
        replay(self._state, [op], self._stack)
        self._dirty = True

    def set_labels(self, changes: Mapping[str, Label | None]) -> int:
        """Record one undo step (one key press or one bulk change); returns its seq.

        ``None`` removes the decision. Returns only after the step is fsynced to the journal;
        raises ``JournalWriteError`` (nothing recorded) when it could not be.
        """
        if not changes:
            raise ValueError("no labels to set")
        with self._lock:
            items = [
                {"img": name, "new": None if new is None else new.to_json(),
                 "prev": None if self._state.get(name) is None else self._state[name].to_json()}
                for name, new in changes.items()
            ]
            op = {"op": "set", "seq": self._seq + 1, "t": round(time.time(), 3), "items": items}
            self._record(op)
            self._seq += 1
            return self._seq

    def set_label(self, img_name: str, gender: int | None, quality: int | None, labeller: str = "hand") -> int:
        return self.set_labels({img_name: Label(gender, quality, labeller)})

    def undo(self) -> list[str]:
        """Revert the newest step; returns the images it touched (empty if nothing to undo)."""
        with self._lock:
            if not self._stack:
                return []
            target = self._stack[-1]
            items = [{"img": item["img"], "new": item.get("prev")} for item in target["items"]]
            op = {"op": "undo", "seq": self._seq + 1, "t": round(time.time(), 3), "undoes": target["seq"],
                  "items": items}
            self._record(op)
            self._seq += 1
            return [item["img"] for item in items]

    def import_labels(self, labels: Mapping[str, Label], overwrite: bool = False, replace: bool = False) -> int:
        """Take labels from another file; by default only for images without a decision.

        ``overwrite``: imported labels win over existing ones. ``replace``: afterwards the labels
        are exactly ``labels`` (decisions for other images are removed). Not undoable (it clears
        the undo stack). Returns how many images changed.
        """
        with self._lock:
            items = [
                {"img": name, "new": label.to_json()}
                for name, label in sorted(labels.items())
                if (overwrite or replace or name not in self._state) and self._state.get(name) != label
            ]
            if replace:
                items += [{"img": name, "new": None} for name in sorted(set(self._state) - set(labels))]
            if not items:
                return 0
            op = {"op": "import", "seq": self._seq + 1, "t": round(time.time(), 3), "items": items}
            self._record(op)
            self._seq += 1
            return len(items)

    def backup_csv(self) -> Path | None:
        """Write the current labels to ``<csv>.bak-<time>`` (never overwriting one); None if empty."""
        with self._lock:
            if not self._state:
                return None
            target = _unique_backup_path(self.csv_path, time.strftime("%Y%m%d-%H%M%S"))
            atomic_write_text(target, format_labels_csv(self._state))
            return target

    def apply_import(self, labels: Mapping[str, Label], replace: bool = False) -> tuple[int, Path | None]:
        """Import labels read by ``read_import_file``: THE import path, shared by the labeller's
        ``--import`` and ``run_pipeline --labels`` (validate first, then open the store, then this).

        Backs up the current labels (the journal was folded in when the store opened), imports,
        then folds the import into the CSV and trims the journal, so no older journal line can
        ever re-apply over the imported labels. ``replace=False`` fills only images without a
        decision; ``replace=True`` makes the labels exactly ``labels``. Returns (images changed,
        backup path or None). Labels that already are exactly ``labels`` are left alone: no backup, so
        re-running the same import (the demo's rule labels) does not pile up copies.
        """
        with self._lock:
            if replace and self.labels() == dict(labels):
                return 0, None
            backup = self.backup_csv()
            changed = self.import_labels(labels, replace=replace)
            self._checkpoint()
        return changed, backup


def read_import_file(path: Path | str, known_images: Iterable[str] | None = None,
                     labeller: str = "hand") -> dict[str, Label]:
    """Read ours or the original project's CSV (``img_name,quality,gender``) for an import.

    Validation (invalid values, duplicates, unknown images) is ``read_hand_labels``'s; rows whose
    gender and quality are both empty are kept as "unsure" decisions. A file without any row is
    refused (``CsvSchemaError``): importing it would only ever remove labels.
    """
    frame = read_hand_labels(path, known_images=known_images, default_labeller=labeller)
    if frame.empty:
        raise CsvSchemaError(f"{path}: holds no labels (only a header); expected rows of img_name,gender,quality")
    return {row.img_name: label_from_floats(row.gender, row.quality, row.labeller)
            for row in frame.itertuples(index=False)}


__all__ = [
    "CsvSchemaError", "DEFAULT_UNDO_DEPTH", "JournalWriteError", "Label", "LabelStore", "StoreLock",
    "StoreLockedError", "format_labels_csv", "journal_path_for", "read_import_file", "read_label_state",
]
