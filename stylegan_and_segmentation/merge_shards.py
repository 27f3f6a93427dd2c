"""Merge the per-shard lists that `--shard K/N` runs of one step left, into the step's usual outputs.

Run each shard on its machine (`--shard 0/4` ... `--shard 3/4`, same flags otherwise), copy the
output folders together (the per-image files do not collide: shard K wrote images i with
i mod N == K, and its lists as `NAME.part-K-of-N.EXT`), then run this once with the same step
flags. The merged files are byte-identical to a one-process run; running it again merges the same way.
Under torchrun nothing is needed: rank 0 merges after the ranks finish.
"""
import importlib
import sys

from common.cli import run_step_script
from pipeline.runner import load_script

MERGERS: dict[str, tuple[str, str]] = {
    # step id -> (package module, merge function): merge(config, progress) -> Summary, the step contract's shape
    "1": ("stylegan.generate", "merge_generate_shards"),
    "4": ("gender_cnn.filter", "merge_filter_shards"),
    "5": ("segmentation.segment", "merge_segmentation_shards"),
    "6": ("pipeline.property_scores_step", "merge_property_scores_shards"),
}

EXAMPLES = """examples (after copying the shards' output folders into one):
  python stylegan_and_segmentation/merge_shards.py 1 --num 100000
  python stylegan_and_segmentation/merge_shards.py 5
"""


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    steps = ", ".join(MERGERS) or "none yet"
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in MERGERS:
        print(__doc__ + f"\nusage: merge_shards.py STEP [the step's flags]   (STEP: {steps})\n\n" + EXAMPLES,
              file=sys.stdout if argv and argv[0] in ("-h", "--help") else sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    step, rest = argv[0], argv[1:]
    module_name, function_name = MERGERS[step]
    merge = getattr(importlib.import_module(module_name), function_name)
    script = load_script(step)
    return run_step_script(script.build_parser(), script.config_from_args, merge, rest, desc=f"merge step {step}")


if __name__ == "__main__":
    raise SystemExit(main())
