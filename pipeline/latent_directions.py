"""Step 7a as a pipeline step: latent directions with the control choice judged by step 9's scorer.

``stylegan.directions_step.run_fit_directions`` fits and reports; choosing ridge or SVM per
property by the control edits achieve needs the segmentation scorer and the gender CNN, which
live in other packages, so they are built here (where packages meet) from the same config.
"""
from __future__ import annotations

from common.runtime import resolve_device
from common.steps import Progress
from pipeline.scorers import SegmentationScorer, gender_callable
from stylegan.directions_step import FitDirectionsConfig, FitDirectionsSummary, run_fit_directions


def run_fit_latent_directions(config: FitDirectionsConfig, progress: Progress | None = None) -> FitDirectionsSummary:
    """Step 7a: the scorer is used when ``select`` asks for control (auto: when its model file exists)."""
    config = config.resolved()
    scorer = gender = None
    wants_control = config.method == "auto" and config.select != "heldout-r"
    if wants_control and (config.select == "control" or config.segmentation_checkpoint.is_file()):
        device = resolve_device(config.device)
        scorer = SegmentationScorer(config.segmentation_checkpoint, config.normalization_json, config.crop, device,
                                    trusted=config.trust_checkpoint)
        gender = gender_callable(config.cnn_models_dir, device)
    return run_fit_directions(config, progress, scorer=scorer, gender=gender)
