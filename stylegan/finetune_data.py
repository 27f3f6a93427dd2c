"""Step 7's training data: the filtered images joined with all_scores.csv, and step 6's normalization.json.

Rows with a NaN score (no hair, undefined pose) and rows without a readable image are left out and
counted; anything else odd in the inputs is a one-line :class:`FinetuneDataError` naming the file,
line and fix, never a traceback.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from common.images import ImageReadError, load_rgb
from common.paths import PROPERTY_NAMES
from common.records import NORMALIZATION_FORMAT_VERSION, RecordError, read_score_table
from common.records import read_normalization as read_common_normalization
from common.steps import StepError

logger = logging.getLogger(__name__)

__all__ = ["FinetuneError", "FinetuneDataError", "TrainingData", "load_training_data", "read_normalization",
           "checked_scores", "NORMALIZATION_FORMAT_VERSION"]

class FinetuneError(StepError, RuntimeError):
    """Step 7 cannot go on for a reason the user can fix; the message says what to do."""


class FinetuneDataError(FinetuneError):
    """The training data is missing or unusable; the message says what to do."""


@dataclass
class TrainingData:
    names: list[str]
    images_u8: np.ndarray          # [N, R, R, 3]
    conditions: np.ndarray         # [N, P] float32
    num_rows: int                  # rows in all_scores.csv
    num_nan: int                   # left out: a NaN score
    num_missing_image: int         # left out: no image file (or unreadable)
    stats: dict[str, dict[str, float]] = field(default_factory=dict)


_SCORES_FIX = "correct that row, or re-run step 6, which writes all_scores.csv"


def checked_scores(scores_csv: Path, images_dir: Path) -> tuple[Any, np.ndarray]:
    """(all_scores.csv as text, float64 [rows, P]) through the one scores reader
    (:func:`common.records.read_score_table`), plus step 7's own rule: an img_name must be a plain file
    name of the image folder (training reads only that folder). One-line FinetuneDataError otherwise."""
    try:
        frame, values = read_score_table(scores_csv, PROPERTY_NAMES, _SCORES_FIX)
    except RecordError as exc:
        raise FinetuneDataError(str(exc)) from exc
    for position, name in enumerate(frame["img_name"]):
        plain = Path(name)
        if not name.strip() or plain.is_absolute() or len(plain.parts) != 1 or name in (".", ".."):
            raise FinetuneDataError(
                f"{scores_csv} line {position + 2}: img_name {name!r} is not a plain file name in {images_dir} "
                f"(absolute paths, folders and '..' are refused: training reads only that folder); fix: {_SCORES_FIX}")
    return frame, values


def read_normalization(path: Path) -> dict[str, Any]:
    """normalization.json of step 6 through the one reader (:func:`common.records.read_normalization`)."""
    try:
        return read_common_normalization(path)
    except RecordError as exc:
        raise FinetuneDataError(str(exc)) from exc


def load_training_data(images_dir: Path, scores_csv: Path, resolution: int, limit: int | None = None) -> TrainingData:
    """Filtered images joined with all_scores.csv; NaN rows and rows without an image left out and counted."""
    images_dir, scores_csv = Path(images_dir), Path(scores_csv)
    if not images_dir.is_dir():
        raise FinetuneDataError(f"image folder not found: {images_dir} (run steps 1-4 first)")
    if not scores_csv.is_file():
        raise FinetuneDataError(f"scores not found: {scores_csv} (run steps 5-6 first)")
    frame, values = checked_scores(scores_csv, images_dir)
    nan_rows = np.isnan(values).any(axis=1)
    names, images, conds, missing = [], [], [], 0
    for name, row, bad in zip(frame["img_name"].astype(str), values, nan_rows):
        if bad:
            continue
        if limit is not None and len(names) >= limit:
            break
        try:
            image = load_rgb(images_dir / name)
        except ImageReadError as exc:
            logger.warning("left out %s: %s", name, exc)
            missing += 1
            continue
        if image.shape[:2] != (resolution, resolution):
            image = np.asarray(Image.fromarray(image).resize((resolution, resolution), Image.BICUBIC))
        names.append(name)
        images.append(image)
        conds.append(row)
    num_nan = int(nan_rows.sum())
    if not names:
        raise FinetuneDataError(
            f"no training image left: {len(frame)} rows in {scores_csv}, {num_nan} with a NaN score, "
            f"{missing} without a readable image in {images_dir}. Check that step 6 scored the filtered images.")
    conditions = np.asarray(conds, dtype=np.float32)
    stats = {name: {"min": float(conditions[:, j].min()), "max": float(conditions[:, j].max()),
                    "median": float(np.median(conditions[:, j])), "mean": float(conditions[:, j].mean()),
                    "std": float(conditions[:, j].std())} for j, name in enumerate(PROPERTY_NAMES)}
    return TrainingData(names, np.stack(images), conditions, len(frame), num_nan, missing, stats)
