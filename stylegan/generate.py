"""Step 1: reproducible, resumable, batched image generation with a genforce StyleGAN.

* Eval mode, no style mixing, stored noise: the original generated in train mode by mistake,
  so 90% of its images were style-mixed.
* Image i's z comes from ``numpy.random.default_rng([seed, i])`` alone (the NVlabs habit), so
  an image is the same whatever the batch size and any single image can be regenerated.
* Every file is written atomically; a re-run skips images that exist, so a killed run, re-run,
  ends with exactly the files an uninterrupted run makes.
* Encoding and writing happen in a thread pool while the device generates the next batch.
"""
from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from common.io import atomic_save_image, atomic_save_npy, atomic_write_csv, atomic_write_json, clean_stale_temp_files
from stylegan.checkpoint import load_generator
from stylegan.networks import StyleGANGenerator, postprocess_uint8

logger = logging.getLogger(__name__)

GENERATED_CSV_COLUMNS: tuple[str, ...] = (
    "img_name", "index", "seed", "truncation_psi", "truncation_layers", "checkpoint_key",
)
FORMATS_ALLOWED = ("jpg", "png")
MANIFEST_NAME = "generation.json"
LATENTS_NAME = "latents.npy"
CSV_NAME = "generated.csv"


class GenerationConflictError(RuntimeError):
    """The output folder holds images made with other settings; mixing them would be silent garbage."""


@dataclass(frozen=True)
class GenerateConfig:
    num: int = 10_000
    batch_size: int = 16
    seed: int = 0
    trunc_psi: float = 1.0
    trunc_layers: int = 0
    image_format: str = "jpg"
    jpeg_quality: int = 95  # the original's quality
    which: str = "auto"

    def __post_init__(self) -> None:
        if self.num < 0:
            raise ValueError(f"num must be >= 0, got {self.num}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.image_format not in FORMATS_ALLOWED:
            raise ValueError(f"image_format must be one of {FORMATS_ALLOWED}, got {self.image_format!r}")
        if not 0.0 <= self.trunc_psi <= 1.0:
            raise ValueError(f"trunc_psi must be in [0, 1], got {self.trunc_psi}")
        if self.trunc_layers < 0:
            raise ValueError(f"trunc_layers must be >= 0, got {self.trunc_layers}")


@dataclass(frozen=True)
class GenerateSummary:
    out_dir: Path
    num: int
    written: int
    skipped: int
    checkpoint_key: str
    seconds: float

    def line(self) -> str:
        rate = self.written / self.seconds if self.seconds > 0 and self.written else 0.0
        return (f"step 1: {self.num} images in {self.out_dir} ({self.written} generated, {self.skipped} already there) "
                f"from generator entry '{self.checkpoint_key}' in {self.seconds:.1f}s ({rate:.1f} img/s)")


def image_name(index: int, image_format: str) -> str:
    return f"{index:06d}.{image_format}"


def z_for(seed: int, index: int, z_dim: int) -> np.ndarray:
    """The latent of image ``index``: depends on (seed, index) only. float32 [z_dim]."""
    return np.random.default_rng([seed, index]).standard_normal(z_dim, dtype=np.float32)


def latents_for(seed: int, indices, z_dim: int) -> np.ndarray:
    """float32 [len(indices), z_dim], row k = z_for(seed, indices[k])."""
    indices = list(indices)
    out = np.empty((len(indices), z_dim), dtype=np.float32)
    for row, index in enumerate(indices):
        out[row] = z_for(seed, index, z_dim)
    return out


@torch.inference_mode()
def synthesize_uint8(generator: StyleGANGenerator, z: np.ndarray | torch.Tensor, trunc_psi: float = 1.0,
                     trunc_layers: int = 0, label: torch.Tensor | None = None) -> np.ndarray:
    """z [N, z_dim] -> uint8 NHWC RGB images, eval-mode generator with stored noise."""
    device = next(generator.parameters()).device
    z = torch.as_tensor(z, dtype=torch.float32).to(device)
    out = generator(z, label=label, trunc_psi=trunc_psi, trunc_layers=trunc_layers, randomize_noise=False)
    return postprocess_uint8(out["image"])


def _manifest(config: GenerateConfig, generator: StyleGANGenerator) -> dict:
    return {
        "seed": config.seed, "trunc_psi": config.trunc_psi, "trunc_layers": config.trunc_layers,
        "image_format": config.image_format, "jpeg_quality": config.jpeg_quality,
        "checkpoint_key": generator.checkpoint_key, "resolution": generator.resolution,
        "z_space_dim": generator.z_space_dim,
    }


def _check_manifest(out_dir: Path, manifest: dict, overwrite: bool) -> None:
    path = out_dir / MANIFEST_NAME
    if not path.exists() or overwrite:
        return
    import json

    previous = json.loads(path.read_text())
    differing = {k: (previous.get(k), v) for k, v in manifest.items() if previous.get(k) != v}
    if differing:
        details = ", ".join(f"{k}: folder has {a!r}, now {b!r}" for k, (a, b) in differing.items())
        raise GenerationConflictError(
            f"{out_dir} already holds images generated with other settings ({details}). "
            "Use another --out, or --overwrite to regenerate every image.")


def run_generate(checkpoint: Path | str, out_dir: Path | str, config: GenerateConfig = GenerateConfig(),
                 device: str | torch.device = "cpu", overwrite: bool = False, progress: bool = True,
                 writer_threads: int = 4) -> GenerateSummary:
    """Generate ``config.num`` images into ``out_dir`` (resumable), plus latents.npy and generated.csv."""
    import time

    start = time.perf_counter()
    out_dir = Path(out_dir)
    generator = load_generator(checkpoint, which=config.which, device=device)
    manifest = _manifest(config, generator)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_manifest(out_dir, manifest, overwrite)
    clean_stale_temp_files(out_dir)
    atomic_write_json(out_dir / MANIFEST_NAME, manifest)

    names = [image_name(i, config.image_format) for i in range(config.num)]
    todo = [i for i in range(config.num) if overwrite or not (out_dir / names[i]).exists()]
    skipped = config.num - len(todo)
    bar = tqdm(total=config.num, initial=skipped, unit="img", desc="generate", disable=not progress)
    pending: deque[Future] = deque()
    max_pending = max(2 * config.batch_size, 8)
    with ThreadPoolExecutor(max_workers=writer_threads) as pool:
        for first in range(0, len(todo), config.batch_size):
            batch = todo[first:first + config.batch_size]
            images = synthesize_uint8(generator, latents_for(config.seed, batch, generator.z_space_dim),
                                      config.trunc_psi, config.trunc_layers)
            for index, image in zip(batch, images):
                pending.append(pool.submit(atomic_save_image, out_dir / names[index], image, config.jpeg_quality))
            while len(pending) > max_pending:  # bounded memory: never more than ~2 batches in flight
                pending.popleft().result()
                bar.update(1)
        while pending:
            pending.popleft().result()
            bar.update(1)
    bar.close()

    atomic_save_npy(out_dir / LATENTS_NAME, latents_for(config.seed, range(config.num), generator.z_space_dim))
    frame = pd.DataFrame({
        "img_name": names, "index": range(config.num), "seed": config.seed,
        "truncation_psi": config.trunc_psi, "truncation_layers": config.trunc_layers,
        "checkpoint_key": generator.checkpoint_key,
    })
    atomic_write_csv(out_dir / CSV_NAME, frame, GENERATED_CSV_COLUMNS)
    return GenerateSummary(out_dir, config.num, len(todo), skipped, generator.checkpoint_key,
                           time.perf_counter() - start)

