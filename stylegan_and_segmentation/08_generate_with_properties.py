"""Step 8: generate faces with chosen property values, with latent directions or the fine-tuned generator.

Values are on the normalised scale of step 6 (eyes, hair_color, hair_length, mouth in [0, 1],
face_pose in [-1, 1] with min-max normalisation). ``--control finetuned``: properties left out
are held at the training median; ``--control directions``: they follow the edit's own rule
(held at the face's current value or left free, an option of the directions file). ``auto``
(default) uses the method that exists; with both, the one step 9's comparison.csv ranks higher
with the real judge, else the fine-tune; ``all`` runs both, each into its own folder. ``--sweep PROPERTY`` also writes a grid: that property
from its minimum to its maximum, the others fixed, one row per z. ``--refine auto|PATH`` refines the directions'
edits with a step-7b checkpoint's learned regressor (slow: see its help).
"""
import argparse
import pathlib

from common.cli import WEIGHTS_CHOICES, WEIGHTS_HELP, add_common_args, make_parser, run_step_script
from common.paths import PROPERTY_NAMES
from stylegan.control_methods import REFINE_HELP
from stylegan.property_generation import (
    CONTROL_OPTIONS,
    GeneratePropertiesConfig,
    requested_from,
    run_generate_with_properties,
    sweep_list,
)

EXAMPLES = """examples:
  python stylegan_and_segmentation/08_generate_with_properties.py --eyes 0.9 --mouth 0.1 --num 16
  python stylegan_and_segmentation/08_generate_with_properties.py --control directions --face-pose -0.8
  python stylegan_and_segmentation/08_generate_with_properties.py --num 0 --sweep face_pose --sweep hair_length
  python stylegan_and_segmentation/08_generate_with_properties.py --sweep all --sweep-z 6
  python stylegan_and_segmentation/08_generate_with_properties.py --control directions --refine auto --eyes 0.9
  python stylegan_and_segmentation/08_generate_with_properties.py --control sefa --mouth 0.8   # SeFa's directions
"""


def build_parser() -> argparse.ArgumentParser:
    d = GeneratePropertiesConfig()
    parser = make_parser(__doc__, EXAMPLES)
    add_common_args(parser, batch_size=d.batch_size, limit="images")
    parser.add_argument("--control", choices=CONTROL_OPTIONS, default=d.control,
                        help="auto = the one that exists (with both: step 9's better one, else finetuned); "
                             "all = every one, each into its own folder")
    for name in PROPERTY_NAMES:
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=None,
                            help=f"normalised {name} (default: not requested; see --control)")
    parser.add_argument("--num", type=int, default=d.num, help="images with these values (image i: z from seed, i)")
    parser.add_argument("--sweep", action="append", default=[], choices=list(PROPERTY_NAMES) + ["all"],
                        help="write a sweep grid of this property (repeatable; 'all' = every property)")
    parser.add_argument("--sweep-z", type=int, default=d.sweep_z, help="rows (latents) of each sweep grid")
    parser.add_argument("--sweep-values", type=int, default=d.sweep_values, help="columns (values) of each sweep grid")
    parser.add_argument("--weights", choices=WEIGHTS_CHOICES, default=d.weights, help=f"fine-tune: {WEIGHTS_HELP}")
    parser.add_argument("--checkpoint", type=pathlib.Path, default=None,
                        help="fine-tuned checkpoint (default: the newest in stylegan/finetuned/checkpoints)")
    parser.add_argument("--directions", type=pathlib.Path, default=None,
                        help="latent directions (default: stylegan/directions/directions.pt)")
    parser.add_argument("--sefa", type=pathlib.Path, default=None,
                        help="SeFa directions for --control sefa (default: stylegan/directions/sefa.pt, from step 7a)")
    parser.add_argument("--stylegan-checkpoint", type=pathlib.Path, default=None,
                        help="directions only: the base generator (default: stylegan/stylegan_model.pth)")
    parser.add_argument("--refine", default=d.refine, metavar="{off,auto,PATH}",
                        help=REFINE_HELP + " (default: %(default)s; output default: stylegan/directions/"
                             "generated_refine)")
    parser.add_argument("--out", type=pathlib.Path, default=None,
                        help="output folder (default: stylegan/finetuned/generated, stylegan/directions/generated or "
                             "stylegan/directions/generated_sefa)")
    return parser


def config_from_args(args: argparse.Namespace) -> GeneratePropertiesConfig:
    return GeneratePropertiesConfig(
        root=args.root, control=args.control,
        requested=requested_from({name: getattr(args, name) for name in PROPERTY_NAMES}),
        num=args.num if args.limit is None else min(args.num, args.limit), seed=args.seed,
        sweeps=sweep_list(args.sweep), sweep_z=args.sweep_z, sweep_values=args.sweep_values,
        weights=args.weights, batch_size=args.batch_size, device=args.device, checkpoint=args.checkpoint,
        directions=args.directions, sefa=args.sefa, stylegan_checkpoint=args.stylegan_checkpoint, out=args.out,
        overwrite=args.overwrite, refine=args.refine)


def main(argv=None) -> int:
    return run_step_script(build_parser(), config_from_args, run_generate_with_properties, argv, desc="generate")


if __name__ == "__main__":
    raise SystemExit(main())
