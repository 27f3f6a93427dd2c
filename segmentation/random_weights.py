"""Deterministic random FaceXFormer weights (golden recipe v2) and random-weight checkpoints for demos/tests.

The recipe is the one ``shared/reference/README.md`` describes for the golden files: every key
has its own generator seeded with ``crc32(key)``; the draws are scaled so the network's output
is not degenerate (plain ``randn * 0.02`` makes all 11 mask tokens nearly equal, so the argmax
is rounding noise). ``seed`` shifts every per-key seed, so ``seed=0`` is the golden recipe.
"""
from __future__ import annotations

import logging
import math
import zlib
from pathlib import Path

import torch

from common.io import atomic_torch_save
from segmentation.facexformer import RANDOM_WEIGHTS_KEY, facexformer_key_shapes, swin_relative_position_index

log = logging.getLogger(__name__)

_STD1_KEYS = frozenset(
    [f"face_decoder.{n}_token.weight" for n in
     ("landmarks", "pose", "attribute", "visibility", "age", "gender", "race")]
    + ["face_decoder.mask_tokens.weight", "pe_layer.positional_encoding_gaussian_matrix"]
)


def recipe_tensor(key: str, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """One tensor of recipe v2 (first matching rule wins, as in the reference README)."""
    if key.endswith("relative_position_index"):
        return swin_relative_position_index(7)
    generator = torch.Generator().manual_seed(zlib.crc32(key.encode()) + seed)
    z = torch.randn(shape, generator=generator)
    if len(shape) == 1:
        return 1 + 0.02 * z if key.endswith(".weight") else 0.02 * z
    if key in _STD1_KEYS:
        return z
    # true division by a Python float: multiplying by the reciprocal can change the last bit
    return z / math.sqrt(math.prod(shape[1:]))


def recipe_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """All 505 tensors of recipe v2, in state_dict order (~92M parameters; a few seconds on CPU)."""
    return {key: recipe_tensor(key, shape, seed) for key, shape in facexformer_key_shapes().items()}


def save_random_facexformer_checkpoint(path: Path | str, seed: int = 0) -> Path:
    """Write ``{'state_dict_backbone': recipe weights}``, the official file's layout (~368 MB), plus
    ``RANDOM_WEIGHTS_KEY`` naming the recipe (so the loader does not warn that its size is not the
    official upload's: it is known not to be).

    For demos and tests without the real checkpoint: the parsing it gives is meaningless but
    non-degenerate, and it loads through exactly the same code path as the real file.
    """
    path = Path(path)
    atomic_torch_save(path, {"state_dict_backbone": recipe_state_dict(seed),
                             RANDOM_WEIGHTS_KEY: f"recipe v2, seed {seed}"})
    log.info("wrote a random-weight FaceXFormer checkpoint (recipe v2, seed %d) to %s", seed, path)
    return path
