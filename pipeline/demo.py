"""The no-download demo profile: tiny random-weight models in the real checkpoint formats.

Everything goes under its own root (``demo_run/`` by default) so real outputs are never touched.
The StyleGAN is a tiny 256x256 genforce-format checkpoint (so the real loader, the real 256 image
size and the quality CNN's 256-pixel region all apply); FaceXFormer has one size, so the demo
saves the full model with random weights in the official format. Random generators make no faces:
the demo labels by rule (``labeller = demo``) and segments with ``--crop full``.
"""
from __future__ import annotations

from common.paths import PipelinePaths

DEMO_NUM_IMAGES = 48
DEMO_NUM_LABELLED = 32
DEMO_STYLEGAN = dict(resolution=256, z_space_dim=64, w_space_dim=64, mapping_fmaps=64, fmaps_base=1024, fmaps_max=32)

# Extra arguments per step id; --root, --device cpu and -q come from the runner. Steps 8 and 9 run
# both step-7 routes (7a directions, 7b fine-tune); step 9 labels its report as random-weight models.
DEMO_STEP_ARGS: dict[str, list[str]] = {
    "1": ["--num", str(DEMO_NUM_IMAGES), "--batch-size", "16"],
    "2": ["--rule-labels", "--num", str(DEMO_NUM_LABELLED)],  # random images: labelled by rule, not by hand
    "3": ["--folds", "2", "--epochs", "3", "--patience", "2", "--input-size", "64", "--quality-size", "32,64",
          "--batch-size", "16"],
    "4": ["--gender-threshold", "0.5", "--quality-threshold", "0.5"],
    "5": ["--crop", "full", "--batch-size", "8"],
    "6": ["--landmark-judge", "off"],  # random-weight images hold no face for dlib to measure
    "7a": ["--select", "heldout-r", "--batch-size", "8", "--num-heldout", "4", "--num-values", "3"],
    "7b": ["--steps", "16", "--batch-size", "4", "--regressor-epochs", "3", "--checkpoint-every", "8",
           "--sample-every", "8"],
    "8": ["--control", "all", "--num", "4", "--sweep", "all", "--sweep-z", "1", "--sweep-values", "5"],
    "9": ["--control", "all", "--num-z", "1", "--num-values", "3", "--crop", "full", "--batch-size", "8",
          "--random-weight-models", "--judges", "main", "--quality", "tiny", "--quality-num", "8"],
}


def prepare_demo(paths: PipelinePaths) -> str:
    """Write the demo's random-weight checkpoints (once) in the real formats; returns a summary line."""
    from segmentation import save_random_facexformer_checkpoint
    from stylegan import write_random_checkpoint

    made = []
    if not paths.stylegan_checkpoint.is_file():
        write_random_checkpoint(paths.stylegan_checkpoint, seed=0, **DEMO_STYLEGAN)
        made.append(f"tiny StyleGAN -> {paths.stylegan_checkpoint}")
    if not paths.segmentation_checkpoint.is_file():
        save_random_facexformer_checkpoint(paths.segmentation_checkpoint, seed=0)
        made.append(f"random-weight FaceXFormer -> {paths.segmentation_checkpoint}")
    what = "; ".join(made) if made else "demo checkpoints already there"
    return (f"demo: {what}. These are random-weight models saved in the real checkpoint formats: "
            "the demo's images are NOT faces, and its numbers say nothing about real quality.")
