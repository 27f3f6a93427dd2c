"""The face box and five points that MTCNN finds, for the landmark judge.

dlib's own HOG detector misses turned heads, so the landmark judge is fed MTCNN's box (the raw
detector box, not step 5's widened crop). MTCNN's five points (eyes, nose, mouth corners) also
give a third, detector-based yaw (:func:`judges.landmark_measures.yaw_five_points`).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

_MTCNN: dict[str, object] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class FaceBox:
    """The largest face of one image: ``box`` (x0, y0, x1, y1) float pixels, ``points`` [5, 2]
    (image-left eye, image-right eye, nose, mouth left, mouth right); None when no face was found."""

    found: bool
    box: tuple[float, float, float, float] | None = None
    prob: float | None = None
    points: np.ndarray | None = None


def _mtcnn(device: str):
    with _LOCK:
        if device not in _MTCNN:
            from facenet_pytorch import MTCNN

            _MTCNN[device] = MTCNN(keep_all=True, device=torch.device(device))
        return _MTCNN[device]


def _one(boxes, probs, points) -> FaceBox:
    if boxes is None or len(boxes) == 0:
        return FaceBox(False)
    return FaceBox(
        True, tuple(float(v) for v in boxes[0][:4]), float(probs[0]), np.asarray(points[0], dtype=np.float64)
    )


def detect_face_boxes(images_u8: Sequence[np.ndarray], device: str = "cpu") -> list[FaceBox]:
    """One :class:`FaceBox` per HxWx3 uint8 RGB image (largest face first, as MTCNN sorts them).

    Images of one size are detected in one batched MTCNN call (one at a time if batching fails).
    """
    mtcnn = _mtcnn(str(device))
    out: list[FaceBox] = [FaceBox(False)] * len(images_u8)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, image in enumerate(images_u8):
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"expected an HxWx3 uint8 RGB image, got shape {image.shape} dtype {image.dtype}"
            )
        if min(image.shape[:2]) >= mtcnn.min_face_size:
            groups.setdefault(image.shape[:2], []).append(i)
    for indices in groups.values():
        pils = [Image.fromarray(np.asarray(images_u8[i])) for i in indices]
        try:
            detections = list(zip(*mtcnn.detect(pils, landmarks=True)))
        except Exception:  # noqa: BLE001 - facenet raises bare Exception on odd batches; go one by one
            detections = [mtcnn.detect(pil, landmarks=True) for pil in pils]
        for i, (boxes, probs, points) in zip(indices, detections):
            out[i] = _one(boxes, probs, points)
    return out
