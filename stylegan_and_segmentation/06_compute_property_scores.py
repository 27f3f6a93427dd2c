"""Step 6: the five property scores of every face parsed in step 5, normalised over all images.

Reads parsing_{stem}.png + face_{stem}.png (and crops.csv for file names) from --input and writes
all_scores.csv, normalization.json, contact_{property}.png (lowest / middle / highest scored faces
with their parsing overlays) and histograms.png into --out. Normalisation is fitted over all
images, so every run recomputes the table (seconds); identical inputs give identical files.

    python stylegan_and_segmentation/06_compute_property_scores.py
    python stylegan_and_segmentation/06_compute_property_scores.py --pose-scaling symmetric
"""
import sys, pathlib  # noqa: E401

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import functools  # noqa: E402
from pathlib import Path  # noqa: E402

from tqdm import tqdm  # noqa: E402

from common.cli import add_common_args, apply_common_args, make_parser, paths_from_args  # noqa: E402
from common.folders import FolderOverlapError  # noqa: E402
from common.io import CsvSchemaError  # noqa: E402
from common.runtime import Timer  # noqa: E402
from segmentation.normalize import METHODS, POSE_SCALINGS  # noqa: E402
from segmentation.score_report import ScoreInputError, ScoreStepConfig, run_property_scores  # noqa: E402


def build_parser():
    parser = make_parser(__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--input", type=Path, default=None,
                        help="step 5 folder (default: <root>/segmentation/segmentation_results)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: <root>/segmentation/property_score_results)")
    parser.add_argument("--images", type=Path, default=None,
                        help="folder used to name maps that crops.csv does not list "
                             "(default: <root>/stylegan/synthesize_results_filtered)")
    parser.add_argument("--method", choices=METHODS, default="minmax",
                        help="minmax: [0,1] ([-1,1] for face_pose), the spec; zscore: (x-mean)/std, ddof=1")
    parser.add_argument("--pose-scaling", choices=POSE_SCALINGS, default="minmax",
                        help="minmax: face_pose like the other properties; symmetric: raw / max|raw|, "
                             "which keeps 0 = frontal")
    parser.add_argument("--per-group", type=int, default=6,
                        help="faces per row (lowest / middle / highest) in each contact sheet")
    parser.add_argument("--no-pictures", action="store_true", help="skip contact sheets and histograms")
    parser.add_argument("--landmark-judge", choices=("auto", "off"), default="auto",
                        help="auto: also measure the filtered images with the optional dlib landmark judge "
                             "(requirements-judges.txt) and write landmark_scores.csv + judge_agreement.csv; "
                             "without it, a note says so")
    parser.add_argument("--background-scores", action="store_true",
                        help="add background_mean, background_std (raw) columns after flags, "
                             "as the original had")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    apply_common_args(args, parser)
    if args.limit is not None and args.limit < 0:
        parser.error(f"--limit must be >= 0, got {args.limit}")
    if args.per_group < 1:
        parser.error(f"--per-group must be >= 1, got {args.per_group}")
    paths = paths_from_args(args)
    config = ScoreStepConfig(
        input_dir=args.input or paths.segmentation_dir,
        out_dir=args.out or paths.property_scores_dir,
        images_dir=args.images or paths.filtered_dir,
        method=args.method, pose_scaling=args.pose_scaling, limit=args.limit,
        background=args.background_scores, per_group=args.per_group, pictures=not args.no_pictures,
    )
    # --overwrite is accepted for uniformity: the table is always recomputed (normalisation is global).
    timer = Timer()
    progress = functools.partial(_bar, disable=args.quiet)
    try:
        result = run_property_scores(config, progress=progress)
    except (FileNotFoundError, CsvSchemaError, ScoreInputError, FolderOverlapError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    flags = ", ".join(f"{name} {count}" for name, count in sorted(result.flag_counts.items())) or "none"
    pictures = len(result.written) - 2
    print(f"step 6: scored {len(result.table)} images ({args.method}, pose {args.pose_scaling}); "
          f"flags: {flags}; {result.no_face} without a face in crops.csv; "
          f"wrote all_scores.csv, normalization.json and {pictures} pictures to {config.out_dir} in {timer}")
    if args.landmark_judge == "auto":
        return _landmark_judge(args, paths, config)
    return 0


def _landmark_judge(args, paths, config) -> int:
    """The second, independent judge on the same images (optional extra: a note, never an error, without it)."""
    from judges import JudgeUnavailable, dlib_status
    from pipeline.landmark_scores import LandmarkScoresConfig, run_landmark_scores

    available, reason = dlib_status()
    if not available:
        print(f"note: landmark judge not installed ({reason}); step 9 will name its figures as missing")
        return 0
    if config.images_dir is None or not Path(config.images_dir).is_dir():
        print(f"note: landmark judge skipped: no image folder {config.images_dir} (it measures the filtered images)")
        return 0
    judge_config = LandmarkScoresConfig(root=paths.root, images=config.images_dir,
                                        segmentation_dir=config.input_dir, out=config.out_dir, limit=args.limit)
    with tqdm(total=0, unit="img", desc="landmark judge", file=sys.stderr, disable=args.quiet) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        try:
            summary = run_landmark_scores(judge_config, progress=progress)
        except (FileNotFoundError, CsvSchemaError, JudgeUnavailable) as exc:
            print(f"error: landmark judge: {exc}", file=sys.stderr)
            return 2
    print(summary.line())
    return 0


def _bar(items, total, disable=False):
    return tqdm(items, total=total, unit="img", desc="scoring", file=sys.stderr, disable=disable)


if __name__ == "__main__":
    raise SystemExit(main())
