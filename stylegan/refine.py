"""Refining a linear latent edit through the generator and the learned property regressor.

A calibrated linear edit (``LatentDirections.edit``) holds the unrequested properties only as far
as their *linear* predictions are right; in the control lab (README, "Control lab") that left a
largest off-target leakage of 0.3-0.5 for every directions variant. The refinement starts from the
linear edit and takes a few Adam steps on the edited codes through the frozen generator and the
frozen learned property regressor (the same CNN the fine-tune uses as its loss, never the judge),
minimising, per image:

    sum_requested ((R_j(G(w')) - t_j) / s_j)^2                       (reach the request)
  + hold_weight * sum_unrequested ((R_j(G(w')) - R_j(G(w))) / s_j)^2  (hold the rest where it was)
  + anchor_weight * mean(((w' - w_linear) / sd_w)^2)                  (stay near the linear edit)

with ``s_j`` each property's spread and ``sd_w`` w's per-dimension spread, both in the units the
edit is measured in. ``wplus=True`` optimises one code per edited synthesis layer (w+) instead of
one shared w. It is the third option of the directions route ("refine"), used when a regressor is
given (``stylegan.control_methods.DirectionsMethod(refiner=...)``); the default route stays linear.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["RefineConfig", "EditRefiner", "w_spread"]


@dataclass(frozen=True)
class RefineConfig:
    """Settings of the refinement (defaults measured in the control lab, see the README)."""

    steps: int = 30
    lr: float = 0.1                  # Adam's first step, in units of w's per-dimension standard deviation (cosine
    #                                  decay to zero over the steps)
    hold_weight: float = 1.0
    anchor_weight: float = 0.01
    wplus: bool = False              # one code per edited layer instead of one shared w

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"refine steps must be >= 0, got {self.steps}")
        if not self.lr > 0:
            raise ValueError(f"refine lr must be > 0, got {self.lr}")
        if self.hold_weight < 0 or self.anchor_weight < 0:
            raise ValueError(f"refine weights must be >= 0, got {self.hold_weight}, {self.anchor_weight}")


@torch.no_grad()
def w_spread(generator: torch.nn.Module, num: int = 4096, seed: int = 0) -> torch.Tensor:
    """w's per-dimension standard deviation [D] over ``num`` untruncated mapping outputs (a fixed seed)."""
    device = next(generator.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(num, generator.z_space_dim, generator=gen).to(device)
    w = torch.cat([generator.mapping(z[i:i + 512])["w"].float() for i in range(0, num, 512)])
    return w.std(dim=0).clamp_min(1e-6)


class EditRefiner:
    """Refines edited codes of one generator with one frozen property regressor (images_pm1 -> [N, P]).

    ``property_scale`` [P]: each property's spread on step 6's scale (the weights 1 / s_j); the
    directions' calibrated prediction spread is a good choice. The generator and the regressor
    are never changed.
    """

    def __init__(self, generator: torch.nn.Module, property_model: torch.nn.Module, property_scale: np.ndarray,
                 config: RefineConfig = RefineConfig()):
        self.generator = generator
        self.property_model = property_model.eval()
        self.property_model.requires_grad_(False)
        self.config = config
        device = next(generator.parameters()).device
        scale = np.asarray(property_scale, dtype=np.float32)
        if scale.ndim != 1 or not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            raise ValueError(f"property_scale must be positive and finite per property, got {scale}")
        self.inv_scale = torch.from_numpy(1.0 / scale).to(device)
        self.w_std = w_spread(generator).to(device)

    @classmethod
    def for_directions(cls, generator: torch.nn.Module, property_model: torch.nn.Module, directions: Any,
                       config: RefineConfig = RefineConfig()) -> "EditRefiner":
        """A refiner whose property scales are the spreads of the directions' calibrated predictions
        (``slopes * proj_std``; 1 for a property without direction)."""
        scale = np.asarray(directions.slopes * directions.proj_std, dtype=np.float64)
        return cls(generator, property_model, np.where(scale > 0, scale, 1.0), config)

    def _images(self, wp: torch.Tensor) -> torch.Tensor:
        image = self.generator.synthesis(wp, None, False)["image"]
        return torch.tanh(image) if getattr(self.generator, "final_tanh", False) else image

    def refine(self, w_original: torch.Tensor, w_edited: torch.Tensor, targets: np.ndarray,
               layer_mask: torch.Tensor) -> torch.Tensor:
        """wp [N, L, D]: the refined codes on the masked layers [N, L] (bool), the original w elsewhere.

        targets [N, P]: the requests (NaN = hold that property at the original image's value).
        """
        cfg = self.config
        with torch.inference_mode(False), torch.enable_grad():
            w0 = w_original.detach().clone().float()
            w1 = w_edited.detach().clone().float()
            mask = layer_mask.detach().clone().bool()[:, :, None]                    # [N, L, 1]
            t = torch.tensor(np.array(targets, dtype=np.float32), device=w0.device)
            requested = torch.isfinite(t)
            num_layers = mask.shape[1]
            with torch.no_grad():
                start = self.property_model(self._images(w0[:, None, :].expand(-1, num_layers, -1).contiguous()))
            goal = torch.where(requested, torch.nan_to_num(t), start)
            weight = torch.where(requested, torch.ones_like(t), torch.full_like(t, cfg.hold_weight))
            shape = (len(w0), num_layers if cfg.wplus else 1, w0.shape[1])
            u = torch.zeros(shape, device=w0.device, requires_grad=True)
            opt = torch.optim.Adam([u], lr=cfg.lr)
            for k in range(cfg.steps):
                # cosine decay to zero: Adam's constant-size steps would otherwise leave every code
                # jittering around the optimum by about lr, which the judge sees as leakage
                for group in opt.param_groups:
                    group["lr"] = cfg.lr * 0.5 * (1.0 + math.cos(math.pi * k / cfg.steps))
                wp = self._mix(w0, w1, u, mask)
                pred = self.property_model(self._images(wp))
                err = ((pred - goal) * self.inv_scale).square() * weight
                loss = err.sum(dim=1) + cfg.anchor_weight * u.square().mean(dim=(1, 2))
                opt.zero_grad(set_to_none=True)
                loss.sum().backward()
                opt.step()
            return self._mix(w0, w1, u.detach(), mask).detach()

    def _mix(self, w0: torch.Tensor, w1: torch.Tensor, u: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        edited = w1[:, None, :] + u * self.w_std                                     # [N, 1 or L, D]
        edited = edited.expand(-1, mask.shape[1], -1)
        return torch.where(mask, edited, w0[:, None, :].expand_as(edited))
