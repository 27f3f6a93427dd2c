"""Step 8: generate faces with chosen property values, with latent directions or the fine-tuned generator.

Values are on the normalised scale of step 6 (eyes, hair_color, hair_length, mouth in [0, 1],
face_pose in [-1, 1] with min-max normalisation). ``--control finetuned``: properties left out
are held at the training median; ``--control directions``: they follow the edit's own rule
(held at the face's current value or left free, an option of the directions file). ``auto``
(default) uses the method that exists; with both, the one step 9's comparison.csv ranks higher
with the real judge, else the fine-tune; ``all`` runs both, each into its own folder. ``--sweep PROPERTY`` also writes a grid: that property
from its minimum to its maximum, the others fixed, one row per z. ``--refine auto|PATH`` refines the directions'
edits with a step-7b checkpoint's learned regressor (slow: see its help).
"""
import argparse

from common import settings
from common.cli import run_step_script, step_parser
from stylegan.property_generation import GeneratePropertiesConfig, run_generate_with_properties

EXAMPLES = """examples:
  python stylegan_and_segmentation/08_generate_with_properties.py --eyes 0.9 --mouth 0.1 --num 16
  python stylegan_and_segmentation/08_generate_with_properties.py --control directions --face-pose -0.8
  python stylegan_and_segmentation/08_generate_with_properties.py --num 0 --sweep face_pose --sweep hair_length
  python stylegan_and_segmentation/08_generate_with_properties.py --sweep all --sweep-z 6
  python stylegan_and_segmentation/08_generate_with_properties.py --control directions --refine auto --eyes 0.9
  python stylegan_and_segmentation/08_generate_with_properties.py --control sefa --mouth 0.8   # SeFa's directions
"""


def build_parser() -> argparse.ArgumentParser:
    return step_parser(GeneratePropertiesConfig, __doc__, EXAMPLES)


def config_from_args(args: argparse.Namespace) -> GeneratePropertiesConfig:
    return settings.config_from_args(GeneratePropertiesConfig, args)


def main(argv=None) -> int:
    return run_step_script(build_parser(), config_from_args, run_generate_with_properties, argv, desc="generate")


if __name__ == "__main__":
    raise SystemExit(main())
