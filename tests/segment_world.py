"""A tiny stand-in for FaceXFormer and a small image folder: step 5's bookkeeping without the 368 MB model.

The maps depend on every pixel of the crop (a fixed per-pixel linear map, then argmax), computed
elementwise so that an image's map never depends on which other images share its batch.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image


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
