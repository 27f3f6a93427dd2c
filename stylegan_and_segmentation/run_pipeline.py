"""Run the pipeline's steps 1-9 in order, or the no-download demo of all of them.

Step 7 has two routes, and both run: 7a fits latent directions (no training), 7b fine-tunes the
generator; steps 8 and 9 use both (9 compares them). 7c trains the refine option's edit correction
from 7a's directions and 7b's regressor. Steps are 1-6, 7a, 7b, 7c, 8, 9; a bare 7 means all three
(--from 7 starts at 7a, --to 7 stops after 7c).

Each step is its own script (run it alone to inspect or tune it); this runner calls them in
order with consistent paths, prints each step's summary line and the total time, and skips
steps finished earlier with the same arguments. It stops cleanly at the hand-labelling step
(step 2) until labels exist, or takes them from --labels FILE.

examples:
  python stylegan_and_segmentation/run_pipeline.py --demo            # everything on CPU, no downloads
  python stylegan_and_segmentation/run_pipeline.py --to 1            # generate the 10,000 images
  python stylegan_and_segmentation/run_pipeline.py --from 3          # after labelling: steps 3-9
  python stylegan_and_segmentation/run_pipeline.py --from 7b --to 7b  # only the fine-tune
  python stylegan_and_segmentation/run_pipeline.py --labels my_labels.csv
"""
import dataclasses

from common import settings
from common.cli import make_parser, verbosity
from common.runtime import setup_logging
from pipeline.runner import DEMO_ROOT, PipelineOptions, run_pipeline, step_id


def build_parser():
    parser = make_parser(__doc__.split("\n\n")[0])
    parser.epilog = __doc__[__doc__.index("examples:"):]
    settings.add_settings(parser, PipelineOptions)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    fixed = {"device": "cpu"} if getattr(args, "demo", False) else {}
    if getattr(args, "demo", False) and "root" not in vars(args):
        fixed["root"] = DEMO_ROOT
    try:
        options = settings.config_from_args(PipelineOptions, args, **fixed)
    except ValueError as exc:
        parser.error(str(exc))
    setup_logging(verbosity(args))
    options = dataclasses.replace(options, root=options.root.resolve(), first=step_id(options.first, "first"),
                                  last=step_id(options.last, "last"))
    return run_pipeline(options)


if __name__ == "__main__":
    raise SystemExit(main())
