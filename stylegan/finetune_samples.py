"""Step 7's sample sheets: one row per property sweep of the EMA generator, written as training goes.

Along a row one property goes from its minimum to its maximum while the others stay at the training
median: the attribute should change and the person stay. The step-0 sheet is the pretrained generator.
"""
from __future__ import annotations

import torch
from PIL import Image

from common.contact_sheet import make_contact_sheet
from common.paths import PROPERTY_NAMES
from stylegan.conditional import ConditionalGenerator
from stylegan.networks import postprocess_uint8

__all__ = ["sweep_conditions", "sweep_grid_image"]


def sweep_conditions(ranges: dict[str, tuple[float, float]], centre: dict[str, float], num_values: int,
                     prop: str) -> torch.Tensor:
    """[num_values, P]: ``prop`` from its min to its max, the others at ``centre``."""
    low, high = ranges[prop]
    cond = torch.tensor([[centre[p] for p in PROPERTY_NAMES]], dtype=torch.float32).repeat(num_values, 1)
    cond[:, PROPERTY_NAMES.index(prop)] = torch.linspace(low, high, num_values)
    return cond


@torch.no_grad()
def sweep_grid_image(generator: ConditionalGenerator, z: torch.Tensor, ranges: dict[str, tuple[float, float]],
                     centre: dict[str, float], num_values: int = 7, properties=PROPERTY_NAMES, thumb: int = 96,
                     title: str | None = None) -> Image.Image:
    """Contact sheet: one row per (z, property) sweep; z [K, z_dim]."""
    device = next(generator.parameters()).device
    images, captions = [], []
    for k in range(z.shape[0]):
        for prop in properties:
            cond = sweep_conditions(ranges, centre, num_values, prop).to(device)
            out = generator(z[k:k + 1].to(device).repeat(num_values, 1), cond)["image"]
            images += list(postprocess_uint8(out.float()))
            captions += [f"{prop[:6]}={v:.2f}" for v in cond[:, PROPERTY_NAMES.index(prop)].tolist()]
    return make_contact_sheet(images, captions, ncols=num_values, thumb=thumb, title=title)
