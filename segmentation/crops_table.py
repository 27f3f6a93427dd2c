"""Checks on step 5's crops.csv shared by its writer (step 5, on resume) and its reader (step 6).

A hand-edited or damaged row (``face_found=abc``) used to be read as "no face" by step 5 and
crash step 6; both now stop with the file, the line and the fix.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from common.io import CsvSchemaError

FACE_FOUND_VALUES = ("0", "1")


def check_crops_frame(frame: Any, path: Path | str) -> None:
    """Raise CsvSchemaError for the first row whose img_name is empty or face_found is not 0/1.

    ``frame`` is read with ``dtype=str`` and ``keep_default_na=False`` (empty cells are "").
    """
    fix = "fix: correct that row, or move crops.csv away and re-run step 5 with --overwrite"
    names = frame["img_name"].astype(str).str.strip()
    found = frame["face_found"].astype(str).str.strip()
    bad_name = (names == "") | (names.str.lower() == "nan")
    bad_found = ~found.isin(FACE_FOUND_VALUES)
    for position, (empty, wrong) in enumerate(zip(bad_name, bad_found)):
        if empty:
            raise CsvSchemaError(f"{path} line {position + 2}: img_name is empty; {fix}")
        if wrong:
            raise CsvSchemaError(f"{path} line {position + 2} ({names.iloc[position]}): face_found must be 0 or 1, "
                                 f"got {found.iloc[position]!r}; {fix}")
    duplicated = names[names.duplicated()]
    if len(duplicated):
        raise CsvSchemaError(f"{path}: img_name {duplicated.iloc[0]!r} appears more than once; {fix}")
