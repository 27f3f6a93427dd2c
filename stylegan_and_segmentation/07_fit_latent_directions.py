"""Step 7, second route: latent directions in w space (no training; minutes).

Fits one calibrated direction per property from step 1's w codes (w.npy, else latents.npy through
the mapping network) and step 6's scores, on the images step 4 kept, and writes
stylegan/directions/directions.pt, report.md, directions_report.csv, direction_angles.csv and one
sweep sheet per property. Ridge vs InterFaceGAN's SVM is chosen per property by the control edits
achieve on held-out latents, judged by the segmentation scorer (step 9's), when its model is
there; otherwise InterFaceGAN's SVM is used for every property (the control lab: prediction r is a
poor guide to control). Steps 8 and 9 use it with --control directions.
"""
import argparse
import pathlib

from common.cli import WEIGHTS_CHOICES, WEIGHTS_HELP, add_common_args, make_parser, run_step_script
from pipeline.latent_directions import run_fit_latent_directions
from stylegan.directions import LAYER_RANGES, METRICS_ALLOWED
from stylegan.directions_step import SELECT_ALLOWED, FitDirectionsConfig

EXAMPLES = """examples:
  python stylegan_and_segmentation/07_fit_latent_directions.py                  # after steps 1-6
  python stylegan_and_segmentation/07_fit_latent_directions.py --method svm --no-hold  # InterFaceGAN-like edits
  python stylegan_and_segmentation/07_fit_latent_directions.py --layer-ranges all,coarse,middle,fine
  python stylegan_and_segmentation/07_fit_latent_directions.py --select heldout-r    # by prediction r (asked only)
"""


def _cap(text: str):
    return None if text.lower() in ("none", "off", "0") else float(text)


WHICH = {"auto": "auto", "ema": "generator_smooth", "raw": "generator"}


def build_parser() -> argparse.ArgumentParser:
    d = FitDirectionsConfig()
    parser = make_parser(__doc__, EXAMPLES)
    add_common_args(parser, batch_size=d.batch_size, limit="scored images fitted on")
    parser.add_argument("--method", choices=("auto", "ridge", "svm"), default=d.method,
                        help="direction per property: ridge on all scored samples, InterFaceGAN's SVM on the "
                             "extremes, or auto (chosen per property, see --select)")
    parser.add_argument("--select", choices=SELECT_ALLOWED, default=d.select,
                        help="how auto chooses: control = edits rendered and scored on held-out latents "
                             "(needs the segmentation model); heldout-r = prediction r (asked for only: prediction is "
                             "not control); auto = control when possible, else the default rule (ridge, chosen on the "
                             "control lab's family of worlds)")
    parser.add_argument("--layer-ranges", default=",".join(d.layer_ranges),
                        help=f"synthesis layer ranges tried by --select control, comma-separated from {LAYER_RANGES}")
    parser.add_argument("--hold", action=argparse.BooleanOptionalAction, default=d.hold,
                        help="edits hold unrequested properties at their current values (joint solve); "
                             "--no-hold leaves them free (InterFaceGAN's single-direction move)")
    parser.add_argument("--metric", choices=METRICS_ALLOWED, default=d.metric,
                        help="edits move the least in this metric (whitened = w's covariance)")
    parser.add_argument("--cap", type=_cap, default=d.cap,
                        help="edits keep every prediction within mean +- CAP sd of the fitted samples, widened to the "
                             "scores seen in fitting, which are always reachable ('none' = off)")
    parser.add_argument("--svm-count", type=int, default=d.svm_count,
                        help="samples per end for the SVM (default: 2%% of N, at least min(N/4, 500))")
    parser.add_argument("--sefa-components", type=int, default=d.sefa_components,
                        help="also write sefa.pt: SeFa's label-free directions, the top N eigen-directions of the "
                             "style weights each named by its correlation with step 6's scores (0 = no SeFa)")
    parser.add_argument("--gender-guard", action=argparse.BooleanOptionalAction, default=d.gender_guard,
                        help="edits hold step 4's gender_score (a ridge direction fitted on every generated latent)")
    parser.add_argument("--num-heldout", type=int, default=d.num_heldout,
                        help="scored latents the control choice judges on (its candidates are fitted without "
                             "them) and the sheets show")
    parser.add_argument("--num-values", type=int, default=d.num_values, help="targets per sweep")
    parser.add_argument("--all-scored", action="store_true",
                        help="fit on every scored image, not only those step 4 kept (faces may then be men)")
    parser.add_argument("--weights", choices=WEIGHTS_CHOICES, default="auto", help=WEIGHTS_HELP)
    parser.add_argument("--crop", choices=("mtcnn", "full"), default=d.crop, help="scorer's face crop (as step 9)")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="allow the FaceXFormer file's saved args or numpy values, never code (see step 5)")
    parser.add_argument("--checkpoint", type=pathlib.Path, default=None, help="default: stylegan/stylegan_model.pth")
    parser.add_argument("--scores", type=pathlib.Path, default=None, help="all_scores.csv (default: step 6's)")
    parser.add_argument("--out", type=pathlib.Path, default=None, help="default: stylegan/directions")
    return parser


def config_from_args(args: argparse.Namespace) -> FitDirectionsConfig:
    return FitDirectionsConfig(
        root=args.root, checkpoint=args.checkpoint, scores_csv=args.scores, out_dir=args.out,
        all_scored=args.all_scored, which=WHICH[args.weights], method=args.method, select=args.select,
        layer_ranges=tuple(r.strip() for r in args.layer_ranges.split(",") if r.strip()), hold=args.hold,
        metric=args.metric, cap=args.cap, svm_count=args.svm_count, sefa_components=args.sefa_components,
        gender_guard=args.gender_guard,
        num_heldout=args.num_heldout, num_values=args.num_values, batch_size=args.batch_size, seed=args.seed,
        limit=args.limit, crop=args.crop, trust_checkpoint=args.trust_checkpoint, device=args.device,
        overwrite=args.overwrite)


def main(argv=None) -> int:
    return run_step_script(build_parser(), config_from_args, run_fit_latent_directions, argv,
                           desc="directions: control choice")


if __name__ == "__main__":
    raise SystemExit(main())
