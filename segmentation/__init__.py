"""Steps 5-6 package: FaceXFormer face parsing, the official MTCNN face crop, property scores, label ids.

Step 5 is :func:`run_segmentation` (``segmentation.segment``); step 6's segmentation judge is
:func:`score_properties` (``segmentation.scores_table``; the whole step, with the optional landmark
judge, is ``pipeline.property_scores_step``). CSV columns and per-image file names are in the
torch-free ``segmentation.tables``.
"""
from segmentation.crop import FaceCrop, detect_and_crop, full_image_crop, normalize_crops
from segmentation.facexformer import (
    HEAD_NAMES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    INPUT_SIZE,
    TASK_IDS,
    FaceXFormer,
    check_state_dict,
    clean_checkpoint_path,
    load_facexformer,
)
from segmentation.labels import CLASS_NAMES, NUM_CLASSES, PALETTE, FaceLabel, colorize, overlay
from segmentation.normalize import PropertyNormalizer
from segmentation.property_scores import (
    SCORE_FLAGS,
    background_scores,
    raw_scores,
    raw_scores_with_flags,
    score_flags,
)
from segmentation.random_weights import recipe_state_dict, save_random_facexformer_checkpoint
from segmentation.scores_table import PropertyScoresConfig, PropertyScoresSummary, score_properties
from segmentation.segment import (
    CROP_MODES,
    SegmentConfig,
    SegmentSummary,
    heads_path,
    output_paths,
    read_crops_csv,
    read_heads,
    run_segmentation,
)
from segmentation.tables import CROPS_COLUMNS, SCORES_COLUMNS

__all__ = [
    "CLASS_NAMES",
    "CROPS_COLUMNS",
    "CROP_MODES",
    "HEAD_NAMES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INPUT_SIZE",
    "NUM_CLASSES",
    "PALETTE",
    "SCORES_COLUMNS",
    "SCORE_FLAGS",
    "TASK_IDS",
    "FaceCrop",
    "FaceLabel",
    "FaceXFormer",
    "PropertyNormalizer",
    "PropertyScoresConfig",
    "PropertyScoresSummary",
    "SegmentConfig",
    "SegmentSummary",
    "background_scores",
    "check_state_dict",
    "clean_checkpoint_path",
    "colorize",
    "detect_and_crop",
    "full_image_crop",
    "heads_path",
    "load_facexformer",
    "normalize_crops",
    "output_paths",
    "overlay",
    "raw_scores",
    "raw_scores_with_flags",
    "read_crops_csv",
    "read_heads",
    "recipe_state_dict",
    "run_segmentation",
    "save_random_facexformer_checkpoint",
    "score_flags",
    "score_properties",
]
