"""Step 1: generate images with the pre-trained genforce StyleGAN (eval mode, reproducible, resumable).

Writes {i:06d}.jpg (or .png), latents.npy (z), w.npy (mapping(z), untruncated), generated.csv and
generation.json (settings + the checkpoint's size:sha256; a re-run with other settings is refused).
"""
import argparse

from common import settings
from common.cli import run_step_script, step_parser
from stylegan.generate import GenerateConfig, run_generate

EXAMPLES = """examples:
  python stylegan_and_segmentation/01_generate_images.py                      # 10,000 jpgs, seed 0
  python stylegan_and_segmentation/01_generate_images.py --num 100 --format png --trunc-psi 0.7 --trunc-layers 8
  torchrun --standalone --nproc_per_node=4 stylegan_and_segmentation/01_generate_images.py -- --num 100000
  python stylegan_and_segmentation/01_generate_images.py --num 100000 --shard 0/2   # machine 0 of 2, then:
  python stylegan_and_segmentation/merge_shards.py 1 --num 100000                   # after copying the folders
"""


def build_parser() -> argparse.ArgumentParser:
    return step_parser(GenerateConfig, __doc__, EXAMPLES)


def config_from_args(args: argparse.Namespace) -> GenerateConfig:
    return settings.config_from_args(GenerateConfig, args)


def main(argv=None) -> int:
    return run_step_script(build_parser(), config_from_args, run_generate, argv, desc="generate")


if __name__ == "__main__":
    raise SystemExit(main())
