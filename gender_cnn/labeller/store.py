"""Label state of the hand labeller: journal, compaction, undo, resume and image ordering.

Why a journal: a person labels for one to two hours, so no decision may ever be lost. Each
decision is appended to a JSON-lines journal next to the CSV and fsynced *before* the server
answers, so the page only moves on once the decision is on disk. The CSV
(``img_name,gender,quality,labeller``, pipeline.md) is rewritten atomically from the in-memory
state (periodically, at start-up and at shutdown). The state on disk is always
"CSV + journal replay": every journal operation stores absolute values, so replaying it over any
CSV snapshot written during the session gives the same result, and a ``kill -9`` at any moment
loses nothing that was acknowledged.

Journal lines (one JSON object each)::

    {"op": "set",    "seq": 7, "t": 1700000000.0, "items": [{"img": "000001.jpg", "new": {...}|null, "prev": {...}|null}]}
    {"op": "undo",   "seq": 8, "t": ..., "undoes": 7, "items": [{"img": "000001.jpg", "new": {...}|null}]}
    {"op": "import", "seq": 9, "t": ..., "items": [{"img": ..., "new": {...}}]}

``new``/``prev`` are ``{"gender": 0|1|null, "quality": 0|1|null, "labeller": "hand"}`` or ``null``
(no decision). A ``set`` is one undo step (one key press, or one bulk change in the grid); an
``undo`` pops the newest ``set``. The undo stack is therefore rebuilt by replay and survives a
restart. At start-up and shutdown the journal is trimmed to the newest ``undo_depth`` undoable
steps: replaying them over the compacted CSV still gives the current state, because the current
value of an image always equals the ``new`` of the topmost stack entry touching it.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from common.io import CsvSchemaError, atomic_write_text, read_csv_checked
from gender_cnn.hand_labels import HAND_LABEL_COLUMNS, LABEL_TASKS, read_hand_labels

try:  # POSIX only; the lock is a convenience, not needed for correctness
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

JOURNAL_SUFFIX = ".journal.jsonl"
_LABELLER_RE = re.compile(r"[A-Za-z0-9 _.@-]{1,64}")
DEFAULT_UNDO_DEPTH = 500


class StoreLockedError(RuntimeError):
    """Another labeller process already works on this labels file."""


@dataclass(frozen=True)
class Label:
    """One decision: gender 1 woman / 0 man, quality 1 good / 0 bad, None = unsure."""

    gender: int | None
    quality: int | None
    labeller: str = "hand"

    def __post_init__(self) -> None:
        for task in LABEL_TASKS:
            value = getattr(self, task)
            if value is not None and (isinstance(value, bool) or value not in (0, 1)):
                raise ValueError(f"{task} must be 0, 1 or None, got {value!r}")
            if value is not None:
                object.__setattr__(self, task, int(value))
        if not isinstance(self.labeller, str) or not _LABELLER_RE.fullmatch(self.labeller):
            raise ValueError(f"labeller must match {_LABELLER_RE.pattern}, got {self.labeller!r}")

    @property
    def unsure(self) -> bool:
        return self.gender is None and self.quality is None

    def to_json(self) -> dict:
        return {"gender": self.gender, "quality": self.quality, "labeller": self.labeller}

    @classmethod
    def from_json(cls, obj: Mapping | None) -> Label | None:
        if obj is None:
            return None
        return cls(obj.get("gender"), obj.get("quality"), obj.get("labeller") or "hand")


def journal_path_for(csv_path: Path | str) -> Path:
    """``gender_cnn/hand_labels.csv`` -> ``gender_cnn/hand_labels.journal.jsonl`` (git-ignored)."""
    csv_path = Path(csv_path)
    return csv_path.with_name(csv_path.stem + JOURNAL_SUFFIX)


def _label_from_floats(gender: float, quality: float, labeller: str) -> Label:
    def conv(x: float) -> int | None:
        return None if x is None or (isinstance(x, float) and math.isnan(x)) else int(x)

    if not isinstance(labeller, str) or not _LABELLER_RE.fullmatch(labeller):
        labeller = re.sub(r"[^A-Za-z0-9 _.@-]", "_", str(labeller or "hand"))[:64] or "hand"
    return Label(conv(gender), conv(quality), labeller)


def _read_csv_state(csv_path: Path) -> dict[str, Label]:
    if not csv_path.is_file():
        return {}
    frame = read_hand_labels(csv_path)
    return {
        row.img_name: _label_from_floats(row.gender, row.quality, row.labeller)
        for row in frame.itertuples(index=False)
    }


def _parse_journal(journal_path: Path) -> list[dict]:
    """Journal operations in order; a torn last line (kill during a write) is dropped.

    A torn line can only be the last one, and its request was never answered, so dropping it
    loses no acknowledged decision. A damaged line elsewhere is skipped with a warning.
    """
    if not journal_path.is_file():
        return []
    ops: list[dict] = []
    lines = journal_path.read_bytes().split(b"\n")
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            op = json.loads(raw)
            if not isinstance(op, dict) or op.get("op") not in ("set", "undo", "import"):
                raise ValueError("not a journal operation")
            for item in op.get("items", []):
                Label.from_json(item.get("new"))
                Label.from_json(item.get("prev"))
                if not isinstance(item.get("img"), str):
                    raise ValueError("item without img")
        except (ValueError, TypeError, AttributeError) as exc:
            where = "last line (torn write)" if number >= len(lines) - 1 else f"line {number}"
            logger.warning("journal %s: skipping %s: %s", journal_path, where, exc)
            continue
        ops.append(op)
    return ops


def _replay(state: dict[str, Label], ops: Iterable[dict], stack: list[dict]) -> int:
    """Apply journal operations to ``state`` and ``stack`` in place; returns the highest seq."""
    top_seq = 0
    for op in ops:
        top_seq = max(top_seq, int(op.get("seq", 0)))
        for item in op.get("items", []):
            new = Label.from_json(item.get("new"))
            if new is None:
                state.pop(item["img"], None)
            else:
                state[item["img"]] = new
        if op["op"] == "set":
            stack.append(op)
        elif op["op"] == "undo":
            target = op.get("undoes")
            if stack and stack[-1].get("seq") == target:
                stack.pop()
            else:
                logger.warning("journal: undo of step %s does not match the undo stack; repaired", target)
                stack[:] = [s for s in stack if s.get("seq") != target]
        elif op["op"] == "import":
            stack.clear()  # an import is a barrier: older steps are no longer undoable
    return top_seq


def read_label_state(csv_path: Path | str, journal_path: Path | str | None = None) -> dict[str, Label]:
    """The labels as a running or killed labeller left them: CSV plus journal replay.

    Read-only; use it to inspect labels while the labeller runs (tests do this).
    """
    csv_path = Path(csv_path)
    journal_path = Path(journal_path) if journal_path is not None else journal_path_for(csv_path)
    state = _read_csv_state(csv_path)
    _replay(state, _parse_journal(journal_path), [])
    return state


def format_labels_csv(state: Mapping[str, Label]) -> str:
    """CSV text with the spec's columns, rows sorted by name, integers, empty cell = unsure."""
    def cell(value: int | None) -> str:
        return "" if value is None else str(int(value))

    lines = [",".join(HAND_LABEL_COLUMNS)]
    for name in sorted(state):
        label = state[name]
        if "," in name or '"' in name:
            quoted = '"' + name.replace('"', '""') + '"'
        else:
            quoted = name
        lines.append(f"{quoted},{cell(label.gender)},{cell(label.quality)},{label.labeller}")
    return "\n".join(lines) + "\n"


class LabelStore:
    """Thread-safe label state with a write-ahead journal; see the module docstring.

    Args:
        csv_path: the labels CSV (``PipelinePaths.hand_labels_csv``).
        journal_path: defaults to ``<csv stem>.journal.jsonl`` next to the CSV.
        undo_depth: how many undo steps the trimmed journal keeps across restarts.
        lock: take an exclusive ``flock`` on the journal, so that two labellers cannot write the
            same file (the lock dies with the process, so ``kill -9`` never leaves it stale).
    """

    def __init__(self, csv_path: Path | str, journal_path: Path | str | None = None,
                 undo_depth: int = DEFAULT_UNDO_DEPTH, lock: bool = False) -> None:
        self.csv_path = Path(csv_path)
        self.journal_path = Path(journal_path) if journal_path is not None else journal_path_for(self.csv_path)
        self.undo_depth = int(undo_depth)
        self._lock = threading.RLock()
        self._state: dict[str, Label] = _read_csv_state(self.csv_path)
        self._stack: list[dict] = []
        self._journal = None
        self._closed = False
        self.csv_path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_handle = self._take_lock() if lock else None
        ops = _parse_journal(self.journal_path)
        self._seq = _replay(self._state, ops, self._stack)
        if ops:
            logger.info("replayed %d journal operations from %s", len(ops), self.journal_path)
        self._dirty = False
        self._checkpoint()

    # ---- persistence -------------------------------------------------------------------------
    def _take_lock(self):
        lock_path = self.journal_path.with_name(self.journal_path.name + ".lock")
        handle = open(lock_path, "a+b")  # noqa: SIM115 - held for the store's lifetime
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                handle.close()
                raise StoreLockedError(
                    f"another labeller is already writing {self.csv_path} (lock {lock_path})"
                ) from exc
        return handle

    def _checkpoint(self) -> None:
        """Compact the CSV, then trim the journal to the undoable steps (crash-safe order)."""
        self._close_journal()
        atomic_write_text(self.csv_path, format_labels_csv(self._state))
        self._stack = self._stack[-self.undo_depth:] if self.undo_depth > 0 else []
        atomic_write_text(self.journal_path, "".join(json.dumps(op) + "\n" for op in self._stack))
        self._open_journal()

    def _open_journal(self) -> None:
        # Append-only journal with an fsync per line: the one place outside common.io that
        # writes, because an atomic rewrite per key press would not be cheap enough.
        self._journal = open(self.journal_path, "ab", buffering=0)  # noqa: SIM115
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
        if self._closed or self._journal is None:
            raise RuntimeError("label store is closed")
        self._journal.write((json.dumps(op) + "\n").encode("utf-8"))
        os.fsync(self._journal.fileno())

    def compact(self) -> bool:
        """Rewrite the CSV from the state if anything changed; returns whether it wrote."""
        with self._lock:
            if self._closed or not self._dirty:
                return False
            atomic_write_text(self.csv_path, format_labels_csv(self._state))
            self._dirty = False
            return True

    def close(self) -> None:
        """Compact the CSV and trim the journal (clean shutdown)."""
        with self._lock:
            if self._closed:
                return
            self._checkpoint()
            self._close_journal()
            self._closed = True
            if self._lock_handle is not None:
                self._lock_handle.close()
                self._lock_handle = None

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
    def set_labels(self, changes: Mapping[str, Label | None]) -> int:
        """Record one undo step (one key press or one bulk change); returns its seq.

        ``None`` removes the decision. Returns only after the step is fsynced to the journal.
        """
        if not changes:
            raise ValueError("no labels to set")
        with self._lock:
            items = [
                {"img": name, "new": None if new is None else new.to_json(),
                 "prev": None if self._state.get(name) is None else self._state[name].to_json()}
                for name, new in changes.items()
            ]
            self._seq += 1
            op = {"op": "set", "seq": self._seq, "t": round(time.time(), 3), "items": items}
            self._append(op)
            _replay(self._state, [op], self._stack)
            self._dirty = True
            return self._seq

    def set_label(self, img_name: str, gender: int | None, quality: int | None, labeller: str = "hand") -> int:
        return self.set_labels({img_name: Label(gender, quality, labeller)})

    def undo(self) -> list[str]:
        """Revert the newest step; returns the images it touched (empty if nothing to undo)."""
        with self._lock:
            if not self._stack:
                return []
            target = self._stack[-1]
            self._seq += 1
            items = [{"img": item["img"], "new": item.get("prev")} for item in target["items"]]
            op = {"op": "undo", "seq": self._seq, "t": round(time.time(), 3), "undoes": target["seq"],
                  "items": items}
            self._append(op)
            _replay(self._state, [op], self._stack)
            self._dirty = True
            return [item["img"] for item in items]

    def import_labels(self, labels: Mapping[str, Label], overwrite: bool = False) -> int:
        """Take labels from another file; by default only for images without a decision.

        Not undoable (it clears the undo stack). Returns how many images changed.
        """
        with self._lock:
            items = [
                {"img": name, "new": label.to_json()}
                for name, label in sorted(labels.items())
                if overwrite or name not in self._state
            ]
            if not items:
                return 0
            self._seq += 1
            op = {"op": "import", "seq": self._seq, "t": round(time.time(), 3), "items": items}
            self._append(op)
            _replay(self._state, [op], self._stack)
            self._dirty = True
            return len(items)


def read_import_file(path: Path | str, known_images: Iterable[str] | None = None,
                     labeller: str = "hand") -> dict[str, Label]:
    """Read ours or the original project's CSV (``img_name,quality,gender``) for ``--import``.

    Validation (invalid values, duplicates, unknown images) is ``read_hand_labels``'s; rows whose
    gender and quality are both empty are kept as "unsure" decisions.
    """
    frame = read_hand_labels(path, known_images=known_images, default_labeller=labeller)
    return {row.img_name: _label_from_floats(row.gender, row.quality, row.labeller)
            for row in frame.itertuples(index=False)}


# ---- ordering and review ---------------------------------------------------------------------
ORDERS: tuple[str, ...] = ("name", "uncertainty")


def read_model_scores(path: Path | str) -> dict[str, tuple[float, float]]:
    """``{img_name: (gender_score, quality_score)}`` for the model-scored ('cnn') rows.

    Missing file -> empty dict (no model yet); a malformed file raises ``CsvSchemaError``.
    """
    path = Path(path)
    if not path.is_file():
        return {}
    frame = read_csv_checked(path, ["img_name", "gender_score", "quality_score", "source"])
    frame = frame[frame["source"].astype(str).str.strip() == "cnn"]
    scores: dict[str, tuple[float, float]] = {}
    for row in frame.itertuples(index=False):
        try:
            g, q = float(row.gender_score), float(row.quality_score)
        except (TypeError, ValueError):
            continue
        if math.isfinite(g) and math.isfinite(q):
            scores[str(row.img_name)] = (g, q)
    return scores


def uncertainty(gender_score: float, quality_score: float) -> float:
    """Distance to the decision boundary of the less certain task: 0 = a coin toss."""
    return min(abs(gender_score - 0.5), abs(quality_score - 0.5))


def build_sequence(image_names: Sequence[str], decided: Iterable[str], num: int, order: str = "name",
                   scores: Mapping[str, tuple[float, float]] | None = None) -> list[str]:
    """The images a labelling session presents, in order.

    ``name``: the first ``num`` names (sorted), as the spec's "first N images".
    ``uncertainty``: every image that already has a decision (by name), then the ``num`` undecided
    images the model is least sure about (|score - 0.5| ascending, the less certain task counts);
    undecided images without a model score come last, by name.
    """
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    names = sorted(image_names)
    if num is not None and num < 0:
        raise ValueError(f"num must be >= 0, got {num}")
    if order == "name":
        return names if num is None else names[:num]
    decided_set = set(decided)
    scores = scores or {}
    done = [n for n in names if n in decided_set]
    todo = [n for n in names if n not in decided_set]
    scored = sorted((n for n in todo if n in scores), key=lambda n: (uncertainty(*scores[n]), n))
    unscored = [n for n in todo if n not in scores]
    queue = scored + unscored
    return done + (queue if num is None else queue[:num])


@dataclass(frozen=True)
class ReviewItem:
    """A hand-labelled image whose label disagrees with the out-of-fold prediction."""

    img_name: str
    disagreement: float          # max over tasks of |label - oof_score|, in (0.5, 1]
    tasks: tuple[tuple[str, int, float], ...]  # (task, current label, oof score) of disagreeing tasks

    def to_json(self) -> dict:
        return {"img": self.img_name, "disagreement": round(self.disagreement, 4),
                "tasks": [{"task": t, "label": lab, "score": round(s, 4)} for t, lab, s in self.tasks]}


def read_oof_scores(path: Path | str) -> dict[str, dict[str, float]]:
    """``{img_name: {task: mean oof_score}}`` from the long-format OOF CSV; {} when absent."""
    path = Path(path)
    if not path.is_file():
        return {}
    frame = read_csv_checked(path, ["img_name", "task", "label", "oof_score", "fold"])
    out: dict[str, dict[str, list[float]]] = {}
    for row in frame.itertuples(index=False):
        task = str(row.task).strip()
        try:
            score = float(row.oof_score)
        except (TypeError, ValueError):
            continue
        if task in LABEL_TASKS and math.isfinite(score):
            out.setdefault(str(row.img_name), {}).setdefault(task, []).append(score)
    return {name: {task: sum(v) / len(v) for task, v in tasks.items()} for name, tasks in out.items()}


def build_review_list(oof: Mapping[str, Mapping[str, float]], labels: Mapping[str, Label],
                      threshold: float = 0.5) -> list[ReviewItem]:
    """Likely label mistakes, most suspicious first.

    Compares the *current* label (the person may have fixed it since training) with the
    out-of-fold score; a task disagrees when |label - score| > ``threshold``. Unsure cells and
    images without a label are left out.
    """
    items: list[ReviewItem] = []
    for name, task_scores in oof.items():
        label = labels.get(name)
        if label is None:
            continue
        bad = []
        for task in LABEL_TASKS:
            value = getattr(label, task)
            if value is None or task not in task_scores:
                continue
            gap = abs(value - task_scores[task])
            if gap > threshold:
                bad.append((task, value, task_scores[task], gap))
        if bad:
            items.append(ReviewItem(name, max(b[3] for b in bad), tuple((t, v, s) for t, v, s, _ in bad)))
    items.sort(key=lambda item: (-item.disagreement, item.img_name))
    return items


__all__ = [
    "CsvSchemaError", "DEFAULT_UNDO_DEPTH", "Label", "LabelStore", "ORDERS", "ReviewItem",
    "StoreLockedError", "build_review_list", "build_sequence", "format_labels_csv",
    "journal_path_for", "read_import_file", "read_label_state", "read_model_scores",
    "read_oof_scores", "uncertainty",
]
