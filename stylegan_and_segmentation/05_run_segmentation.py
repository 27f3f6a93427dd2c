"""Step 5: crop each filtered image's face (MTCNN, as the official FaceXFormer demo) and parse it.

Writes parsing_{stem}.png (224x224 uint8 label map, LaPa ids 0..10), face_{stem}.png (the 224x224
RGB crop the map belongs to), parsing_visualization_{stem}.png, heads_{stem}.json (FaceXFormer's
landmarks and head pose) and crops.csv into --out. Resumable: images already done are skipped.
"""


import argparse
from pathlib import Path

from common.cli import add_common_args, add_shard_arg, make_parser, run_step_script
from segmentation.segment import CROP_MODES, SegmentConfig, run_segmentation

EXAMPLES = """examples:
  python stylegan_and_segmentation/05_run_segmentation.py --batch-size 16
  python stylegan_and_segmentation/05_run_segmentation.py --crop full --limit 8   # no face detection
  python stylegan_and_segmentation/05_run_segmentation.py --images my_faces --out my_faces_parsed
  torchrun --standalone --nproc_per_node=2 stylegan_and_segmentation/05_run_segmentation.py -- --batch-size 16
"""


def build_parser() -> argparse.ArgumentParser:
    d = SegmentConfig()
    parser = make_parser(__doc__, EXAMPLES)
    add_common_args(parser, batch_size=d.batch_size, seed=False, limit="images (the first N of the folder, by name)")
    parser.add_argument("--images", type=Path, default=None,
                        help="folder of images (default: <root>/stylegan/synthesize_results_filtered)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="FaceXFormer checkpoint (default: <root>/segmentation/models/segmentation_model.pt)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: <root>/segmentation/segmentation_results)")
    parser.add_argument("--crop", choices=CROP_MODES, default=d.crop,
                        help="mtcnn: official face crop (largest face, +50%% box, 224 bicubic); "
                             "full: the whole image resized to 224 (random-weight demos, or a fallback)")
    parser.add_argument("--mtcnn-device", default=d.mtcnn_device,
                        help="device for face detection (the official demo used the CPU; cuda is faster "
                             "but boxes may move by float rounding)")
    parser.add_argument("--retry-unreadable", action="store_true",
                        help="try again the images crops.csv lists as unreadable "
                             "(skipped on resume otherwise)")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="for a FaceXFormer file the safe loader refuses because it also holds saved args or "
                             "numpy values: load it allowing only those plain types (never code; "
                             "docs/checkpoints.md) and save its weights next to it")
    add_shard_arg(parser)
    return parser


def config_from_args(args: argparse.Namespace) -> SegmentConfig:
    return SegmentConfig(root=args.root, images=args.images, checkpoint=args.checkpoint, out=args.out,
                         device=args.device, crop=args.crop, batch_size=args.batch_size, limit=args.limit,
                         overwrite=args.overwrite, retry_unreadable=args.retry_unreadable,
                         trust_checkpoint=args.trust_checkpoint, mtcnn_device=args.mtcnn_device, shard=args.shard)


def main(argv=None) -> int:
    return run_step_script(build_parser(), config_from_args, run_segmentation, argv, desc="segmentation")


if __name__ == "__main__":
    raise SystemExit(main())
