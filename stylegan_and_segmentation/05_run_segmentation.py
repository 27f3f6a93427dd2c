"""Step 5: crop each filtered image's face (MTCNN, as the official FaceXFormer demo) and parse it.

Writes parsing_{stem}.png (224x224 uint8 label map, LaPa ids 0..10), face_{stem}.png (the 224x224
RGB crop the map belongs to), parsing_visualization_{stem}.png, heads_{stem}.json (FaceXFormer's
landmarks and head pose) and crops.csv into --out. Resumable: images already done are skipped.
"""


import argparse

from common import settings
from common.cli import run_step_script, step_parser
from segmentation.segment import SegmentConfig, run_segmentation

EXAMPLES = """examples:
  python stylegan_and_segmentation/05_run_segmentation.py --batch-size 16
  python stylegan_and_segmentation/05_run_segmentation.py --crop full --limit 8   # no face detection
  python stylegan_and_segmentation/05_run_segmentation.py --images my_faces --out my_faces_parsed
  torchrun --standalone --nproc_per_node=2 stylegan_and_segmentation/05_run_segmentation.py -- --batch-size 16
"""


def build_parser() -> argparse.ArgumentParser:
    return step_parser(SegmentConfig, __doc__, EXAMPLES)


def config_from_args(args: argparse.Namespace) -> SegmentConfig:
    return settings.config_from_args(SegmentConfig, args)


def main(argv=None) -> int:
    return run_step_script(build_parser(), config_from_args, run_segmentation, argv, desc="segmentation")


if __name__ == "__main__":
    raise SystemExit(main())
