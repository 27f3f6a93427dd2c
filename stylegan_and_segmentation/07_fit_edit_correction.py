"""Step 7c: the refine option's learned edit correction (after 7a and 7b).

Trains a small network that corrects step 7a's linear edits through the generator and step 7b's
learned property regressor (never a judge), and writes stylegan/directions/edit_correction/
edit_correction.pt. With it, the directions route's refine option (steps 8 and 9's --refine, the
studio's directions+refine) costs a fraction of the gradient method's forwards per image (measured in
docs/finetune-refine.md); the file is used only with the generator, directions file and regressor it
was trained for. A killed run resumes where it was (re-run the same command).
"""
import argparse

from common import settings
from common.cli import run_step_script, step_parser
from stylegan.refine_correction_step import FitCorrectionConfig, run_fit_edit_correction

EXAMPLES = """examples:
  python stylegan_and_segmentation/07_fit_edit_correction.py                 # after steps 7a and 7b
  python stylegan_and_segmentation/07_fit_edit_correction.py --steps 3000 --overwrite
  python stylegan_and_segmentation/09_evaluate_control.py --control directions --refine auto  # then: uses it
"""


def build_parser() -> argparse.ArgumentParser:
    return step_parser(FitCorrectionConfig, __doc__, EXAMPLES)


def config_from_args(args: argparse.Namespace) -> FitCorrectionConfig:
    return settings.config_from_args(FitCorrectionConfig, args)


def main(argv=None) -> int:
    return run_step_script(build_parser(), config_from_args, run_fit_edit_correction, argv,
                           desc="edit correction: training")


if __name__ == "__main__":
    raise SystemExit(main())
