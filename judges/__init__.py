"""Independent judges: models of another family than FaceXFormer, and image-quality distances.

``judges`` imports ``common`` and third-party libraries only (never ``segmentation``, ``stylegan``
or ``gender_cnn``); the pipeline layer feeds it images and face boxes. The dlib landmark judge is an
optional extra (``requirements-judges.txt``): without it, :func:`dlib_status` says why and the
pipeline reports the figure as missing instead of failing. dlib itself is imported only inside the
functions that use it, so importing ``judges`` never needs it.
"""

from judges.agreement import judge_agreement, pearson_r
from judges.dlib_models import DlibModelFiles, JudgeUnavailable, dlib_status, find_dlib_model_files
from judges.face_box import FaceBox, detect_face_boxes
from judges.identity import SAME_PERSON_THRESHOLD, IdentitySummary, identity_distances, summarize_identity
from judges.image_quality import (
    INCEPTION,
    INCEPTION_URL,
    QualityResult,
    TinyFeatureExtractor,
    distances_from_features,
    equal_count_subsample,
    extract_features,
    load_inception_extractor,
    measure_image_quality,
)
from judges.landmark_measures import (
    LANDMARK_PROPERTIES,
    eye_aspect_ratio,
    measure_landmarks,
    mirror_landmarks,
    mouth_openness,
    yaw_five_points,
    yaw_pnp,
    yaw_symmetry,
)
from judges.landmarks import LandmarkJudge

__all__ = [
    "INCEPTION",
    "INCEPTION_URL",
    "LANDMARK_PROPERTIES",
    "SAME_PERSON_THRESHOLD",
    "DlibModelFiles",
    "FaceBox",
    "IdentitySummary",
    "JudgeUnavailable",
    "LandmarkJudge",
    "QualityResult",
    "TinyFeatureExtractor",
    "detect_face_boxes",
    "distances_from_features",
    "dlib_status",
    "equal_count_subsample",
    "extract_features",
    "eye_aspect_ratio",
    "find_dlib_model_files",
    "identity_distances",
    "judge_agreement",
    "load_inception_extractor",
    "measure_image_quality",
    "measure_landmarks",
    "mirror_landmarks",
    "mouth_openness",
    "pearson_r",
    "summarize_identity",
    "yaw_five_points",
    "yaw_pnp",
    "yaw_symmetry",
]
