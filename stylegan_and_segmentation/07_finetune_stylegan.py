"""Step 7: fine-tune the pretrained StyleGAN so that 5 normalised properties condition the image.

Condition columns on the first mapping layer (zero at start: step 0 = the pretrained generator),
frozen synthesis, projection-conditioned D, R1, EMA G, and an auxiliary property loss through a
small regression CNN trained first on the filtered images and their scores (lambda 0 = the
original's plain GAN recipe, which did not learn the properties). Resumes from the newest
checkpoint in --out unless --overwrite.
"""
import argparse

from common import settings
from common.cli import run_step_script, step_parser
from stylegan.finetune_step import FinetuneStepConfig, run_finetune

EXAMPLES = """examples:
  python stylegan_and_segmentation/07_finetune_stylegan.py --steps 20000              # GPU, resumable
  python stylegan_and_segmentation/07_finetune_stylegan.py --lambda-prop 0 --out runs/plain   # the original's recipe
  python stylegan_and_segmentation/07_finetune_stylegan.py --steps 4 --batch-size 4 --device cpu --limit 16  # smoke
  torchrun --standalone --nproc_per_node=4 stylegan_and_segmentation/07_finetune_stylegan.py -- --batch-size 32
      # 4 GPUs of one node, 8 images each; note the "--" before the script's flags
"""


def build_parser() -> argparse.ArgumentParser:
    return step_parser(FinetuneStepConfig, __doc__, EXAMPLES)


def config_from_args(args: argparse.Namespace) -> FinetuneStepConfig:
    return settings.config_from_args(FinetuneStepConfig, args)


def main(argv=None) -> int:
    return run_step_script(build_parser(), config_from_args, run_finetune, argv, desc="finetune")


if __name__ == "__main__":
    raise SystemExit(main())
