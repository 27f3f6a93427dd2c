"""Step 1: generate images with the pre-trained genforce StyleGAN (eval mode, reproducible, resumable).

Writes {i:06d}.jpg (or .png), latents.npy (z), w.npy (mapping(z), untruncated), generated.csv and
generation.json (settings + the checkpoint's size:sha256; a re-run with other settings is refused).
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from common.checkpoints import CheckpointError  # noqa: E402
from common.cli import add_common_args, apply_common_args, make_parser, paths_from_args  # noqa: E402
from common.folders import FolderOverlapError  # noqa: E402
from common.runtime import resolve_device  # noqa: E402
from stylegan.generate import FORMATS_ALLOWED, GenerateConfig, GenerationConflictError, run_generate  # noqa: E402

EXAMPLES = """examples:
  python stylegan_and_segmentation/01_generate_images.py                      # 10,000 jpgs, seed 0
  python stylegan_and_segmentation/01_generate_images.py --num 100 --format png --trunc-psi 0.7 --trunc-layers 8
"""


def main(argv=None) -> int:
    parser = make_parser(__doc__)
    parser.epilog = EXAMPLES
    add_common_args(parser, batch_size=16)
    parser.add_argument("--num", type=int, default=10_000, help="number of images")
    parser.add_argument("--trunc-psi", type=float, default=1.0, help="truncation psi (1.0 = none, as the original)")
    parser.add_argument("--trunc-layers", type=int, default=0, help="truncate layers < N (needs psi < 1)")
    parser.add_argument("--format", choices=FORMATS_ALLOWED, default="jpg", help="jpg (quality 95) or png")
    parser.add_argument("--checkpoint", type=pathlib.Path, default=None,
                        help="genforce checkpoint (default: stylegan/stylegan_model.pth under --root)")
    parser.add_argument("--which", choices=("auto", "generator_smooth", "generator"), default="auto",
                        help="checkpoint entry; auto = generator_smooth if present, else generator")
    parser.add_argument("--out", type=pathlib.Path, default=None,
                        help="output folder (default: stylegan/synthesize_results under --root)")
    args = parser.parse_args(argv)
    apply_common_args(args, parser)
    paths = paths_from_args(args)
    num = args.num if args.limit is None else min(args.num, args.limit)
    try:
        config = GenerateConfig(num=num, batch_size=args.batch_size, seed=args.seed, trunc_psi=args.trunc_psi,
                                trunc_layers=args.trunc_layers, image_format=args.format, which=args.which)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        summary = run_generate(args.checkpoint or paths.stylegan_checkpoint, args.out or paths.generated_dir,
                               config, device=resolve_device(args.device), overwrite=args.overwrite,
                               progress=not args.quiet)
    except (CheckpointError, GenerationConflictError, FolderOverlapError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary.line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
