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
            import torch
            from facenet_pytorch import MTCNN

            _MTCNN[device] = MTCNN(keep_all=True, device=torch.device(device))
        return _MTCNN[device]


def detect_face_boxes(images_u8: Sequence[np.ndarray], device: str = "cpu") -> list[FaceBox]:
    """One :class:`FaceBox` per HxWx3 uint8 RGB image (largest face first, as MTCNN sorts them)."""
    from PIL import Image

    mtcnn = _mtcnn(str(device))
    out = []
    for image in images_u8:
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 RGB image, got shape {image.shape} dtype {image.dtype}")
        if min(image.shape[:2]) < mtcnn.min_face_size:
            out.append(FaceBox(False))
            continue
        boxes, probs, points = mtcnn.detect(Image.fromarray(image), landmarks=True)
        if boxes is None or len(boxes) == 0:
            out.append(FaceBox(False))
            continue
        out.append(FaceBox(True, tuple(float(v) for v in boxes[0][:4]), float(probs[0]),
                           np.asarray(points[0], dtype=np.float64)))
    return out
