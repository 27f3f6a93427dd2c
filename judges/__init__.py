"""Independent judges: models of another family than FaceXFormer, and image-quality distances.

``judges`` imports ``common`` and third-party libraries only (never ``segmentation``, ``stylegan``
or ``gender_cnn``); the pipeline layer feeds it images and face boxes. The dlib landmark judge is an
optional extra (``requirements-judges.txt``): without it, :func:`dlib_status` says why and the
pipeline reports the figure as missing instead of failing. Public names are imported lazily.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    # judges.dlib_models
    "JudgeUnavailable": "dlib_models",
    "DlibModelFiles": "dlib_models",
    "dlib_status": "dlib_models",
    "find_dlib_model_files": "dlib_models",
    # judges.landmarks
    "LandmarkJudge": "landmarks",
    # judges.landmark_measures
    "LANDMARK_PROPERTIES": "landmark_measures",
    "measure_landmarks": "landmark_measures",
    "eye_aspect_ratio": "landmark_measures",
    "mouth_openness": "landmark_measures",
    "yaw_symmetry": "landmark_measures",
    "yaw_pnp": "landmark_measures",
    "yaw_five_points": "landmark_measures",
    "mirror_landmarks": "landmark_measures",
    # judges.face_box
    "FaceBox": "face_box",
    "detect_face_boxes": "face_box",
    # judges.identity
    "SAME_PERSON_THRESHOLD": "identity",
    "identity_distances": "identity",
    "IdentitySummary": "identity",
    "summarize_identity": "identity",
    # judges.agreement
    "judge_agreement": "agreement",
    "pearson_r": "agreement",
    # judges.image_quality
    "INCEPTION": "image_quality",
    "TinyFeatureExtractor": "image_quality",
    "QualityResult": "image_quality",
    "measure_image_quality": "image_quality",
    "load_inception_extractor": "image_quality",
    "equal_count_subsample": "image_quality",
    "extract_features": "image_quality",
    "distances_from_features": "image_quality",
    "INCEPTION_URL": "image_quality",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'judges' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"judges.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
