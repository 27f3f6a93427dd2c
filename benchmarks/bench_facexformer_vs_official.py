"""Step 5 on this machine: our FaceXFormer against the official model, and the whole step against our model.

1. Model: ``FaceXFormer.segment`` as step 5 runs it (inference mode, parsing only, ``--batch-size``
   images per forward) against the official ``network.FaceXFormer`` as its ``inference.py`` runs it
   (one image per call, autograd on, every head computed, task 0, softmax + argmax). Same recipe
   weights, same crops, alternated pairs (``_paired.py``); the maps are compared too.
   The official constructor asks torchvision for ImageNet Swin weights (a download); the benchmark
   builds the Swin empty instead (the checkpoint overwrites every tensor anyway) and changes nothing else.
   Pass your checkout of https://github.com/Kartik-3004/facexformer with ``--official PATH``;
   without it this record (``bench_facexformer_vs_official-cpu``) is not written.
2. Step: ``run_segmentation`` (read, MTCNN crop, parse, write 3 PNGs per image) on the real test
   faces against the model alone on the same number of crops, also in alternated pairs (the record
   ``bench_step5_vs_model-cpu``; ``--skip-step`` leaves it out).

    python benchmarks/bench_facexformer_vs_official.py --official ~/src/facexformer [--pairs 9]
"""
from __future__ import annotations

import argparse
import importlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from _paired import paired_ratio, reference_checkout
from PIL import Image

from benchmarks.records import add_results_dir_argument, start_record
from segmentation.crop import full_image_crop, normalize_crops
from segmentation.facexformer import FaceXFormer
from segmentation.random_weights import recipe_state_dict

REAL_FACES = Path(__file__).resolve().parents[1] / "tests" / "data" / "real_faces"


def official_model(root: Path) -> torch.nn.Module:
    """The official class from the user's checkout, with an empty Swin instead of a weight download."""
    import torchvision

    sys.path.insert(0, str(root))
    try:
        module = importlib.import_module("network.models.facexformer")
    finally:
        sys.path.remove(str(root))
    module.swin_b = lambda weights=None, **kwargs: torchvision.models.swin_b(weights=None, **kwargs)
    return module.FaceXFormer()


def official_inference(model: torch.nn.Module, image: torch.Tensor) -> np.ndarray:
    """One image as inference.py does it: labels dict, task tensor, full forward with autograd, softmax/argmax."""
    device = image.device
    labels = {"segmentation": torch.zeros([224, 224]), "lnm_seg": torch.zeros([5, 2]),
              "landmark": torch.zeros([68, 2]), "headpose": torch.zeros([3]), "attribute": torch.zeros([40]),
              "a_g_e": torch.zeros([3]), "visibility": torch.zeros([29])}
    labels = {k: v.unsqueeze(0).to(device) for k, v in labels.items()}
    tasks = torch.tensor([0]).to(device)
    outputs = model(image.unsqueeze(0), labels, tasks)
    return torch.argmax(outputs[-1].softmax(dim=1), dim=1)[0].detach().cpu().numpy()


def _faces(count: int) -> list[Path]:
    faces = sorted(REAL_FACES.glob("*.jpg"))
    if len(faces) < count:
        print(f"error: need {count} test faces in {REAL_FACES}, found {len(faces)}",
              file=sys.stderr)
        raise SystemExit(2)
    return faces[:count]


def compare_model(official: Path, images: int, batch: int, pairs: int) -> dict:
    state = recipe_state_dict()
    ours = FaceXFormer()
    ours.load_state_dict(state, strict=True)
    ours.eval()
    crops = normalize_crops([full_image_crop(np.asarray(Image.open(p).convert("RGB"))).image for p in _faces(images)])

    def run_ours() -> np.ndarray:
        return np.concatenate([ours.segment(crops[i:i + batch]).numpy() for i in range(0, images, batch)])

    row = {}
    theirs = official_model(official)
    theirs.load_state_dict(state, strict=True)
    theirs.eval()

    def run_official() -> np.ndarray:
        return np.stack([official_inference(theirs, crops[i]) for i in range(images)])

    mine, ref = run_ours(), run_official()
    row["map_pixels_differing"] = int((mine != ref).sum())
    row["map_pixels"] = int(mine.size)
    row.update(paired_ratio(run_ours, run_official, pairs=pairs, warmup=0))
    row["ours_images_per_s"] = round(images / row["ours_s_median"], 2)
    row["official_images_per_s"] = round(images / row["reference_s_median"], 2)
    return row


def compare_step(images: int, batch: int, pairs: int) -> dict:
    """Whole step 5 (MTCNN crop, PNGs) vs the model alone on the same crops, same batch size."""
    from segmentation.crop import detect_and_crop
    from segmentation.segment import SegmentConfig, run_segmentation

    model = FaceXFormer()
    model.load_state_dict(recipe_state_dict(), strict=True)
    model.eval()
    faces = _faces(images)
    work = Path(tempfile.mkdtemp(prefix="bench-step5-"))
    try:
        src = work / "in"
        src.mkdir()
        for p in faces:
            shutil.copy(p, src / p.name)
        crops = [c.image for c in detect_and_crop([np.asarray(Image.open(p).convert("RGB")) for p in faces])]
        x = normalize_crops([c for c in crops if c is not None])
        runs = iter(range(10**6))

        def step() -> None:
            out = work / f"out{next(runs)}"
            config = SegmentConfig(images=src, checkpoint=work / "unused.pt", out=out, device="cpu", batch_size=batch)
            run_segmentation(config, model_loader=lambda: model)
            shutil.rmtree(out)

        def model_only() -> None:
            for i in range(0, len(x), batch):
                model.segment(x[i:i + batch])

        row = paired_ratio(model_only, step, pairs=pairs)  # speedup = step_s / model_s
        row["step_share_of_model_throughput"] = round(row["ours_s_median"] / row["reference_s_median"], 3)
        row["step_images_per_s"] = round(images / row["reference_s_median"], 2)
        row["model_images_per_s"] = round(images / row["ours_s_median"], 2)
        return row
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official", default=None, help="path to a facexformer checkout (holds network/models/facexformer.py)")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8, help="our batch size (step 5's default)")
    parser.add_argument("--pairs", type=int, default=9)
    parser.add_argument("--skip-step", action="store_true", help="only the model comparison")
    parser.add_argument("--threads", type=int, default=None)
    add_results_dir_argument(parser)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    root = reference_checkout(args.official, "network/models/facexformer.py")
    settings = {"images": args.images, "batch": args.batch, "pairs": args.pairs, "threads": torch.get_num_threads()}
    if root is None:
        print("model comparison not measured: pass --official PATH (a checkout of "
              "https://github.com/Kartik-3004/facexformer)", file=sys.stderr)
    else:
        record = start_record("bench_facexformer_vs_official", "cpu")
        record.figures.update(compare_model(root, args.images, args.batch, args.pairs))
        record.settings.update({"what": "segment() in inference mode at --batch against the official inference.py "
                                        "(batch 1, autograd on, every head, task 0), recipe weights", **settings})
        record.write(args.results_dir)
        print(json.dumps(record.figures), flush=True)
    if not args.skip_step:
        record = start_record("bench_step5_vs_model", "cpu")
        record.figures.update(compare_step(args.images, args.batch, args.pairs))
        record.settings.update({"what": "step 5 end to end (read, MTCNN, parse, 3 PNGs) against the model alone "
                                        "on the same crops, real faces, alternated pairs", **settings})
        record.write(args.results_dir)
        print(json.dumps(record.figures), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
