"""The fine-tune toys of ``test_finetune_trainer.py`` as functions of a seed, so their margins can be measured.

A threshold on a trained quantity must hold on any x86-64 machine: the numerics differ by
instruction set (ATen kernels, MKL, oneDNN), and a GAN's training amplifies the smallest
difference, so a different machine behaves like another seed. ``benchmarks/toy_margins.py`` runs
these functions over seeds under several instruction sets; the tests assert thresholds below the
minimum it measured, with a margin, and quote the distribution.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from tiny_models import TINY_G_16

from stylegan.checkpoint import load_discriminator, load_generator, write_random_checkpoint
from stylegan.conditional import build_conditional_discriminator, build_conditional_generator
from stylegan.finetune_trainer import FinetuneConfig, Finetuner
from stylegan.networks import postprocess_uint8
from stylegan.property_regressor import RegressorConfig, train_property_regressor

CONSTANT = torch.tensor([0.5, 0.5, 0.5, 0.0])  # the one-property toy's four other properties never vary


def base_models(world_seed: int = 0, resolution: int = 16):
    """A random tiny genforce-format generator and discriminator (the toys' frozen 'pretrained' models)."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = dict(TINY_G_16, resolution=resolution)
        path = write_random_checkpoint(Path(tmp) / "g.pth", seed=world_seed, **settings)
        return load_generator(path), load_discriminator(path)


class ToyProperty(torch.nn.Module):
    """Top-left brightness, min-max normalised on the real images: differentiable and exact."""

    def __init__(self, low: float, high: float):
        super().__init__()
        self.low, self.high = low, high

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value = (x[:, :, :8, :8].mean(dim=(1, 2, 3)) - self.low) / (self.high - self.low)
        return torch.cat([value[:, None], CONSTANT.to(x).repeat(x.shape[0], 1)], dim=1)


def one_property_toy(world_seed: int = 0) -> dict:
    """64 'real' images of a 16x16 random generator and their one varying property (others constant)."""
    base_g, base_d = base_models(world_seed)
    z = torch.randn(64, 16, generator=torch.Generator().manual_seed(world_seed))
    with torch.no_grad():
        images = base_g(z)["image"]
    raw = images[:, :, :8, :8].mean(dim=(1, 2, 3))
    low, high = float(raw.min()), float(raw.max())
    conditions = torch.cat([((raw - low) / (high - low))[:, None], CONSTANT.repeat(64, 1)], dim=1).numpy()
    return dict(base_g=base_g, base_d=base_d, images_u8=postprocess_uint8(images), conditions=conditions,
                prop=ToyProperty(low, high))


def toy_trainer(toy: dict, **kwargs) -> Finetuner:
    config = FinetuneConfig(**{"batch_size": 8, "lr_g": 0.01, "ema_beta": 0.9, "lambda_prop": 3.0, **kwargs})
    return Finetuner(build_conditional_generator(toy["base_g"], seed=config.seed),
                     build_conditional_discriminator(toy["base_d"]), toy["images_u8"], toy["conditions"], config,
                     toy["prop"])


def control_correlation(trainer: Finetuner, prop: torch.nn.Module, n: int = 256) -> float:
    """Pearson r between a uniformly requested value and the toy property of G_ema's image."""
    gen = torch.Generator().manual_seed(123)
    z = torch.randn(n, 16, generator=gen)
    requested = torch.rand(n, generator=gen)
    cond = torch.cat([requested[:, None], CONSTANT.repeat(n, 1)], dim=1)
    with torch.no_grad():
        measured = prop(trainer.G_ema(z, cond)["image"])[:, 0]
    return float(np.corrcoef(requested.numpy(), measured.numpy())[0, 1])


def toy_control_r(seed: int = 0, lam: float = 3.0, steps: int = 200, toy: dict | None = None,
                  eval_at: tuple[int, ...] = ()) -> float | dict[int, float]:
    """Train the one-property toy for ``steps`` (training seed ``seed``) and return its control r.

    With ``eval_at``: {step: r} at each listed step (and at ``steps``) of one training run.
    """
    toy = toy if toy is not None else one_property_toy()
    trainer = toy_trainer(toy, lambda_prop=lam, seed=seed)
    out = {}
    for step in sorted(set(eval_at) | {steps}):
        while trainer.step_count < step:
            row = trainer.step()
            if not (np.isfinite(row["loss_g"]) and np.isfinite(row["loss_d"])):
                raise FloatingPointError(f"non-finite loss at step {trainer.step_count}: {row}")
        out[step] = control_correlation(trainer, toy["prop"])
    return out if eval_at else out[steps]


def quarters(x: torch.Tensor) -> torch.Tensor:
    return torch.stack([x[:, :, :8, :8].mean(dim=(1, 2, 3)), x[:, :, 8:, 8:].mean(dim=(1, 2, 3))], dim=1)


class TwoToyProperties(torch.nn.Module):
    """Top-left and bottom-right brightness as 'eyes' and 'hair_length'; the other three constant."""

    def __init__(self, low: torch.Tensor, high: torch.Tensor):
        super().__init__()
        self.low, self.high = low, high

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = (quarters(x) - self.low.to(x)) / (self.high - self.low).to(x)
        half = torch.full((x.shape[0], 1), 0.5, device=x.device)
        return torch.cat([v[:, :1], half, half, v[:, 1:], torch.zeros_like(half)], dim=1)


def two_property_results(seed: int = 0, steps: int = 200, lams: tuple[float, ...] = (3.0, 0.0),
                         eval_at: tuple[int, ...] = ()) -> dict:
    """{(lambda, swept index): {'r', 'leakage_slope'}} for the toy with two anti-correlated properties.

    With ``eval_at`` the result is {step: that dict} for each listed step (one training run per lambda).
    """
    base_g, base_d = base_models(0)
    z = torch.randn(64, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        images = base_g(z)["image"]
    q = quarters(images)
    prop = TwoToyProperties(q.min(0).values, q.max(0).values)
    with torch.no_grad():
        conditions = prop(images).numpy()
    zz = torch.randn(16, 16, generator=torch.Generator().manual_seed(1))
    median = np.median(conditions, axis=0)
    checkpoints = sorted(set(eval_at) | {steps}) if eval_at else [steps]
    results: dict[int, dict] = {s: {} for s in checkpoints}
    for lam in lams:
        config = FinetuneConfig(batch_size=8, lr_g=0.01, ema_beta=0.9, lambda_prop=lam, seed=seed)
        trainer = Finetuner(build_conditional_generator(base_g, seed=seed), build_conditional_discriminator(base_d),
                            postprocess_uint8(images), conditions, config, prop)
        for step in checkpoints:
            while trainer.step_count < step:
                trainer.step()
            for swept, other in ((0, 3), (3, 0)):
                requested, measured = [], []
                for value in np.linspace(0.0, 1.0, 5):
                    cond = torch.tensor(np.tile(median, (16, 1)), dtype=torch.float32)
                    cond[:, swept] = float(value)
                    with torch.no_grad():
                        measured.append(prop(trainer.G_ema(zz, cond)["image"]).numpy())
                    requested.append(np.full(16, value))
                requested, measured = np.concatenate(requested), np.concatenate(measured)
                results[step][(lam, swept)] = {
                    "r": float(np.corrcoef(requested, measured[:, swept])[0, 1]),
                    "leakage_slope": float(np.polyfit(requested, measured[:, other], 1)[0]),
                }
    return results if eval_at else results[steps]


def regressor_r_eyes(seed: int = 0) -> tuple[float, dict]:
    """Held-out r of the property regressor on a simple brightness signal (120 synthetic images)."""
    rng = np.random.default_rng(0)
    level = rng.uniform(30, 220, size=(120, 1, 1, 1))
    top = rng.uniform(-30, 30, size=(120, 1, 1, 1))
    images = level + rng.normal(0, 10, size=(120, 32, 32, 3))
    images[:, :16] += top
    images = np.clip(images, 0, 255).astype(np.uint8)
    targets = np.zeros((120, 5), dtype=np.float32)
    targets[:, 0] = images[:, :16].mean(axis=(1, 2, 3)) / 255.0  # top-half brightness
    targets[:, 4] = images[..., 0].mean(axis=(1, 2)) / 127.5 - 1.0  # red level
    model, metrics = train_property_regressor(images, targets, epochs=15, batch_size=16, seed=seed,
                                              config=RegressorConfig(input_size=32, width=8))
    return float(metrics["r_eyes"]), dict(model=model, metrics=metrics)
