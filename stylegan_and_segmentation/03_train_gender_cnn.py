"""Step 3: train the gender and quality CNNs (k-fold ensembles) on the hand labels of step 2.

Writes gender_cnn/models/{gender,quality}_fold{k}.pt, gender_cnn/logs/{task}_epochs.csv,
{task}_folds.csv, oof_predictions.csv and train_config.json. A fold whose model exists (same
labels and settings) is skipped, so a killed run resumes; --overwrite retrains everything.
"""
import sys, pathlib  # noqa: E401

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import logging  # noqa: E402
from pathlib import Path  # noqa: E402

from common.cli import add_common_args, apply_common_args, make_parser, paths_from_args  # noqa: E402
from common.io import CsvSchemaError  # noqa: E402
from common.runtime import Timer, resolve_device  # noqa: E402

logger = logging.getLogger("03_train_gender_cnn")


def _int_list(text: str, n: int, what: str) -> tuple[int, ...]:
    parts = [p for p in text.replace("x", ",").split(",") if p.strip()]
    if len(parts) != n:
        raise ValueError(f"{what} needs {n} integers, got {text!r}")
    return tuple(int(p) for p in parts)


def build_parser():
    from gender_cnn.train import TrainConfig

    d = TrainConfig()
    parser = make_parser(__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=None, help="image folder (default: step 1's output)")
    parser.add_argument("--labels", type=Path, default=None, help="hand labels CSV (default: step 2's output)")
    parser.add_argument("--tasks", default=",".join(d.tasks), help="comma-separated: gender,quality")
    parser.add_argument("--folds", type=int, default=d.folds)
    parser.add_argument("--epochs", type=int, default=d.epochs, help="maximum epochs per fold")
    parser.add_argument("--patience", type=int, default=d.patience, help="early-stopping patience (epochs)")
    parser.add_argument("--min-epochs", type=int, default=d.min_epochs,
                        help="never stop early before this epoch (BatchNorm statistics settle first)")
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay)
    parser.add_argument("--input-size", type=int, default=d.input_size, help="gender model input (square)")
    parser.add_argument("--quality-region", default="0,64,64,192",
                        help="row0,row1,col0,col1 (end-exclusive, pixels of a 256 image) the quality model sees")
    parser.add_argument("--quality-size", default=None,
                        help="HxW the quality region is resized to (default: its own size)")
    parser.add_argument("--channels", default=",".join(map(str, d.channels)), help="CNN stage widths")
    parser.add_argument("--dropout", type=float, default=d.dropout)
    parser.add_argument("--no-augment", action="store_true", help="no flip/shift/colour jitter")
    add_common_args(parser, batch_size=d.batch_size)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    apply_common_args(args, parser)
    timer = Timer()

    from gender_cnn.data import AugmentConfig, default_input_spec
    from gender_cnn.train import TrainConfig, run_training

    try:
        tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
        region = _int_list(args.quality_region, 4, "--quality-region")
        quality_size = _int_list(args.quality_size, 2, "--quality-size") if args.quality_size else None
        channels = _int_list(args.channels, len(args.channels.split(",")), "--channels")
        for task in tasks:
            default_input_spec(task, args.input_size, region, quality_size)  # validates
    except ValueError as exc:
        parser.error(str(exc))
    if args.folds < 2:
        parser.error("--folds must be at least 2")
    if args.epochs < 1 or args.patience < 1 or args.batch_size < 2:
        parser.error("--epochs and --patience must be >= 1 and --batch-size >= 2")
    augment = AugmentConfig(hflip=False, max_shift_frac=0.0, brightness=0.0, contrast=0.0) \
        if args.no_augment else AugmentConfig()
    config = TrainConfig(tasks=tasks, folds=args.folds, epochs=args.epochs, patience=args.patience,
                         min_epochs=args.min_epochs,
                         batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                         input_size=args.input_size, quality_region=region, quality_size=quality_size,
                         channels=channels, dropout=args.dropout, augment=augment, seed=args.seed)
    paths = paths_from_args(args)
    images_dir = args.images or paths.generated_dir
    labels_csv = args.labels or paths.hand_labels_csv
    try:
        device = resolve_device(args.device)
        summary = run_training(images_dir, labels_csv, paths.cnn_models_dir, paths.cnn_logs_dir,
                               paths.oof_predictions_csv, config, device, overwrite=args.overwrite,
                               limit=args.limit, show_progress=not args.quiet)
    except (CsvSchemaError, FileNotFoundError, ValueError, RuntimeError) as exc:
        message = str(exc).replace("\n  ", "; ").replace("\n", " ")
        print(f"error: {message}", file=sys.stderr)
        return 2
    print(f"step 3 done in {timer}: {summary.line()}; models in {paths.cnn_models_dir}, "
          f"logs in {paths.cnn_logs_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
