"""Step 5: crop each filtered image's face (MTCNN, as the official FaceXFormer demo) and parse it.

Writes parsing_{stem}.png (224x224 uint8 label map, LaPa ids 0..10), face_{stem}.png (the 224x224
RGB crop the map belongs to), parsing_visualization_{stem}.png and crops.csv into --out.
Resumable: images already done are skipped. Example:

    python stylegan_and_segmentation/05_run_segmentation.py --batch-size 16
    python stylegan_and_segmentation/05_run_segmentation.py --crop full --limit 8   # no face detection
"""
import sys, pathlib  # noqa: E401

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from pathlib import Path  # noqa: E402

from common.checkpoints import CheckpointError  # noqa: E402
from common.cli import add_common_args, apply_common_args, make_parser, paths_from_args  # noqa: E402
from common.folders import FolderOverlapError  # noqa: E402
from common.io import CsvSchemaError  # noqa: E402
from common.runtime import resolve_device  # noqa: E402
from segmentation import CROP_MODES, SegmentConfig, run_segmentation  # noqa: E402


def build_parser():
    parser = make_parser(__doc__.splitlines()[0])
    add_common_args(parser, batch_size=8)
    parser.add_argument("--input", type=Path, default=None,
                        help="folder of images; None = <root>/stylegan/synthesize_results_filtered")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="FaceXFormer checkpoint; "
                             "None = <root>/segmentation/models/segmentation_model.pt")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder; None = <root>/segmentation/segmentation_results")
    parser.add_argument("--crop", choices=CROP_MODES, default="mtcnn",
                        help="mtcnn: official face crop (largest face, +50%% box, 224 bicubic); "
                             "full: the whole image resized to 224 (random-weight demos, or a fallback)")
    parser.add_argument("--mtcnn-device", default="cpu",
                        help="device for face detection (the official demo used the CPU; cuda is faster "
                             "but boxes may move by float rounding)")
    parser.add_argument("--retry-unreadable", action="store_true",
                        help="try again the images crops.csv lists as unreadable "
                             "(skipped on resume otherwise)")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="explicit opt-in for a checkpoint the safe loader rejects (extra optimizer "
                             "objects): unpickle it once and save its weights next to it")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    apply_common_args(args, parser)
    if args.batch_size < 1:
        parser.error(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.limit is not None and args.limit < 0:
        parser.error(f"--limit must be >= 0, got {args.limit}")
    paths = paths_from_args(args)
    input_dir = args.input or paths.filtered_dir
    checkpoint = args.checkpoint or paths.segmentation_checkpoint
    out_dir = args.out or paths.segmentation_dir
    if not Path(input_dir).is_dir():
        print(f"error: input folder not found: {input_dir} (run step 4 first, or pass --input)",
              file=sys.stderr)
        return 2
    try:
        device = resolve_device(args.device)
        mtcnn_device = str(resolve_device(args.mtcnn_device))
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    config = SegmentConfig(crop=args.crop, batch_size=args.batch_size, limit=args.limit,
                           overwrite=args.overwrite,
                           trust_checkpoint=args.trust_checkpoint,
                           retry_unreadable=args.retry_unreadable, mtcnn_device=mtcnn_device)
    try:
        summary = run_segmentation(input_dir, checkpoint, out_dir, config, device=device)
    except (CheckpointError, CsvSchemaError, FolderOverlapError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary.line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
