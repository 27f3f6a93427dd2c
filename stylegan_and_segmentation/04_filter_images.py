"""Step 4: score all images (hand labels first, CNN ensemble for the rest) and keep good-quality women.

Writes gender_cnn/all_image_quality_and_gender.csv (img_name,gender_score,quality_score,source),
fills stylegan/synthesize_results_filtered/ with exactly the kept images (hard links or copies;
stale ones removed) and writes gender_cnn/logs/kept_sheet.jpg and near_threshold_rejected.jpg.
"""
import argparse

from common import settings
from common.cli import run_step_script, step_parser
from gender_cnn.filter import FilterConfig, run_filter

EXAMPLES = """examples:
  python stylegan_and_segmentation/04_filter_images.py
  python stylegan_and_segmentation/04_filter_images.py --gender-threshold 0.8 --quality-threshold 0.95 --copy
  python stylegan_and_segmentation/04_filter_images.py --limit 200 --quality-gender-csv /tmp/scores.csv --filtered-dir /tmp/kept
  torchrun --standalone --nproc_per_node=4 stylegan_and_segmentation/04_filter_images.py -- --batch-size 256
"""


def build_parser() -> argparse.ArgumentParser:
    return step_parser(FilterConfig, __doc__, EXAMPLES)


def config_from_args(args: argparse.Namespace) -> FilterConfig:
    return settings.config_from_args(FilterConfig, args)


def main(argv=None) -> int:
    return run_step_script(build_parser(), config_from_args, run_filter, argv, desc="CNN scoring")


if __name__ == "__main__":
    raise SystemExit(main())
