"""Step 6: the five property scores of every face parsed in step 5, normalised over all images.

Reads parsing_{stem}.png + face_{stem}.png (and crops.csv for file names) from --segmentation-dir
and writes all_scores.csv, normalization.json, contact_{property}.png (lowest / middle / highest
scored faces with their parsing overlays) and histograms.png into --out. Normalisation is fitted
over all images, so every run recomputes the table (seconds); identical inputs give identical files.
With the optional landmark judge installed (requirements-judges.txt) it also measures the filtered
images and writes landmark_scores.csv and judge_agreement.csv.
"""


import argparse
from pathlib import Path

from common.cli import add_common_args, add_shard_arg, make_parser, run_step_script
from pipeline.property_scores_step import PropertyScoresConfig, run_property_scores
from segmentation.normalize import METHODS, POSE_SCALINGS

EXAMPLES = """examples:
  python stylegan_and_segmentation/06_compute_property_scores.py
  python stylegan_and_segmentation/06_compute_property_scores.py --pose-scaling symmetric
  python stylegan_and_segmentation/06_compute_property_scores.py --segmentation-dir my_faces_parsed --out my_scores
  torchrun --standalone --nproc_per_node=2 stylegan_and_segmentation/06_compute_property_scores.py -- --no-pictures
"""


def build_parser() -> argparse.ArgumentParser:
    d = PropertyScoresConfig()
    parser = make_parser(__doc__, EXAMPLES)
    add_common_args(parser, device=False, seed=False, limit="label maps (the first N by image name)",
                    overwrite=False)
    parser.add_argument("--segmentation-dir", type=Path, default=None,
                        help="step 5's results folder (default: <root>/segmentation/segmentation_results)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: <root>/segmentation/property_score_results)")
    parser.add_argument("--images", type=Path, default=None,
                        help="the filtered images: names maps that crops.csv does not list, and what the landmark "
                             "judge measures (default: <root>/stylegan/synthesize_results_filtered)")
    parser.add_argument("--method", choices=METHODS, default=d.method,
                        help="minmax: [0,1] ([-1,1] for face_pose), the spec; zscore: (x-mean)/std, ddof=1")
    parser.add_argument("--pose-scaling", choices=POSE_SCALINGS, default=d.pose_scaling,
                        help="minmax: face_pose like the other properties; symmetric: raw / max|raw|, "
                             "which keeps 0 = frontal")
    parser.add_argument("--per-group", type=int, default=d.per_group,
                        help="faces per row (lowest / middle / highest) in each contact sheet")
    parser.add_argument("--no-pictures", action="store_true", help="skip contact sheets and histograms")
    parser.add_argument("--landmark-judge", choices=("auto", "off"), default="auto" if d.landmark_judge else "off",
                        help="auto: also measure the filtered images with the optional dlib landmark judge "
                             "(requirements-judges.txt) and write landmark_scores.csv + judge_agreement.csv; "
                             "without it, a note says so")
    parser.add_argument("--device", default=d.device,
                        help="the landmark judge's face detector (MTCNN): cpu (as step 5's default) | cuda | auto")
    parser.add_argument("--background-scores", action="store_true",
                        help="add background_mean, background_std (raw) columns after flags, "
                             "as the original had")
    add_shard_arg(parser)
    return parser


def config_from_args(args: argparse.Namespace) -> PropertyScoresConfig:
    return PropertyScoresConfig(
        root=args.root, segmentation_dir=args.segmentation_dir, images=args.images, out=args.out,
        method=args.method, pose_scaling=args.pose_scaling, limit=args.limit, background=args.background_scores,
        per_group=args.per_group, pictures=not args.no_pictures, landmark_judge=args.landmark_judge == "auto",
        device=args.device, shard=args.shard)


def main(argv=None) -> int:
    return run_step_script(build_parser(), config_from_args, run_property_scores, argv, desc="scoring")


if __name__ == "__main__":
    raise SystemExit(main())
