"""Step 2: hand-label gender and image quality in a local web page.

Serves the first N generated images (sorted by name) one at a time; one key per decision
(``1``/Space = woman + good quality), auto-advance, undo, grid view, progress counter. Every
decision is fsynced to ``gender_cnn/hand_labels.journal.jsonl`` before the page moves on and
compacted into ``gender_cnn/hand_labels.csv`` (``img_name,gender,quality,labeller``); killing the
server loses nothing and a restart resumes at the first unlabelled image.

On a GPU server, run it there and forward the port from your laptop (see the examples).
"""
import argparse
import pathlib
import sys

from common.cli import add_common_args, make_parser, parse_step_config
from common.settings import add_settings, given_values
from common.steps import USER_ERRORS
from gender_cnn.labeller.server import LabellerConfig
from gender_cnn.labeller.step import run_labeller

EXAMPLES = """examples:
  python stylegan_and_segmentation/02_label_images.py            # prints the URL
  ssh -N -L 8765:127.0.0.1:8765 you@gpu-box                       # on the laptop, then open http://localhost:8765/
  python stylegan_and_segmentation/02_label_images.py --import old/synthesize_results_quality_and_gender.csv
  python stylegan_and_segmentation/02_label_images.py --order uncertainty --num 300   # after step 4
"""


def build_parser() -> argparse.ArgumentParser:
    d = LabellerConfig()
    parser = make_parser(__doc__, EXAMPLES)
    add_common_args(parser, device=False, seed=False, limit=None, overwrite=False)
    parser.add_argument("--overwrite", action="store_true",
                        help="start afresh: move the old CSV and journal aside to *.bak-<time> (never deleted)")
    parser.add_argument("--images", type=pathlib.Path, default=None,
                        help="image folder (default: <root>/stylegan/synthesize_results)")
    parser.add_argument("--labels", type=pathlib.Path, default=None,
                        help="labels CSV (default: <root>/gender_cnn/hand_labels.csv); the journal sits next to it")
    parser.add_argument("--num", type=int, default=d.num,
                        help="name order: label the first NUM images by name; uncertainty order: queue the NUM "
                             "most uncertain unlabelled images (already labelled ones stay reachable)")
    parser.add_argument("--order", choices=["name", "uncertainty"], default=d.order,
                        help="uncertainty: most uncertain model scores first (needs step 4's "
                             "all_image_quality_and_gender.csv)")
    parser.add_argument("--scores", type=pathlib.Path, default=None,
                        help="model scores CSV for --order uncertainty (default: <root>/gender_cnn/"
                             "all_image_quality_and_gender.csv)")
    parser.add_argument("--oof", type=pathlib.Path, default=None,
                        help="out-of-fold predictions for the review list (default: <root>/gender_cnn/logs/"
                             "oof_predictions.csv; ignored when absent)")
    parser.add_argument("--import", dest="import_csv", type=pathlib.Path, default=None,
                        help="import labels from a CSV (ours, or the original img_name,quality,gender); "
                             "images that already have a decision keep it")
    parser.add_argument("--labeller", default=d.labeller, help="value written in the labeller column")
    add_settings(parser, LabellerConfig)  # the fields declared with common.settings: --host, --port, --allow-host
    parser.add_argument("--open-browser", dest="open_browser", action="store_true", default=d.open_browser,
                        help="open the page in a local browser")
    parser.add_argument("--no-browser", dest="open_browser", action="store_false",
                        help="do not open a browser (the default)")
    parser.add_argument("--compact-interval", type=float, default=d.compact_interval_s,
                        help="seconds between CSV rewrites from the journal")
    return parser


def config_from_args(args: argparse.Namespace) -> LabellerConfig:
    return LabellerConfig(root=args.root, images=args.images, labels=args.labels, scores_csv=args.scores,
                          oof_csv=args.oof, import_csv=args.import_csv, **given_values(LabellerConfig, args),
                          open_browser=args.open_browser, overwrite=args.overwrite, num=args.num, order=args.order,
                          labeller=args.labeller, compact_interval_s=args.compact_interval)


def main(argv=None) -> int:
    """run_step_script's shape without its progress bar: a server has no work to count, and the
    bar would share stderr with the one-line errors and the URL."""
    config, _ = parse_step_config(build_parser(), config_from_args, argv)
    try:
        summary = run_labeller(config, announce=lambda line: print(line, flush=True))
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary.line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
