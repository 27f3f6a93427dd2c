"""Column tuples of the CSVs that steps 3 and 4 hand on (no torch import: the labeller reads them too)."""
from __future__ import annotations

QUALITY_GENDER_COLUMNS: tuple[str, ...] = ("img_name", "gender_score", "quality_score", "source")
"""Step 4's ``all_image_quality_and_gender.csv`` (read by the labeller's uncertainty order and step 7)."""

OOF_COLUMNS: tuple[str, ...] = ("img_name", "task", "label", "oof_score", "fold")
"""Step 3's ``oof_predictions.csv`` (read by the labeller's mistake review)."""

TRAIN_CONFIG_JSON = "train_config.json"
"""Step 3's record of the settings its fold models were trained with, in its logs folder."""
