"""Step 7: latent-conditioned fine-tuning of the pretrained StyleGAN, with exact resume.

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
* EMA generator (half-life in images, as NVlabs); mixed precision (fp16 autocast + GradScaler)
  on CUDA only.
* Every random draw of step s comes from a generator seeded by (seed, s), so a run resumed from a
  checkpoint repeats the uninterrupted run's losses exactly (global RNG states are saved too).
"""
from __future__ import annotations

import json
import logging
import math
import random
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from common.io import atomic_save_image, atomic_torch_save, atomic_write_csv, atomic_write_json
from common.paths import PROPERTY_NAMES
from stylegan.conditional import (
    FINETUNE_FORMAT_VERSION, ConditionalDiscriminator, ConditionalGenerator, build_conditional_discriminator,
    build_conditional_generator, clone_frozen, freeze_synthesis, property_ranges, set_trainable_d_layers,
)

logger = logging.getLogger(__name__)

__all__ = [
    "FinetuneConfig", "Finetuner", "FinetuneSummary", "FinetuneDataError", "run_finetune", "load_training_data",
    "find_latest_checkpoint", "sweep_grid_image", "TRAIN_LOG_COLUMNS", "ema_beta_for", "make_generate_fn",
]

TRAIN_LOG_COLUMNS: tuple[str, ...] = (
    "step", "loss_d", "loss_d_real", "loss_d_fake", "r1", "loss_g", "loss_g_adv", "loss_prop",
    "d_real", "d_fake", "seconds",
)
LOSS_COLUMNS = TRAIN_LOG_COLUMNS[1:-1]
CHECKPOINT_DIR = "checkpoints"
SAMPLES_DIR = "samples"
TRAIN_LOG = "train_log.csv"
CONFIG_JSON = "finetune_config.json"
REGRESSOR_JSON = "property_regressor_metrics.json"
_CHECKPOINT_RE = re.compile(r"checkpoint_(\d+)\.pt$")
# settings that may change when a run is resumed (everything else must match the checkpoint)
_RESUMABLE_CHANGES = ("steps", "checkpoint_every", "sample_every", "keep_checkpoints", "sample_values")


class FinetuneDataError(RuntimeError):
    """The training data is missing or unusable; the message says what to do."""


@dataclass(frozen=True)
class FinetuneConfig:
    steps: int = 20_000
    batch_size: int = 8                # must be a multiple of D's minibatch-std group (4) when >= 4
    lr_g: float = 0.001                # Adam; the mapping keeps genforce's lr_mul 0.01, the new columns cond_lr_mul
    lr_d: float = 0.001
    beta1: float = 0.0
    beta2: float = 0.99
    ema_beta: float | None = None      # None: derived from ema_half_life_kimg and the batch size
    ema_half_life_kimg: float = 10.0
    r1_gamma: float = 10.0
    lambda_prop: float = 1.0           # 0 = plain GAN (the original's recipe)
    regressor_epochs: int = 10
    regressor_batch_size: int = 32
    checkpoint_every: int = 1000
    sample_every: int = 500
    keep_checkpoints: int = 2          # older checkpoint_*.pt files are deleted
    sample_values: int = 7             # columns of the sweep grids
    seed: int = 0
    which: str = "auto"
    train_d_layers: str = "all"        # 'all' or N (projection + the N D layers nearest the output)
    embed_dim: int | None = None       # None = z_dim
    embed_hidden: int = 64
    cond_lr_mul: float = 1.0
    mixed_precision: bool = True       # CUDA only; always off on CPU

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        if self.batch_size < 1 or (self.batch_size > 4 and self.batch_size % 4):
            raise ValueError("batch_size must be 1..4 or a multiple of 4 (D's minibatch-std group), "
                             f"got {self.batch_size}")
        for name in ("lr_g", "lr_d", "checkpoint_every", "sample_every", "ema_half_life_kimg"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.r1_gamma < 0 or self.lambda_prop < 0:
            raise ValueError(f"r1_gamma and lambda_prop must be >= 0, got {self.r1_gamma}, {self.lambda_prop}")
        if self.ema_beta is not None and not 0.0 <= self.ema_beta < 1.0:
            raise ValueError(f"ema_beta must be in [0, 1), got {self.ema_beta}")
        if self.train_d_layers != "all" and not str(self.train_d_layers).isdigit():
            raise ValueError(f"train_d_layers must be 'all' or a number, got {self.train_d_layers!r}")
        if self.sample_values < 2:
            raise ValueError(f"sample_values must be >= 2, got {self.sample_values}")


def ema_beta_for(config: FinetuneConfig) -> float:
    """Per-step EMA decay: explicit, or 0.5 ** (batch / half-life in images) (NVlabs' convention)."""
    if config.ema_beta is not None:
        return config.ema_beta
    return 0.5 ** (config.batch_size / (config.ema_half_life_kimg * 1000.0))


def _step_generator(seed: int, step: int, stream: int) -> torch.Generator:
    """The random stream of one step (seeded by seed, step, stream): resume needs no RNG state."""
    mixed = np.random.SeedSequence([seed, step, stream]).generate_state(2, dtype=np.uint64)
    return torch.Generator().manual_seed(int(mixed[0] % (2**63 - 1)))


class Finetuner:
    """The training state (G, G_ema, D, optimisers, scalers) and one ``step()`` of the loop.

    images_u8: [N, R, R, 3] real images; conditions: [N, P] their normalised properties (no NaN).
    property_model: frozen module images_pm1 -> [N, P] (the trained regressor, or a toy function
    in tests), or None (then lambda_prop must be 0).
    """

    def __init__(self, generator: ConditionalGenerator, discriminator: ConditionalDiscriminator,
                 images_u8: np.ndarray, conditions: np.ndarray, config: FinetuneConfig,
                 property_model: nn.Module | None = None, device: str | torch.device = "cpu"):
        if len(images_u8) != len(conditions) or len(images_u8) == 0:
            raise ValueError(f"need as many conditions as images (>0), got {len(images_u8)} and {len(conditions)}")
        if np.isnan(conditions).any():
            raise ValueError("conditions must not contain NaN (leave those rows out)")
        if config.lambda_prop > 0 and property_model is None:
            raise ValueError("lambda_prop > 0 needs a property model")
        res = generator.resolution
        if images_u8.shape[1:] != (res, res, 3):
            raise ValueError(f"images must be [N, {res}, {res}, 3], got {list(images_u8.shape)}")
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
        idx = torch.randint(len(self.images_u8), (self.config.batch_size,), generator=gen)
        images = self.images_u8[idx].to(self.device).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        return images, self.conditions[idx].to(self.device)

    def _fake_inputs(self, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """z ~ N(0, I) and conditions drawn from the real conditions, independent of the real batch."""
        idx = torch.randint(len(self.conditions), (self.config.batch_size,), generator=gen)
        z = torch.randn(self.config.batch_size, self.G.z_space_dim, generator=gen)
        return z.to(self.device), self.conditions[idx].to(self.device)

    def _autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.amp)

    def property_loss(self, images: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
        """Variance-weighted MSE between the frozen model's prediction and the requested condition."""
        with torch.autocast(device_type=self.device.type, enabled=False):
            pred = self.property_model(images.float())
        return ((pred - conditions).square() * self.prop_weights).mean()

    # --- one step -----------------------------------------------------------------------------
    def step(self) -> dict[str, float]:
        """One D update then one G update and the EMA; returns the losses (floats)."""
        cfg = self.config
        step = self.step_count
        start = time.perf_counter()
        gen_d, gen_g = _step_generator(cfg.seed, step, 0), _step_generator(cfg.seed, step, 1)

        # discriminator
        real, c_real = self._real_batch(gen_d)
        z, c_fake = self._fake_inputs(gen_d)
        for p in self.d_params:
            p.requires_grad_(True)
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
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler_d.scale(loss_d).backward()
        self.scaler_d.step(self.opt_d)
        self.scaler_d.update()

        # generator
        for p in self.d_params:
            p.requires_grad_(False)
        z, c_fake = self._fake_inputs(gen_g)
        with self._autocast():
            images = self.G(z, c_fake)["image"]
            loss_adv = F.softplus(-self.D(images, c_fake).float()).mean()
        loss_prop = (self.property_loss(images, c_fake) if self.property_model is not None
                     else torch.zeros((), device=self.device))
        loss_g = loss_adv + cfg.lambda_prop * loss_prop
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler_g.scale(loss_g).backward()
        self.scaler_g.step(self.opt_g)
        self.scaler_g.update()
        for p in self.d_params:
            p.requires_grad_(True)
        self.update_ema()
        self.step_count += 1
        values = {"loss_d": loss_d, "loss_d_real": loss_real, "loss_d_fake": loss_fake, "r1": r1, "loss_g": loss_g,
                  "loss_g_adv": loss_adv, "loss_prop": loss_prop, "d_real": d_real.mean(), "d_fake": d_fake.mean()}
        row = {"step": self.step_count}
        row.update({k: float(v.detach()) for k, v in values.items()})
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
            "generator": _cpu(self.G.state_dict()), "generator_ema": _cpu(self.G_ema.state_dict()),
            "discriminator": _cpu(self.D.state_dict()),
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


def _cpu(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
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


# ----------------------------------------------------------------------------------------------
# data


@dataclass
class TrainingData:
    names: list[str]
    images_u8: np.ndarray          # [N, R, R, 3]
    conditions: np.ndarray         # [N, P] float32
    num_rows: int                  # rows in all_scores.csv
    num_nan: int                   # left out: a NaN score
    num_missing_image: int         # left out: no image file (or unreadable)
    stats: dict[str, dict[str, float]] = field(default_factory=dict)


def load_training_data(images_dir: Path, scores_csv: Path, resolution: int, limit: int | None = None) -> TrainingData:
    """Filtered images joined with all_scores.csv; NaN rows and rows without an image left out and counted."""
    from PIL import Image

    from common.images import ImageReadError, load_rgb
    from common.io import read_csv_checked

    images_dir, scores_csv = Path(images_dir), Path(scores_csv)
    if not images_dir.is_dir():
        raise FinetuneDataError(f"image folder not found: {images_dir} (run steps 1-4 first)")
    if not scores_csv.is_file():
        raise FinetuneDataError(f"scores not found: {scores_csv} (run steps 5-6 first)")
    frame = read_csv_checked(scores_csv, ["img_name", *PROPERTY_NAMES])
    values = frame[list(PROPERTY_NAMES)].apply(lambda col: np.asarray(col, dtype=np.float64)).to_numpy()
    nan_rows = np.isnan(values).any(axis=1)
    names, images, conds, missing = [], [], [], 0
    for name, row, bad in zip(frame["img_name"].astype(str), values, nan_rows):
        if bad:
            continue
        if limit is not None and len(names) >= limit:
            break
        try:
            image = load_rgb(images_dir / name)
        except ImageReadError as exc:
            logger.warning("left out %s: %s", name, exc)
            missing += 1
            continue
        if image.shape[:2] != (resolution, resolution):
            image = np.asarray(Image.fromarray(image).resize((resolution, resolution), Image.BICUBIC))
        names.append(name)
        images.append(image)
        conds.append(row)
    num_nan = int(nan_rows.sum())
    if not names:
        raise FinetuneDataError(
            f"no training image left: {len(frame)} rows in {scores_csv}, {num_nan} with a NaN score, "
            f"{missing} without a readable image in {images_dir}. Check that step 6 scored the filtered images.")
    conditions = np.asarray(conds, dtype=np.float32)
    stats = {name: {"min": float(conditions[:, j].min()), "max": float(conditions[:, j].max()),
                    "median": float(np.median(conditions[:, j])), "mean": float(conditions[:, j].mean()),
                    "std": float(conditions[:, j].std())} for j, name in enumerate(PROPERTY_NAMES)}
    return TrainingData(names, np.stack(images), conditions, len(frame), num_nan, missing, stats)


# ----------------------------------------------------------------------------------------------
# checkpoints, samples, the run


def find_latest_checkpoint(folder: Path | str) -> Path | None:
    """The checkpoint_NNNNNN.pt with the highest step in ``folder`` (or its checkpoints/ subfolder)."""
    folder = Path(folder)
    candidates = []
    for sub in (folder, folder / CHECKPOINT_DIR):
        if sub.is_dir():
            candidates += [(int(m.group(1)), p) for p in sub.iterdir() if (m := _CHECKPOINT_RE.fullmatch(p.name))]
    return max(candidates)[1] if candidates else None


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
                     title: str | None = None):
    """Contact sheet: one row per (z, property) sweep; z [K, z_dim]."""
    from common.contact_sheet import make_contact_sheet
    from stylegan.networks import postprocess_uint8

    device = next(generator.parameters()).device
    images, captions = [], []
    for k in range(z.shape[0]):
        for prop in properties:
            cond = sweep_conditions(ranges, centre, num_values, prop).to(device)
            out = generator(z[k:k + 1].to(device).repeat(num_values, 1), cond)["image"]
            images += list(postprocess_uint8(out.float()))
            captions += [f"{prop[:6]}={v:.2f}" for v in cond[:, PROPERTY_NAMES.index(prop)].tolist()]
    return make_contact_sheet(images, captions, ncols=num_values, thumb=thumb, title=title)


@dataclass(frozen=True)
class FinetuneSummary:
    out_dir: Path
    checkpoint: Path | None
    start_step: int
    end_step: int
    num_train: int
    num_nan: int
    num_missing: int
    checkpoint_key: str
    seconds: float
    last_losses: dict[str, float]

    def line(self) -> str:
        losses = " ".join(f"{k}={self.last_losses[k]:.3f}" for k in ("loss_d", "loss_g_adv", "loss_prop")
                          if k in self.last_losses)
        resumed = f" (resumed at {self.start_step})" if self.start_step else ""
        return (f"step 7: fine-tuned steps {self.start_step}->{self.end_step}{resumed} on {self.num_train} images "
                f"({self.num_nan} rows with NaN scores and {self.num_missing} without an image left out), "
                f"base entry '{self.checkpoint_key}', checkpoint {self.checkpoint}, {losses}, in {self.seconds:.1f}s")


def _check_resume_config(saved: dict[str, Any], config: FinetuneConfig, path: Path) -> None:
    now = asdict(config)
    differing = {k: (saved.get(k), v) for k, v in now.items() if k not in _RESUMABLE_CHANGES and saved.get(k) != v}
    if differing:
        details = ", ".join(f"{k}: checkpoint {a!r}, now {b!r}" for k, (a, b) in differing.items())
        raise FinetuneDataError(f"cannot resume from {path}: settings differ ({details}). "
                                "Use the same settings, another --out, or --overwrite to start again.")


def _read_log(path: Path, upto: int) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    import pandas as pd

    frame = pd.read_csv(path)
    frame = frame[frame["step"] <= upto]
    return frame.to_dict("records")


def run_finetune(base_checkpoint: Path | str, images_dir: Path | str, scores_csv: Path | str,
                 normalization_json: Path | str, out_dir: Path | str, config: FinetuneConfig = FinetuneConfig(),
                 device: str | torch.device = "cpu", overwrite: bool = False, progress: bool = True,
                 limit: int | None = None, property_model: nn.Module | None = None) -> FinetuneSummary:
    """The whole step: data, regressor, conditional G/D, training with checkpoints, log and grids.

    Resumes from the newest checkpoint in ``out_dir/checkpoints`` unless ``overwrite``.
    ``property_model`` replaces the trained regressor (tests, experiments); normally None.
    """
    from tqdm import tqdm

    from stylegan.checkpoint import load_discriminator, load_generator
    from stylegan.property_regressor import PropertyRegressor, RegressorConfig, train_property_regressor

    timer_start = time.perf_counter()
    device = torch.device(device)
    out_dir = Path(out_dir)
    normalization_json = Path(normalization_json)
    if not normalization_json.is_file():
        raise FinetuneDataError(f"normalization not found: {normalization_json} (run step 6 first)")
    normalization = json.loads(normalization_json.read_text(encoding="utf-8"))
    base_g = load_generator(base_checkpoint, which=config.which)
    base_d = load_discriminator(base_checkpoint)
    data = load_training_data(Path(images_dir), Path(scores_csv), base_g.resolution, limit)
    logger.info("training data: %d images (%d rows with NaN scores, %d without an image left out)",
                len(data.names), data.num_nan, data.num_missing_image)

    generator = build_conditional_generator(base_g, config.embed_dim, config.embed_hidden, config.cond_lr_mul,
                                            seed=config.seed)
    discriminator = build_conditional_discriminator(base_d, seed=config.seed)
    run_config = {
        "format_version": FINETUNE_FORMAT_VERSION,
        "property_names": list(PROPERTY_NAMES),
        "generator": generator.cond_config, "discriminator": discriminator.cond_config,
        "embed_dim": generator.embed_dim, "normalization": normalization, "condition_stats": data.stats,
        "finetune": asdict(config), "base_checkpoint": str(base_checkpoint), "base_entry": base_g.checkpoint_key,
        "num_train_images": len(data.names),
    }
    run_config["property_ranges"] = {k: list(v) for k, v in property_ranges(run_config).items()}

    ckpt_dir = out_dir / CHECKPOINT_DIR
    latest = None if overwrite else find_latest_checkpoint(ckpt_dir)
    state = None
    if latest is not None:
        state = torch.load(latest, map_location="cpu", weights_only=True)
        _check_resume_config(state["config"]["finetune"], config, latest)
    elif overwrite and ckpt_dir.is_dir():
        for old in ckpt_dir.glob("checkpoint_*.pt"):
            old.unlink()

    regressor_state, regressor_metrics, regressor_cfg = None, None, None
    if property_model is None and config.lambda_prop > 0:
        if state is not None and state.get("regressor") is not None:
            regressor_cfg = RegressorConfig(**state["config"]["regressor"])
            property_model = PropertyRegressor(regressor_cfg)
            property_model.load_state_dict(state["regressor"])
            regressor_metrics = state.get("regressor_metrics")
        else:
            regressor_cfg = RegressorConfig()
            property_model, regressor_metrics = train_property_regressor(
                data.images_u8, data.conditions, epochs=config.regressor_epochs,
                batch_size=config.regressor_batch_size, seed=config.seed, device=device, config=regressor_cfg)
            atomic_write_json(out_dir / REGRESSOR_JSON, regressor_metrics)
        regressor_state = _cpu(property_model.state_dict())
    run_config["regressor"] = asdict(regressor_cfg) if regressor_cfg is not None else None
    run_config["regressor_metrics"] = regressor_metrics

    trainer = Finetuner(generator, discriminator, data.images_u8, data.conditions, config, property_model, device)
    log_rows: list[dict[str, float]] = []
    if state is not None:
        trainer.load_state_dict(state)
        log_rows = _read_log(out_dir / TRAIN_LOG, trainer.step_count)
        logger.info("resumed from %s at step %d", latest, trainer.step_count)
    start_step = trainer.step_count
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / CONFIG_JSON, run_config)

    ranges = {k: tuple(v) for k, v in run_config["property_ranges"].items()}
    centre = {k: v["median"] for k, v in data.stats.items()}
    sample_z = torch.from_numpy(np.random.default_rng([config.seed, 7]).standard_normal(
        (1, generator.z_space_dim)).astype(np.float32))

    def save_checkpoint() -> Path:
        payload = trainer.state_dict()
        payload.update(format_version=FINETUNE_FORMAT_VERSION, config=run_config, regressor=regressor_state,
                       regressor_metrics=regressor_metrics)
        path = atomic_torch_save(ckpt_dir / f"checkpoint_{trainer.step_count:06d}.pt", payload)
        atomic_write_csv(out_dir / TRAIN_LOG, _log_frame(log_rows), TRAIN_LOG_COLUMNS)
        old = sorted(ckpt_dir.glob("checkpoint_*.pt"))[:-config.keep_checkpoints] if config.keep_checkpoints > 0 else []
        for stale in old:
            stale.unlink()
        return path

    def save_samples() -> None:
        sheet = sweep_grid_image(trainer.G_ema, sample_z, ranges, centre, config.sample_values,
                                 title=f"step {trainer.step_count}: rows = property sweeps (EMA G)")
        atomic_save_image(out_dir / SAMPLES_DIR / f"step_{trainer.step_count:06d}.png", sheet)

    checkpoint_path = latest
    if start_step == 0 and config.steps > 0:
        save_samples()  # step 0: must equal the pretrained generator for every condition
    bar = tqdm(total=config.steps, initial=min(start_step, config.steps), unit="step", desc="finetune",
               disable=not progress)
    last: dict[str, float] = log_rows[-1] if log_rows else {}
    while trainer.step_count < config.steps:
        last = trainer.step()
        log_rows.append(last)
        if not all(math.isfinite(last[k]) for k in LOSS_COLUMNS):
            checkpoint_path = save_checkpoint()
            raise FloatingPointError(f"non-finite loss at step {trainer.step_count}: {last}; "
                                     f"last state saved to {checkpoint_path}")
        bar.update(1)
        bar.set_postfix(d=f"{last['loss_d']:.3f}", g=f"{last['loss_g_adv']:.3f}", prop=f"{last['loss_prop']:.4f}")
        if trainer.step_count % config.sample_every == 0 or trainer.step_count == config.steps:
            save_samples()
        if trainer.step_count % config.checkpoint_every == 0 or trainer.step_count == config.steps:
            checkpoint_path = save_checkpoint()
    bar.close()
    if checkpoint_path is None or (start_step == trainer.step_count and state is None):
        checkpoint_path = save_checkpoint()  # steps == 0: still leave a loadable (step-0) checkpoint
    return FinetuneSummary(out_dir, checkpoint_path, start_step, trainer.step_count, len(data.names), data.num_nan,
                           data.num_missing_image, base_g.checkpoint_key, time.perf_counter() - timer_start, last)


def _log_frame(rows: list[dict[str, float]]):
    import pandas as pd

    return pd.DataFrame(rows, columns=list(TRAIN_LOG_COLUMNS))


def make_generate_fn(generator: ConditionalGenerator,
                     batch_size: int = 16) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """(z [N, z_dim], conditions [N, P]) -> uint8 NHWC images, batched, no grad (steps 8-9)."""
    from stylegan.networks import postprocess_uint8

    device = next(generator.parameters()).device

    @torch.inference_mode()
    def generate(z: np.ndarray, conditions: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(z), batch_size):
            zb = torch.as_tensor(np.array(z[i:i + batch_size], dtype=np.float32), device=device)
            cb = torch.as_tensor(np.array(conditions[i:i + batch_size], dtype=np.float32), device=device)
            out.append(postprocess_uint8(generator(zb, cb)["image"].float()))
        return np.concatenate(out) if out else np.zeros((0, generator.resolution, generator.resolution, 3), np.uint8)

    return generate
