"""The review list: hand labels that the out-of-fold CNN predictions disagree with, most suspicious first.

Kept apart from the label store (``store.py``): it reads step 3's out-of-fold CSV and the current labels,
and never writes labels (the person decides in the page).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from common.io import read_csv_checked
from gender_cnn.hand_labels import Label
from gender_cnn.label_csv import LABEL_TASKS
from gender_cnn.schema import OOF_COLUMNS


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
    frame = read_csv_checked(path, list(OOF_COLUMNS))
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


__all__ = ["ReviewItem", "build_review_list", "read_oof_scores"]
