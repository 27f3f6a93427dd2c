"""Step 9: compare how well each control method sets each property, on one measure, with an independent judge.

For K latents drawn independently of step 1's, each property is swept from its minimum to its
maximum by every available method (latent directions, the fine-tuned generator) and by the
unedited generator (the baseline, which cannot control anything); every image is cropped (MTCNN,
or the full image), parsed by FaceXFormer, scored with step 6's algorithm and normalised with
normalization.json. The property regressor used in training is never the judge. Writes
comparison.csv, comparison_sweeps.png and report.md, and each method's own outputs in <method>/.
``--scorer brightness`` is a stand-in for demos/tests on random-weight models (labelled so).
"""
import argparse
import pathlib

from common.cli import WEIGHTS_CHOICES, WEIGHTS_HELP, add_common_args, make_parser, run_step_script
from pipeline.evaluate_control_step import (
    CONTROLS,
    CROPS,
    JUDGE_MODES,
    QUALITY_MODES,
    SCORERS,
    EvaluateControlConfig,
    run_evaluate_control,
)
from stylegan.control_methods import REFINE_HELP

EXAMPLES = """examples:
  python stylegan_and_segmentation/09_evaluate_control.py                       # every method, real judge
  python stylegan_and_segmentation/09_evaluate_control.py --control directions --num-z 40 --num-values 11
  python stylegan_and_segmentation/09_evaluate_control.py --scorer brightness --device cpu   # demo stand-in only
  python stylegan_and_segmentation/09_evaluate_control.py --control directions --refine auto  # linear vs refined
  python stylegan_and_segmentation/09_evaluate_control.py --control sefa          # SeFa's label-free directions
"""


def build_parser() -> argparse.ArgumentParser:
    d = EvaluateControlConfig()
    parser = make_parser(__doc__, EXAMPLES)
    add_common_args(parser, batch_size=d.batch_size, limit="latents per sweep (caps --num-z)")
    parser.add_argument("--control", choices=CONTROLS, default=d.control,
                        help="methods to compare with the unedited generator (all = every one that exists)")
    parser.add_argument("--num-z", type=int, default=d.num_z, help="K latents per property sweep (same for all)")
    parser.add_argument("--num-values", type=int, default=d.num_values, help="grid points per sweep")
    parser.add_argument("--sheet-z", type=int, default=d.sheet_z, help="latents shown in each method's sweep sheets")
    parser.add_argument("--scorer", choices=SCORERS, default=d.scorer,
                        help="segmentation = the real, independent judge; brightness = a labelled stand-in")
    parser.add_argument("--crop", choices=CROPS, default=d.crop, help="face crop before parsing")
    parser.add_argument("--weights", choices=WEIGHTS_CHOICES, default=d.weights, help=f"fine-tune: {WEIGHTS_HELP}")
    parser.add_argument("--checkpoint", type=pathlib.Path, default=None,
                        help="fine-tuned checkpoint (default: the newest in stylegan/finetuned/checkpoints)")
    parser.add_argument("--directions", type=pathlib.Path, default=None,
                        help="latent directions (default: stylegan/directions/directions.pt)")
    parser.add_argument("--sefa", type=pathlib.Path, default=None,
                        help="SeFa directions (default: stylegan/directions/sefa.pt, written by step 7a)")
    parser.add_argument("--stylegan-checkpoint", type=pathlib.Path, default=None,
                        help="base generator for the baseline and the directions (default: stylegan/stylegan_model.pth)")
    parser.add_argument("--segmentation-checkpoint", type=pathlib.Path, default=None,
                        help="FaceXFormer weights (default: segmentation/models/segmentation_model.pt)")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="allow the FaceXFormer file's saved args or numpy values, never code (see step 5)")
    parser.add_argument("--normalization", type=pathlib.Path, default=None,
                        help="normalization.json (default: step 6's); also sets the sweep ranges")
    parser.add_argument("--gender-models", type=pathlib.Path, default=None,
                        help="gender CNN folder for the female share (default: gender_cnn/models; skipped if absent)")
    parser.add_argument("--random-weight-models", action="store_true",
                        help="say in the report that the models have random weights (the demo sets it)")
    parser.add_argument("--judges", choices=JUDGE_MODES, default=d.judges,
                        help="auto: also the independent judges that are installed (dlib landmarks and identity, "
                             "FaceXFormer's pose head); main: only the main judge")
    parser.add_argument("--quality", choices=QUALITY_MODES, default=d.quality,
                        help="FID/KID features: inception (the file download_models.py fetches), tiny (a stand-in "
                             "for demos/tests, not comparable with published FID) or off")
    parser.add_argument("--quality-num", type=int, default=d.quality_num,
                        help="images per FID/KID set (every set is cut to the same count)")
    parser.add_argument("--inception", type=pathlib.Path, default=None,
                        help="FID Inception weights (default: judges/models/weights-inception-2015-12-05-6726825d.pth)")
    parser.add_argument("--refine", default=d.refine, metavar="{off,auto,PATH}",
                        help=REFINE_HELP + "; on: a directions+refine row beside directions (default: %(default)s)")
    parser.add_argument("--out", type=pathlib.Path, default=None, help="default: stylegan/finetuned/evaluation")
    return parser


def config_from_args(args: argparse.Namespace) -> EvaluateControlConfig:
    return EvaluateControlConfig(
        root=args.root, control=args.control, scorer=args.scorer, crop=args.crop, weights=args.weights,
        num_z=args.num_z if args.limit is None else min(args.num_z, args.limit), num_values=args.num_values,
        seed=args.seed, batch_size=args.batch_size, sheet_z=args.sheet_z, device=args.device,
        checkpoint=args.checkpoint, directions=args.directions, sefa=args.sefa,
        stylegan_checkpoint=args.stylegan_checkpoint,
        segmentation_checkpoint=args.segmentation_checkpoint, trusted_checkpoint=args.trust_checkpoint,
        normalization=args.normalization, gender_models=args.gender_models, out=args.out,
        random_weight_models=args.random_weight_models, judges=args.judges, quality=args.quality,
        quality_num=args.quality_num, inception=args.inception, refine=args.refine, overwrite=args.overwrite)


def main(argv=None) -> int:
    return run_step_script(build_parser(), config_from_args, run_evaluate_control, argv, desc="evaluate")


if __name__ == "__main__":
    raise SystemExit(main())
