"""Step 9's other judges: every image the main judge scores is also seen by the independent ones.

The main judge (FaceXFormer segmentation + step-6 scores) produced the training labels, so it
cannot see its own blind spots. :class:`JudgePanel` wraps it: for each batch it also runs

- ``landmarks``: dlib's 68 points in MTCNN's box -> eye / mouth openness and yaw, normalised with
  ``landmark_normalization.json`` (step 6, optional extra); hair has no landmark measure;
- ``facexformer_heads``: FaceXFormer's own head-pose yaw from the same pass as the parsing,
  normalised with ``facexformer_heads_normalization.json`` (pose only);
- dlib's face-recognition embedding, for the identity distance between each edited face and the
  unedited face of the same latent (the baseline's image);
- a copy of the images at the sweep extremes, for FID/KID.

Figures that cannot be computed are named in ``missing`` with the reason; nothing here fails the step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from common.images import ImageReadError, list_images, load_rgb
from common.paths import PROPERTY_NAMES, PipelinePaths

LANDMARKS = "landmarks"
HEADS = "facexformer_heads"
JUDGE_PROPERTIES: dict[str, tuple[str, ...]] = {
    LANDMARKS: ("eyes", "mouth", "face_pose"),
    HEADS: ("face_pose",),
}


@dataclass
class MethodRecord:
    """What the panel saw of one method's sweep images, row by row (the design's order)."""

    measured: dict[str, list[np.ndarray]] = field(default_factory=dict)  # judge -> [batch, P] arrays
    descriptors: list[np.ndarray] = field(default_factory=list)  # [batch, 128] (NaN: no face)
    extremes: list[np.ndarray] = field(default_factory=list)  # images at the sweep ends
    rows: int = 0

    def judge_values(self, judge: str) -> np.ndarray:
        return np.concatenate(self.measured[judge]) if self.measured.get(judge) else np.zeros((0, 5))

    def embedding(self) -> np.ndarray:
        return np.concatenate(self.descriptors) if self.descriptors else np.zeros((0, 128))


class JudgePanel:
    """Builds the optional judges once; :meth:`wrap` gives a scorer that records them for one method."""

    def __init__(
        self, paths: PipelinePaths, device, enabled: bool = True, keep_extremes: bool = True
    ) -> None:
        self.missing: dict[str, str] = {}
        self.device = str(device)
        self.keep_extremes = keep_extremes
        self.landmark_judge = None
        self.normalizers: dict[str, object] = {}
        if not enabled:
            self.missing["landmarks, identity"] = "other judges turned off (--judges main)"
            return
        from judges import JudgeUnavailable, LandmarkJudge
        from segmentation.normalize import PropertyNormalizer

        try:
            self.landmark_judge = LandmarkJudge()
        except JudgeUnavailable as exc:
            self.missing["landmarks, identity"] = str(exc)
        for judge, path, why in (
            (LANDMARKS, paths.landmark_normalization_json, "run step 6 with the landmark judge installed"),
            (
                HEADS,
                paths.heads_normalization_json,
                "run steps 5-6 again (step 5 saves the heads, step 6 fits them)",
            ),
        ):
            if judge == LANDMARKS and self.landmark_judge is None:
                continue
            try:
                self.normalizers[judge] = PropertyNormalizer.load(path)
            except (FileNotFoundError, ValueError) as exc:
                self.missing[judge] = f"{exc}; {why}"

    def wrap(
        self, scorer, design_extreme: np.ndarray
    ) -> tuple[Callable[[np.ndarray], np.ndarray], MethodRecord]:
        """A scorer that returns ``scorer(images)`` and records the other judges on the same images.

        design_extreme: bool per design row, True where the image is at a sweep's end (kept for FID).
        """
        record = MethodRecord()
        heads = HEADS in self.normalizers and hasattr(scorer, "last_yaw")
        if HEADS in self.normalizers and not heads:
            self.missing.setdefault(HEADS, "the main judge is not FaceXFormer (stand-in scorer)")

        def call(images: np.ndarray) -> np.ndarray:
            out = scorer(images)
            n = len(images)
            if heads:
                yaw = self.normalizers[HEADS].apply({"face_pose": np.asarray(scorer.last_yaw, float)})[
                    "face_pose"
                ]
                record.measured.setdefault(HEADS, []).append(_columns({"face_pose": yaw}, n))
            if self.landmark_judge is not None:
                values, embeddings = self._landmarks(images)
                if LANDMARKS in self.normalizers:
                    normalised = self.normalizers[LANDMARKS].apply(values)
                    record.measured.setdefault(LANDMARKS, []).append(_columns(normalised, n))
                record.descriptors.append(embeddings)
            if self.keep_extremes:
                keep = design_extreme[record.rows : record.rows + n]
                record.extremes.extend(np.asarray(images)[keep])
            record.rows += n
            return out

        call.judge = getattr(scorer, "judge", None) or type(scorer).__name__  # the main judge's name
        call.name = getattr(scorer, "name", call.judge)
        return call, record

    def _landmarks(self, images: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        from judges import detect_face_boxes, measure_landmarks

        n = len(images)
        raw = {p: np.full(n, np.nan) for p in JUDGE_PROPERTIES[LANDMARKS]}
        embeddings = np.full((n, 128), np.nan)
        for i, (image, box) in enumerate(zip(images, detect_face_boxes(list(images), device=self.device))):
            if not box.found:
                continue
            image = np.ascontiguousarray(image)
            measures = measure_landmarks(self.landmark_judge.landmarks(image, box.box), image.shape[:2])
            for p in raw:
                raw[p][i] = measures[p]
            embeddings[i] = self.landmark_judge.descriptor(image, box.box)
        return raw, embeddings


def _columns(values: dict[str, np.ndarray], n: int) -> np.ndarray:
    """[n, 5] in PROPERTY_NAMES order; properties a judge does not measure stay NaN."""
    out = np.full((n, len(PROPERTY_NAMES)), np.nan)
    for j, p in enumerate(PROPERTY_NAMES):
        if p in values:
            out[:, j] = np.asarray(values[p], dtype=np.float64)
    return out


def judge_samples(samples: pd.DataFrame, record: MethodRecord) -> list[pd.DataFrame]:
    """The main judge's samples table re-labelled for each other judge, with that judge's measurements."""
    frames = []
    for judge in (LANDMARKS, HEADS):
        values = record.judge_values(judge)
        if len(values) != len(samples):
            continue
        frame = samples.copy()
        frame["judge"] = judge
        for j, p in enumerate(PROPERTY_NAMES):
            frame[f"measured_{p}"] = values[:, j]
        measured = [f"measured_{p}" for p in JUDGE_PROPERTIES[judge]]
        frame["valid"] = np.isfinite(frame[measured].to_numpy(float)).all(axis=1)
        frames.append(frame)
    return frames


def drop_unmeasured(table: pd.DataFrame) -> pd.DataFrame:
    """Remove comparison rows for properties a judge does not measure (hair for the landmark judge)."""
    keep = [p in JUDGE_PROPERTIES.get(j, PROPERTY_NAMES) for j, p in zip(table["judge"], table["property"])]
    return table[keep].reset_index(drop=True)


def identity_table(
    samples_by_method: dict[str, pd.DataFrame], records: dict[str, MethodRecord], baseline: str
) -> pd.DataFrame:
    """Per method and swept property: dlib embedding distance between each sweep image and the unedited
    (baseline) image of the same latent; mean, median and share above 0.6 (dlib's same-person rule)."""
    from judges import SAME_PERSON_THRESHOLD, identity_distances, summarize_identity

    columns = [
        "method",
        "property",
        "identity_distance",
        "identity_median",
        "identity_changed_share",
        "pairs",
    ]
    base = records.get(baseline)
    if base is None or len(base.embedding()) != len(samples_by_method.get(baseline, [])):
        return pd.DataFrame(columns=columns)
    base_samples = samples_by_method[baseline]
    reference: dict[int, np.ndarray] = {}
    for z, emb in zip(base_samples["z_index"], base.embedding()):
        if int(z) not in reference and np.isfinite(emb).all():
            reference[int(z)] = emb
    rows = []
    for method, samples in samples_by_method.items():
        emb = records[method].embedding() if method in records else np.zeros((0, 128))
        if len(emb) != len(samples):
            continue
        before = np.stack([reference.get(int(z), np.full(128, np.nan)) for z in samples["z_index"]])
        distance = identity_distances(before, emb)
        for prop in PROPERTY_NAMES:
            summary = summarize_identity(
                distance[(samples["property"] == prop).to_numpy()], SAME_PERSON_THRESHOLD
            )
            rows.append(
                {
                    "method": method,
                    "property": prop,
                    "identity_distance": summary.mean,
                    "identity_median": summary.median,
                    "identity_changed_share": summary.share_changed,
                    "pairs": summary.count,
                }
            )
    return pd.DataFrame(rows, columns=columns)


def agreement_table(samples_by_method: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per method: Pearson r between every two judges on the same generated images, per property."""
    from judges import judge_agreement

    parts = []
    for method, samples in samples_by_method.items():
        frames = {
            judge: part.reset_index(drop=True)[[f"measured_{p}" for p in PROPERTY_NAMES]].set_axis(
                list(PROPERTY_NAMES), axis=1
            )[list(JUDGE_PROPERTIES.get(judge, PROPERTY_NAMES))]
            for judge, part in samples.groupby("judge", sort=False)
        }
        table = judge_agreement(frames, PROPERTY_NAMES)
        table.insert(0, "method", method)
        parts.append(table)
    columns = ["method", "property", "judge_a", "judge_b", "pearson_r", "n"]
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)


def load_reference_images(folder: Path, limit: int, seed: int = 0) -> np.ndarray:
    """Up to ``limit`` images of step 4's filtered set (a seeded random choice), as [N, H, W, 3] uint8."""
    files = list_images(folder)
    rng = np.random.default_rng(seed)
    if len(files) > limit:
        files = [files[i] for i in np.sort(rng.choice(len(files), size=limit, replace=False))]
    images = []
    for path in files:
        try:
            images.append(load_rgb(path))
        except ImageReadError:
            continue
    shapes = {image.shape for image in images}
    if len(shapes) > 1:
        raise ValueError(
            f"the filtered images in {folder} have several sizes {sorted(shapes)}; FID needs one"
        )
    return np.stack(images) if images else np.zeros((0, 1, 1, 3), dtype=np.uint8)
