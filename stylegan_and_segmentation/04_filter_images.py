"""Step 4: score all images (hand labels first, CNN ensemble for the rest) and keep good-quality women.

Writes gender_cnn/all_image_quality_and_gender.csv (img_name,gender_score,quality_score,source),
fills stylegan/synthesize_results_filtered/ with exactly the kept images (hard links or copies;
stale ones removed) and writes gender_cnn/logs/kept_sheet.jpg and near_threshold_rejected.jpg.
"""
import argparse
import pathlib

from common.cli import add_common_args, add_shard_arg, make_parser, run_step_script
from gender_cnn.filter import FilterConfig, run_filter

EXAMPLES = """examples:
  python stylegan_and_segmentation/04_filter_images.py
  python stylegan_and_segmentation/04_filter_images.py --gender-threshold 0.8 --quality-threshold 0.95 --copy
  python stylegan_and_segmentation/04_filter_images.py --limit 200 --scores-csv /tmp/scores.csv --filtered-dir /tmp/kept
  torchrun --standalone --nproc_per_node=4 stylegan_and_segmentation/04_filter_images.py -- --batch-size 256
"""


def build_parser() -> argparse.ArgumentParser:
    d = FilterConfig()
    parser = make_parser(__doc__, EXAMPLES)
    add_common_args(parser, batch_size=d.batch_size, seed=False, limit="images (the first N by name)",
                    overwrite=False)
    parser.add_argument("--images", type=pathlib.Path, default=None, help="image folder (default: step 1's output)")
    parser.add_argument("--labels", type=pathlib.Path, default=None,
                        help="hand labels CSV (default: step 2's gender_cnn/hand_labels.csv, used when present)")
    parser.add_argument("--models", type=pathlib.Path, default=None,
                        help="CNN model folder (default: step 3's gender_cnn/models)")
    parser.add_argument("--scores-csv", type=pathlib.Path, default=None,
                        help="scores CSV to write (default: gender_cnn/all_image_quality_and_gender.csv)")
    parser.add_argument("--filtered-dir", type=pathlib.Path, default=None,
                        help="folder that will hold exactly the kept images (default: "
                             "stylegan/synthesize_results_filtered)")
    parser.add_argument("--gender-threshold", type=float, default=d.gender_threshold,
                        help="keep if gender_score >= this (1 = woman)")
    parser.add_argument("--quality-threshold", type=float, default=d.quality_threshold,
                        help="keep if quality_score >= this (1 = good)")
    parser.add_argument("--copy", action="store_true", help="copy kept images instead of hard-linking them")
    parser.add_argument("--no-sheets", action="store_true", help="skip the contact sheets")
    add_shard_arg(parser)
    return parser


def config_from_args(args: argparse.Namespace) -> FilterConfig:
    return FilterConfig(root=args.root, images=args.images, labels=args.labels, models=args.models,
                        scores_csv=args.scores_csv, filtered_dir=args.filtered_dir,
                        gender_threshold=args.gender_threshold, quality_threshold=args.quality_threshold,
                        batch_size=args.batch_size, device=args.device, limit=args.limit, link=not args.copy,
                        sheets=not args.no_sheets, shard=args.shard)


def main(argv=None) -> int:
    return run_step_script(build_parser(), config_from_args, run_filter, argv, desc="CNN scoring")


if __name__ == "__main__":
    raise SystemExit(main())
