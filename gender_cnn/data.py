"""Model inputs for the gender and quality CNNs: crops, image cache, normalisation, augmentation, folds.

Images are decoded once into a uint8 tensor cache at model input size (2,000 images at 128x128x3 is
~100 MB), so epochs never touch the disk. The quality model looks only at the top-centre region
(rows 0-63, columns 64-191 of a 256x256 image) where the GAN's blur artefacts appear, as the
original project did.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from common.images import ImageReadError, load_rgb

logger = logging.getLogger(__name__)

REFERENCE_SIZE = 256
"""Regions are given in pixels of a 256x256 image and scaled to the actual image size."""

QUALITY_REGION: tuple[int, int, int, int] = (0, 64, 64, 192)
"""(row0, row1, col0, col1), end-exclusive: rows 0-63, columns 64-191 (the original's crop)."""


@dataclass(frozen=True)
class InputSpec:
    """What a model sees: an optional region of the image, resized to ``height`` x ``width``."""

    height: int
    width: int
    region: tuple[int, int, int, int] | None = None  # (row0, row1, col0, col1) in 256-px units

    def __post_init__(self) -> None:
        if self.height < 8 or self.width < 8:
            raise ValueError(f"input size must be at least 8x8, got {self.height}x{self.width}")
        if self.region is not None:
            r0, r1, c0, c1 = self.region
            if not (0 <= r0 < r1 <= REFERENCE_SIZE and 0 <= c0 < c1 <= REFERENCE_SIZE):
                raise ValueError(f"region {self.region} must satisfy 0 <= row0 < row1 <= 256 and "
                                 f"0 <= col0 < col1 <= 256")

    def to_dict(self) -> dict:
        return {"height": self.height, "width": self.width,
                "region": list(self.region) if self.region is not None else None}

    @classmethod
    def from_dict(cls, data: dict) -> InputSpec:
        region = data.get("region")
        return cls(int(data["height"]), int(data["width"]), tuple(int(v) for v in region) if region else None)


def default_input_spec(task: str, input_size: int = 128,
                       quality_region: tuple[int, int, int, int] = QUALITY_REGION,
                       quality_size: tuple[int, int] | None = None) -> InputSpec:
    """Gender: the whole image at ``input_size``; quality: the region at native size (blur needs pixels)."""
    if task == "gender":
        return InputSpec(input_size, input_size, None)
    if task == "quality":
        r0, r1, c0, c1 = quality_region
        height, width = quality_size if quality_size is not None else (r1 - r0, c1 - c0)
        return InputSpec(height, width, tuple(quality_region))
    raise ValueError(f"unknown task {task!r}; expected one of ('gender', 'quality')")


def crop_for_model(image_u8: np.ndarray, spec: InputSpec) -> np.ndarray:
    """[H, W, 3] uint8 -> [3, h, w] uint8 as ``spec`` says (region scaled if the image is not 256)."""
    pil = Image.fromarray(image_u8)
    if spec.region is not None:
        r0, r1, c0, c1 = spec.region
        height, width = image_u8.shape[:2]
        sy, sx = height / REFERENCE_SIZE, width / REFERENCE_SIZE
        box = (round(c0 * sx), round(r0 * sy), max(round(c1 * sx), round(c0 * sx) + 1),
               max(round(r1 * sy), round(r0 * sy) + 1))
        pil = pil.crop(box)
    if pil.size != (spec.width, spec.height):
        # PIL's bilinear filter widens its support when shrinking, so it antialiases.
        pil = pil.resize((spec.width, spec.height), Image.BILINEAR)
    return np.ascontiguousarray(np.asarray(pil).transpose(2, 0, 1))


def _load_crops(path: Path, specs: Sequence[InputSpec]) -> list[np.ndarray] | str:
    try:
        image = load_rgb(path)
    except ImageReadError as exc:
        return str(exc)
    return [crop_for_model(image, spec) for spec in specs]


def iter_image_crops(paths: Sequence[Path], specs: Sequence[InputSpec], workers: int = 2,
                     chunk: int = 64) -> Iterator[tuple[int, list[np.ndarray] | str]]:
    """Yield ``(index, crops or error message)`` in order, decoding ahead in a thread pool.

    PIL releases the GIL while decoding, so threads overlap I/O and decoding with the model.
    """
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending: list = []
        next_submit = 0
        for index in range(len(paths)):
            while next_submit < len(paths) and next_submit < index + chunk:
                pending.append(pool.submit(_load_crops, Path(paths[next_submit]), specs))
                next_submit += 1
            yield index, pending.pop(0).result()


@dataclass
class ImageCache:
    """Decoded model inputs: one uint8 tensor [N, 3, h, w] per spec, rows in ``names`` order."""

    names: list[str]
    tensors: list  # list[torch.Tensor]
    failed: dict[str, str]  # img_name -> why it could not be read


def build_image_cache(paths: Sequence[Path], specs: Sequence[InputSpec], workers: int = 2,
                      on_item: Callable[[], None] | None = None) -> ImageCache:
    """Decode every image once; unreadable files are logged and listed in ``failed``, never fatal."""
    import torch

    names: list[str] = []
    arrays: list[list[np.ndarray]] = [[] for _ in specs]
    failed: dict[str, str] = {}
    for index, result in iter_image_crops(paths, specs, workers=workers):
        name = Path(paths[index]).name
        if isinstance(result, str):
            logger.warning("skipping unreadable image: %s", result)
            failed[name] = result
        else:
            names.append(name)
            for store, crop in zip(arrays, result):
                store.append(crop)
        if on_item is not None:
            on_item()
    tensors = []
    for spec, store in zip(specs, arrays):
        if store:
            tensors.append(torch.from_numpy(np.stack(store)))
        else:
            tensors.append(torch.empty((0, 3, spec.height, spec.width), dtype=torch.uint8))
    return ImageCache(names, tensors, failed)


def channel_stats(images_u8) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of a uint8 tensor [N, 3, h, w], in [0, 1] units (float64 sums)."""
    x = images_u8.double() / 255.0
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return [float(v) for v in mean], [float(v) for v in std]


def normalize_batch(images_u8, mean: Sequence[float], std: Sequence[float]):
    """uint8 [B, 3, h, w] -> float32 normalised with the stats stored in the model file."""
    return standardize(images_u8.float().div_(255.0), mean, std)


def standardize(x, mean: Sequence[float], std: Sequence[float]):
    """float [B, 3, h, w] in [0, 1] -> (x - mean) / std per channel."""
    import torch

    mean_t = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - mean_t) / std_t


@dataclass(frozen=True)
class AugmentConfig:
    """Training-only augmentation. Horizontal flip is label-safe for faces; the rest is mild."""

    hflip: bool = True
    max_shift_frac: float = 0.05  # random translation, fraction of each side (reflect padding)
    brightness: float = 0.1  # multiply by U(1 - b, 1 + b)
    contrast: float = 0.1  # scale deviations from the image mean by U(1 - c, 1 + c)

    def to_dict(self) -> dict:
        return {"hflip": self.hflip, "max_shift_frac": self.max_shift_frac,
                "brightness": self.brightness, "contrast": self.contrast}


def augment_batch(x, config: AugmentConfig, generator):
    """Augment a float batch [B, 3, h, w] in [0, 1] (before normalisation); ``generator`` seeds it."""
    import torch
    import torch.nn.functional as F

    batch, _, height, width = x.shape
    dev = x.device

    def rand(*shape):
        return torch.rand(*shape, generator=generator).to(dev)

    if config.hflip:
        flip = rand(batch) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    if config.max_shift_frac > 0:
        pad_y = int(round(height * config.max_shift_frac))
        pad_x = int(round(width * config.max_shift_frac))
        if pad_y or pad_x:
            padded = F.pad(x, (pad_x, pad_x, pad_y, pad_y), mode="reflect")
            dy = torch.randint(0, 2 * pad_y + 1, (batch,), generator=generator).tolist()
            dx = torch.randint(0, 2 * pad_x + 1, (batch,), generator=generator).tolist()
            x = torch.stack([padded[i, :, dy[i]:dy[i] + height, dx[i]:dx[i] + width] for i in range(batch)])
    if config.brightness > 0:
        x = x * (1 + (rand(batch) * 2 - 1) * config.brightness).view(-1, 1, 1, 1)
    if config.contrast > 0:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * (1 + (rand(batch) * 2 - 1) * config.contrast).view(-1, 1, 1, 1) + mean
    return x.clamp_(0.0, 1.0)


def stratified_folds(labels: Sequence[float] | np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold index (0..n_folds-1) per row; each class is shuffled and dealt round-robin.

    Deterministic given ``seed``, so a resumed run puts every image in the same fold.
    """
    labels = np.asarray(labels)
    if n_folds < 2:
        raise ValueError(f"need at least 2 folds, got {n_folds}")
    folds = np.empty(len(labels), dtype=np.int64)
    rng = np.random.default_rng([seed, 1729])
    offset = 0
    for value in np.unique(labels):
        idx = np.flatnonzero(labels == value)
        idx = idx[rng.permutation(len(idx))]
        # continue the round-robin across classes so fold sizes stay balanced
        folds[idx] = (np.arange(len(idx)) + offset) % n_folds
        offset = (offset + len(idx)) % n_folds
    return folds


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of a stratified ``fraction`` of rows (at least one per class when possible)."""
    labels = np.asarray(labels)
    mask = np.zeros(len(labels), dtype=bool)
    rng = np.random.default_rng([seed, 4242])
    for value in np.unique(labels):
        idx = np.flatnonzero(labels == value)
        if len(idx) < 2:
            continue
        take = min(len(idx) - 1, max(1, int(round(len(idx) * fraction))))
        mask[rng.choice(idx, size=take, replace=False)] = True
    return mask
