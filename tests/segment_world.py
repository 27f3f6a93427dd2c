"""A tiny stand-in for FaceXFormer, a small image folder, and drawn step-5 outputs (label map + crop).

Step 5's bookkeeping runs without the 368 MB model; ``draw`` gives step 6 faces whose scores are known.

The maps depend on every pixel of the crop (a fixed per-pixel linear map, then argmax), computed
elementwise so that an image's map never depends on which other images share its batch.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from segmentation.labels import FaceLabel as L


class TinyParser(torch.nn.Module):
    """parse_with_heads like FaceXFormer's: 11-class map, 68 landmarks, 3 head-pose angles per crop."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.randn(11, 3, generator=torch.Generator().manual_seed(0))

    def parse_with_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = (self.weight[None, :, :, None, None] * x[:, None]).sum(dim=2)  # [N, 11, H, W], elementwise
        maps = logits.argmax(dim=1).to(torch.uint8)
        landmarks = x[:, 0, :68, :2] * 10 + 100
        headpose = x.mean(dim=(2, 3)) * 30
        return maps, {"landmarks": landmarks, "headpose": headpose}


def write_image_folder(folder: Path, count: int = 7, corrupt: str = "000003.png") -> Path:
    """``count`` random 48x48 RGB PNGs named by index, one of them replaced by bytes that are not an image."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(folder / f"{i:06d}.png")
    if corrupt:
        (folder / corrupt).write_bytes(b"not a png")
    return folder


def folder_bytes(folder: Path, skip: tuple[str, ...] = ("segmentation_run.json",)) -> dict[str, bytes]:
    """name -> bytes of every file in ``folder`` (the run record holds timings, so it is left out)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and p.name not in skip}


def draw(i: int) -> tuple[np.ndarray, np.ndarray]:
    """A face whose every score depends on i (eye height, hair length/colour, mouth, nose tilt)."""
    p = np.full((224, 224), L.SKIN, dtype=np.uint8)
    p[0:30 + 40 * i, 20:200] = L.HAIR
    p[100:103 + 2 * i, 60:80] = L.LEFT_EYE
    p[100:105, 140:160] = L.RIGHT_EYE
    for k in range(20):
        shift = (k * (i - 2)) // 6
        p[120 + k, 108 + shift:113 + shift] = L.NOSE
    p[170:172, 90:130] = L.UPPER_LIP
    if i:
        p[172:172 + i, 95:125] = L.INNER_MOUTH
    p[172 + i:175 + i, 90:130] = L.LOWER_LIP
    face = np.full((224, 224, 3), 60 + 30 * i, dtype=np.uint8)
    face[::7, ::5] = (250, 10, 10)
    return p, face


def write_segmentation_folder(folder: Path, count: int = 5, crop: str = "mtcnn",
                              box: tuple[int, int, int, int] = (0, 0, 256, 256), prob: float = 0.99) -> Path:
    """What step 5 leaves for step 6: ``parsing_``/``face_`` PNGs of :func:`draw` and their crops.csv rows."""
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(count):
        parsing, face = draw(i)
        Image.fromarray(parsing).save(folder / f"parsing_{i:06d}.png")
        Image.fromarray(face).save(folder / f"face_{i:06d}.png")
        rows.append({"img_name": f"{i:06d}.png", "face_found": 1, "x0": box[0], "y0": box[1], "x1": box[2],
                     "y1": box[3], "prob": prob, "crop": crop})
    pd.DataFrame(rows).to_csv(folder / "crops.csv", index=False)
    return folder
