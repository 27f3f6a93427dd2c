"""The order in which the labeller presents images: by name, or the ones the CNNs are least sure about first.

Kept apart from the label store (``store.py``): ordering reads model scores and never writes labels.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from common.io import read_csv_checked
from gender_cnn.schema import QUALITY_GENDER_COLUMNS

ORDERS: tuple[str, ...] = ("name", "uncertainty")


def read_model_scores(path: Path | str) -> dict[str, tuple[float, float]]:
    """``{img_name: (gender_score, quality_score)}`` for the model-scored ('cnn') rows.

    Missing file -> empty dict (no model yet); a malformed file raises ``CsvSchemaError``.
    """
    path = Path(path)
    if not path.is_file():
        return {}
    frame = read_csv_checked(path, list(QUALITY_GENDER_COLUMNS))
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


__all__ = ["ORDERS", "build_sequence", "read_model_scores", "uncertainty"]
