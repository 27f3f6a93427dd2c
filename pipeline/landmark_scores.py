"""The second judge on the filtered set: dlib landmark measures, normalised like step 6, and judge agreement.

Runs at the end of step 6 (``pipeline.property_scores_step.run_property_scores`` calls
:func:`run_landmark_scores` when the optional dlib judge is installed). For every filtered image: MTCNN's box and five points, dlib's 68 landmarks in that box,
eye / mouth openness and yaw (``judges.landmark_measures``); FaceXFormer's own head-pose yaw comes
from step 5's ``heads_{stem}.json``. Each judge gets step 6's normaliser (same method) fitted on
these images, saved in a file of its own, so step 9 can put generated images on the same scale.
``judge_agreement.csv`` gives Pearson r between the judges on these same images.

Resumable: raw measures are cached in ``landmark_raw.csv`` (rewritten atomically every chunk);
the normalised table is rebuilt from all rows each run (normalisation is global, as in step 6).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from common.images import ImageReadError, list_images, load_rgb
from common.io import atomic_write_csv, read_csv_checked
from common.paths import REPO_ROOT, PipelinePaths
from common.steps import Progress
from judges import LandmarkJudge, detect_face_boxes, judge_agreement, measure_landmarks, yaw_five_points
from segmentation.normalize import PropertyNormalizer
from segmentation.tables import HEADS_PREFIX

RAW_CACHE = "landmark_raw.csv"
RAW_COLUMNS = (
    "img_name",
    "raw_eyes",
    "raw_mouth",
    "raw_face_pose",
    "eye_left",
    "eye_right",
    "yaw_symmetry",
    "mtcnn_yaw",
    "facexformer_yaw",
    "flags",
)
LANDMARK_COLUMNS = ("img_name", "eyes", "mouth", "face_pose") + RAW_COLUMNS[1:]
JUDGE_PROPERTIES = ("eyes", "mouth", "face_pose")
AGREEMENT_COLUMNS = ("property", "judge_a", "judge_b", "pearson_r", "n")


@dataclass(frozen=True)
class LandmarkScoresConfig:
    """Settings; every path None = the pipeline's default under ``root``."""

    root: Path = REPO_ROOT
    images: Path | None = None  # default: step 4's filtered images
    segmentation_dir: Path | None = None  # default: step 5's folder (heads_{stem}.json)
    out: Path | None = None  # default: segmentation/property_score_results
    limit: int | None = None
    chunk: int = 32  # images per MTCNN call and per cache write
    device: str = "cpu"  # MTCNN's device

    def __post_init__(self) -> None:
        if self.chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {self.chunk}")

    @property
    def paths(self) -> PipelinePaths:
        return PipelinePaths(Path(self.root).resolve())


@dataclass(frozen=True)
class LandmarkScoresSummary:
    measured: int
    no_face: int
    unreadable: int
    reused: int
    out_dir: Path
    agreement: pd.DataFrame
    seconds: float

    def line(self) -> str:
        pose = self.agreement[
            (self.agreement["property"] == "face_pose") & (self.agreement["judge_a"] == "segmentation")
        ]
        r_text = ", ".join(f"{row.judge_b} r={row.pearson_r:.2f}" for row in pose.itertuples()) or "none"
        return (
            f"landmark judge: {self.measured} faces measured ({self.reused} from the cache), no face "
            f"{self.no_face}, unreadable {self.unreadable}; pose agreement with segmentation: {r_text}; "
            f"wrote landmark_scores.csv, judge_agreement.csv to {self.out_dir} ({self.seconds:.1f}s)"
        )


def _heads_yaw(segmentation_dir: Path, stem: str) -> float:
    path = segmentation_dir / f"{HEADS_PREFIX}{stem}.json"
    if not path.is_file():
        return math.nan
    try:
        return float(json.loads(path.read_text(encoding="utf-8"))["yaw"])
    except (ValueError, KeyError, TypeError):
        return math.nan


def measure_images(images: list[np.ndarray], judge, device: str = "cpu") -> list[dict[str, float | str]]:
    """Raw landmark measures of each image (NaN and a flag when MTCNN finds no face)."""
    rows = []
    for image, box in zip(images, detect_face_boxes(images, device=device)):
        if not box.found:
            rows.append({c: math.nan for c in RAW_COLUMNS[1:-1]} | {"flags": "no_face"})
            continue
        m = measure_landmarks(judge.landmarks(image, box.box), image.shape[:2])
        rows.append(
            {
                "raw_eyes": m["eyes"],
                "raw_mouth": m["mouth"],
                "raw_face_pose": m["face_pose"],
                "eye_left": m["eye_left"],
                "eye_right": m["eye_right"],
                "yaw_symmetry": m["yaw_symmetry"],
                "mtcnn_yaw": yaw_five_points(box.points[:2], box.points[2], box.points[3:]),
                "facexformer_yaw": math.nan,
                "flags": "",
            }
        )
    return rows


def _normalizer_settings(out_dir: Path, paths: PipelinePaths) -> tuple[str, str]:
    """Step 6's method and pose scaling (from its normalization.json in ``out_dir``), else the spec's default."""
    try:
        fitted = PropertyNormalizer.load(out_dir / paths.normalization_json.name)
        return fitted.method, fitted.pose_scaling
    except (FileNotFoundError, ValueError):
        return "minmax", "minmax"


def run_landmark_scores(
    config: LandmarkScoresConfig, progress: Progress | None = None
) -> LandmarkScoresSummary:
    """Measure every filtered image with the landmark judge; write the normalised table and the agreement.

    Raises judges.JudgeUnavailable when the optional extra is missing, FileNotFoundError for no images.
    """
    start = time.perf_counter()
    judge = LandmarkJudge()
    paths = config.paths
    out_dir = Path(config.out or paths.property_scores_dir)
    seg_dir = Path(config.segmentation_dir or paths.segmentation_dir)
    files = list_images(config.images or paths.filtered_dir)[: config.limit]
    cache_path = out_dir / RAW_CACHE
    cache: dict[str, dict] = {}
    if cache_path.is_file():
        frame = read_csv_checked(cache_path, RAW_COLUMNS, keep_default_na=False, na_values=[""])
        cache = {row["img_name"]: row for row in frame.to_dict("records")}
    reused = sum(1 for f in files if f.name in cache)
    todo = [f for f in files if f.name not in cache]
    for first in range(0, len(todo), config.chunk):
        chunk, images = [], []
        for path in todo[first : first + config.chunk]:
            try:
                images.append(load_rgb(path))
                chunk.append(path)
            except ImageReadError:
                cache[path.name] = {c: math.nan for c in RAW_COLUMNS[1:-1]} | {
                    "img_name": path.name,
                    "flags": "unreadable",
                }
        for path, row in zip(chunk, measure_images(images, judge, config.device)):
            cache[path.name] = {"img_name": path.name, **row}
        atomic_write_csv(
            cache_path,
            pd.DataFrame([cache[k] for k in sorted(cache)], columns=list(RAW_COLUMNS)),
            RAW_COLUMNS,
        )
        if progress is not None:
            progress(min(first + config.chunk, len(todo)), len(todo))
    table = pd.DataFrame([cache[f.name] for f in files], columns=list(RAW_COLUMNS))
    table["facexformer_yaw"] = [_heads_yaw(seg_dir, Path(name).stem) for name in table["img_name"]]
    method, pose_scaling = _normalizer_settings(out_dir, paths)
    raw = {
        "eyes": table["raw_eyes"].to_numpy(float),
        "mouth": table["raw_mouth"].to_numpy(float),
        "face_pose": table["raw_face_pose"].to_numpy(float),
    }
    landmark_norm = PropertyNormalizer.fit(raw, method, pose_scaling, properties=JUDGE_PROPERTIES)
    heads_norm = PropertyNormalizer.fit(
        {"face_pose": table["facexformer_yaw"].to_numpy(float)},
        method,
        pose_scaling,
        properties=("face_pose",),
    )
    normalised = landmark_norm.apply(raw)
    out = table.copy()
    for k, name in enumerate(JUDGE_PROPERTIES):
        out.insert(1 + k, name, normalised[name])
    atomic_write_csv(out_dir / paths.landmark_scores_csv.name, out[list(LANDMARK_COLUMNS)], LANDMARK_COLUMNS)
    landmark_norm.save(out_dir / paths.landmark_normalization_json.name)
    heads_norm.save(out_dir / paths.heads_normalization_json.name)
    agreement = filtered_set_agreement(out, heads_norm, out_dir / paths.all_scores_csv.name)
    atomic_write_csv(out_dir / paths.judge_agreement_csv.name, agreement, AGREEMENT_COLUMNS)
    measured = int((table["flags"].fillna("") == "").sum())
    return LandmarkScoresSummary(
        measured,
        int((table["flags"] == "no_face").sum()),
        int((table["flags"] == "unreadable").sum()),
        reused,
        out_dir,
        agreement,
        time.perf_counter() - start,
    )


def filtered_set_agreement(landmarks: pd.DataFrame, heads_norm, all_scores_csv: Path) -> pd.DataFrame:
    """Pearson r between judges on the filtered set: segmentation (``all_scores_csv``, when step 6 wrote it),
    landmarks, MTCNN's five points and FaceXFormer's head-pose head (pose only)."""
    index = landmarks["img_name"]
    frames = {}
    if all_scores_csv.is_file():
        scores = read_csv_checked(all_scores_csv, ("img_name",) + JUDGE_PROPERTIES)
        frames["segmentation"] = scores.set_index("img_name")[list(JUDGE_PROPERTIES)]
    frames["landmarks"] = landmarks.set_index("img_name")[list(JUDGE_PROPERTIES)]
    frames["mtcnn_points"] = pd.DataFrame({"face_pose": landmarks["mtcnn_yaw"].to_numpy()}, index=index)
    frames["facexformer_heads"] = pd.DataFrame(
        {
            "face_pose": heads_norm.apply({"face_pose": landmarks["facexformer_yaw"].to_numpy(float)})[
                "face_pose"
            ]
        },
        index=index,
    )
    return judge_agreement(frames, JUDGE_PROPERTIES)
