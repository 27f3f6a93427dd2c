"""Step 1: generate images with the pre-trained genforce StyleGAN (eval mode, reproducible, resumable).

Writes {i:06d}.jpg (or .png), latents.npy (z), w.npy (mapping(z), untruncated), generated.csv and
generation.json (settings + the checkpoint's size:sha256; a re-run with other settings is refused).
"""
import argparse
import pathlib

from common.cli import (
    WEIGHTS_CHOICES,
    WEIGHTS_HELP,
    add_common_args,
    add_shard_arg,
    make_parser,
    run_step_script,
)
from stylegan.generate import FORMATS_ALLOWED, GenerateConfig, run_generate

EXAMPLES = """examples:
  python stylegan_and_segmentation/01_generate_images.py                      # 10,000 jpgs, seed 0
  python stylegan_and_segmentation/01_generate_images.py --num 100 --format png --trunc-psi 0.7 --trunc-layers 8
  torchrun --standalone --nproc_per_node=4 stylegan_and_segmentation/01_generate_images.py -- --num 100000
  python stylegan_and_segmentation/01_generate_images.py --num 100000 --shard 0/2   # machine 0 of 2, then:
  python stylegan_and_segmentation/merge_shards.py 1 --num 100000                   # after copying the folders
"""


def build_parser() -> argparse.ArgumentParser:
    d = GenerateConfig()
    parser = make_parser(__doc__, EXAMPLES)
    add_common_args(parser, batch_size=d.batch_size, limit=None)
    parser.add_argument("--num", type=int, default=d.num, help="number of images (image i: z from seed, i)")
    parser.add_argument("--trunc-psi", type=float, default=d.trunc_psi,
                        help="truncation psi (1.0 = none, as the original)")
    parser.add_argument("--trunc-layers", type=int, default=d.trunc_layers, help="truncate layers < N (needs psi < 1)")
    parser.add_argument("--format", choices=FORMATS_ALLOWED, default=d.image_format,
                        help=f"jpg (quality {d.jpeg_quality}) or png")
    parser.add_argument("--checkpoint", type=pathlib.Path, default=None,
                        help="genforce checkpoint (default: stylegan/stylegan_model.pth under --root)")
    parser.add_argument("--weights", choices=WEIGHTS_CHOICES, default=d.weights, help=WEIGHTS_HELP)
    parser.add_argument("--out", type=pathlib.Path, default=None,
                        help="output folder (default: stylegan/synthesize_results under --root)")
    add_shard_arg(parser)
    return parser


def config_from_args(args: argparse.Namespace) -> GenerateConfig:
    return GenerateConfig(root=args.root, checkpoint=args.checkpoint, out=args.out, num=args.num,
                          batch_size=args.batch_size, seed=args.seed, trunc_psi=args.trunc_psi,
                          trunc_layers=args.trunc_layers, image_format=args.format, weights=args.weights,
                          device=args.device, overwrite=args.overwrite,
                          shard=args.shard)


def main(argv=None) -> int:
    return run_step_script(build_parser(), config_from_args, run_generate, argv, desc="generate")


if __name__ == "__main__":
    raise SystemExit(main())
