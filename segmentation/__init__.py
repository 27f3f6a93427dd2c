"""Steps 5-6 package: FaceXFormer face parsing, the official MTCNN face crop, property scores, label ids.

Public names (scripts import only these) are listed in ``__all__``. They are imported lazily
(PEP 562), so ``import segmentation.labels`` or the numpy-only scoring modules do not pay for
torch/torchvision until a model name is used.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    # segmentation.facexformer
    "FaceXFormer": "facexformer", "load_facexformer": "facexformer", "check_state_dict": "facexformer",
    "clean_checkpoint_path": "facexformer", "HEAD_NAMES": "facexformer", "TASK_IDS": "facexformer",
    "INPUT_SIZE": "facexformer", "IMAGENET_MEAN": "facexformer", "IMAGENET_STD": "facexformer",
    # segmentation.crop
    "FaceCrop": "crop", "detect_and_crop": "crop", "full_image_crop": "crop", "normalize_crops": "crop",
    # segmentation.random_weights
    "recipe_state_dict": "random_weights", "save_random_facexformer_checkpoint": "random_weights",
    # segmentation.segment (step 5)
    "SegmentConfig": "segment", "SegmentSummary": "segment", "run_segmentation": "segment",
    "output_paths": "segment", "read_crops_csv": "segment", "CROPS_COLUMNS": "segment",
    "CROP_MODES": "segment", "heads_path": "segment", "read_heads": "segment",
    # segmentation.property_scores, normalize, score_report (step 6)
    "raw_scores": "property_scores", "raw_scores_with_flags": "property_scores", "score_flags": "property_scores",
    "background_scores": "property_scores", "SCORE_FLAGS": "property_scores",
    "PropertyNormalizer": "normalize",
    "ScoreStepConfig": "score_report", "run_property_scores": "score_report", "SCORES_COLUMNS": "score_report",
    # segmentation.labels
    "FaceLabel": "labels", "NUM_CLASSES": "labels", "CLASS_NAMES": "labels", "PALETTE": "labels",
    "colorize": "labels", "overlay": "labels",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'segmentation' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"segmentation.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
