"""Step 4: score all images (hand labels first, CNN ensemble for the rest) and keep good-quality women.

Writes gender_cnn/all_image_quality_and_gender.csv (img_name,gender_score,quality_score,source),
fills stylegan/synthesize_results_filtered/ with exactly the kept images (hard links or copies;
stale ones removed) and writes gender_cnn/logs/kept_sheet.jpg and near_threshold_rejected.jpg.
"""
import sys, pathlib  # noqa: E401

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from pathlib import Path  # noqa: E402

from common.checkpoints import CheckpointError  # noqa: E402
from common.cli import add_common_args, apply_common_args, make_parser, paths_from_args  # noqa: E402
from common.io import CsvSchemaError  # noqa: E402
from common.runtime import Timer, resolve_device  # noqa: E402
from gender_cnn.filter import FilterConfig, run_filter  # noqa: E402


def build_parser():
    d = FilterConfig()
    parser = make_parser(__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=None, help="image folder (default: step 1's output)")
    parser.add_argument("--labels", type=Path, default=None, help="hand labels CSV (default: step 2's output)")
    parser.add_argument("--models", type=Path, default=None, help="CNN model folder (default: step 3's output)")
    parser.add_argument("--out", type=Path, default=None, help="scores CSV (default: the contract path)")
    parser.add_argument("--filtered-dir", type=Path, default=None, help="kept images (default: the contract path)")
    parser.add_argument("--gender-threshold", type=float, default=d.gender_threshold,
                        help="keep if gender_score >= this (1 = woman)")
    parser.add_argument("--quality-threshold", type=float, default=d.quality_threshold,
                        help="keep if quality_score >= this (1 = good)")
    parser.add_argument("--copy", action="store_true", help="copy kept images instead of hard-linking them")
    parser.add_argument("--no-sheets", action="store_true", help="skip the contact sheets")
    add_common_args(parser, batch_size=d.batch_size)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    apply_common_args(args, parser)
    timer = Timer()
    for flag in ("gender_threshold", "quality_threshold"):
        if not 0.0 <= getattr(args, flag) <= 1.0:
            parser.error(f"--{flag.replace('_', '-')} must lie in [0, 1]")
    if args.batch_size < 1:
        parser.error("--batch-size must be >= 1")
    paths = paths_from_args(args)
    config = FilterConfig(gender_threshold=args.gender_threshold, quality_threshold=args.quality_threshold,
                          batch_size=args.batch_size, link=not args.copy, sheets=not args.no_sheets)
    out_csv = args.out or paths.quality_gender_csv
    filtered_dir = args.filtered_dir or paths.filtered_dir
    try:
        device = resolve_device(args.device)
        summary = run_filter(args.images or paths.generated_dir, args.labels or paths.hand_labels_csv,
                             args.models or paths.cnn_models_dir, out_csv, filtered_dir, paths.cnn_logs_dir,
                             config, device, limit=args.limit, show_progress=not args.quiet)
    except (CheckpointError, CsvSchemaError, FileNotFoundError, ValueError, RuntimeError) as exc:
        message = str(exc).replace("\n  ", "; ").replace("\n", " ")
        print(f"error: {message}", file=sys.stderr)
        return 2
    print(f"step 4 done in {timer}: {summary.line()}; scores in {out_csv}, kept images in {filtered_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
