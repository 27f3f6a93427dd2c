"""Reading the files steps hand to each other, one reader per kind, each with one-line errors.

A truncated, empty or hand-edited record must stop a step with the file, what is wrong and the
fix, never a ``JSONDecodeError`` or ``AttributeError`` traceback. ``null`` is read as None (writers
store NaN as null, which every JSON parser accepts). The readers: :func:`read_json_record` (any JSON
record), :func:`read_normalization` (step 6's ``normalization.json``), :func:`read_code_array`
(step 1's ``w.npy`` / ``latents.npy``), :func:`read_score_table` (``all_scores.csv`` and step 4's
gender/quality table); step 1's ``generation.json`` is its folder's recipe (``common.recipe``).
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from common.paths import PROPERTY_NAMES
from common.steps import StepError


class RecordError(StepError, ValueError):
    """A JSON record is missing, unreadable, of an unknown format or lacks keys."""


def read_json_record(path: Path | str, fix: str, required: Iterable[str] = (),
                     format_versions: Iterable[Any] | None = None) -> dict[str, Any]:
    """The JSON object in ``path``; RecordError (one line ending in ``fix``) for anything else.

    format_versions: the ``format_version`` values this code understands (None: not checked).
    """
    path = Path(path)
    if not path.is_file():
        raise RecordError(f"{path} not found; fix: {fix}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RecordError(f"{path} is not valid JSON (truncated or edited?: {exc}); fix: {fix}") from exc
    if not isinstance(data, dict):
        raise RecordError(f"{path} holds a JSON {type(data).__name__}, not an object; fix: {fix}")
    if format_versions is not None:
        allowed = list(format_versions)
        if data.get("format_version") not in allowed:
            raise RecordError(f"{path} has format_version {data.get('format_version')!r}; this code reads "
                              f"{' or '.join(map(repr, allowed))}; fix: {fix}")
    missing = [key for key in required if key not in data]
    if missing:
        raise RecordError(f"{path} lacks the keys {missing}; fix: {fix}")
    return data


# ----------------------------------------------------------------------------------------------
# one reader per file kind: every step that reads one of these files calls its reader here, so a
# damaged file is the same one line in each (step 7a used to crash where 7b refused)

NORMALIZATION_FORMAT_VERSION = 1
"""The normalization.json format step 6 writes (segmentation.normalize.FORMAT_VERSION; packages stay apart)."""
_NAN_TEXT = ("", "nan", "null")


def read_normalization(path: Path | str, properties: Sequence[str] = PROPERTY_NAMES,
                       fix: str = "re-run step 6, which writes normalization.json") -> dict[str, Any]:
    """Step 6's normalization.json, checked: known format, these properties, a fitted scale for each."""
    path = Path(path)
    data = read_json_record(path, fix, required=("properties", "scales", "method"),
                            format_versions=(NORMALIZATION_FORMAT_VERSION,))
    if not isinstance(data["properties"], list) or list(data["properties"]) != list(properties):
        raise RecordError(f"{path}: properties {data['properties']!r} are not {list(properties)}; fix: {fix}")
    scales = data["scales"]
    missing = [p for p in properties if not isinstance(scales, dict) or not isinstance(scales.get(p), dict)
               or "kind" not in scales[p]]
    if missing:
        raise RecordError(f"{path}: no fitted scale for {missing}; fix: {fix}")
    return data


def read_code_array(path: Path | str, what: str, width: int, min_rows: int = 0,
                    fix: str = "re-run step 1 (--overwrite), which writes it") -> np.ndarray:
    """float32 [N, width] from a step-1 ``.npy`` (``w.npy``, ``latents.npy``): never unpickled, and a
    truncated file, integer values, another width, too few rows or a NaN/infinite value are one line."""
    path = Path(path)
    if not path.is_file():
        raise RecordError(f"{what} not found: {path}; fix: {fix}")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:  # object arrays, truncated or foreign files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RecordError(f"{path} is not a readable {what} ({first}: truncated, or not a plain float array); "
                          f"fix: {fix}") from None
    if not np.issubdtype(array.dtype, np.floating):
        raise RecordError(f"{path} holds {array.dtype} values, {what} holds float codes (integers would be codes "
                          f"rounded to whole numbers); fix: {fix}")
    if array.ndim != 2 or array.shape[1] != width or len(array) < min_rows:
        raise RecordError(f"{path} has shape {list(array.shape)}; expected [N >= {min_rows}, {width}] for this "
                          f"generator; fix: {fix}")
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise RecordError(f"{path} row {row} holds NaN or infinite values ({int((~finite).sum())} rows in all); "
                          f"fix: {fix}")
    return array.astype(np.float32, copy=False)


def read_score_table(path: Path | str, columns: Sequence[str], fix: str, key: str = "img_name") -> tuple[Any, np.ndarray]:
    """(the table as text, float64 [rows, columns]) of a per-image scores CSV (``all_scores.csv``, step 4's
    ``all_image_quality_and_gender.csv``). An empty cell or "nan" is NaN (a missing score: callers leave the
    row out and say so); text, an infinite value, a cut row, a repeated ``key`` or no rows is one line."""
    import pandas as pd

    from common.io import read_csv_checked

    path = Path(path)
    frame = read_csv_checked(path, [key, *columns], whole_rows=True, dtype=str, keep_default_na=False)
    if frame.empty:
        raise RecordError(f"{path} holds no rows (only a header); fix: {fix}")
    names = frame[key].astype(str)
    repeated = names[names.duplicated()]
    if len(repeated):
        raise RecordError(f"{path} line {int(repeated.index[0]) + 2}: {key} {repeated.iloc[0]!r} appears twice; "
                          f"fix: {fix}")
    values = np.empty((len(frame), len(columns)), dtype=np.float64)
    for j, column in enumerate(columns):
        text = frame[column].astype(str).str.strip()
        missing = text.str.lower().isin(_NAN_TEXT)
        numbers = pd.to_numeric(text.where(~missing), errors="coerce").to_numpy(dtype=np.float64)
        bad = (np.isnan(numbers) & ~missing.to_numpy()) | np.isinf(numbers)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise RecordError(f"{path} line {row + 2} ({names.iloc[row]}): {column} must be a finite number or "
                              f"empty, got {text.iloc[row]!r}; fix: {fix}")
        values[:, j] = numbers
    return frame, values
