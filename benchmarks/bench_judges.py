"""The independent judges on the 40 real test faces: their agreement (Pearson r) and their cost per face.

Agreement: yaw from dlib landmarks (solvePnP against a generic face), from the same landmarks' left-right
symmetry, and from MTCNN's five points; left vs right eye openness. Cost on one CPU thread: MTCNN
(box + five points), dlib's 68 points, dlib's face embedding, FID features of the tiny stand-in.
With the FaceXFormer checkpoint present (--segmentation-checkpoint), the segmentation judge's eyes, mouth
and face_pose and FaceXFormer's pose head join the agreement table, in the record
``bench_judges_segmentation-cpu`` instead of ``bench_judges-cpu`` (benchmarks/results/).

    python benchmarks/bench_judges.py [--segmentation-checkpoint segmentation/models/segmentation_model.pt]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks.records import add_results_dir_argument, start_record
from common.images import list_images, load_rgb
from judges import (
    SAME_PERSON_THRESHOLD,
    LandmarkJudge,
    TinyFeatureExtractor,
    detect_face_boxes,
    extract_features,
    identity_distances,
    judge_agreement,
    measure_landmarks,
    yaw_five_points,
)

FACES = Path(__file__).resolve().parents[1] / "tests" / "data" / "real_faces"


def _segmentation_frames(faces, names, checkpoint: Path) -> dict[str, pd.DataFrame]:
    """The main judge (parsing + step-6 raw scores) and FaceXFormer's pose head, when the weights exist."""
    import segmentation
    from segmentation.property_scores import raw_scores

    model = segmentation.load_facexformer(checkpoint, device="cpu", trusted=True)
    crops = segmentation.detect_and_crop(faces)
    rows, yaw = [], []
    for crop in crops:
        maps, heads = model.parse_with_heads(segmentation.normalize_crops(crop.image[None]))
        rows.append(raw_scores(maps[0].numpy(), crop.image))
        yaw.append(float(heads["headpose"][0, 1]))
    frame = pd.DataFrame(rows, index=names)[["eyes", "mouth", "face_pose"]]
    return {"segmentation": frame, "facexformer_heads": pd.DataFrame({"face_pose": yaw}, index=names)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--segmentation-checkpoint", type=Path, default=None)
    add_results_dir_argument(parser)
    args = parser.parse_args(argv)
    record = start_record("bench_judges" if args.segmentation_checkpoint is None else "bench_judges_segmentation",
                          "cpu")
    torch.set_num_threads(1)
    files = list_images(FACES)
    faces = [load_rgb(p) for p in files]
    names = [p.stem for p in files]
    timings = {}
    start = time.perf_counter()
    boxes = detect_face_boxes(faces)
    timings["mtcnn_ms_per_face"] = 1000 * (time.perf_counter() - start) / len(faces)
    judge = LandmarkJudge()
    start = time.perf_counter()
    points = [judge.landmarks(f, b.box) for f, b in zip(faces, boxes)]
    timings["dlib_landmarks_ms_per_face"] = 1000 * (time.perf_counter() - start) / len(faces)
    start = time.perf_counter()
    embeddings = np.stack([judge.descriptor(f, b.box) for f, b in zip(faces, boxes)])
    timings["dlib_embedding_ms_per_face"] = 1000 * (time.perf_counter() - start) / len(faces)
    start = time.perf_counter()
    extract_features(np.stack(faces), TinyFeatureExtractor())
    timings["tiny_features_ms_per_face"] = 1000 * (time.perf_counter() - start) / len(faces)

    measures = pd.DataFrame([measure_landmarks(p, f.shape[:2]) for p, f in zip(points, faces)], index=names)
    frames = {
        "landmarks": measures[["eyes", "mouth", "face_pose"]],
        "landmark_symmetry": pd.DataFrame({"face_pose": measures["yaw_symmetry"]}, index=names),
        "mtcnn_points": pd.DataFrame(
            {"face_pose": [yaw_five_points(b.points[:2], b.points[2], b.points[3:]) for b in boxes]},
            index=names,
        ),
    }
    if args.segmentation_checkpoint is not None:
        frames.update(_segmentation_frames(faces, names, args.segmentation_checkpoint))
    agreement = judge_agreement(frames, ["eyes", "mouth", "face_pose"])
    eyes_lr = float(np.corrcoef(measures["eye_left"], measures["eye_right"])[0, 1])
    mirrored = np.stack(
        [
            judge.descriptor(
                np.ascontiguousarray(f[:, ::-1]), (256 - b.box[2], b.box[1], 256 - b.box[0], b.box[3])
            )
            for f, b in zip(faces, boxes)
        ]
    )
    same = identity_distances(embeddings, mirrored)
    pairs = [(i, j) for i in range(len(faces)) for j in range(i + 1, len(faces))]
    other = identity_distances(embeddings[[i for i, _ in pairs]], embeddings[[j for _, j in pairs]])
    identity = {
        "mirror_median": float(np.median(same)),
        "mirror_max": float(same.max()),
        "other_pairs_median": float(np.median(other)),
        "other_pairs_share_above_0.6": float((other > SAME_PERSON_THRESHOLD).mean()),
    }
    print(agreement.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print(f"left vs right eye openness (dlib): r = {eyes_lr:.2f}")
    print("identity distance: " + ", ".join(f"{k} {v:.2f}" for k, v in identity.items()))
    print("ms per face (1 thread): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    record.tables["agreement"] = [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()}
                                  for row in agreement.to_dict("records")]
    record.figures["eye_left_right_r"] = round(eyes_lr, 2)
    record.figures.update({f"identity_{k.replace('.', '')}": round(v, 2) for k, v in identity.items()})
    record.figures.update({k: round(v, 1) for k, v in timings.items()})
    record.settings.update({"faces": len(faces), "threads": 1,
                            "what": "the independent judges on the real test faces: agreement, identity, cost"})
    record.write(args.results_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
