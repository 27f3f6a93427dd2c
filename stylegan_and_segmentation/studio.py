"""The studio: five sliders, the face follows live, in a local page (issue 13).

Move eyes, hair colour, hair length, mouth and pose and watch the same face change, with latent
directions, the fine-tuned generator, or both side by side; Measure runs the independent scorers
on the shown faces; Save writes a PNG that carries its recipe. Binds 127.0.0.1 and opens nothing;
on a GPU server, forward the port from your laptop::

    python stylegan_and_segmentation/studio.py --root demo_run        # prints the URL
    ssh -N -L 8770:127.0.0.1:8770 you@gpu-box                         # on the laptop
    http://localhost:8770/

``--regenerate FACE.png`` renders a saved face again from its recipe and says whether the
pixels are identical (exit 0) or not (exit 1).
"""


import logging
import signal
from pathlib import Path

from common.checkpoints import CheckpointError
from common.cli import add_common_args, apply_common_args, make_parser, paths_from_args
from common.io import atomic_save_image
from common.settings import add_settings, given_values
from pipeline.studio.params import ParamError, ViewParams
from pipeline.studio.pngmeta import RecipeError, recipe_files, regenerate
from pipeline.studio.server import CROPS, SCORERS, StudioConfig, run_studio

logger = logging.getLogger("studio")
DEFAULTS = StudioConfig()


def build_parser():
    parser = make_parser(__doc__)
    add_common_args(parser, seed=False)
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed,
                        help="the face a fresh page opens on: image SEED of a default step-1 run (the page's "
                             "seed box changes it)")
    add_settings(parser, StudioConfig)  # the fields declared with common.settings: --host, --port, --allow-host
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="fine-tuned checkpoint (default: the newest in stylegan/finetuned/checkpoints)")
    parser.add_argument("--directions", type=Path, default=None,
                        help="latent directions file (default: stylegan/directions/directions.pt)")
    parser.add_argument("--weights", choices=("ema", "raw"), default=DEFAULTS.weights,
                        help="fine-tune: EMA or raw generator weights")
    parser.add_argument("--crop", choices=CROPS, default=DEFAULTS.crop,
                        help="Measure's face crop: auto = full image for the demo's models, MTCNN otherwise")
    parser.add_argument("--scorer", choices=SCORERS, default=DEFAULTS.scorer,
                        help="Measure's judge: segmentation (the real one) or brightness (a labelled "
                             "stand-in)")
    parser.add_argument("--no-measure", dest="measure", action="store_false", default=DEFAULTS.measure,
                        help="do not offer Measure (never loads FaceXFormer)")
    parser.add_argument("--open-browser", dest="open_browser", action="store_true",
                        default=DEFAULTS.open_browser,
                        help="open the page in a local browser")
    parser.add_argument("--no-browser", dest="open_browser", action="store_false",
                        help="do not open a browser (the default)")
    parser.add_argument("--regenerate", type=Path, default=None, metavar="FACE.png",
                        help="render a saved face again from its embedded recipe, compare, and exit")
    parser.add_argument("--out", type=Path, default=None,
                        help="with --regenerate: write the regenerated PNG here")
    return parser


def _raise_interrupt(signum, frame):  # noqa: ARG001 - signal handler signature
    raise KeyboardInterrupt


def _regenerate(args, paths) -> int:
    from common.runtime import resolve_device
    from pipeline.studio.render import load_studio_models

    if args.out is not None and (args.out.resolve() == args.regenerate.resolve() or
                                 (args.out.exists() and not args.overwrite)):
        logger.error("--out %s exists (or is the input); choose another path or pass --overwrite "
                     "(the input is never overwritten)", args.out)
        return 2
    files = recipe_files(args.regenerate)
    models = load_studio_models(paths, resolve_device(args.device),
                                args.checkpoint or files.get("finetuned"),
                                args.directions or files.get("directions"),
                                args.weights)
    image, saved, recipe = regenerate(args.regenerate, models)
    if args.out is not None:
        atomic_save_image(args.out, image)
    same = image.shape == saved.shape and bool((image == saved).all())
    params = ViewParams.from_json(recipe["params"])
    diff = "identical pixels" if same else (
        f"pixels DIFFER (max |diff| {int(abs(image.astype(int) - saved.astype(int)).max())})"
        if image.shape == saved.shape else f"shape differs {image.shape} vs {saved.shape}")
    print(f"studio: regenerated {recipe['face']} face, seed {params.seed}, from {args.regenerate}: {diff}"
          + (f"; written to {args.out}" if args.out else ""))
    return 0 if same else 1


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    apply_common_args(args, parser)
    paths = paths_from_args(args)
    try:
        if args.regenerate is not None:
            return _regenerate(args, paths)
        config = StudioConfig(root=paths.root, device=args.device, **given_values(StudioConfig, args),
                              finetuned_checkpoint=args.checkpoint, directions_file=args.directions,
                              weights=args.weights, crop=args.crop, measure=args.measure, scorer=args.scorer,
                              seed=args.seed, open_browser=args.open_browser)
    except (CheckpointError, FileNotFoundError, RecipeError, ParamError, ValueError) as exc:
        logger.error("%s", exc)
        return 2
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        summary = run_studio(config, progress=lambda line: print(line, flush=True))
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        logger.error("%s", exc)
        return 2
    except OSError as exc:
        logger.error("cannot listen on %s:%s: %s (is another studio running? try --port)",
                     config.host, config.port, exc.strerror or exc)
        return 2
    print(summary.line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
