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

# The spec's contract file names (pipeline.md), spelled only here. Code that works on a folder given by a
# flag joins these to it; PipelinePaths joins them to the default folders below a root.
LATENTS_NPY = "latents.npy"
W_NPY = "w.npy"
GENERATED_CSV = "generated.csv"
GENERATION_JSON = "generation.json"
HAND_LABELS_CSV = "hand_labels.csv"
OOF_PREDICTIONS_CSV = "oof_predictions.csv"
QUALITY_GENDER_CSV = "all_image_quality_and_gender.csv"
CROPS_CSV = "crops.csv"
ALL_SCORES_CSV = "all_scores.csv"
NORMALIZATION_JSON = "normalization.json"
DIRECTIONS_PT = "directions.pt"
SEFA_PT = "sefa.pt"
EDIT_CORRECTION_PT = "edit_correction.pt"
COMPARISON_CSV = "comparison.csv"


def path_or(value: Path | str | None, default: Path) -> Path:
    """A config's path field: the given path, or the pipeline default when it is None."""
    return Path(value) if value is not None else default


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
    def latents_npy(self) -> Path:
        """float32 [N, z_dim], row i = z of image i."""
        return self.generated_dir / LATENTS_NPY

    @property
    def w_npy(self) -> Path:
        """float32 [N, w_dim], row i = G.mapping(z_i)["w"] (untruncated): the latent-direction input."""
        return self.generated_dir / W_NPY

    @property
    def generated_csv(self) -> Path:
        return self.generated_dir / GENERATED_CSV

    # steps 2-4
    @property
    def hand_labels_csv(self) -> Path:
        return self.root / "gender_cnn" / HAND_LABELS_CSV

    @property
    def cnn_models_dir(self) -> Path:
        return self.root / "gender_cnn" / "models"

    @property
    def cnn_logs_dir(self) -> Path:
        return self.root / "gender_cnn" / "logs"

    @property
    def oof_predictions_csv(self) -> Path:
        """Out-of-fold CNN predictions for the hand-labelled images (labeller's mistake review)."""
        return self.cnn_logs_dir / OOF_PREDICTIONS_CSV

    @property
    def quality_gender_csv(self) -> Path:
        return self.root / "gender_cnn" / QUALITY_GENDER_CSV

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
    def crops_csv(self) -> Path:
        """Step 5's list of images: face box, crop mode, errors (segmentation.tables.CROPS_COLUMNS)."""
        return self.segmentation_dir / CROPS_CSV

    @property
    def property_scores_dir(self) -> Path:
        return self.root / "segmentation" / "property_score_results"

    @property
    def all_scores_csv(self) -> Path:
        return self.property_scores_dir / ALL_SCORES_CSV

    @property
    def normalization_json(self) -> Path:
        return self.property_scores_dir / NORMALIZATION_JSON

    # steps 7-9
    @property
    def directions_dir(self) -> Path:
        """Step 7's second route: latent directions (07_fit_latent_directions.py)."""
        return self.root / "stylegan" / "directions"

    @property
    def directions_pt(self) -> Path:
        return self.directions_dir / DIRECTIONS_PT

    @property
    def sefa_pt(self) -> Path:
        """Step 7a's SeFa directions (label-free, named by step 6's scores), beside directions.pt."""
        return self.directions_dir / SEFA_PT

    @property
    def edit_correction_dir(self) -> Path:
        """Step 7c: the refine option's learned edit correction (for step 7a's directions and step 7b's regressor)."""
        return self.directions_dir / "edit_correction"

    @property
    def edit_correction_pt(self) -> Path:
        return self.edit_correction_dir / EDIT_CORRECTION_PT

    @property
    def sefa_generated_dir(self) -> Path:
        """Step 8's images with --control sefa."""
        return self.directions_dir / "generated_sefa"

    @property
    def directions_generated_dir(self) -> Path:
        """Step 8's images with --control directions."""
        return self.directions_dir / "generated"

    @property
    def directions_refined_generated_dir(self) -> Path:
        """Step 8's images with --control directions --refine (kept apart from the linear edits)."""
        return self.directions_dir / "generated_refine"

    @property
    def finetuned_dir(self) -> Path:
        return self.root / "stylegan" / "finetuned"

    @property
    def finetuned_generated_dir(self) -> Path:
        """Step 8's images with --control finetuned."""
        return self.finetuned_dir / "generated"

    @property
    def evaluation_dir(self) -> Path:
        return self.finetuned_dir / "evaluation"

    @property
    def comparison_csv(self) -> Path:
        """Step 9's one-measure comparison of every control method (contract columns)."""
        return self.evaluation_dir / COMPARISON_CSV

    # independent judges (step 9)
    @property
    def inception_weights(self) -> Path:
        """The FID Inception-v3 file (``download_models.py``); FID/KID are skipped, and say so, without it."""
        return self.root / "judges" / "models" / "weights-inception-2015-12-05-6726825d.pth"

    @property
    def landmark_scores_csv(self) -> Path:
        """The dlib judge's raw and normalised measures of the filtered set (optional extra)."""
        return self.property_scores_dir / "landmark_scores.csv"

    @property
    def landmark_normalization_json(self) -> Path:
        """Step 6's normaliser fitted on the landmark measures of the filtered set."""
        return self.property_scores_dir / "landmark_normalization.json"

    @property
    def heads_normalization_json(self) -> Path:
        """Step 6's normaliser fitted on FaceXFormer's head-pose yaw (step 5's heads_{stem}.json)."""
        return self.property_scores_dir / "facexformer_heads_normalization.json"

    @property
    def judge_agreement_csv(self) -> Path:
        """Pearson r between the judges on the filtered set (the same images, every judge)."""
        return self.property_scores_dir / "judge_agreement.csv"


DEFAULT_PATHS = PipelinePaths()
