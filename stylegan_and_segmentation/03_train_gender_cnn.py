"""Step 3: train the gender and quality CNNs (k-fold ensembles) on the hand labels of step 2.

Writes gender_cnn/models/{gender,quality}_fold{k}.pt, gender_cnn/logs/{task}_epochs.csv,
{task}_folds.csv, oof_predictions.csv and train_config.json. A fold whose model exists (same
labels and settings) is skipped, so a killed run resumes; --overwrite retrains everything.
"""
import argparse

from common import settings
from common.cli import run_step_script, step_parser
from gender_cnn.train import TrainConfig, run_training

EXAMPLES = """examples:
  python stylegan_and_segmentation/03_train_gender_cnn.py
  python stylegan_and_segmentation/03_train_gender_cnn.py --tasks quality --folds 3 --epochs 20
  python stylegan_and_segmentation/03_train_gender_cnn.py --quality-region 0,64,64,192 --quality-size 32x64
"""


def build_parser() -> argparse.ArgumentParser:
    return step_parser(TrainConfig, __doc__, EXAMPLES)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return settings.config_from_args(TrainConfig, args)


def main(argv=None) -> int:
    return run_step_script(build_parser(), config_from_args, run_training, argv, desc="training folds")


if __name__ == "__main__":
    raise SystemExit(main())
