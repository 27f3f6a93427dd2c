"""Run the pipeline's steps 1-9 in order, or the no-download demo of all of them.

Step 7 has two routes, and both run: 7a fits latent directions (no training), 7b fine-tunes the
generator; steps 8 and 9 use both (9 compares them). Steps are 1-6, 7a, 7b, 8, 9; a bare 7 means
both (--from 7 starts at 7a, --to 7 stops after 7b).

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
import argparse
import pathlib

from common.cli import make_parser, verbosity
from common.paths import REPO_ROOT
from common.runtime import setup_logging
from pipeline.runner import DEMO_ROOT, STEP_ORDER, PipelineOptions, run_pipeline, step_id, steps_between


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__.split("\n\n")[0])
    parser.epilog = __doc__[__doc__.index("examples:"):]
    parser.add_argument("--demo", action="store_true",
                        help=f"run every step on tiny random-weight models on CPU, under {DEMO_ROOT} (no downloads)")
    steps = ", ".join(STEP_ORDER)
    parser.add_argument("--from", dest="first", default="1", help=f"first step to run ({steps}; 7 = from 7a)")
    parser.add_argument("--to", dest="last", default="9", help=f"last step to run ({steps}; 7 = up to 7b)")
    parser.add_argument("--root", type=pathlib.Path, default=None,
                        help=f"output root (default: the repository, {REPO_ROOT}; with --demo: {DEMO_ROOT})")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (the demo always uses cpu)")
    parser.add_argument("--labels", type=pathlib.Path, default=None,
                        help="hand labels CSV (ours or the original's format) to use instead of labelling by hand")
    parser.add_argument("--redo", action="store_true", help="run the selected steps even if they finished before")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch in every step (default: torch's choice)")
    parser.add_argument("--limit", type=int, default=None,
                        help="passed to every step that takes --limit (smoke runs; each step says what it counts)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars; summaries only")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    steps = ", ".join(STEP_ORDER)
    try:
        first, last = step_id(args.first, "first"), step_id(args.last, "last")
    except ValueError as exc:
        parser.error(str(exc))
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be >= 1, got {args.limit}")
    if not steps_between(first, last):
        parser.error(f"--from must not come after --to ({steps}), got --from {args.first} --to {args.last}")
    setup_logging(verbosity(args))
    options = PipelineOptions(
        root=(args.root or (DEMO_ROOT if args.demo else REPO_ROOT)).resolve(), demo=args.demo,
        first=first, last=last, device="cpu" if args.demo else args.device, labels=args.labels,
        redo=args.redo, quiet=args.quiet, threads=args.threads, limit=args.limit,
    )
    return run_pipeline(options)


if __name__ == "__main__":
    raise SystemExit(main())
