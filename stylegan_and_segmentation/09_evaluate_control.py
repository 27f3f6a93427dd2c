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

from common import settings
from common.cli import run_step_script, step_parser
from pipeline.evaluate_control_step import EvaluateControlConfig, run_evaluate_control

EXAMPLES = """examples:
  python stylegan_and_segmentation/09_evaluate_control.py                       # every method, real judge
  python stylegan_and_segmentation/09_evaluate_control.py --control directions --num-z 40 --num-values 11
  python stylegan_and_segmentation/09_evaluate_control.py --scorer brightness --device cpu   # demo stand-in only
  python stylegan_and_segmentation/09_evaluate_control.py --control directions --refine auto  # linear vs refined
  python stylegan_and_segmentation/09_evaluate_control.py --control sefa          # SeFa's label-free directions
"""


def build_parser() -> argparse.ArgumentParser:
    return step_parser(EvaluateControlConfig, __doc__, EXAMPLES)


def config_from_args(args: argparse.Namespace) -> EvaluateControlConfig:
    return settings.config_from_args(EvaluateControlConfig, args)


def main(argv=None) -> int:
    return run_step_script(build_parser(), config_from_args, run_evaluate_control, argv, desc="evaluate")


if __name__ == "__main__":
    raise SystemExit(main())
