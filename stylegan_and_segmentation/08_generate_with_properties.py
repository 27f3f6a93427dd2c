"""Step 8: generate faces with chosen property values from a fine-tuned (step 7) checkpoint.

Values are on the normalised scale of step 6 (eyes, hair_color, hair_length, mouth in [0, 1],
face_pose in [-1, 1] with min-max normalisation); properties left out are held at the training
median. ``--sweep PROPERTY`` also writes a grid: that property from its minimum to its maximum,
the others fixed, one row per z.
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from common.checkpoints import CheckpointError  # noqa: E402
from common.cli import add_common_args, apply_common_args, make_parser, paths_from_args  # noqa: E402
from common.folders import FolderOverlapError  # noqa: E402
from common.io import CsvSchemaError  # noqa: E402
from common.paths import PROPERTY_NAMES  # noqa: E402
from common.runtime import resolve_device  # noqa: E402
from stylegan.finetune import FinetuneDataError, find_latest_checkpoint, run_generate_with_properties  # noqa: E402

EXAMPLES = """examples:
  python stylegan_and_segmentation/08_generate_with_properties.py --eyes 0.9 --mouth 0.1 --num 16
  python stylegan_and_segmentation/08_generate_with_properties.py --num 0 --sweep face_pose --sweep hair_length
  python stylegan_and_segmentation/08_generate_with_properties.py --sweep all --sweep-z 6
"""


def main(argv=None) -> int:
    parser = make_parser(__doc__)
    parser.epilog = EXAMPLES
    add_common_args(parser, batch_size=16)
    for name in PROPERTY_NAMES:
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=None,
                            help=f"normalised {name} (default: the training median)")
    parser.add_argument("--num", type=int, default=8, help="images with these values (image i: z from seed, i)")
    parser.add_argument("--sweep", action="append", default=[], choices=list(PROPERTY_NAMES) + ["all"],
                        help="write a sweep grid of this property (repeatable; 'all' = every property)")
    parser.add_argument("--sweep-z", type=int, default=4, help="rows (latents) of each sweep grid")
    parser.add_argument("--sweep-values", type=int, default=7, help="columns (values) of each sweep grid")
    parser.add_argument("--weights", choices=("ema", "raw"), default="ema", help="EMA or raw generator weights")
    parser.add_argument("--checkpoint", type=pathlib.Path, default=None,
                        help="fine-tuned checkpoint (default: the newest in stylegan/finetuned/checkpoints)")
    parser.add_argument("--out", type=pathlib.Path, default=None,
                        help="output folder (default: stylegan/finetuned/generated)")
    args = parser.parse_args(argv)
    apply_common_args(args, parser)
    paths = paths_from_args(args)
    if args.num < 0 or args.sweep_z < 1 or args.sweep_values < 2:
        parser.error("need --num >= 0, --sweep-z >= 1 and --sweep-values >= 2")
    num = args.num if args.limit is None else min(args.num, args.limit)
    sweeps = list(PROPERTY_NAMES) if "all" in args.sweep else list(dict.fromkeys(args.sweep))
    checkpoint = args.checkpoint or find_latest_checkpoint(paths.finetuned_dir)
    if checkpoint is None:
        print(f"error: no fine-tuned checkpoint in {paths.finetuned_dir / 'checkpoints'}; run step 7 or pass "
              "--checkpoint", file=sys.stderr)
        return 2
    requested = {name: getattr(args, name) for name in PROPERTY_NAMES}
    try:
        summary = run_generate_with_properties(
            checkpoint, args.out or paths.finetuned_dir / "generated", requested, num=num, seed=args.seed,
            sweeps=sweeps, sweep_z=args.sweep_z, sweep_values=args.sweep_values, weights=args.weights,
            batch_size=args.batch_size, device=resolve_device(args.device), overwrite=args.overwrite,
            progress=not args.quiet)
    except (CheckpointError, FinetuneDataError, CsvSchemaError, FolderOverlapError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary.line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
