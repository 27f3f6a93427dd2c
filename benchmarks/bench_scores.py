"""Property-scoring throughput (step 6) on one CPU core: images/s of raw_scores().

The maps are realistic synthetic faces (skin ellipse, hair above and down the sides, brows,
eyes, a tilted nose, lips and an open or closed mouth) with random geometry, plus random RGB
crops. Only scoring is timed (no PNG decoding). Writes the record ``bench_scores-cpu``, and with
``--original`` also ``bench_scores_vs_original-cpu``, under benchmarks/results/.

    python benchmarks/bench_scores.py [--images 500] [--repeats 5] [--original PATH]

``--original PATH``: the original Oh-LoRA scoring code (``compute_property_scores.py`` of
https://github.com/WannaBeSuperteur/AI_Projects, folder ``2025_04_08_OhLoRA/stylegan_and_segmentation``;
PATH is that file or a folder holding it). Its five score functions run on the same maps and crops
as ``raw_scores``, in alternated pairs (``_paired.py``); without it that record is not written
(the docs then say "not measured" and this command).
"""
from __future__ import annotations

import os
import sys

# one core: numpy's only multi-threaded call here is the tiny 2x2 BLAS product of the nose
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from _paired import paired_ratio  # noqa: E402

from benchmarks.records import add_results_dir_argument, start_record  # noqa: E402
from segmentation.labels import FaceLabel  # noqa: E402
from segmentation.property_scores import background_scores, raw_scores  # noqa: E402

SIZE = 224


def _ellipse(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float,
             angle: float = 0.0) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    dy, dx = yy - cy, xx - cx
    u, v = dx * c + dy * s, -dx * s + dy * c
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


def synthetic_face(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One realistic (parsing uint8 [224,224], face uint8 [224,224,3]) pair."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    p = np.zeros((SIZE, SIZE), dtype=np.uint8)
    cx = 112 + rng.normal(0, 4)
    # hair: a big ellipse behind the head, sometimes reaching the bottom row
    hair = _ellipse(yy, xx, 100 + rng.normal(0, 5), cx, rng.uniform(90, 140), rng.uniform(85, 105))
    p[hair] = FaceLabel.HAIR
    p[_ellipse(yy, xx, 125, cx, 82, 62)] = FaceLabel.SKIN
    sides = ((-1, FaceLabel.LEFT_BROW, FaceLabel.LEFT_EYE), (1, FaceLabel.RIGHT_BROW, FaceLabel.RIGHT_EYE))
    for side, brow, eye in sides:
        ex = cx + side * 28
        p[_ellipse(yy, xx, 92, ex, 4, 15)] = brow
        p[_ellipse(yy, xx, 106 + rng.normal(0, 2), ex, rng.uniform(2, 8), 12)] = eye
    p[_ellipse(yy, xx, 132, cx, 20, 9, angle=rng.normal(0, 0.2))] = FaceLabel.NOSE
    opening = rng.uniform(0, 8)
    p[_ellipse(yy, xx, 160, cx, 5, 22)] = FaceLabel.UPPER_LIP
    p[_ellipse(yy, xx, 166 + opening, cx, 5, 22)] = FaceLabel.LOWER_LIP
    if opening > 2:
        p[_ellipse(yy, xx, 163 + opening / 2, cx, opening / 2, 16)] = FaceLabel.INNER_MOUTH
    face = rng.integers(0, 256, size=(SIZE, SIZE, 3), dtype=np.uint8)
    return p, face


def _rate(fn, pairs: list[tuple[np.ndarray, np.ndarray]], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for parsing, face in pairs:
            fn(parsing, face)
        best = min(best, time.perf_counter() - start)
    return len(pairs) / best


def original_scorer(path: str):
    """The original five score functions as one callable (parsing, face) -> tuple, from the user's copy."""
    import importlib.util

    file = Path(path).expanduser()
    if file.is_dir():
        candidates = [file / "compute_property_scores.py",
                      file / "2025_04_08_OhLoRA" / "stylegan_and_segmentation" / "compute_property_scores.py"]
        file = next((c for c in candidates if c.is_file()), candidates[0])
    if not file.is_file():
        print(f"error: {file} not found: pass the original compute_property_scores.py or its folder",
              file=sys.stderr)
        raise SystemExit(2)
    spec = importlib.util.spec_from_file_location("original_property_scores", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def score(parsing: np.ndarray, face: np.ndarray) -> tuple:
        return (module.compute_eyes_score(parsing), module.compute_hair_color_score(parsing, face),
                module.compute_hair_length_score(parsing), module.compute_mouth_score(parsing),
                module.compute_pose_score(parsing))

    return score


def compare_with_original(path: str, pairs: list, rounds: int, original_images: int) -> dict:
    original = original_scorer(path)
    subset = pairs[:original_images]
    for parsing, face in subset[:3]:  # same definitions: the faces are synthetic, so every part exists
        mine = raw_scores(parsing, face)
        theirs = original(parsing, face)
        assert abs(mine["eyes"] - theirs[0]) < 1e-9 and abs(mine["face_pose"] - theirs[4]) < 1e-9, (mine, theirs)

    def run_ours():
        for parsing, face in pairs:
            raw_scores(parsing, face)

    def run_original():
        for parsing, face in subset:
            original(parsing, face)

    return paired_ratio(run_ours, run_original, pairs=rounds, ours_items=len(pairs), reference_items=len(subset))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5, help="timed passes; the best one is reported")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--original", default=None, help="the original compute_property_scores.py (or its folder)")
    parser.add_argument("--pairs", type=int, default=9, help="alternated pairs against the original")
    parser.add_argument("--original-images", type=int, default=40, help="maps per original call (it is slow)")
    add_results_dir_argument(parser)
    args = parser.parse_args(argv)

    record = start_record("bench_scores", "cpu")
    rng = np.random.default_rng(args.seed)
    pairs = [synthetic_face(rng) for _ in range(args.images)]
    hair_fraction = float(np.mean([(p == FaceLabel.HAIR).mean() for p, _ in pairs]))
    _rate(raw_scores, pairs[:20], 1)  # warm-up
    record.figures["raw_scores_images_per_s"] = round(_rate(raw_scores, pairs, args.repeats), 1)
    record.figures["background_scores_images_per_s"] = round(_rate(background_scores, pairs, args.repeats), 1)
    record.settings.update({"what": "property scoring (raw_scores), numpy, one process, one core",
                            "images": args.images, "repeats": args.repeats, "best_of_repeats": True,
                            "mean_hair_fraction": round(hair_fraction, 3), "numpy": np.__version__})
    record.write(args.results_dir)
    print(json.dumps(record.figures))
    if args.original:
        versus = start_record("bench_scores_vs_original", "cpu")
        ratio = compare_with_original(args.original, pairs, args.pairs, args.original_images)
        versus.figures.update(ratio)
        versus.settings.update({"what": "raw_scores against the original's five score functions, alternated pairs",
                                "our_maps_per_call": len(pairs), "original_maps_per_call": args.original_images})
        versus.write(args.results_dir)
        print(json.dumps(ratio))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
