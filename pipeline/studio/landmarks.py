"""Measure's second opinion: the dlib landmark judge on the studio's faces, where it is installed.

The segmentation judge also labelled the training data, so a control can fool it; the landmark
judge (``judges``: dlib's 68 points in MTCNN's box) is another model family. It reuses step 6's
per-image measuring (``pipeline.landmark_scores.measure_images``) and, when step 6 fitted it,
``landmark_normalization.json``, so its numbers sit on the same scale as the requested values;
without that file the raw measures are shown with a note. It measures eyes, mouth and face_pose
only (hair has no landmark). Nothing here raises for a missing extra or a face not found: the
result carries a one-line note instead.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.paths import NORMALIZATION_JSON, PROPERTY_NAMES

JUDGE_NAME = "dlib 68 landmarks in MTCNN's box"


@dataclass(frozen=True)
class LandmarkReading:
    """What the landmark judge saw: ``values`` [N, P] (NaN: hair, or no face), scale and notes."""

    values: np.ndarray
    scale: str                # "step 6 (landmark_normalization.json)" or "raw"
    notes: tuple[str, ...]


class StudioLandmarkJudge:
    """Loads dlib's models and the landmark normaliser once; call it on uint8 NHWC faces.

    Raises ``judges.JudgeUnavailable`` (its message says how to install) when the extra is missing.
    """

    def __init__(self, normalization_json: Path, device: str = "cpu") -> None:
        import judges
        from segmentation.normalize import PropertyNormalizer

        available, reason = judges.dlib_status()
        if not available:
            raise judges.JudgeUnavailable(reason)
        self.judge = judges.LandmarkJudge()
        self.device = str(device)
        self.normalizer: Any | None = None
        self.scale_note = ""
        raw = ("landmark values are raw (eyes: eye aspect ratio, mouth: lip gap / width, face_pose: yaw in "
               "degrees), not on step 6's scale: ")
        normalization_json = Path(normalization_json)
        if not normalization_json.is_file():
            step6 = normalization_json.with_name(NORMALIZATION_JSON)  # written by every step-6 run
            self.scale_note = raw + (
                f"step 6 ran without the landmark judge, so there is no {normalization_json.name}; re-run step 6 "
                "now that the judge is installed" if step6.is_file()
                else f"no {normalization_json.name} (run step 6 with the landmark judge installed)")
            return
        try:
            self.normalizer = PropertyNormalizer.load(normalization_json)
        except (FileNotFoundError, ValueError) as exc:
            self.scale_note = raw + str(exc)

    def __call__(self, images_u8: np.ndarray) -> LandmarkReading:
        from pipeline.landmark_scores import measure_images

        rows = measure_images([np.ascontiguousarray(im) for im in images_u8], self.judge, self.device)
        raw = {p: np.array([row[f"raw_{p}"] for row in rows], dtype=np.float64)
               for p in ("eyes", "mouth", "face_pose")}
        measured = self.normalizer.apply(raw) if self.normalizer is not None else raw
        values = np.full((len(rows), len(PROPERTY_NAMES)), np.nan)
        for j, name in enumerate(PROPERTY_NAMES):
            if name in measured:
                values[:, j] = np.asarray(measured[name], dtype=np.float64)
        notes = [self.scale_note] if self.scale_note else []
        return LandmarkReading(values, "step 6 (landmark_normalization.json)" if self.normalizer else "raw",
                               tuple(notes))


    def identity(self, images_u8: np.ndarray) -> tuple[np.ndarray, str]:
        """dlib embedding distance of each face to ``images_u8[0]`` (NaN where MTCNN finds no face) and a note.

        Below ``judges.SAME_PERSON_THRESHOLD`` (0.6) dlib calls two faces the same person.
        """
        from judges import SAME_PERSON_THRESHOLD, detect_face_boxes, identity_distances

        images = [np.ascontiguousarray(im) for im in images_u8]
        embeddings = np.full((len(images), 128), np.nan)
        for i, (image, box) in enumerate(zip(images, detect_face_boxes(images, device=self.device))):
            if box.found:
                embeddings[i] = self.judge.descriptor(image, box.box)
        distances = identity_distances(np.repeat(embeddings[:1], len(images), axis=0), embeddings)
        found = int(np.isfinite(distances).sum())
        if not np.isfinite(embeddings[0]).all():
            return distances, "identity distance: no face found in the base frame, so none is measured"
        return distances, (f"identity distance to the base face (dlib embedding; below {SAME_PERSON_THRESHOLD} "
                           f"= the same person): measured on {found} of {len(images)} frames")


def no_face_note(faces: tuple[str, ...], values: np.ndarray, demo: bool) -> str:
    """One line naming the faces in which MTCNN found no face (empty when it found all)."""
    missed = [face for face, row in zip(faces, values) if not any(math.isfinite(v) for v in row)]
    if not missed:
        return ""
    why = " (the demo's random models draw no faces)" if demo else ""
    return f"landmark judge: no face found in {', '.join(missed)}{why}"
