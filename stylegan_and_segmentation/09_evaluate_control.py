"""Step 9: measure how well the fine-tuned generator controls each property, with an independent scorer.

For K random z, each property is swept from its minimum to its maximum with the others held at
the training median; every image is cropped (MTCNN, or the full image), parsed by FaceXFormer,
scored with step 6's algorithm and normalised with normalization.json. The property regressor
used in training is never the judge. Writes CSVs, plots, sweep sheets and report.md.
``--scorer brightness`` is a stand-in for demos/tests on random-weight models (labelled so).
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from common.checkpoints import CheckpointError  # noqa: E402
from common.cli import add_common_args, apply_common_args, make_parser, paths_from_args  # noqa: E402
from common.folders import refuse_overlap  # noqa: E402
from common.paths import PROPERTY_NAMES  # noqa: E402
from common.runtime import Timer, resolve_device  # noqa: E402
from pipeline.scorers import SegmentationScorer, gender_callable  # noqa: E402
from stylegan.conditional import load_conditional_generator  # noqa: E402
from stylegan.control import BrightnessScorer, ControlConfig, evaluate_control, write_control_outputs  # noqa: E402
from stylegan.finetune import find_latest_checkpoint, make_generate_fn  # noqa: E402
from stylegan.generate import latents_for  # noqa: E402

EXAMPLES = """examples:
  python stylegan_and_segmentation/09_evaluate_control.py                       # newest checkpoint, real scorer
  python stylegan_and_segmentation/09_evaluate_control.py --num-z 40 --num-values 11 --crop full
  python stylegan_and_segmentation/09_evaluate_control.py --scorer brightness --device cpu   # demo stand-in only
"""


def main(argv=None) -> int:
    parser = make_parser(__doc__)
    parser.epilog = EXAMPLES
    add_common_args(parser, batch_size=16)
    defaults = ControlConfig()
    parser.add_argument("--num-z", type=int, default=defaults.num_z, help="K random latents per property")
    parser.add_argument("--num-values", type=int, default=defaults.num_values, help="grid points per sweep")
    parser.add_argument("--scorer", choices=("segmentation", "brightness"), default="segmentation",
                        help="segmentation = the real, independent scorer; brightness = a labelled stand-in")
    parser.add_argument("--crop", choices=("mtcnn", "full"), default="mtcnn", help="face crop before parsing")
    parser.add_argument("--weights", choices=("ema", "raw"), default="ema")
    parser.add_argument("--checkpoint", type=pathlib.Path, default=None,
                        help="fine-tuned checkpoint (default: the newest in stylegan/finetuned/checkpoints)")
    parser.add_argument("--segmentation-checkpoint", type=pathlib.Path, default=None,
                        help="FaceXFormer weights (default: segmentation/models/segmentation_model.pt)")
    parser.add_argument("--trusted-checkpoint", action="store_true",
                        help="allow the official FaceXFormer file's pickled extras (see step 5)")
    parser.add_argument("--normalization", type=pathlib.Path, default=None,
                        help="normalization.json (default: step 6's)")
    parser.add_argument("--gender-models", type=pathlib.Path, default=None,
                        help="gender CNN folder for the female share (default: gender_cnn/models; skipped if absent)")
    parser.add_argument("--out", type=pathlib.Path, default=None, help="default: stylegan/finetuned/evaluation")
    args = parser.parse_args(argv)
    apply_common_args(args, parser)
    paths = paths_from_args(args)
    timer = Timer()
    try:
        config = ControlConfig(num_z=args.num_z if args.limit is None else min(args.num_z, args.limit),
                               num_values=args.num_values, seed=args.seed, batch_size=args.batch_size)
    except ValueError as exc:
        parser.error(str(exc))
    device = resolve_device(args.device)
    checkpoint = args.checkpoint or find_latest_checkpoint(paths.finetuned_dir)
    if checkpoint is None:
        print(f"error: no fine-tuned checkpoint in {paths.finetuned_dir / 'checkpoints'}; run step 7 or pass "
              "--checkpoint", file=sys.stderr)
        return 2
    try:
        refuse_overlap({"--out": args.out or paths.evaluation_dir},
                       {"--checkpoint": checkpoint, "--normalization": args.normalization or paths.normalization_json,
                        "--segmentation-checkpoint": args.segmentation_checkpoint or paths.segmentation_checkpoint})
        generator = load_conditional_generator(checkpoint, device=device, which=args.weights)
        if args.scorer == "segmentation":
            scorer = SegmentationScorer(args.segmentation_checkpoint or paths.segmentation_checkpoint,
                                        args.normalization or paths.normalization_json, args.crop, device,
                                        trusted=args.trusted_checkpoint)
        else:
            scorer = BrightnessScorer()
        gender = gender_callable(args.gender_models or paths.cnn_models_dir, device)
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from tqdm import tqdm

    run_config = generator.finetune_config
    ranges = {k: tuple(v) for k, v in run_config["property_ranges"].items()}
    median = np.array([run_config["condition_stats"][p]["median"] for p in PROPERTY_NAMES], dtype=np.float32)
    z = latents_for(config.seed, range(config.num_z), generator.z_space_dim)
    total = config.num_z * config.num_values * len(PROPERTY_NAMES)
    with tqdm(total=total, unit="img", desc="evaluate", disable=args.quiet) as bar:
        result = evaluate_control(make_generate_fn(generator, config.batch_size), scorer, z,
                                  np.repeat(median[None], config.num_z, axis=0), ranges, config, gender=gender,
                                  progress=bar.update)
    meta = {"checkpoint": str(checkpoint), "step": generator.step, "weights": args.weights, "scorer": scorer.name,
            "num_z": config.num_z, "sheet_z": config.sheet_z,
            "held": "the training median (" + ", ".join(f"{p} {m:.3f}" for p, m in zip(PROPERTY_NAMES, median)) + ")"}
    out_dir = args.out or paths.evaluation_dir
    write_control_outputs(result, out_dir, meta, config.num_values)
    valid = int(result.samples["valid"].sum())
    from stylegan.control import control_metrics

    rs = control_metrics(result.samples)
    r_text = ", ".join(f"{row.property} r={row.pearson_r:.2f}" for row in rs.itertuples())
    label = " [STAND-IN scorer]" if args.scorer != "segmentation" else ""
    print(f"step 9: {total} images scored ({valid} measured){label}, {r_text}; report in {out_dir} ({timer})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
