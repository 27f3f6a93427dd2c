"""Step 7's trainer: the latent-conditioned fine-tune of the pretrained StyleGAN, one step at a time.

Recipe, and why each part is there (pipeline.md step 7, and what went wrong in the original):
* G = pretrained mapping + condition columns (``stylegan.conditional``), synthesis frozen;
  D = pretrained D + a zero-initialised projection on a condition embedding.
* Non-saturating logistic loss, R1 on real images (gamma 10 by default).
* Fake conditions are drawn from the empirical distribution of the real conditions,
  **independently** of the real batch (the original gave fakes the real batch's labels, which
  lets D ignore the condition).
* No style mixing, stored noise (the original trained with mixing left on).
* Auxiliary property loss: a small CNN trained first on (image, scores), then frozen, applied to
  the generated image; weight ``lambda_prop`` (0 = the original's plain GAN recipe, which did
  not learn the properties). Each property's squared error is divided by the variance of its
  real conditions, so the five weigh alike.
* Optional paired term (``pair_weight``, issue 21 §3): the same z rendered again with one property's
  condition changed; the regressor's change in the other properties is penalised (leakage, as a sweep sees it).
* EMA generator (half-life in images, as NVlabs); mixed precision (fp16 autocast + GradScaler)
  on CUDA only.
* Every random draw of step s comes from a generator seeded by (seed, s), so a run resumed from a
  checkpoint repeats the uninterrupted run's losses exactly (global RNG states are saved too).

Batches and processes (``torchrun``): ``batch_size`` is the **global** batch, the images of one step
over all processes. It is split into ``micro_batches`` parts (default: one per process); part k
draws its images, latents and conditions from its own stream (seed, step, stream, k), and D's
minibatch-std layer sees one part at a time, so the result depends on the parts, not on which
process computes them. Each process computes the parts k with k mod world_size == rank, gradients
are summed over parts and processes by one explicit all-reduce per update (as NVlabs' StyleGAN3
does; DDP's hooks would also fire inside R1's double backward), and every process applies the
same update, so the weights stay identical everywhere. Hence 2 processes equal 1 process with
``micro_batches=2``, and a run resumes with any number of processes.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common.schedules import cosine_rampdown
from common.settings import SettingError, Settings, setting
from stylegan.conditional import (
    ConditionalDiscriminator,
    ConditionalGenerator,
    clone_frozen,
    freeze_synthesis,
    set_trainable_d_layers,
)
from stylegan.finetune_schema import LOSS_COLUMNS

__all__ = ["FinetuneConfig", "Finetuner", "batch_split", "cpu_state", "ema_beta_for", "lr_factor", "micro_batch_size",
           "step_generator"]


@dataclass(frozen=True)
class FinetuneConfig(Settings):
    """The training settings of step 7b (the script's training flags are declared here)."""

    steps: int = setting(20_000, low=0, help="total training steps (a resumed run continues)")
    batch_size: int = setting(8, concept="batch_size", low=1,
                              help="images per step, all processes together (a multiple of D's minibatch-std "
                                   "group, 4, when >= 4)")
    lr_g: float = setting(0.001, flag="--lr", low=0.0, high=1.0, low_open=True,
                          help="Adam learning rate of G (the mapping keeps genforce's lr_mul 0.01, the new columns "
                               "--cond-lr-mul)")
    lr_d: float = setting(0.001, flag="--lr-d", same_as="lr_g", low=0.0, high=1.0, low_open=True,
                          help="Adam learning rate of D (default: --lr)", show="--lr")
    beta1: float = setting(0.0, flag="", low=0.0, high=1.0, high_open=True, help="Adam beta1")
    beta2: float = setting(0.99, flag="", low=0.0, high=1.0, high_open=True, help="Adam beta2")
    ema_beta: float | None = setting(None, low=0.0, high=1.0, high_open=True,
                                     help="EMA decay per step (default: from --ema-half-life-kimg)")
    ema_half_life_kimg: float = setting(10.0, low=0.0, low_open=True, help="EMA half-life in thousands of images")
    r1_gamma: float = setting(10.0, low=0.0, help="R1 penalty weight on real images")
    lambda_prop: float = setting(1.0, low=0.0, help="weight of the property loss (0 = plain conditional GAN, the "
                                                    "original's recipe)")
    regressor_epochs: int = setting(10, low=0, help="epochs of the property-regression CNN trained before the GAN")
    regressor_batch_size: int = setting(32, flag="", low=1, help="the regressor's batch size")
    checkpoint_every: int = setting(1000, low=1, help="checkpoint every N steps")
    sample_every: int = setting(500, low=1, help="sweep grid every N steps")
    keep_checkpoints: int = setting(2, low=0, help="keep the newest N checkpoints (0 = all); older "
                                                   "checkpoint_*.pt files are deleted")
    sample_values: int = setting(7, flag="", low=2, help="columns of the sweep grids")
    seed: int = setting(0, concept="seed", low=0)
    train_d_layers: str = setting("all", pattern=r"all|\d+", mismatch="must be 'all' or a number",
                                  help="'all', or N: train D's projection and its N layers nearest the output")
    embed_dim: int | None = setting(None, low=1, help="condition embedding size (default: z_dim)")
    embed_hidden: int = setting(64, flag="", low=1, help="hidden width of the condition embedding")
    cond_lr_mul: float = setting(1.0, low=0.0, low_open=True,
                                 help="equalised-lr multiplier of the new condition columns")
    mixed_precision: bool = setting(True, flag="--no-amp", negate=True,
                                    help="no mixed precision on CUDA (always off on CPU)")
    micro_batches: int | None = setting(None, low=1,
                                        help="split each step's --batch-size (the global batch, all processes "
                                             "together) into N parts, each with its own random stream (default: "
                                             "one per process); one process with --micro-batches N trains as N "
                                             "processes under torchrun do")
    decorrelate: float = setting(0.0, low=0.0, high=1.0,
                                 help="share (0-1) of fake conditions drawn property by property, each from its own "
                                      "random real row, so that property pairs vary independently")
    pair_weight: float = setting(0.0, low=0.0,
                                 help="weight of the paired term: each z is rendered again with ONE property's "
                                      "condition changed (to another real row's value), and the change the "
                                      "learned regressor sees in every other property is penalised (squared, in "
                                      "each property's sd units); 0 = off")
    pair_match: bool = setting(False, help="the paired term also asks the regressor's change in the changed "
                                           "property to equal the requested change")
    lr_rampdown: float = setting(0.0, low=0.0, high=1.0,
                                 help="share (0-1) of the final --steps over which both learning rates fall to 0 "
                                      "along a half cosine, so the run ends settled instead of mid-swing; "
                                      "0 = constant rates")

    def check(self) -> None:
        try:
            micro_batch_size(self, self.micro_batches or 1)
        except ValueError as exc:
            raise SettingError(str(exc)) from None


def micro_batch_size(config: FinetuneConfig, parts: int) -> int:
    """Images per part when the global batch is split into ``parts``; ValueError if the split does not fit."""
    if config.batch_size < 1 or config.batch_size % parts:
        raise ValueError(f"batch_size (the global batch, {config.batch_size}) must be a positive multiple of the "
                         f"number of micro-batches / processes ({parts})")
    size = config.batch_size // parts
    if size > 4 and size % 4:
        raise ValueError(f"each micro-batch must hold 1..4 images or a multiple of 4 (D's minibatch-std group); "
                         f"batch_size {config.batch_size} over {parts} part(s) gives {size}")
    return size


def batch_split(config: FinetuneConfig, world_size: int = 1) -> tuple[int, int]:
    """(parts, images per part) of the global batch for ``world_size`` processes; ValueError if it does not fit."""
    parts = config.micro_batches or world_size
    if parts % world_size:
        raise ValueError(f"micro_batches ({parts}) must be a multiple of the number of processes ({world_size})")
    return parts, micro_batch_size(config, parts)


def ema_beta_for(config: FinetuneConfig) -> float:
    """Per-step EMA decay: explicit, or 0.5 ** (batch / half-life in images) (NVlabs' convention)."""
    if config.ema_beta is not None:
        return config.ema_beta
    return 0.5 ** (config.batch_size / (config.ema_half_life_kimg * 1000.0))


def lr_factor(config: FinetuneConfig, step: int) -> float:
    """The learning rates' multiplier at ``step`` (0-based): 1, then a half cosine to 0 over the final
    ``lr_rampdown`` share of ``config.steps`` (NVlabs' projector ramps its rate down the same way)."""
    return cosine_rampdown(step, config.steps, config.lr_rampdown)


def step_generator(seed: int, step: int, stream: int, part: int = 0) -> torch.Generator:
    """The random stream of one part of one step (seeded by seed, step, stream, part): resume needs no RNG state.

    Part 0's stream is the one runs made before the batch could be split (numpy pads a seed with zeros).
    """
    mixed = np.random.SeedSequence([seed, step, stream, part]).generate_state(2, dtype=np.uint64)
    return torch.Generator().manual_seed(int(mixed[0] % (2**63 - 1)))


class Finetuner:
    """The training state (G, G_ema, D, optimisers, scalers) and one ``step()`` of the loop.

    images_u8: [N, R, R, 3] real images; conditions: [N, P] their normalised properties (no NaN).
    property_model: frozen module images_pm1 -> [N, P] (the trained regressor, or a toy function
    in tests), or None (then lambda_prop must be 0). rank, world_size: this process among those
    that train together (a torch.distributed process group must exist when world_size > 1).
    """

    def __init__(self, generator: ConditionalGenerator, discriminator: ConditionalDiscriminator,
                 images_u8: np.ndarray, conditions: np.ndarray, config: FinetuneConfig,
                 property_model: nn.Module | None = None, device: str | torch.device = "cpu",
                 rank: int = 0, world_size: int = 1):
        if len(images_u8) != len(conditions) or len(images_u8) == 0:
            raise ValueError(f"need as many conditions as images (>0), got {len(images_u8)} and {len(conditions)}")
        if np.isnan(conditions).any():
            raise ValueError("conditions must not contain NaN (leave those rows out)")
        if (config.lambda_prop > 0 or config.pair_weight > 0) and property_model is None:
            raise ValueError("lambda_prop > 0 or pair_weight > 0 needs a property model")
        res = generator.resolution
        if images_u8.shape[1:] != (res, res, 3):
            raise ValueError(f"images must be [N, {res}, {res}, 3], got {list(images_u8.shape)}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in 0..{world_size - 1}, got {rank}")
        self.num_parts, self.micro_batch = batch_split(config, world_size)
        self.parts = tuple(range(rank, self.num_parts, world_size))
        self.rank, self.world_size = rank, world_size
        self.config = config
        self.device = torch.device(device)
        self.amp = bool(config.mixed_precision and self.device.type == "cuda")
        self.G = generator.to(self.device)
        freeze_synthesis(self.G)
        self.G_ema = clone_frozen(self.G)
        self.D = discriminator.to(self.device)
        self.d_trained = set_trainable_d_layers(self.D, config.train_d_layers)
        self.images_u8 = torch.from_numpy(np.ascontiguousarray(images_u8))  # CPU; batches move to device
        self.conditions = torch.as_tensor(np.asarray(conditions, dtype=np.float32))
        var = (self.conditions.var(dim=0, unbiased=False) if len(self.conditions) > 1
               else torch.ones(conditions.shape[1]))
        self.prop_weights = (1.0 / var.clamp_min(1e-4)).to(self.device)
        self.property_model = property_model.to(self.device).eval() if property_model is not None else None
        if self.property_model is not None:
            self.property_model.requires_grad_(False)
        self.g_params = [p for p in self.G.parameters() if p.requires_grad]
        self.d_params = [p for p in self.D.parameters() if p.requires_grad]
        betas = (config.beta1, config.beta2)
        self.opt_g = torch.optim.Adam(self.g_params, lr=config.lr_g, betas=betas, eps=1e-8)
        self.opt_d = torch.optim.Adam(self.d_params, lr=config.lr_d, betas=betas, eps=1e-8)
        self.scaler_g = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.scaler_d = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.ema_beta = ema_beta_for(config)
        self.step_count = 0

    # --- pieces -------------------------------------------------------------------------------
    def _real_batch(self, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(self.images_u8), (self.micro_batch,), generator=gen)
        images = self.images_u8[idx].to(self.device).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        return images, self.conditions[idx].to(self.device)

    def _fake_inputs(self, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """z ~ N(0, I) and conditions drawn from the real conditions, independent of the real batch.

        A share ``decorrelate`` of the rows takes each property from its own random real row (the product of
        the marginals): every property then varies independently of the others, as a sweep asks for.
        """
        n, num_props = len(self.conditions), self.conditions.shape[1]
        idx = torch.randint(n, (self.micro_batch,), generator=gen)
        z = torch.randn(self.micro_batch, self.G.z_space_dim, generator=gen)
        conditions = self.conditions[idx]
        if self.config.decorrelate > 0:   # drawn only then: runs without it keep their streams
            rows = torch.randint(n, (self.micro_batch, num_props), generator=gen)
            independent = self.conditions[rows, torch.arange(num_props)]
            chosen = torch.rand(self.micro_batch, generator=gen) < self.config.decorrelate
            conditions = torch.where(chosen[:, None], independent, conditions)
        return z.to(self.device), conditions.to(self.device)

    def _autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.amp)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """The frozen property model's prediction, in fp32 (outside autocast)."""
        with torch.autocast(device_type=self.device.type, enabled=False):
            return self.property_model(images.float())

    def property_loss(self, images: torch.Tensor, conditions: torch.Tensor,
                      pred: torch.Tensor | None = None) -> torch.Tensor:
        """Variance-weighted MSE between the frozen model's prediction and the requested condition."""
        pred = self.predict(images) if pred is None else pred
        return ((pred - conditions).square() * self.prop_weights).mean()

    def paired_conditions(self, conditions: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(c', changed): each row of ``conditions`` with ONE random property set to another random real row's
        value (so c' stays inside the real marginals); ``changed`` holds that property's index per row."""
        rows, num_props = conditions.shape
        changed = torch.randint(num_props, (rows,), generator=gen)
        donors = torch.randint(len(self.conditions), (rows,), generator=gen)
        paired = conditions.clone()
        paired[torch.arange(rows), changed.to(conditions.device)] = self.conditions[donors, changed].to(conditions)
        return paired, changed.to(conditions.device)

    def pair_loss(self, pred: torch.Tensor, pred_paired: torch.Tensor, conditions: torch.Tensor,
                  paired: torch.Tensor, changed: torch.Tensor) -> torch.Tensor:
        """What a sweep asks: between a render with c and one with c' (one property p changed), the regressor's
        change in every other property q != p, squared in sd units, averaged over the q (and, with
        ``pair_match``, plus the squared miss of p's change against the requested change)."""
        rows, num_props = pred.shape
        weighted = (pred_paired - pred).square() * self.prop_weights
        others = torch.ones_like(weighted).scatter_(1, changed[:, None], 0.0)
        loss = (weighted * others).sum(dim=1) / max(num_props - 1, 1)
        if self.config.pair_match:
            index = torch.arange(rows, device=pred.device)
            seen = pred_paired[index, changed] - pred[index, changed]
            asked = paired[index, changed] - conditions[index, changed]
            loss = loss + (seen - asked).square() * self.prop_weights[changed]
        return loss.mean()

    # --- one step -----------------------------------------------------------------------------
    def _d_part(self, gen: torch.Generator) -> torch.Tensor:
        """D's loss on one part, backward (scaled to the global mean); returns its logged values."""
        cfg = self.config
        real, c_real = self._real_batch(gen)
        z, c_fake = self._fake_inputs(gen)
        with torch.no_grad(), self._autocast():
            fake = self.G(z, c_fake)["image"]
        real_in = real.detach().requires_grad_(cfg.r1_gamma > 0)
        with self._autocast():
            d_real = self.D(real_in, c_real).float()
            d_fake = self.D(fake.detach(), c_fake).float()
            loss_real = F.softplus(-d_real).mean()
            loss_fake = F.softplus(d_fake).mean()
        r1 = torch.zeros((), device=self.device)
        if cfg.r1_gamma > 0:
            d_r1 = d_real
            if self.amp:  # the gradient penalty in fp32: fp16 input gradients underflow
                d_r1 = self.D(real_in, c_real).float()
            (grad,) = torch.autograd.grad(d_r1.sum(), real_in, create_graph=True)
            r1 = grad.square().sum(dim=(1, 2, 3)).mean()
        loss_d = loss_real + loss_fake + r1 * (cfg.r1_gamma / 2.0)
        self.scaler_d.scale(self._share(loss_d)).backward()
        return torch.stack([loss_d, loss_real, loss_fake, r1, d_real.mean(), d_fake.mean()]).detach()

    def _g_part(self, gen: torch.Generator) -> torch.Tensor:
        """G's loss on one part, backward (scaled to the global mean); returns its logged values."""
        z, c_fake = self._fake_inputs(gen)
        with self._autocast():
            images = self.G(z, c_fake)["image"]
            loss_adv = F.softplus(-self.D(images, c_fake).float()).mean()
        zero = torch.zeros((), device=self.device)
        pred = self.predict(images) if self.property_model is not None else None
        loss_prop = self.property_loss(images, c_fake, pred) if pred is not None else zero
        loss_g = loss_adv + self.config.lambda_prop * loss_prop
        if self.config.pair_weight > 0:   # drawn only then: runs without it keep their streams
            paired, changed = self.paired_conditions(c_fake, gen)
            with self._autocast():
                images_paired = self.G(z, paired)["image"]
            loss_g = loss_g + self.config.pair_weight * self.pair_loss(pred, self.predict(images_paired), c_fake,
                                                                       paired, changed)
        self.scaler_g.scale(self._share(loss_g)).backward()
        return torch.stack([loss_g, loss_adv, loss_prop]).detach()

    def _share(self, loss: torch.Tensor) -> torch.Tensor:
        """One part's loss as its share of the global mean (summed over parts and processes)."""
        return loss if self.num_parts == 1 else loss / self.num_parts

    def _sum_over_processes(self, params: list[torch.nn.Parameter]) -> None:
        """Gradients summed over every process (one all-reduce); each process then applies the same update."""
        if self.world_size == 1:
            return
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.flatten() for p in params])
        torch.distributed.all_reduce(flat)
        for p, g in zip(params, flat.split([p.numel() for p in params])):
            p.grad.copy_(g.view_as(p))

    def _mean_values(self, total: torch.Tensor) -> torch.Tensor:
        """The logged values as means over every part of the global batch (equal on every process)."""
        if self.world_size > 1:
            total = total.clone()
            torch.distributed.all_reduce(total)
        return total if self.num_parts == 1 else total / self.num_parts

    def step(self) -> dict[str, float]:
        """One D update then one G update and the EMA; returns the losses (floats, global-batch means)."""
        cfg = self.config
        step = self.step_count
        start = time.perf_counter()
        factor = lr_factor(cfg, step)
        for opt, base in ((self.opt_d, cfg.lr_d), (self.opt_g, cfg.lr_g)):
            for group in opt.param_groups:
                group["lr"] = base * factor

        # discriminator
        for p in self.d_params:
            p.requires_grad_(True)
        self.opt_d.zero_grad(set_to_none=True)
        d_values = sum(self._d_part(step_generator(cfg.seed, step, 0, part)) for part in self.parts)
        self._sum_over_processes(self.d_params)
        self.scaler_d.step(self.opt_d)
        self.scaler_d.update()

        # generator
        for p in self.d_params:
            p.requires_grad_(False)
        self.opt_g.zero_grad(set_to_none=True)
        g_values = sum(self._g_part(step_generator(cfg.seed, step, 1, part)) for part in self.parts)
        self._sum_over_processes(self.g_params)
        self.scaler_g.step(self.opt_g)
        self.scaler_g.update()
        for p in self.d_params:
            p.requires_grad_(True)
        self.update_ema()
        self.step_count += 1
        values = self._mean_values(torch.cat([d_values, g_values])).tolist()
        names = ("loss_d", "loss_d_real", "loss_d_fake", "r1", "d_real", "d_fake", "loss_g", "loss_g_adv", "loss_prop")
        row: dict[str, float] = {"step": self.step_count}
        row.update({k: values[names.index(k)] for k in LOSS_COLUMNS})
        row["seconds"] = time.perf_counter() - start
        return row

    @torch.no_grad()
    def update_ema(self) -> None:
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
            if p.requires_grad:
                p_ema.lerp_(p, 1.0 - self.ema_beta)
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
            b_ema.copy_(b)

    # --- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step_count,
            "generator": cpu_state(self.G.state_dict()), "generator_ema": cpu_state(self.G_ema.state_dict()),
            "discriminator": cpu_state(self.D.state_dict()),
            "optimizer_g": self.opt_g.state_dict(), "optimizer_d": self.opt_d.state_dict(),
            "scaler_g": self.scaler_g.state_dict(), "scaler_d": self.scaler_d.state_dict(),
            "rng": _rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.G.load_state_dict(state["generator"], strict=True)
        self.G_ema.load_state_dict(state["generator_ema"], strict=True)
        self.D.load_state_dict(state["discriminator"], strict=True)
        self.opt_g.load_state_dict(state["optimizer_g"])
        self.opt_d.load_state_dict(state["optimizer_d"])
        if state.get("scaler_g"):
            self.scaler_g.load_state_dict(state["scaler_g"])
        if state.get("scaler_d"):
            self.scaler_d.load_state_dict(state["scaler_d"])
        self.step_count = int(state["step"])
        if state.get("rng"):
            _set_rng_state(state["rng"])


def cpu_state(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in sd.items()}


def _rng_state() -> dict[str, Any]:
    """Global RNG states as plain containers (weights_only-loadable)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(), "numpy_keys": torch.from_numpy(keys.astype(np.int64)),
        "numpy_pos": int(pos), "numpy_has_gauss": int(has_gauss), "numpy_cached": float(cached),
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"],
                         state["numpy_has_gauss"], state["numpy_cached"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
