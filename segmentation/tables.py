"""The CSV schemas of steps 5 and 6 (``crops.csv``, ``all_scores.csv``), in one torch-free module.

Writers and readers take the column tuples from here and file names from ``common.paths``, so a
renamed column cannot silently break a hand-off. :func:`check_crops_frame` is shared by crops.csv's
writer (step 5, on resume) and its reader (step 6): a hand-edited or damaged row
(``face_found=abc``) used to be read as "no face" by step 5 and crash step 6; both now stop with
the file, the line and the fix.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from common.fingerprint import is_file_fingerprint
from common.io import CsvSchemaError
from common.paths import PROPERTY_NAMES
from common.recipe import INPUT_COLUMN  # the identity (size:sha256) of the image file a row was made from

# --- step 5: per-image files in its results folder (``{PREFIX}{stem}.png``) ---------------------
PARSING_PREFIX = "parsing_"                       # 224x224 uint8 label map
FACE_PREFIX = "face_"                             # the 224x224 RGB crop the map belongs to
VISUALIZATION_PREFIX = "parsing_visualization_"   # crop with the map blended in (for people)
HEADS_PREFIX = "heads_"                           # heads_{stem}.json: FaceXFormer's landmarks and head pose

# --- step 5: crops.csv ---------------------------------------------------------------------------
CROPS_COLUMNS: tuple[str, ...] = ("img_name", "face_found", "x0", "y0", "x1", "y1", "prob", "crop")
"""crops.csv's contract columns (pipeline.md, step 5)."""
CROPS_EXTRA_COLUMNS: tuple[str, ...] = ("error", INPUT_COLUMN)
"""Written after the contract columns: why an image could not be read (empty otherwise), and which file the
row describes (a resume redoes an image whose file changed)."""
FACE_FOUND_VALUES = ("0", "1")

# --- step 6: all_scores.csv ----------------------------------------------------------------------
RAW_COLUMNS: tuple[str, ...] = tuple(f"raw_{name}" for name in PROPERTY_NAMES)
SCORES_COLUMNS: tuple[str, ...] = ("img_name", *PROPERTY_NAMES, *RAW_COLUMNS, "flags")
"""all_scores.csv columns, in the spec's order (normalised first)."""
BACKGROUND_COLUMNS: tuple[str, ...] = ("background_mean", "background_std")
"""Optional extra raw columns after ``flags`` (--background-scores)."""
FLAG_UNREADABLE = "unreadable"
FLAG_MISSING_MAP = "missing_map"
FLAG_MISSING_FACE = "missing_face"


def check_crops_frame(frame: Any, path: Path | str) -> None:
    """Raise CsvSchemaError for the first row whose img_name is empty, face_found is not 0/1, or whose
    input_fingerprint is neither empty nor a file fingerprint.

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
    if INPUT_COLUMN in frame.columns:  # a cut last cell would be carried into all_scores.csv as the image's identity
        for position, cell in enumerate(frame[INPUT_COLUMN].astype(str).str.strip()):
            if cell and not is_file_fingerprint(cell):
                raise CsvSchemaError(f"{path} line {position + 2} ({names.iloc[position]}): {INPUT_COLUMN} must be "
                                     f"'<size>:<sha256>' or empty, got {cell[:80]!r} (a cut or edited file?); {fix}")
