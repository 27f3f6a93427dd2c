"""Step 6: the five property scores of every face parsed in step 5, normalised over all images.

Reads parsing_{stem}.png + face_{stem}.png (and crops.csv for file names) from --segmentation-dir
and writes all_scores.csv, normalization.json, contact_{property}.png (lowest / middle / highest
scored faces with their parsing overlays) and histograms.png into --out. Normalisation is fitted
over all images, so every run recomputes the table (seconds); identical inputs give identical files.
With the optional landmark judge installed (requirements-judges.txt) it also measures the filtered
images and writes landmark_scores.csv and judge_agreement.csv.
"""


import argparse

from common import settings
from common.cli import run_step_script, step_parser
from pipeline.property_scores_step import PropertyScoresConfig, run_property_scores

EXAMPLES = """examples:
  python stylegan_and_segmentation/06_compute_property_scores.py
  python stylegan_and_segmentation/06_compute_property_scores.py --pose-scaling symmetric
  python stylegan_and_segmentation/06_compute_property_scores.py --segmentation-dir my_faces_parsed --out my_scores
  torchrun --standalone --nproc_per_node=2 stylegan_and_segmentation/06_compute_property_scores.py -- --no-pictures
"""


def build_parser() -> argparse.ArgumentParser:
    return step_parser(PropertyScoresConfig, __doc__, EXAMPLES)


def config_from_args(args: argparse.Namespace) -> PropertyScoresConfig:
    return settings.config_from_args(PropertyScoresConfig, args)


def main(argv=None) -> int:
    return run_step_script(build_parser(), config_from_args, run_property_scores, argv, desc="scoring")


if __name__ == "__main__":
    raise SystemExit(main())
