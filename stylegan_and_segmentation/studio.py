"""The studio: five sliders, the face follows live, in a local page (issue 13).

Move eyes, hair colour, hair length, mouth and pose and watch the same face change, with latent
directions, the fine-tuned generator, or both side by side; Measure runs the independent scorers
on the shown faces; Save writes a PNG that carries its recipe. Binds 127.0.0.1 and opens nothing;
on a GPU server, forward the port from your laptop::

    python stylegan_and_segmentation/studio.py --root demo_run        # prints the URL
    ssh -N -L 8770:127.0.0.1:8770 you@gpu-box                         # on the laptop
    http://localhost:8770/

``--regenerate FILE`` renders a saved face, or every frame of a sweep or expression sheet (its
PNG contact sheet or animated WebP), again from the recipes in the file and says whether the
pixels are identical (exit 0) or not (exit 1).
"""


import argparse
import logging
import signal
from dataclasses import dataclass
from pathlib import Path

from common import settings
from common.checkpoints import CheckpointError
from common.cli import StepStopped, add_run_args, apply_common_args, make_parser, run_guarded
from common.io import atomic_save_image
from common.steps import StepError
from pipeline.studio.params import ParamError, ViewParams
from pipeline.studio.pngmeta import RecipeError, read_studio_file, recipe_files, regenerate, regenerate_frames
from pipeline.studio.server import StudioConfig, run_studio

logger = logging.getLogger("studio")


@dataclass(frozen=True)
class RegenerateOptions(settings.Settings):
    """--regenerate: a one-off command beside the session's settings (StudioConfig)."""

    regenerate: Path | None = settings.setting(None, metavar="FILE", help="render a saved face (PNG) or every frame of "
                                                                          "a sweep / expression sheet (PNG or WebP) "
                                                                          "again from its embedded recipes, compare, "
                                                                          "and exit")
    out: Path | None = settings.setting(None, help="with --regenerate: write the regenerated PNG here")
    overwrite: bool = settings.overwrite_setting("with --regenerate: replace an existing --out (never the input)")


def build_parser() -> argparse.ArgumentParser:
    """StudioConfig's declared flags, then --regenerate's."""
    parser = make_parser(__doc__)
    settings.add_settings(parser, StudioConfig)
    settings.add_settings(parser, RegenerateOptions)
    add_run_args(parser)
    return parser


def config_from_args(args: argparse.Namespace) -> StudioConfig:
    return settings.config_from_args(StudioConfig, args)


def _raise_interrupt(signum, frame):  # noqa: ARG001 - signal handler signature
    raise KeyboardInterrupt


def _difference(image, saved) -> str:
    if image.shape != saved.shape:
        return f"shape differs {image.shape} vs {saved.shape}"
    if (image == saved).all():
        return "identical pixels"
    return f"pixels DIFFER (max |diff| {int(abs(image.astype(int) - saved.astype(int)).max())})"


def _regenerate(args: RegenerateOptions, config: StudioConfig) -> int:
    from common.folders import image_folders, refuse_overlap
    from common.runtime import resolve_device
    from pipeline.studio.render import load_studio_models

    _, recipes, _, _ = read_studio_file(args.regenerate)
    if args.out is not None and len(recipes) > 1:
        logger.error("--out takes a saved face; %s is a sheet of %d frames (each is compared in place)",
                     args.regenerate, len(recipes))
        return 2
    if args.out is not None and (args.out.resolve() == args.regenerate.resolve() or
                                 (args.out.exists() and not args.overwrite)):
        logger.error("--out %s exists (or is the input); choose another path or pass --overwrite "
                     "(the input is never overwritten)", args.out)
        return 2
    if args.out is not None:  # a face written into a pipeline image folder would be listed and scored as one
        refuse_overlap({"--out": args.out.parent}, {}, reserved=image_folders(config.paths))
    files = recipe_files(args.regenerate)
    models = load_studio_models(config.paths, resolve_device(config.device),
                                config.finetuned_checkpoint or files.get("finetuned"),
                                config.directions_file or files.get("directions"),
                                config.weights, config.sefa_file or files.get("sefa"),
                                files.get("refine") or config.refine)
    if len(recipes) == 1:
        image, saved, recipe = regenerate(args.regenerate, models)
        if args.out is not None:
            atomic_save_image(args.out, image)
        params = ViewParams.from_json(recipe["params"])
        diff = _difference(image, saved)
        print(f"studio: regenerated {recipe['face']} face, seed {params.seed}, from {args.regenerate}: {diff}"
              + (f"; written to {args.out}" if args.out else ""))
        return 0 if diff == "identical pixels" else 1
    images, saved, labels = regenerate_frames(args.regenerate, models)
    differ = [f"frame {k} ({label}): {_difference(a, b)}" for k, (a, b, label) in enumerate(zip(images, saved, labels))
              if _difference(a, b) != "identical pixels"]
    result = "identical pixels in every frame" if not differ else f"{len(differ)} frames differ: " + "; ".join(differ)
    print(f"studio: regenerated {len(images)} frames of {args.regenerate}: {result}")
    return 0 if not differ else 1


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    apply_common_args(args, parser)
    try:
        config = config_from_args(args)
        regen = settings.config_from_args(RegenerateOptions, args)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        if regen.regenerate is not None:  # through the one error boundary: a full disk or Ctrl-C is one line
            return run_guarded(lambda options, _progress: _regenerate(options, config), regen)
    except StepStopped as exc:
        logger.error("%s", exc)
        return exc.exit_code
    except (CheckpointError, FileNotFoundError, RecipeError, ParamError, StepError, ValueError) as exc:
        logger.error("%s", exc)
        return 2
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        summary = run_studio(config, progress=lambda line: print(line, flush=True))
    except (CheckpointError, FileNotFoundError, StepError, ValueError) as exc:
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
