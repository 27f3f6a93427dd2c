"""Every contract path of the pipeline (``shared/docs/pipeline.md``), resolved from a root.

The root is the repository root by default, never the current working directory. The demo
passes its own root so that it never touches real outputs.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

PROPERTY_NAMES: tuple[str, ...] = ("eyes", "hair_color", "hair_length", "mouth", "face_pose")
"""The five core properties, in the spec's order (the order of the condition vector)."""

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class PipelinePaths:
    """All step inputs and outputs below one root (the repository, or a demo folder)."""

    root: Path = REPO_ROOT

    # step 1
    @property
    def stylegan_checkpoint(self) -> Path:
        return self.root / "stylegan" / "stylegan_model.pth"

    @property
    def generated_dir(self) -> Path:
        return self.root / "stylegan" / "synthesize_results"

    @property
    def w_npy(self) -> Path:
        """Step 1's w codes (``G.mapping(z)["w"]``, untruncated) beside latents.npy, when written."""
        return self.generated_dir / "w.npy"

    # steps 2-4
    @property
    def hand_labels_csv(self) -> Path:
        return self.root / "gender_cnn" / "hand_labels.csv"

    @property
    def cnn_models_dir(self) -> Path:
        return self.root / "gender_cnn" / "models"

    @property
    def cnn_logs_dir(self) -> Path:
        return self.root / "gender_cnn" / "logs"

    @property
    def oof_predictions_csv(self) -> Path:
        """Out-of-fold CNN predictions for the hand-labelled images (labeller's mistake review)."""
        return self.cnn_logs_dir / "oof_predictions.csv"

    @property
    def quality_gender_csv(self) -> Path:
        return self.root / "gender_cnn" / "all_image_quality_and_gender.csv"

    @property
    def filtered_dir(self) -> Path:
        return self.root / "stylegan" / "synthesize_results_filtered"

    # steps 5-6
    @property
    def segmentation_checkpoint(self) -> Path:
        return self.root / "segmentation" / "models" / "segmentation_model.pt"

    @property
    def segmentation_dir(self) -> Path:
        return self.root / "segmentation" / "segmentation_results"

    @property
    def property_scores_dir(self) -> Path:
        return self.root / "segmentation" / "property_score_results"

    @property
    def all_scores_csv(self) -> Path:
        return self.property_scores_dir / "all_scores.csv"

    @property
    def normalization_json(self) -> Path:
        return self.property_scores_dir / "normalization.json"

    # steps 7-9
    @property
    def directions_dir(self) -> Path:
        """Step 7's second route: latent directions (07_fit_latent_directions.py)."""
        return self.root / "stylegan" / "directions"

    @property
    def directions_pt(self) -> Path:
        return self.directions_dir / "directions.pt"

    @property
    def finetuned_dir(self) -> Path:
        return self.root / "stylegan" / "finetuned"

    @property
    def evaluation_dir(self) -> Path:
        return self.finetuned_dir / "evaluation"

    @property
    def comparison_csv(self) -> Path:
        """Step 9's one-measure comparison of every control method (contract columns)."""
        return self.evaluation_dir / "comparison.csv"


DEFAULT_PATHS = PipelinePaths()
