"""Step 7: fine-tune the pretrained StyleGAN so that 5 normalised properties condition the image.

Condition columns on the first mapping layer (zero at start: step 0 = the pretrained generator),
frozen synthesis, projection-conditioned D, R1, EMA G, and an auxiliary property loss through a
small regression CNN trained first on the filtered images and their scores (lambda 0 = the
original's plain GAN recipe, which did not learn the properties). Resumes from the newest
checkpoint in --out unless --overwrite.
"""
import argparse
import pathlib

from common.cli import WEIGHTS_CHOICES, WEIGHTS_HELP, add_common_args, make_parser, run_step_script
from stylegan.finetune_step import FinetuneStepConfig, run_finetune
from stylegan.finetune_trainer import FinetuneConfig

EXAMPLES = """examples:
  python stylegan_and_segmentation/07_finetune_stylegan.py --steps 20000              # GPU, resumable
  python stylegan_and_segmentation/07_finetune_stylegan.py --lambda-prop 0 --out runs/plain   # the original's recipe
  python stylegan_and_segmentation/07_finetune_stylegan.py --steps 4 --batch-size 4 --device cpu --limit 16  # smoke
  torchrun --standalone --nproc_per_node=4 stylegan_and_segmentation/07_finetune_stylegan.py -- --batch-size 32
      # 4 GPUs of one node, 8 images each; note the "--" before the script's flags
"""


def build_parser() -> argparse.ArgumentParser:
    d, t = FinetuneStepConfig(), FinetuneConfig()
    parser = make_parser(__doc__, EXAMPLES)
    add_common_args(parser, batch_size=t.batch_size, limit="training images")
    parser.set_defaults(seed=t.seed)
    parser.add_argument("--steps", type=int, default=t.steps, help="total training steps (a resumed run continues)")
    parser.add_argument("--lr", type=float, default=t.lr_g, help="Adam learning rate of G")
    parser.add_argument("--lr-d", type=float, default=None, help="Adam learning rate of D (default: --lr)")
    parser.add_argument("--ema-beta", type=float, default=None,
                        help="EMA decay per step (default: from --ema-half-life-kimg)")
    parser.add_argument("--ema-half-life-kimg", type=float, default=t.ema_half_life_kimg,
                        help="EMA half-life in thousands of images")
    parser.add_argument("--r1-gamma", type=float, default=t.r1_gamma, help="R1 penalty weight on real images")
    parser.add_argument("--lambda-prop", type=float, default=t.lambda_prop,
                        help="weight of the property loss (0 = plain conditional GAN)")
    parser.add_argument("--regressor-epochs", type=int, default=t.regressor_epochs,
                        help="epochs of the property-regression CNN trained before the GAN")
    parser.add_argument("--checkpoint-every", type=int, default=t.checkpoint_every, help="checkpoint every N steps")
    parser.add_argument("--sample-every", type=int, default=t.sample_every, help="sweep grid every N steps")
    parser.add_argument("--keep-checkpoints", type=int, default=t.keep_checkpoints,
                        help="keep the newest N checkpoints (0 = all)")
    parser.add_argument("--weights", choices=WEIGHTS_CHOICES, default=d.weights,
                        help=f"base generator of the pretrained checkpoint: {WEIGHTS_HELP}")
    parser.add_argument("--train-d-layers", default=t.train_d_layers,
                        help="'all', or N: train D's projection and its N layers nearest the output")
    parser.add_argument("--embed-dim", type=int, default=None, help="condition embedding size (default: z_dim)")
    parser.add_argument("--cond-lr-mul", type=float, default=t.cond_lr_mul,
                        help="equalised-lr multiplier of the new condition columns")
    parser.add_argument("--decorrelate", type=float, default=t.decorrelate,
                        help="share (0-1) of fake conditions drawn property by property, so that property pairs "
                             "vary independently (recorded in the recipe and the checkpoints)")
    parser.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA (always off on CPU)")
    parser.add_argument("--micro-batches", type=int, default=t.micro_batches,
                        help="split each step's --batch-size (the global batch, all processes together) into N "
                             "parts, each with its own random stream (default: one per process); one process with "
                             "--micro-batches N trains as N processes under torchrun do")
    parser.add_argument("--checkpoint", type=pathlib.Path, default=None,
                        help="pretrained genforce checkpoint (default: stylegan/stylegan_model.pth under --root)")
    parser.add_argument("--images", type=pathlib.Path, default=None,
                        help="training images (default: stylegan/synthesize_results_filtered)")
    parser.add_argument("--scores", type=pathlib.Path, default=None,
                        help="step 6's all_scores.csv (default: segmentation/property_score_results/all_scores.csv)")
    parser.add_argument("--normalization", type=pathlib.Path, default=None,
                        help="step 6's normalization.json (default: next to all_scores.csv)")
    parser.add_argument("--out", type=pathlib.Path, default=None, help="run folder (default: stylegan/finetuned)")
    return parser


def config_from_args(args: argparse.Namespace) -> FinetuneStepConfig:
    training = FinetuneConfig(
        steps=args.steps, batch_size=args.batch_size, lr_g=args.lr, lr_d=args.lr if args.lr_d is None else args.lr_d,
        ema_beta=args.ema_beta, ema_half_life_kimg=args.ema_half_life_kimg, r1_gamma=args.r1_gamma,
        lambda_prop=args.lambda_prop, regressor_epochs=args.regressor_epochs,
        checkpoint_every=args.checkpoint_every, sample_every=args.sample_every,
        keep_checkpoints=args.keep_checkpoints, seed=args.seed, train_d_layers=args.train_d_layers,
        embed_dim=args.embed_dim, cond_lr_mul=args.cond_lr_mul, decorrelate=args.decorrelate, mixed_precision=not args.no_amp,
        micro_batches=args.micro_batches)
    return FinetuneStepConfig(
        root=args.root, checkpoint=args.checkpoint, images=args.images, scores=args.scores,
        normalization=args.normalization, out=args.out, weights=args.weights, device=args.device,
        num_images=args.limit, overwrite=args.overwrite, training=training)


def main(argv=None) -> int:
    return run_step_script(build_parser(), config_from_args, run_finetune, argv, desc="finetune")


if __name__ == "__main__":
    raise SystemExit(main())
