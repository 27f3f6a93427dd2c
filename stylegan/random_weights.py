"""Deterministic random StyleGAN weights ("recipe v2" of shared/reference, the golden data's weights).

Used by the golden tests, the benchmarks and the tiny demo checkpoints: every key gets its own
generator seeded with crc32(key), so the weights do not depend on key order. The scales are
genforce's own initialisation (mapping weights x 1/lr_mul), which keeps outputs z-dependent.
"""
from __future__ import annotations

import re
import zlib

import torch
import torch.nn as nn

from stylegan.networks import _blur_kernel

_MAPPING_WEIGHT = re.compile(r"mapping\.dense\d+\.weight")


def recipe_tensor(key: str, shape: tuple[int, ...], seed_offset: int = 0) -> torch.Tensor:
    """The recipe value of one state_dict entry (seed_offset 0 reproduces the golden files)."""
    if key.endswith("blur.kernel"):
        return _blur_kernel(shape[0])
    if key == "lod" or key.endswith(".lod"):
        return torch.zeros(())
    g = torch.Generator().manual_seed((zlib.crc32(key.encode()) + seed_offset) % (2**63))
    z = torch.randn(tuple(shape), generator=g)
    if _MAPPING_WEIGHT.fullmatch(key):
        return z * 100.0
    if key.endswith(".weight"):
        return z * 1.0
    return z * 0.5


def recipe_state_dict(module: nn.Module, seed_offset: int = 0) -> dict[str, torch.Tensor]:
    """A state_dict for ``module`` filled by the recipe (keys and shapes taken from the module)."""
    return {key: recipe_tensor(key, tuple(value.shape), seed_offset) for key, value in module.state_dict().items()}
