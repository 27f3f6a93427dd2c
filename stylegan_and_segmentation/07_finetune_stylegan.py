"""Step 7: fine-tune the pretrained StyleGAN so that 5 normalised properties condition the image.

Condition columns on the first mapping layer (zero at start: step 0 = the pretrained generator),
frozen synthesis, projection-conditioned D, R1, EMA G, and an auxiliary property loss through a
small regression CNN trained first on the filtered images and their scores (lambda 0 = the
original's plain GAN recipe, which did not learn the properties). Resumes from the newest
checkpoint in --out unless --overwrite.
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from common.checkpoints import CheckpointError  # noqa: E402
from common.cli import add_common_args, apply_common_args, make_parser, paths_from_args  # noqa: E402
from common.folders import FolderOverlapError  # noqa: E402
from common.io import CsvSchemaError  # noqa: E402
from common.runtime import resolve_device  # noqa: E402
from stylegan.finetune import FinetuneConfig, FinetuneDataError, run_finetune  # noqa: E402

EXAMPLES = """examples:
  python stylegan_and_segmentation/07_finetune_stylegan.py --steps 20000              # GPU, resumable
  python stylegan_and_segmentation/07_finetune_stylegan.py --lambda-prop 0 --out runs/plain   # the original's recipe
  python stylegan_and_segmentation/07_finetune_stylegan.py --steps 4 --batch-size 4 --device cpu --limit 16  # smoke
"""


def main(argv=None) -> int:
    parser = make_parser(__doc__)
    parser.epilog = EXAMPLES
    add_common_args(parser, batch_size=8)
    defaults = FinetuneConfig()
    parser.add_argument("--steps", type=int, default=defaults.steps, help="total training steps (resume continues)")
    parser.add_argument("--lr", type=float, default=defaults.lr_g, help="Adam learning rate of G")
    parser.add_argument("--lr-d", type=float, default=None, help="Adam learning rate of D (default: --lr)")
    parser.add_argument("--ema-beta", type=float, default=None, help="EMA decay per step (overrides the half-life)")
    parser.add_argument("--ema-half-life-kimg", type=float, default=defaults.ema_half_life_kimg,
                        help="EMA half-life in thousands of images")
    parser.add_argument("--r1-gamma", type=float, default=defaults.r1_gamma, help="R1 penalty weight on real images")
    parser.add_argument("--lambda-prop", type=float, default=defaults.lambda_prop,
                        help="weight of the property loss (0 = plain conditional GAN)")
    parser.add_argument("--regressor-epochs", type=int, default=defaults.regressor_epochs,
                        help="epochs of the property-regression CNN trained before the GAN")
    parser.add_argument("--checkpoint-every", type=int, default=defaults.checkpoint_every)
    parser.add_argument("--sample-every", type=int, default=defaults.sample_every, help="sweep grid every N steps")
    parser.add_argument("--keep-checkpoints", type=int, default=defaults.keep_checkpoints,
                        help="keep the newest N checkpoints (0 = all)")
    parser.add_argument("--which", choices=("auto", "generator_smooth", "generator"), default="auto",
                        help="generator entry of the pretrained checkpoint (auto = generator_smooth if present)")
    parser.add_argument("--train-d-layers", default="all",
                        help="'all', or N: train D's projection and its N layers nearest the output")
    parser.add_argument("--embed-dim", type=int, default=None, help="condition embedding size (default z_dim)")
    parser.add_argument("--cond-lr-mul", type=float, default=defaults.cond_lr_mul,
                        help="equalised-lr multiplier of the new condition columns")
    parser.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    parser.add_argument("--checkpoint", type=pathlib.Path, default=None,
                        help="pretrained genforce checkpoint (default: stylegan/stylegan_model.pth under --root)")
    parser.add_argument("--images", type=pathlib.Path, default=None,
                        help="training images (default: stylegan/synthesize_results_filtered)")
    parser.add_argument("--scores", type=pathlib.Path, default=None, help="all_scores.csv (default: step 6's)")
    parser.add_argument("--normalization", type=pathlib.Path, default=None,
                        help="normalization.json (default: step 6's)")
    parser.add_argument("--out", type=pathlib.Path, default=None, help="run folder (default: stylegan/finetuned)")
    args = parser.parse_args(argv)
    apply_common_args(args, parser)
    paths = paths_from_args(args)
    try:
        config = FinetuneConfig(
            steps=args.steps, batch_size=args.batch_size, lr_g=args.lr, lr_d=args.lr_d or args.lr,
            ema_beta=args.ema_beta, ema_half_life_kimg=args.ema_half_life_kimg, r1_gamma=args.r1_gamma,
            lambda_prop=args.lambda_prop, regressor_epochs=args.regressor_epochs,
            checkpoint_every=args.checkpoint_every, sample_every=args.sample_every,
            keep_checkpoints=args.keep_checkpoints, seed=args.seed, which=args.which,
            train_d_layers=args.train_d_layers, embed_dim=args.embed_dim, cond_lr_mul=args.cond_lr_mul,
            mixed_precision=not args.no_amp)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        summary = run_finetune(
            args.checkpoint or paths.stylegan_checkpoint, args.images or paths.filtered_dir,
            args.scores or paths.all_scores_csv, args.normalization or paths.normalization_json,
            args.out or paths.finetuned_dir, config, device=resolve_device(args.device), overwrite=args.overwrite,
            progress=not args.quiet, limit=args.limit)
    except (CheckpointError, FinetuneDataError, CsvSchemaError, FileNotFoundError, FloatingPointError,
            FolderOverlapError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary.line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
