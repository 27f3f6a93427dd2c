"""Step 7, second route: latent directions in w space (no training; minutes).

Fits one calibrated direction per property from step 1's w codes (w.npy, else latents.npy through
the mapping network) and step 6's scores, on the images step 4 kept, and writes
stylegan/directions/directions.pt, report.md, directions_report.csv, direction_angles.csv and one
sweep sheet per property. Ridge vs InterFaceGAN's SVM is chosen per property by the control edits
achieve on held-out latents, judged by the segmentation scorer (step 9's), when its model is
there; otherwise InterFaceGAN's SVM is used for every property (the control lab: prediction r is a
poor guide to control). Steps 8 and 9 use it with --control directions.
"""
import argparse

from common import settings
from common.cli import run_step_script, step_parser
from pipeline.latent_directions import run_fit_latent_directions
from stylegan.directions_step import FitDirectionsConfig

EXAMPLES = """examples:
  python stylegan_and_segmentation/07_fit_latent_directions.py                  # after steps 1-6
  python stylegan_and_segmentation/07_fit_latent_directions.py --method svm --no-hold  # InterFaceGAN-like edits
  python stylegan_and_segmentation/07_fit_latent_directions.py --layer-ranges all,coarse,middle,fine
  python stylegan_and_segmentation/07_fit_latent_directions.py --select heldout-r    # by prediction r (asked only)
"""


def build_parser() -> argparse.ArgumentParser:
    return step_parser(FitDirectionsConfig, __doc__, EXAMPLES)


def config_from_args(args: argparse.Namespace) -> FitDirectionsConfig:
    return settings.config_from_args(FitDirectionsConfig, args)


def main(argv=None) -> int:
    return run_step_script(build_parser(), config_from_args, run_fit_latent_directions, argv, desc="directions: control choice")


if __name__ == "__main__":
    raise SystemExit(main())
