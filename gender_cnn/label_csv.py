"""Reading and validating hand-label CSVs (ours and the original project's).

Columns: ``img_name,gender,quality,labeller`` (pipeline.md). gender 1 woman / 0 man, quality 1
good / 0 bad, an empty cell = unsure (kept out of training). The original project's file
(``img_name,quality,gender``, integers) is accepted: columns are read by name.

This validates one CSV file. To read *the* hand labels (the CSV plus the labeller's journal,
which may hold acknowledged decisions the CSV does not have yet) use
``gender_cnn.hand_labels.load_hand_labels``.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from common.io import CsvSchemaError, read_csv_checked

HAND_LABEL_COLUMNS: tuple[str, ...] = ("img_name", "gender", "quality", "labeller")
LABEL_TASKS: tuple[str, ...] = ("gender", "quality")


def _to_label(value) -> float:
    """0/1 (also '0.0', '1.0', True/False) -> 0.0/1.0; empty -> NaN; anything else raises KeyError."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return float("nan")
    text = str(value).strip().lower()
    if text in ("", "nan", "none"):
        return float("nan")
    mapping = {"0": 0.0, "0.0": 0.0, "1": 1.0, "1.0": 1.0, "true": 1.0, "false": 0.0}
    if text not in mapping:
        raise KeyError(text)
    return mapping[text]


def read_hand_labels(path: Path | str, known_images: Iterable[str] | None = None,
                     default_labeller: str = "hand") -> pd.DataFrame:
    """Read and validate a labels CSV; returns our columns with gender/quality as float 0/1/NaN.

    Raises ``CsvSchemaError`` naming the offending rows (1-based data rows) for invalid values,
    duplicate names, or (when ``known_images`` is given) images that do not exist.
    """
    # whole rows only: a file cut inside its last row would read as an "unsure" label (and, imported with
    # replace semantics, remove every label after it)
    frame = read_csv_checked(path, ["img_name"], whole_rows=True, dtype=str, keep_default_na=False)
    if "gender" not in frame.columns and "quality" not in frame.columns:
        raise CsvSchemaError(f"{path}: needs a 'gender' and/or 'quality' column, found {list(frame.columns)}")
    out = pd.DataFrame({"img_name": frame["img_name"].str.strip()})
    problems: list[str] = []
    for task in LABEL_TASKS:
        values = []
        raw = frame[task] if task in frame.columns else [""] * len(frame)
        for row, value in enumerate(raw, start=1):
            try:
                values.append(_to_label(value))
            except KeyError:
                values.append(float("nan"))
                problems.append(f"row {row} ({out['img_name'].iloc[row - 1]}): {task}={value!r} is not 0, 1 or empty")
        out[task] = pd.Series(values, dtype="float64")
    if "labeller" in frame.columns:
        out["labeller"] = frame["labeller"].replace("", default_labeller)
    else:
        out["labeller"] = default_labeller
    empty_names = [i + 1 for i, n in enumerate(out["img_name"]) if not n]
    if empty_names:
        problems.append(f"rows {empty_names}: empty img_name")
    dup = out["img_name"][out["img_name"].duplicated()].tolist()
    if dup:
        problems.append(f"duplicate img_name: {sorted(set(dup))[:10]}")
    if known_images is not None:
        known = set(known_images)
        unknown = [(i + 1, n) for i, n in enumerate(out["img_name"]) if n and n not in known]
        if unknown:
            shown = ", ".join(f"row {r} ({n})" for r, n in unknown[:10])
            more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
            problems.append(f"unknown images (not in the image folder): {shown}{more}")
    if problems:
        raise CsvSchemaError(f"{path}: invalid hand labels: " + "; ".join(problems)
                             + " (fix or remove these rows and retry)")
    return out[list(HAND_LABEL_COLUMNS)]
