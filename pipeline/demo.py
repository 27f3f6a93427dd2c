"""The no-download demo profile: tiny random-weight models in the real checkpoint formats.

Everything goes under its own root (``demo_run/`` by default) so real outputs are never touched.
The StyleGAN is a tiny 256x256 genforce-format checkpoint (so the real loader, the real 256 image
size and the quality CNN's 256-pixel region all apply); FaceXFormer has one size, so the demo
saves the full model with random weights in the official format. Random generators make no faces:
the demo labels by rule (``labeller = demo``) and segments with ``--crop full``.
"""
from __future__ import annotations

import json

from common.fingerprint import file_fingerprint
from common.io import atomic_write_json
from common.paths import PipelinePaths
from common.steps import StepError

DEMO_MARKER = ".pipeline/demo.json"
"""Under the demo's root: the fingerprints of the checkpoints the demo wrote, so it never mistakes a real
run's models (or labels) for its own."""


class DemoRootError(StepError, RuntimeError):
    """--demo pointed at a root that holds someone's work (hand labels, models the demo did not write)."""

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
    "7c": ["--steps", "4", "--batch", "2", "--hidden", "32", "--save-every", "2"],
    "8": ["--control", "all", "--num", "4", "--sweep", "all", "--sweep-z", "1", "--sweep-values", "5"],
    "9": ["--control", "all", "--num-z", "1", "--num-values", "3", "--crop", "full", "--batch-size", "8",
          "--random-weight-models", "--judges", "main", "--quality", "tiny", "--quality-num", "8"],
}


def _written_by_demo(paths: PipelinePaths) -> dict[str, str]:
    marker = paths.root / DEMO_MARKER
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def check_demo_root(paths: PipelinePaths) -> None:
    """Refuse a root where the demo would replace someone's work: hand labels not written by the demo's
    rule, or a StyleGAN / FaceXFormer checkpoint the demo did not write (issue 19: ``--demo --root <a real
    run> --from 2 --to 2`` replaced 32 hand labels by rule labels)."""
    from gender_cnn.demo_labels import DEMO_LABELLER
    from gender_cnn.hand_labels import journal_path_for, load_hand_labels

    fix = "run the demo under its own root (the default demo_run/, or another empty folder)"
    ours = _written_by_demo(paths)
    for role, path in (("StyleGAN", paths.stylegan_checkpoint), ("FaceXFormer", paths.segmentation_checkpoint)):
        if path.is_file() and ours.get(str(path.relative_to(paths.root))) != file_fingerprint(path):
            raise DemoRootError(f"--demo --root {paths.root}: {path} is a {role} checkpoint the demo did not write "
                                f"(a real run's model, or an older demo's: nothing records it); fix: {fix}")
    if paths.hand_labels_csv.is_file() or journal_path_for(paths.hand_labels_csv).is_file():
        labels = load_hand_labels(paths.hand_labels_csv)
        decided = labels[labels[["gender", "quality"]].notna().any(axis=1)]
        theirs = decided[decided["labeller"] != DEMO_LABELLER]
        if len(theirs):
            raise DemoRootError(f"--demo --root {paths.root}: {paths.hand_labels_csv} holds {len(theirs)} labels not "
                                f"made by the demo (labeller {theirs['labeller'].iloc[0]!r}), which the demo's rule "
                                f"labels would replace; fix: {fix}")


def prepare_demo(paths: PipelinePaths) -> str:
    """Write the demo's random-weight checkpoints (once) in the real formats; returns a summary line.
    Refuses (DemoRootError) a root holding work the demo did not make (:func:`check_demo_root`)."""
    from segmentation import save_random_facexformer_checkpoint
    from stylegan import write_random_checkpoint

    check_demo_root(paths)
    made = []
    ours = _written_by_demo(paths)
    if not paths.stylegan_checkpoint.is_file():
        write_random_checkpoint(paths.stylegan_checkpoint, seed=0, **DEMO_STYLEGAN)
        made.append(f"tiny StyleGAN -> {paths.stylegan_checkpoint}")
    if not paths.segmentation_checkpoint.is_file():
        save_random_facexformer_checkpoint(paths.segmentation_checkpoint, seed=0)
        made.append(f"random-weight FaceXFormer -> {paths.segmentation_checkpoint}")
    if made:
        for path in (paths.stylegan_checkpoint, paths.segmentation_checkpoint):
            ours[str(path.relative_to(paths.root))] = file_fingerprint(path)
        atomic_write_json(paths.root / DEMO_MARKER, ours)
    what = "; ".join(made) if made else "demo checkpoints already there"
    return (f"demo: {what}. These are random-weight models saved in the real checkpoint formats: "
            "the demo's images are NOT faces, and its numbers say nothing about real quality.")
