"""A small CNN that predicts the 5 normalised properties from an image (step 7's auxiliary loss).

Trained first on (filtered image, all_scores.csv row) pairs, then frozen and applied to the
generated images; the loss pulls its prediction to the requested condition. This is the
original authors' later fix that worked. It is differentiable and cheap, but it is *not* the
judge: step 9 measures control with the independent segmentation scorer, because a generator
can learn to fool the regressor (adversarial features) without changing the face.

No horizontal-flip augmentation: a flip changes face_pose (and min-max pose is not symmetric).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from common import stats
from common.paths import PROPERTY_NAMES

logger = logging.getLogger(__name__)

__all__ = ["RegressorConfig", "PropertyRegressor", "train_property_regressor", "regressor_metrics"]


@dataclass(frozen=True)
class RegressorConfig:
    input_size: int = 64        # images are resized (area) to this before the CNN
    width: int = 32             # channels of the first conv; doubled at each of the 4 stages (capped at 8x)
    num_outputs: int = len(PROPERTY_NAMES)


class PropertyRegressor(nn.Module):
    """images_pm1 [N, 3, R, R] (raw generator range, nominal [-1, 1]) -> [N, P] normalised properties."""

    def __init__(self, config: RegressorConfig = RegressorConfig()):
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        c_in, width = 3, config.width
        for stage in range(4):
            c_out = width * min(2 ** stage, 8)
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.GroupNorm(min(8, c_out), c_out),
                       nn.LeakyReLU(0.2), nn.Conv2d(c_out, c_out, 3, padding=1, stride=2), nn.LeakyReLU(0.2)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c_in * (config.input_size // 16) ** 2, 128),
                                  nn.LeakyReLU(0.2), nn.Linear(128, config.num_outputs))

    def forward(self, images_pm1: torch.Tensor) -> torch.Tensor:
        # clipped to [-1, 1] as every image the judge scores is (``postprocess_uint8``) and every training image
        # was: a generator's raw output can overshoot far (a random lab generator's by 10x on most pixels), and
        # unclipped the regressor would be asked about images nobody will ever see; the clip's zero gradient on
        # saturated pixels is the judge's own (a saturated pixel does not change what it measures)
        x = images_pm1.clamp(-1.0, 1.0)
        if x.shape[-1] != self.config.input_size or x.shape[-2] != self.config.input_size:
            x = F.interpolate(x, size=(self.config.input_size, self.config.input_size), mode="area")
        return self.head(self.features(x))


def regressor_metrics(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Per-property Pearson r and MAE on held-out pairs (the regressor's own quality, logged)."""
    out: dict[str, float] = {}
    for j, name in enumerate(PROPERTY_NAMES[: pred.shape[1]]):
        out[f"r_{name}"] = stats.pearson(pred[:, j], target[:, j])
        out[f"mae_{name}"] = float(np.abs(pred[:, j] - target[:, j]).mean()) if len(pred) else float("nan")
    return out


def train_property_regressor(images_u8: np.ndarray, targets: np.ndarray, epochs: int = 10, batch_size: int = 32,
                             lr: float = 1e-3, seed: int = 0, device: str | torch.device = "cpu",
                             config: RegressorConfig = RegressorConfig(), val_fraction: float = 0.1,
                             ) -> tuple[PropertyRegressor, dict[str, Any]]:
    """Fit the regressor on uint8 NHWC images (any size) and [N, P] targets; returns it frozen, in eval mode.

    A fixed ``val_fraction`` of the pairs (chosen from ``seed``) is held out and its Pearson r per
    property reported, so the README can say how good the training signal was. Deterministic
    for a seed on CPU.
    """
    if len(images_u8) != len(targets):
        raise ValueError(f"{len(images_u8)} images but {len(targets)} target rows")
    if len(images_u8) == 0:
        raise ValueError("no training pairs for the property regressor")
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = PropertyRegressor(config).to(device)
    n = len(images_u8)
    order = torch.randperm(n, generator=generator).numpy()
    n_val = int(round(n * val_fraction)) if n >= 10 else 0
    val_idx, train_idx = order[:n_val], order[n_val:]
    x_all = _to_input(images_u8, config.input_size)
    y_all = torch.as_tensor(np.asarray(targets, dtype=np.float32))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _epoch in range(epochs):
        perm = train_idx[torch.randperm(len(train_idx), generator=generator).numpy()]
        total = 0.0
        for first in range(0, len(perm), batch_size):
            idx = perm[first:first + batch_size]
            x, y = x_all[idx].to(device), y_all[idx].to(device)
            loss = F.mse_loss(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / max(len(perm), 1))
    model.eval().requires_grad_(False)
    metrics: dict[str, Any] = {"train_mse_per_epoch": losses, "num_train": int(len(train_idx)), "num_val": int(n_val)}
    if n_val:
        with torch.no_grad():
            pred = torch.cat([model(x_all[val_idx[i:i + 64]].to(device)).cpu() for i in range(0, n_val, 64)])
        metrics.update(regressor_metrics(pred.numpy(), y_all[val_idx].numpy()))
    logger.info("property regressor: %d epochs, final train MSE %.4f, held-out %s", epochs,
                losses[-1] if losses else float("nan"),
                {k: round(v, 3) for k, v in metrics.items() if k.startswith("r_")})
    return model, metrics


def _to_input(images_u8: np.ndarray, size: int) -> torch.Tensor:
    """uint8 NHWC -> float [-1, 1] NCHW at ``size`` (area resize), kept on the CPU."""
    x = torch.from_numpy(np.ascontiguousarray(images_u8)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="area")
    return x

