"""Steps 2-4: hand labels, the gender and quality CNNs, and the female / good-quality filter.

Public names are imported lazily, so ``import gender_cnn`` (e.g. by the labeller) does not pull in
torch; ``from gender_cnn import run_training`` loads the training module on first use.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    # hand labels (lead)
    "read_hand_labels": "gender_cnn.hand_labels",
    "HAND_LABEL_COLUMNS": "gender_cnn.hand_labels",
    "LABEL_TASKS": "gender_cnn.hand_labels",
    "load_hand_labels": "gender_cnn.label_state",  # what every reader uses: CSV + journal replay
    "hand_labels_digest": "gender_cnn.label_state",
    # data
    "InputSpec": "gender_cnn.data",
    "AugmentConfig": "gender_cnn.data",
    "QUALITY_REGION": "gender_cnn.data",
    "default_input_spec": "gender_cnn.data",
    "crop_for_model": "gender_cnn.data",
    "stratified_folds": "gender_cnn.data",
    "synthetic_image": "gender_cnn.data",
    "write_synthetic_set": "gender_cnn.data",
    # model
    "SmallCNN": "gender_cnn.classifier",
    "build_classifier": "gender_cnn.classifier",
    # training
    "TrainConfig": "gender_cnn.train",
    "TrainSummary": "gender_cnn.train",
    "run_training": "gender_cnn.train",
    "train_fold": "gender_cnn.train",
    "OOF_COLUMNS": "gender_cnn.train",
    # prediction
    "Ensemble": "gender_cnn.predict",
    "load_ensemble": "gender_cnn.predict",
    "load_model_file": "gender_cnn.predict",
    "predict_images": "gender_cnn.predict",
    "model_path": "gender_cnn.predict",
    "TASKS": "gender_cnn.predict",
    # filter
    "FilterConfig": "gender_cnn.filter",
    "FilterSummary": "gender_cnn.filter",
    "QUALITY_GENDER_COLUMNS": "gender_cnn.filter",
    "combine_scores": "gender_cnn.filter",
    "run_filter": "gender_cnn.filter",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gender_cnn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
