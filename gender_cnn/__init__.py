"""Steps 2-4: hand labels, the gender and quality CNNs, and the female / good-quality filter.

The package namespace holds only what needs no torch (the labeller imports ``gender_cnn`` on
machines and in processes that never train): hand labels as read, and the CSV schemas. The steps
live in their modules, imported where used:

* step 2: ``gender_cnn.labeller`` (``run_labeller``, ``LabellerConfig``)
* step 3: ``gender_cnn.train`` (``run_training``, ``TrainConfig``); models ``gender_cnn.classifier``,
  inputs ``gender_cnn.data``
* step 4: ``gender_cnn.filter`` (``run_filter``, ``FilterConfig``); the ensemble ``gender_cnn.predict``
"""
from __future__ import annotations

from gender_cnn.hand_labels import hand_labels_digest, load_hand_labels
from gender_cnn.label_csv import HAND_LABEL_COLUMNS, LABEL_TASKS, read_hand_labels
from gender_cnn.schema import OOF_COLUMNS, QUALITY_GENDER_COLUMNS

__all__ = ["HAND_LABEL_COLUMNS", "LABEL_TASKS", "OOF_COLUMNS", "QUALITY_GENDER_COLUMNS", "hand_labels_digest",
           "load_hand_labels", "read_hand_labels"]
