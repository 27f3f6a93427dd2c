"""Hand labels as they really are: ``hand_labels.csv`` plus the labeller's journal replayed over it.

The labeller (step 2) acknowledges a decision once it is fsynced to the journal
(``hand_labels.journal.jsonl``); the CSV is only a periodic snapshot. After a ``kill -9`` the
newest acknowledged decisions therefore sit only in the journal, so every reader of hand labels
(step 3's training, step 4's filter, ``run_pipeline``, the labeller itself) goes through
``load_hand_labels``/``read_label_state`` here: one definition of "the hand labels", and no
acknowledged decision is ever left out of training.

Journal lines (one JSON object each; ``gender_cnn.labeller.store`` writes them)::

    {"op": "set",    "seq": 7, "t": 1700000000.0, "items": [{"img": "000001.jpg", "new": {...}|null, "prev": {...}|null}]}
    {"op": "undo",   "seq": 8, "t": ..., "undoes": 7, "items": [{"img": "000001.jpg", "new": {...}|null}]}
    {"op": "import", "seq": 9, "t": ..., "items": [{"img": ..., "new": {...}|null}]}

Every operation stores absolute values, so replaying it over any CSV snapshot written during the
session gives the same result.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from common.io import CsvSchemaError
from gender_cnn.label_csv import HAND_LABEL_COLUMNS, LABEL_TASKS, read_hand_labels

logger = logging.getLogger(__name__)

JOURNAL_SUFFIX = ".journal.jsonl"
LABELLER_RE = re.compile(r"[A-Za-z0-9 _.@-]{1,64}")
_OP_START = b'{"op": '  # how json.dumps starts every journal line (used to rescue a line glued to a torn one)


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
        if not isinstance(self.labeller, str) or not LABELLER_RE.fullmatch(self.labeller):
            raise ValueError(f"labeller must match {LABELLER_RE.pattern}, got {self.labeller!r}")

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


def label_from_floats(gender: float, quality: float, labeller: str) -> Label:
    """A ``read_hand_labels`` row (0/1/NaN floats) as a ``Label``; an odd labeller name is sanitised."""
    def conv(x: float) -> int | None:
        return None if x is None or (isinstance(x, float) and math.isnan(x)) else int(x)

    if not isinstance(labeller, str) or not LABELLER_RE.fullmatch(labeller):
        labeller = re.sub(r"[^A-Za-z0-9 _.@-]", "_", str(labeller or "hand"))[:64] or "hand"
    return Label(conv(gender), conv(quality), labeller)


def read_csv_state(csv_path: Path, known_images: Iterable[str] | None = None) -> dict[str, Label]:
    """The labels CSV alone (``{}`` when absent); invalid rows (and, given ``known_images``,
    rows naming other images) raise one ``CsvSchemaError`` naming them all."""
    if not csv_path.is_file():
        return {}
    frame = read_hand_labels(csv_path, known_images=known_images)
    return {
        row.img_name: label_from_floats(row.gender, row.quality, row.labeller)
        for row in frame.itertuples(index=False)
    }


def _parse_op(raw: bytes) -> dict:
    op = json.loads(raw)
    if not isinstance(op, dict) or op.get("op") not in ("set", "undo", "import"):
        raise ValueError("not a journal operation")
    items = op.get("items", [])
    if not isinstance(items, list):
        raise ValueError("items is not a list")
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("img"), str):
            raise ValueError("item without img")
        Label.from_json(item.get("new"))
        Label.from_json(item.get("prev"))
    return op


def parse_journal(journal_path: Path) -> list[dict]:
    """Journal operations in order; damaged lines are skipped with a warning, nothing else is lost.

    A torn line (a kill or a full disk in the middle of a write) was never acknowledged, so
    dropping it loses nothing. When a later line was glued onto a torn one (an old writer did not
    roll a failed write back), the glued operation is rescued from the end of the line.
    """
    if not journal_path.is_file():
        return []
    ops: list[dict] = []
    lines = journal_path.read_bytes().split(b"\n")
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            ops.append(_parse_op(raw))
            continue
        except (ValueError, TypeError, AttributeError, RecursionError) as exc:
            error = exc
        rescued = None
        start = raw.rfind(_OP_START)
        if start > 0:
            try:
                rescued = _parse_op(raw[start:])
            except (ValueError, TypeError, AttributeError, RecursionError):
                rescued = None
        where = "last line (torn write)" if number >= len(lines) - 1 else f"line {number}"
        if rescued is not None:
            logger.warning("journal %s: %s starts with a torn write (%d bytes dropped); the operation "
                           "after it was kept", journal_path, where, start)
            ops.append(rescued)
        else:
            logger.warning("journal %s: skipping %s: %s", journal_path, where, error)
    return ops


def replay(state: dict[str, Label], ops: Iterable[dict], stack: list[dict]) -> int:
    """Apply journal operations to ``state`` and the undo ``stack`` in place; returns the highest seq."""
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
    """The labels as a running or killed labeller left them: CSV plus journal replay (read-only)."""
    csv_path = Path(csv_path)
    journal_path = Path(journal_path) if journal_path is not None else journal_path_for(csv_path)
    state = read_csv_state(csv_path)
    replay(state, parse_journal(journal_path), [])
    return state


def load_hand_labels(csv_path: Path | str, known_images: Iterable[str] | None = None) -> pd.DataFrame:
    """THE hand labels for training and filtering: CSV + journal replay, as a validated frame.

    Same columns and dtypes as ``read_hand_labels`` (gender/quality float 0/1/NaN), rows sorted by
    name. Raises ``FileNotFoundError`` when neither the CSV nor its journal exists, and
    ``CsvSchemaError`` naming the images when ``known_images`` is given and a label names an
    image that is not there.
    """
    csv_path = Path(csv_path)
    journal = journal_path_for(csv_path)
    if not csv_path.is_file() and not journal.is_file():
        raise FileNotFoundError(f"hand labels not found: {csv_path} (label images in step 2)")
    known = set(known_images) if known_images is not None else None
    state = read_csv_state(csv_path, known)  # CSV problems are named by row
    replay(state, parse_journal(journal), [])
    if known is not None:
        unknown = sorted(name for name in state if name not in known)
        if unknown:  # only the journal can have added these
            shown = ", ".join(repr(n) for n in unknown[:10])
            more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
            raise CsvSchemaError(f"{journal}: labels for images that are not in the image folder: {shown}{more} "
                                 "(use the --images folder the labeller used)")
    names = sorted(state)

    def column(task: str) -> list[float]:
        values = (getattr(state[n], task) for n in names)
        return [float("nan") if v is None else float(v) for v in values]

    return pd.DataFrame({
        "img_name": pd.Series(names, dtype=object),
        "gender": pd.Series(column("gender"), dtype="float64"),
        "quality": pd.Series(column("quality"), dtype="float64"),
        "labeller": pd.Series([state[n].labeller for n in names], dtype=object),
    })[list(HAND_LABEL_COLUMNS)]


def hand_labels_digest(csv_path: Path | str) -> str | None:
    """sha256 of the hand labels as read (CSV + journal replay), None when there are none.

    For "have the labels changed since step 3 ran?": a decision that sits only in the journal
    changes it, a compaction (same labels, new CSV bytes) does not.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file() and not journal_path_for(csv_path).is_file():
        return None
    text = format_labels_csv(read_label_state(csv_path))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def format_labels_csv(state: Mapping[str, Label]) -> str:
    """CSV text with the spec's columns, rows sorted by name, integers, empty cell = unsure.

    Written with the ``csv`` module, so a comma, quote or newline in a file name round-trips.
    """
    def cell(value: int | None) -> str:
        return "" if value is None else str(int(value))

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HAND_LABEL_COLUMNS)
    for name in sorted(state):
        label = state[name]
        writer.writerow([name, cell(label.gender), cell(label.quality), label.labeller])
    return buffer.getvalue()


__all__ = [
    "JOURNAL_SUFFIX", "LABELLER_RE", "Label", "format_labels_csv", "hand_labels_digest", "journal_path_for",
    "label_from_floats",
    "load_hand_labels", "parse_journal", "read_csv_state", "read_label_state", "replay",
]
