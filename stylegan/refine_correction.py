"""A learned one-step correction of linear latent edits (the ``learned`` refine method, issue 21 §4).

The gradient refine (``stylegan.refine``) costs 70-180 generator forwards per image because it optimises
each image's code on its own. This module amortises that optimisation: a small MLP reads the original
code w, the linear edit's change and the request, and returns a correction of the edited code, trained
once per (generator, regressor, directions) on the gradient refine's own objective

    sum_requested ((R_j(G(w')) - t_j) / s_j)^2 + hold_weight * sum_unrequested ((R_j(G(w')) - R_j(G(w))) / s_j)^2
    + anchor_weight * mean((correction / sd_w)^2)

through the frozen generator and the frozen learned regressor R (never the judge), on random codes and
random single-property requests inside the scores seen in fitting. Applying it costs one MLP pass; the
refined image is then one render. Training costs ``steps`` gradient steps of ``batch`` images.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["CorrectionConfig", "CorrectionTrainer", "EditCorrection", "fit_edit_correction"]


@dataclass(frozen=True)
class CorrectionConfig:
    """How the correction is trained (measured in the control lab, docs/control.md)."""

    steps: int = 1500
    batch: int = 32
    lr: float = 2e-3
    hold_weight: float = 3.0
    anchor_weight: float = 0.01
    hidden: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch < 1 or self.hidden < 1:
            raise ValueError(f"correction steps >= 0, batch >= 1 and hidden >= 1 needed, got {self}")
        if not self.lr > 0 or self.hold_weight < 0 or self.anchor_weight < 0:
            raise ValueError(f"correction lr > 0 and weights >= 0 needed, got {self}")


class EditCorrection(nn.Module):
    """(w [N, D], linearly edited w [N, D], targets [N, P] with NaN = hold) -> corrected edited w [N, D]."""

    def __init__(self, w_dim: int, num_properties: int, hidden: int = 512):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2 * w_dim + 2 * num_properties, hidden), nn.SiLU(),
                                 nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, w_dim))
        nn.init.zeros_(self.net[-1].weight)   # starts as the linear edit itself
        nn.init.zeros_(self.net[-1].bias)
        for name, size in (("w_mean", w_dim), ("w_std", w_dim), ("target_centre", num_properties),
                           ("target_half", num_properties)):
            self.register_buffer(name, torch.zeros(size) if "mean" in name or "centre" in name else torch.ones(size))

    def delta(self, w: torch.Tensor, w_edit: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The correction [N, D] (in w's units) added to ``w_edit``."""
        asked = torch.isfinite(targets)
        t = torch.where(asked, (torch.nan_to_num(targets) - self.target_centre) / self.target_half,
                        torch.zeros_like(targets))
        x = torch.cat([(w - self.w_mean) / self.w_std, (w_edit - w) / self.w_std, t, asked.float()], dim=1)
        return self.net(x) * self.w_std

    def forward(self, w: torch.Tensor, w_edit: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return w_edit + self.delta(w, w_edit, targets)


def render_raw(generator: torch.nn.Module, w: torch.Tensor, edited: torch.Tensor | None = None,
            mask: torch.Tensor | None = None) -> torch.Tensor:
    """The image the regressor reads (the refiner's: tanh where the generator ends in one) of ``w``, or of ``edited``
    on the masked layers [N, L] and ``w`` elsewhere (as the directions method and the refiner render an edit: only
    on the layers fitted for the requested properties)."""
    wp = w[:, None, :].expand(-1, generator.num_layers, -1)
    if edited is not None:
        wp = torch.where(mask[:, :, None], edited[:, None, :], wp)
    image = generator.synthesis(wp.contiguous(), None, False)["image"]
    return torch.tanh(image) if getattr(generator, "final_tanh", False) else image


def edit_layers(directions: Any, targets: np.ndarray, num_layers: int, device: torch.device) -> torch.Tensor:
    """[N, L] bool: the synthesis layers each request's edit goes to (its properties' fitted layer ranges)."""
    return torch.from_numpy(np.stack([directions.layer_mask_for(np.isfinite(row), num_layers)
                                      for row in targets])).to(device)


class CorrectionTrainer:
    """Trains the correction of ``directions.edit`` for one generator and regressor (both stay frozen), one
    step at a time, with a state that resumes exactly: the model, Adam's moments, the step and both random
    generators' states (a resumed run draws the very codes and requests an uninterrupted one would).

    Requests are one property at a time (as step 9's sweeps and the studio's sliders ask), uniform in the
    scores seen in fitting."""

    def __init__(self, generator: torch.nn.Module, property_model: torch.nn.Module, directions: Any,
                 config: CorrectionConfig = CorrectionConfig()):
        self.generator, self.directions, self.config = generator, directions, config
        self.device = next(generator.parameters()).device
        self.property_model = property_model.eval().requires_grad_(False)
        self.gen = torch.Generator().manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        self.fitted = np.flatnonzero(directions.fitted)
        self.num_props = len(directions.property_names)
        seen = directions.seen_range()
        self.low = np.where(np.isfinite(seen[:, 0]), seen[:, 0], 0.0)
        self.high = np.where(np.isfinite(seen[:, 1]), seen[:, 1], 1.0)
        scale = np.asarray(directions.slopes * directions.proj_std, dtype=np.float64)
        self.inv = torch.from_numpy(1.0 / np.where(scale > 0, scale, 1.0)).float().to(self.device)
        with torch.no_grad():
            z = torch.randn(4096, generator.z_space_dim, generator=self.gen).to(self.device)
            w_all = torch.cat([generator.mapping(z[i:i + 512])["w"].float() for i in range(0, len(z), 512)])
        with torch.random.fork_rng(devices=[]):   # the layers' initial weights come from the seed, not global state
            torch.manual_seed(config.seed)
            self.model = EditCorrection(w_all.shape[1], self.num_props, config.hidden).to(self.device)
        self.model.w_mean.copy_(w_all.mean(0))
        self.model.w_std.copy_(w_all.std(0).clamp_min(1e-6))
        self.model.target_centre.copy_(torch.from_numpy((self.low + self.high) / 2).float())
        self.model.target_half.copy_(torch.from_numpy(np.maximum((self.high - self.low) / 2, 1e-6)).float())
        self.opt = torch.optim.Adam(self.model.net.parameters(), lr=config.lr)
        self.step = 0
        self.losses: list[float] = []

    def train_step(self) -> float:
        """One gradient step on a fresh batch of codes and requests; returns its loss."""
        cfg, gen, device = self.config, self.generator, self.device
        with torch.inference_mode(False), torch.enable_grad():
            with torch.no_grad():
                w = gen.mapping(torch.randn(cfg.batch, gen.z_space_dim, generator=self.gen).to(device))["w"]
                targets = np.full((cfg.batch, self.num_props), np.nan, np.float32)
                which = self.fitted[self.rng.integers(0, len(self.fitted), cfg.batch)]
                targets[np.arange(cfg.batch), which] = self.rng.uniform(self.low[which], self.high[which])
                w_edit = torch.from_numpy(self.directions.edit(w.cpu().numpy(), targets)).float().to(device)
                base = self.property_model(render_raw(gen, w)).float()
            t = torch.from_numpy(targets).to(device)
            asked = torch.isfinite(t)
            goal = torch.where(asked, torch.nan_to_num(t), base)
            weight = torch.where(asked, torch.ones_like(t), torch.full_like(t, cfg.hold_weight))
            delta = self.model.delta(w, w_edit, t)
            mask = edit_layers(self.directions, targets, gen.num_layers, device)
            values = self.property_model(render_raw(gen, w, w_edit + delta, mask)).float()
            loss = ((((values - goal) * self.inv).square() * weight).sum(1)
                    + cfg.anchor_weight * (delta / self.model.w_std).square().mean(1)).mean()
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        self.step += 1
        self.losses = (self.losses + [float(loss.detach())])[-_LOSS_WINDOW:]
        return self.losses[-1]

    @property
    def final_loss(self) -> float | None:
        """The mean loss of the last 100 steps (None before the first)."""
        return float(np.mean(self.losses[-100:])) if self.losses else None

    def state_dict(self) -> dict:
        """Everything a resumed run needs (tensors and plain values: ``torch.load(weights_only=True)``)."""
        rng = self.rng.bit_generator.state
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "step": self.step,
                "losses": list(self.losses), "torch_rng": self.gen.get_state(),
                "numpy_rng": {"bit_generator": rng["bit_generator"], "state": str(rng["state"]["state"]),
                              "inc": str(rng["state"]["inc"]), "has_uint32": rng["has_uint32"],
                              "uinteger": rng["uinteger"]}}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.step, self.losses = int(state["step"]), [float(x) for x in state["losses"]]
        self.gen.set_state(state["torch_rng"])
        saved = state["numpy_rng"]
        self.rng.bit_generator.state = {"bit_generator": saved["bit_generator"],
                                        "state": {"state": int(saved["state"]), "inc": int(saved["inc"])},
                                        "has_uint32": int(saved["has_uint32"]), "uinteger": int(saved["uinteger"])}

    def frozen(self) -> EditCorrection:
        """The trained correction, frozen (the model itself: training it further changes it)."""
        return self.model.eval().requires_grad_(False)


_LOSS_WINDOW = 100


def fit_edit_correction(generator: torch.nn.Module, property_model: torch.nn.Module, directions: Any,
                        config: CorrectionConfig = CorrectionConfig(), say=None) -> tuple[EditCorrection, dict]:
    """Train the correction of ``directions.edit`` for this generator and regressor (both stay frozen).

    Returns (the frozen correction, info: its settings, the final mean loss, the seconds). Step 7c
    (``stylegan.refine_correction_step``) trains the same way, resumably, and keeps the file.
    """
    import time

    start = time.perf_counter()
    trainer = CorrectionTrainer(generator, property_model, directions, config)
    for step in range(config.steps):
        trainer.train_step()
        if say is not None and (step + 1) % 250 == 0:
            say(f"correction step {step + 1}: loss {trainer.final_loss:.3f}")
    info = {"config": asdict(config), "final_loss": trainer.final_loss,
            "seconds": round(time.perf_counter() - start, 1)}
    return trainer.frozen(), info
