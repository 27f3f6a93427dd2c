"""Step 2: hand-label gender and image quality in a local web page.

Serves the first N generated images (sorted by name) one at a time; one key per decision
(``1``/Space = woman + good quality), auto-advance, undo, grid view, progress counter. Every
decision is fsynced to ``gender_cnn/hand_labels.journal.jsonl`` before the page moves on and
compacted into ``gender_cnn/hand_labels.csv`` (``img_name,gender,quality,labeller``); killing the
server loses nothing and a restart resumes at the first unlabelled image.

On a GPU server, run it there and forward the port from your laptop::

    python stylegan_and_segmentation/02_label_images.py            # prints the URL
    ssh -N -L 8765:127.0.0.1:8765 you@gpu-box                       # on the laptop, then open
    http://localhost:8765/

Examples::

    python stylegan_and_segmentation/02_label_images.py --import old/synthesize_results_quality_and_gender.csv
    python stylegan_and_segmentation/02_label_images.py --order uncertainty --num 300   # after step 4
"""
import sys, pathlib  # noqa: E401
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import logging  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import webbrowser  # noqa: E402
from pathlib import Path  # noqa: E402

from common.cli import add_common_args, apply_common_args, make_parser, paths_from_args  # noqa: E402
from common.io import CsvSchemaError  # noqa: E402
from common.runtime import Timer  # noqa: E402
from gender_cnn.labeller import (  # noqa: E402
    LabellerConfig,
    StoreLock,
    StoreLockedError,
    create_app,
    journal_path_for,
    make_server,
)

logger = logging.getLogger("02_label_images")
DEFAULTS = LabellerConfig()


def build_parser():
    parser = make_parser(__doc__.split("\n\n")[0])
    add_common_args(parser)
    parser.add_argument("--images", type=Path, default=None,
                        help="image folder (default: <root>/stylegan/synthesize_results)")
    parser.add_argument("--labels", type=Path, default=None,
                        help="labels CSV (default: <root>/gender_cnn/hand_labels.csv); the journal sits next to it")
    parser.add_argument("--num", type=int, default=DEFAULTS.num,
                        help="name order: label the first NUM images by name; uncertainty order: queue the NUM "
                             "most uncertain unlabelled images (already labelled ones stay reachable)")
    parser.add_argument("--order", choices=["name", "uncertainty"], default=DEFAULTS.order,
                        help="uncertainty: most uncertain model scores first (needs step 4's "
                             "all_image_quality_and_gender.csv)")
    parser.add_argument("--scores", type=Path, default=None,
                        help="model scores CSV for --order uncertainty (default: <root>/gender_cnn/"
                             "all_image_quality_and_gender.csv)")
    parser.add_argument("--oof", type=Path, default=None,
                        help="out-of-fold predictions for the review list (default: <root>/gender_cnn/logs/"
                             "oof_predictions.csv; ignored when absent)")
    parser.add_argument("--import", dest="import_csv", type=Path, default=None,
                        help="import labels from a CSV (ours, or the original img_name,quality,gender); "
                             "images that already have a decision keep it")
    parser.add_argument("--labeller", default=DEFAULTS.labeller, help="value written in the labeller column")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind; keep 127.0.0.1 and use SSH port-forwarding on a server")
    parser.add_argument("--port", type=int, default=8765, help="port (0 = any free port)")
    parser.add_argument("--open-browser", dest="open_browser", action="store_true", default=False,
                        help="open the page in a local browser")
    parser.add_argument("--no-browser", dest="open_browser", action="store_false",
                        help="do not open a browser (the default)")
    parser.add_argument("--compact-interval", type=float, default=DEFAULTS.compact_interval_s,
                        help="seconds between CSV rewrites from the journal")
    return parser


def _backup(path: Path, stamp: str) -> Path | None:
    """Move ``path`` aside to ``<name>.bak-<stamp>`` (never over an existing backup)."""
    if not path.exists():
        return None
    target = path.with_name(f"{path.name}.bak-{stamp}")
    counter = 1
    while target.exists():
        counter += 1
        target = path.with_name(f"{path.name}.bak-{stamp}-{counter}")
    path.rename(target)
    return target


def _raise_interrupt(signum, frame):  # noqa: ARG001 - signal handler signature
    raise KeyboardInterrupt


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    apply_common_args(args, parser)
    if args.num < 0:
        parser.error(f"--num must be >= 0, got {args.num}")
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be in 0..65535, got {args.port}")
    if args.compact_interval <= 0:
        parser.error(f"--compact-interval must be > 0, got {args.compact_interval}")
    paths = paths_from_args(args)
    images_dir = args.images or paths.generated_dir
    csv_path = args.labels or paths.hand_labels_csv
    num = args.num if args.limit is None else min(args.num, args.limit)
    config = LabellerConfig(num=num, order=args.order, labeller=args.labeller,
                            compact_interval_s=args.compact_interval)
    timer = Timer()

    try:
        # The lock comes first: files another labeller holds are never touched (not even moved).
        lock = StoreLock(csv_path)
    except (StoreLockedError, OSError) as exc:
        logger.error("%s", exc)
        return 2
    try:
        if args.overwrite:  # never delete hours of work: move the old files aside
            stamp = time.strftime("%Y%m%d-%H%M%S")
            for old in (csv_path, journal_path_for(csv_path)):
                moved = _backup(old, stamp)
                if moved:
                    logger.warning("--overwrite: moved %s to %s", old, moved)
        app, imported = create_app(
            images_dir, csv_path, config,
            scores_csv=args.scores or paths.quality_gender_csv,
            oof_csv=args.oof or paths.oof_predictions_csv,
            import_csv=args.import_csv, lock=lock,
        )
    except (FileNotFoundError, NotADirectoryError, CsvSchemaError, StoreLockedError, ValueError, OSError) as exc:
        lock.release()
        logger.error("%s", exc)
        return 2
    decided_before = app.decided()
    try:
        server = make_server(app, args.host, args.port)
    except OSError as exc:
        app.close()
        logger.error("cannot listen on %s:%s: %s (is another labeller running? try --port)",
                     args.host, args.port, exc.strerror or exc)
        return 2

    port = server.server_address[1]
    print(f"Labeller: {server.url}  ({decided_before}/{len(app.sequence)} already labelled"
          f"{f', {imported} imported' if imported else ''}; Ctrl-C to stop)", flush=True)
    if app.review:
        print(f"  {len(app.review)} hand labels disagree with the model: press r in the page to review them",
              flush=True)
    if server.loopback_only:
        print(f"  remote? on your laptop: ssh -N -L {port}:127.0.0.1:{port} <user>@{socket.gethostname()}"
              f"  then open http://localhost:{port}/", flush=True)
    if args.open_browser:
        threading.Thread(target=webbrowser.open, args=(server.url,), daemon=True).start()

    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        logger.info("stopping")
    finally:
        server.server_close()
        try:
            app.close()  # compacts the CSV and trims the journal
        except OSError as exc:
            logger.error("could not compact %s at shutdown (%s); every decision is still in %s and "
                         "is read from there", csv_path, exc.strerror or exc, journal_path_for(csv_path))
            return 1

    labels = app.store.labels()
    in_session = [labels[n] for n in app.sequence if n in labels]
    unsure = sum(1 for label in in_session if label.gender is None or label.quality is None)
    print(f"labelled {len(in_session)}/{len(app.sequence)} images ({len(in_session) - decided_before:+d} "
          f"this session, {unsure} with an unsure cell); {len(labels)} rows in {csv_path} [{timer}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
