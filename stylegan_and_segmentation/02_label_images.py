"""Step 2: hand-label gender and image quality in a local web page.

Serves the first N generated images (sorted by name) one at a time; one key per decision
(``1``/Space = woman + good quality), auto-advance, undo, grid view, progress counter. Every
decision is fsynced to ``gender_cnn/hand_labels.journal.jsonl`` before the page moves on and
compacted into ``gender_cnn/hand_labels.csv`` (``img_name,gender,quality,labeller``); killing the
server loses nothing and a restart resumes at the first unlabelled image.

On a GPU server, run it there and forward the port from your laptop (see the examples).
"""
import argparse

from common import settings
from common.cli import run_step_script, step_parser
from gender_cnn.labeller.server import LabellerConfig
from gender_cnn.labeller.step import run_labeller

EXAMPLES = """examples:
  python stylegan_and_segmentation/02_label_images.py            # prints the URL
  ssh -N -L 8765:127.0.0.1:8765 you@gpu-box                       # on the laptop, then open http://localhost:8765/
  python stylegan_and_segmentation/02_label_images.py --import old/synthesize_results_quality_and_gender.csv
  python stylegan_and_segmentation/02_label_images.py --order uncertainty --num 300   # after step 4
"""


def build_parser() -> argparse.ArgumentParser:
    return step_parser(LabellerConfig, __doc__, EXAMPLES)


def config_from_args(args: argparse.Namespace) -> LabellerConfig:
    return settings.config_from_args(LabellerConfig, args)


def main(argv=None) -> int:
    """No progress bar: a server has no work to count, and the bar would share the terminal with its URL."""
    return run_step_script(build_parser(), config_from_args, run_labeller, argv, bar=False)


if __name__ == "__main__":
    raise SystemExit(main())
