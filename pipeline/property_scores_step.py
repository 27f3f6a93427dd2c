"""Step 6 as a whole: the segmentation judge's scores, then the optional landmark judge on the same images.

The two judges live in packages that never import each other (``segmentation``, ``judges``), so
the step that runs both lives here. Without the dlib extra (``requirements-judges.txt``) the
landmark part is a note in the summary, never an error: step 9 names its figures as missing.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from common.distributed import init_distributed
from common.runtime import resolve_device
from common.steps import Progress, StepError
from judges import JudgeUnavailable, dlib_status
from pipeline.landmark_scores import LandmarkScoresConfig, run_landmark_scores
from segmentation.scores_table import (
    PropertyScoresConfig,
    PropertyScoresSummary,
    merge_score_shards,
    score_properties,
)

__all__ = ["LandmarkJudgeError", "PropertyScoresConfig", "PropertyScoresSummary", "merge_property_scores_shards",
           "run_property_scores"]


class LandmarkJudgeError(StepError, RuntimeError):
    """The landmark judge is installed but could not run (its model files, its inputs)."""


def run_property_scores(config: PropertyScoresConfig, progress: Progress | None = None) -> PropertyScoresSummary:
    """Write all_scores.csv, normalization.json and pictures; then landmark_scores.csv and
    judge_agreement.csv when the landmark judge is installed and ``config.landmark_judge``.

    ``progress(done, total)`` counts the scored maps, then the landmark judge's images. Under
    torchrun the ranks share the scoring and rank 0 alone runs the landmark judge afterwards; a
    ``--shard`` run leaves both to :func:`merge_property_scores_shards`.
    """
    config = config.resolved()
    summary = score_properties(config, progress)
    if summary.shard or not init_distributed(config.shard).is_main:
        return summary
    return _with_landmark_judge(config, summary, progress)


def merge_property_scores_shards(config: PropertyScoresConfig,
                                 progress: Progress | None = None) -> PropertyScoresSummary:
    """``merge_shards.py 6``: normalise every shard's raw scores together, then the landmark judge."""
    config = config.resolved()
    return _with_landmark_judge(config, merge_score_shards(config), progress)


def _with_landmark_judge(config: PropertyScoresConfig, summary: PropertyScoresSummary,
                         progress: Progress | None) -> PropertyScoresSummary:
    if not config.landmark_judge:
        return summary

    available, reason = dlib_status()
    if not available:
        return dataclasses.replace(summary, landmark_note=f"landmark judge not installed ({reason}); step 9 will "
                                                           "name its figures as missing")

    try:
        device = str(resolve_device(config.device))
    except RuntimeError as exc:
        raise LandmarkJudgeError(str(exc)) from exc
    images = Path(config.images)
    if not images.is_dir():
        return dataclasses.replace(summary, landmark_note=f"landmark judge skipped: no image folder {images} (it "
                                                           "measures the filtered images)")
    judge_config = LandmarkScoresConfig(root=config.root, images=images, segmentation_dir=config.segmentation_dir,
                                        out=config.out, limit=config.limit, device=device)
    try:
        landmarks = run_landmark_scores(judge_config, progress=progress)
    except JudgeUnavailable as exc:
        raise LandmarkJudgeError(f"landmark judge: {exc}") from exc
    return dataclasses.replace(summary, landmarks=landmarks,
                               seconds=summary.seconds + landmarks.seconds)
