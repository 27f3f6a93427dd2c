"""Face crop for FaceXFormer, exactly as the official ``inference.py`` does it.

facenet-pytorch ``MTCNN(keep_all=True)`` with its defaults (and the weights its wheel ships),
``detect()``, the first box (the largest, since ``select_largest=True``), each side widened by
25% of the box width/height, clamped to the image, ``int()``-truncated, PIL crop, PIL bicubic
resize to 224x224 (aspect ratio not kept). Where the official script crashes on an image
without a face, we return ``found=False``.
"""
from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from segmentation.facexformer import IMAGENET_MEAN, IMAGENET_STD, INPUT_SIZE

log = logging.getLogger(__name__)

MARGIN_PERCENTAGE = 50.0
"""Total widening of the detected box (25% per side), as the official ``adjust_bbox``."""

ImageLike = Image.Image | np.ndarray


@dataclass(frozen=True)
class FaceCrop:
    """One image's crop. ``box`` = widened, clamped, integer box (x0, y0, x1, y1) in original pixels;
    ``prob`` = MTCNN probability of that face; ``image`` = the 224x224x3 uint8 RGB crop.
    ``box``, ``prob`` and ``image`` are None when no face was found."""

    found: bool
    box: tuple[int, int, int, int] | None
    prob: float | None
    image: np.ndarray | None


_MTCNN_CACHE: dict[str, object] = {}
_MTCNN_LOCK = threading.Lock()


def get_mtcnn(device: str | torch.device | None = None):
    """The cached ``MTCNN(keep_all=True)`` (library defaults) for ``device`` (None = CPU)."""
    key = str(torch.device(device)) if device is not None else "cpu"
    with _MTCNN_LOCK:
        if key not in _MTCNN_CACHE:
            from facenet_pytorch import MTCNN

            _MTCNN_CACHE[key] = MTCNN(keep_all=True, device=torch.device(key))
        return _MTCNN_CACHE[key]


def to_pil_rgb(image: ImageLike) -> Image.Image:
    """PIL RGB image from a PIL image (any mode) or an HxWx3 / HxW uint8 array."""
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    array = np.asarray(image)
    channels_ok = array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))
    if array.dtype != np.uint8 or not channels_ok:
        raise ValueError(f"expected an HxWx3 uint8 RGB array, got shape {array.shape} dtype {array.dtype}")
    return Image.fromarray(array).convert("RGB")


def widen_box(box: Sequence[float], width: int, height: int,
              margin_percentage: float = MARGIN_PERCENTAGE) -> tuple[float, float, float, float]:
    """The official ``adjust_bbox``: grow each side by margin/2 % of the box size, clamp to the image.

    Same operation order as the original (Python floats), so ``int()`` truncation lands on the
    same pixels.
    """
    x_min, y_min, x_max, y_max = (float(v) for v in box)
    increase_w = (x_max - x_min) * (margin_percentage / 100.0) / 2
    increase_h = (y_max - y_min) * (margin_percentage / 100.0) / 2
    return (max(0, x_min - increase_w), max(0, y_min - increase_h),
            min(width, x_max + increase_w), min(height, y_max + increase_h))


def crop_from_box(image: Image.Image, box: Sequence[float], size: int = INPUT_SIZE
                  ) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """Widen, clamp and truncate the detector box, crop and resize (PIL bicubic) to ``size`` x ``size``."""
    adjusted = widen_box(box, image.width, image.height)
    int_box = tuple(int(v) for v in adjusted)
    crop = image.crop(int_box).resize((size, size), Image.BICUBIC)
    return int_box, np.asarray(crop, dtype=np.uint8)


def full_image_crop(image: ImageLike, size: int = INPUT_SIZE) -> FaceCrop:
    """``--crop full``: the whole image resized to 224 (bicubic); box = the whole image, prob None."""
    pil = to_pil_rgb(image)
    resized = np.asarray(pil.resize((size, size), Image.BICUBIC), dtype=np.uint8)
    return FaceCrop(found=True, box=(0, 0, pil.width, pil.height), prob=None, image=resized)


def _crop_one(pil: Image.Image, boxes, probs) -> FaceCrop:
    if boxes is None or len(boxes) == 0:
        return FaceCrop(found=False, box=None, prob=None, image=None)
    first = [float(v) for v in np.asarray(boxes[0], dtype=object).reshape(-1)[:4]]
    prob = probs[0] if probs is not None and len(probs) else None
    int_box, crop = crop_from_box(pil, first)
    if int_box[2] <= int_box[0] or int_box[3] <= int_box[1]:  # degenerate after clamping: treat as no face
        log.debug("MTCNN box %s is empty after clamping to %sx%s", first, pil.width, pil.height)
        return FaceCrop(found=False, box=None, prob=None, image=None)
    return FaceCrop(found=True, box=int_box, prob=None if prob is None else float(prob), image=crop)


_INT_GUARD_PX = 1e-3
"""Batched MTCNN boxes differ from one-image boxes by up to ~3e-5 px (measured on the 40 real test
faces). Where a widened coordinate lies this close to an integer, ``int()`` could land on another
pixel, so that image is detected again on its own, as the original does."""


def _near_integer(boxes, width: int, height: int) -> bool:
    if boxes is None or len(boxes) == 0:
        return False
    first = [float(v) for v in np.asarray(boxes[0], dtype=object).reshape(-1)[:4]]
    adjusted = widen_box(first, width, height)
    return any(abs(v - round(v)) < _INT_GUARD_PX and v not in (0, width, height) for v in adjusted)


def _detect(mtcnn, pils: list[Image.Image]) -> list[tuple[object, object]]:
    """(boxes, probs) per image: one batched MTCNN call for equal-size images, then the one-image call
    for any image whose crop box could differ from it (see ``_INT_GUARD_PX``) or if batching fails."""
    if len(pils) > 1:
        try:
            boxes, probs = mtcnn.detect(pils)
            detections = list(zip(boxes, probs))
        except Exception as exc:  # noqa: BLE001 - facenet raises bare Exception; fall back per image
            log.debug("batched MTCNN detect failed (%s); detecting one image at a time", exc)
        else:
            for i, (pil, (b, _)) in enumerate(zip(pils, detections)):
                if _near_integer(b, pil.width, pil.height):
                    detections[i] = mtcnn.detect(pil)
            return detections
    return [mtcnn.detect(pil) for pil in pils]


def detect_and_crop(images: Sequence[ImageLike], device: str | torch.device | None = None,
                    batch: bool = True) -> list[FaceCrop]:
    """Official FaceXFormer face crop for each image (PIL or HxWx3 uint8 RGB, any sizes).

    Returns one :class:`FaceCrop` per input, in order; an image without a face gives
    ``found=False`` (never an exception). Images of equal size are detected in one MTCNN batch
    and re-checked one by one where the integer box could differ, so the boxes equal the
    original's one-image calls (``batch=False``: always one call per image).
    """
    pils = [to_pil_rgb(image) for image in images]
    if not pils:
        return []
    mtcnn = get_mtcnn(device)
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    results: list[FaceCrop | None] = [None] * len(pils)
    for i, pil in enumerate(pils):
        if min(pil.size) < mtcnn.min_face_size:
            # no face of the minimum size fits (and MTCNN's empty scale pyramid would raise)
            results[i] = FaceCrop(found=False, box=None, prob=None, image=None)
        else:
            groups[pil.size].append(i)
    for indices in groups.values():
        members = [pils[i] for i in indices]
        detections = _detect(mtcnn, members) if batch else [mtcnn.detect(p) for p in members]
        for i, (boxes, probs) in zip(indices, detections):
            results[i] = _crop_one(pils[i], boxes, probs)
    return results  # type: ignore[return-value]


def normalize_crops(crops_u8: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
    """[N, 224, 224, 3] uint8 RGB -> [N, 3, 224, 224] float32, ToTensor (/255) then ImageNet Normalize."""
    array = np.stack([np.asarray(c) for c in crops_u8]) if not isinstance(crops_u8, np.ndarray) else crops_u8
    if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8:
        raise ValueError(f"expected [N, H, W, 3] uint8 crops, got shape {array.shape} dtype {array.dtype}")
    x = torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2).float().div(255)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std
