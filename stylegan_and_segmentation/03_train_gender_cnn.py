"""Step 3: train the gender and quality CNNs (k-fold ensembles) on the hand labels of step 2.

Writes gender_cnn/models/{gender,quality}_fold{k}.pt, gender_cnn/logs/{task}_epochs.csv,
{task}_folds.csv, oof_predictions.csv and train_config.json. A fold whose model exists (same
labels and settings) is skipped, so a killed run resumes; --overwrite retrains everything.
"""
import argparse
import pathlib

from common.cli import add_common_args, make_parser, run_step_script
from gender_cnn.data import AugmentConfig
from gender_cnn.train import TrainConfig, run_training

EXAMPLES = """examples:
  python stylegan_and_segmentation/03_train_gender_cnn.py
  python stylegan_and_segmentation/03_train_gender_cnn.py --tasks quality --folds 3 --epochs 20
  python stylegan_and_segmentation/03_train_gender_cnn.py --quality-region 0,64,64,192 --quality-size 32x64
"""


def _ints(text: str, what: str, n: int | None = None) -> tuple[int, ...]:
    """'0,64,64,192' or '32x64' -> a tuple of ints; ValueError (shown as a usage error) otherwise."""
    parts = [p.strip() for p in text.replace("x", ",").split(",") if p.strip()]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"{what} needs integers, got {text!r}") from None
    if not values or (n is not None and len(values) != n):
        raise ValueError(f"{what} needs {n or 'some'} integers, got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    region = ",".join(map(str, d.quality_region))
    parser = make_parser(__doc__, EXAMPLES)
    add_common_args(parser, batch_size=d.batch_size, limit="labelled images (the first N by name)")
    parser.add_argument("--images", type=pathlib.Path, default=None, help="image folder (default: step 1's output)")
    parser.add_argument("--labels", type=pathlib.Path, default=None,
                        help="hand labels CSV (default: step 2's gender_cnn/hand_labels.csv)")
    parser.add_argument("--tasks", default=",".join(d.tasks), help="comma-separated: gender,quality")
    parser.add_argument("--folds", type=int, default=d.folds, help="k of the k-fold ensemble (at least 2)")
    parser.add_argument("--epochs", type=int, default=d.epochs, help="maximum epochs per fold")
    parser.add_argument("--patience", type=int, default=d.patience, help="early-stopping patience (epochs)")
    parser.add_argument("--min-epochs", type=int, default=d.min_epochs,
                        help="never stop early before this epoch (BatchNorm statistics settle first)")
    parser.add_argument("--lr", type=float, default=d.lr, help="AdamW learning rate (cosine schedule)")
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay, help="AdamW weight decay")
    parser.add_argument("--input-size", type=int, default=d.input_size, help="gender model input (square)")
    parser.add_argument("--quality-region", default=region,
                        help="row0,row1,col0,col1 (end-exclusive, pixels of a 256 image) the quality model sees")
    parser.add_argument("--quality-size", default=None,
                        help="HxW the quality region is resized to (default: its own size)")
    parser.add_argument("--channels", default=",".join(map(str, d.channels)), help="CNN stage widths")
    parser.add_argument("--dropout", type=float, default=d.dropout, help="dropout before the head (training only)")
    parser.add_argument("--no-augment", action="store_true", help="no flip/shift/colour jitter")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    augment = AugmentConfig(hflip=False, max_shift_frac=0.0, brightness=0.0, contrast=0.0) \
        if args.no_augment else AugmentConfig()
    return TrainConfig(
        root=args.root, images=args.images, labels=args.labels,
        tasks=tuple(t.strip() for t in args.tasks.split(",") if t.strip()), folds=args.folds, epochs=args.epochs,
        patience=args.patience, min_epochs=args.min_epochs, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, input_size=args.input_size,
        quality_region=_ints(args.quality_region, "--quality-region", 4),
        quality_size=_ints(args.quality_size, "--quality-size", 2) if args.quality_size else None,
        channels=_ints(args.channels, "--channels"), dropout=args.dropout, augment=augment, seed=args.seed,
        device=args.device, overwrite=args.overwrite, limit=args.limit)


def main(argv=None) -> int:
    return run_step_script(build_parser(), config_from_args, run_training, argv, desc="training folds")


if __name__ == "__main__":
    raise SystemExit(main())
