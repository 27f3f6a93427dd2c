"""Step 1: reproducible, resumable, batched image generation with a genforce StyleGAN.

* Eval mode, no style mixing, stored noise: the original generated in train mode by mistake,
  so 90% of its images were style-mixed.
* Image i's z comes from ``numpy.random.default_rng([seed, i])`` alone (the NVlabs habit), so
  an image is the same whatever the batch size and any single image can be regenerated.
* Every file is written atomically; the folder's ``generation.json`` is its recipe (``common.recipe``:
  settings + the checkpoint's size:sha256, written before the first image), and a re-run skips images
  that exist only under the same recipe, so a killed run, re-run, ends with exactly the files an
  uninterrupted run makes, and other settings are refused in one line.
* Encoding and writing happen in a thread pool while the device generates the next batch.
"""
from __future__ import annotations

import errno
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from common.distributed import DistContext, init_distributed
from common.folders import image_folders, refuse_overlap
from common.io import (
    atomic_save_image,
    atomic_save_npy,
    atomic_write_csv,
    clean_stale_temp_files,
)
from common.paths import GENERATION_JSON, PipelinePaths
from common.settings import (
    StepConfig,
    batch_size_setting,
    device_setting,
    flag_of,
    overwrite_setting,
    seed_setting,
    setting,
    shard_setting,
    weights_setting,
)
from common.recipe import FolderLock, Recipe, claim_output, merging
from common.runtime import resolve_device
from common.steps import Progress, ProgressCounter, StepError
from stylegan.checkpoint import entry_for_weights, load_generator
from stylegan.networks import StyleGANGenerator, postprocess_uint8

logger = logging.getLogger(__name__)

GENERATED_CSV_COLUMNS: tuple[str, ...] = (
    "img_name", "index", "seed", "truncation_psi", "truncation_layers", "checkpoint_key",
)
FORMATS_ALLOWED = ("jpg", "png")
MANIFEST_NAME = GENERATION_JSON
LATENTS_NAME = PipelinePaths().latents_npy.name  # the contract names, spelled once in common.paths
CSV_NAME = PipelinePaths().generated_csv.name
W_NAME = PipelinePaths().w_npy.name
_IMAGE_NAME_RE = re.compile(r"(\d{6})\.(?:jpg|png)")


class GenerationError(StepError, RuntimeError):
    """Step 1 cannot run as asked (e.g. ``--device cuda`` without a GPU); the message says the fix."""


class GenerationWriteError(GenerationError):
    """An output could not be written (disk full, permissions); finished images stay valid."""


@dataclass(frozen=True)
class GenerateConfig(StepConfig):
    """Step 1's settings; a path left None is the pipeline's default under ``root``."""

    checkpoint: Path | None = setting(None, concept="stylegan_checkpoint", kept_aliases=("--checkpoint",))
    out: Path | None = setting(None, path="generated_dir", output="dir", help="output folder")
    num: int = setting(10_000, low=0, help="number of images 0 .. num-1 (image i: z from seed, i)")
    batch_size: int = batch_size_setting(16)
    seed: int = seed_setting()
    trunc_psi: float = setting(1.0, low=0.0, high=1.0, help="truncation psi (1.0 = none, as the original)")
    trunc_layers: int = setting(0, low=0, help="truncate layers < N (needs psi < 1)")
    image_format: str = setting("jpg", flag="--format", choices=FORMATS_ALLOWED, help="jpg (quality 95) or png")
    jpeg_quality: int = setting(95, flag="", low=1, high=100, help="the original's quality")
    weights: str = weights_setting()
    device: str = device_setting()
    overwrite: bool = overwrite_setting("regenerate every image, drop step-1 images beyond --num")
    writer_threads: int = setting(4, flag="", low=1, help="threads encoding and writing images while the device "
                                                          "generates")
    shard: str | None = shard_setting()  # "K/N": only images i with i mod N == K (separate machines; then merge)


@dataclass(frozen=True)
class GenerateSummary:
    out_dir: Path
    num: int
    written: int
    skipped: int
    checkpoint_key: str
    seconds: float
    kept_beyond: int = 0  # images of an earlier run with the same settings past --num, kept and listed
    device: str = "cpu"
    rank: int = 0         # under torchrun: this process's rank of world_size (counts are all ranks')
    world_size: int = 1
    shard: str | None = None  # "K/N": this run did one shard; the lists come from merge_shards.py
    merged: bool = False  # merge_generate_shards wrote the lists of finished shards

    @property
    def is_main(self) -> bool:
        """Whether this process reports (rank 0; every --shard run reports its own share)."""
        return self.rank == 0 or self.shard is not None

    def line(self) -> str:
        rate = self.written / self.seconds if self.seconds > 0 and self.written else 0.0
        beyond = (f"; {self.kept_beyond} more from an earlier run with the same settings kept and listed"
                  if self.kept_beyond else "")
        if not self.is_main:
            return (f"step 1 rank {self.rank} of {self.world_size}: {self.written} of its images generated, "
                    f"{self.skipped} already there; rank 0 reports")
        if self.merged:
            return (f"step 1: merged the shards' {self.num} images in {self.out_dir}: latents.npy, w.npy and "
                    f"generated.csv written{beyond} ({self.seconds:.1f}s)")
        if self.shard is not None:
            return (f"step 1 shard {self.shard}: {self.written} generated, {self.skipped} already there, in "
                    f"{self.out_dir} ({self.seconds:.1f}s on {self.device}); when every shard is done: "
                    "python stylegan_and_segmentation/merge_shards.py 1 (the same flags, without --shard)")
        ranks = f" by {self.world_size} processes" if self.world_size > 1 else ""
        return (f"step 1: {self.num} images in {self.out_dir} ({self.written} generated{ranks}, {self.skipped} already "
                f"there{beyond}) from generator entry '{self.checkpoint_key}' on {self.device} in {self.seconds:.1f}s "
                f"({rate:.1f} img/s)")


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


def _recipe(config: GenerateConfig, generator: StyleGANGenerator, checkpoint: Path) -> Recipe:
    """What step 1's images are made from (its ``generation.json``): not --num, --batch-size or --shard."""
    device = next(generator.parameters()).device
    return Recipe.of("1", {
        "seed": config.seed, "trunc_psi": config.trunc_psi, "trunc_layers": config.trunc_layers,
        "image_format": config.image_format, "jpeg_quality": config.jpeg_quality,
        "checkpoint_key": generator.checkpoint_key, "resolution": generator.resolution,
        "z_space_dim": generator.z_space_dim, "device_type": device.type, "dtype": "float32",
    }, {"checkpoint": checkpoint})


def _owned(ctx: DistContext) -> Callable[[Path], list[Path]]:
    """Step 1's images in a folder; under ``--shard K/N`` only this shard's (shards may share a folder)."""
    def owned(folder: Path) -> list[Path]:
        return [folder / name for index, name in sorted(_existing_images(folder).items())
                if ctx.grouped or ctx.owns(index)]

    return owned


def _existing_images(out_dir: Path) -> dict[int, str]:
    """index -> file name of every image in ``out_dir`` named like step 1's outputs (any format)."""
    if not out_dir.is_dir():
        return {}
    found: dict[int, str] = {}
    for path in out_dir.iterdir():
        match = _IMAGE_NAME_RE.fullmatch(path.name)
        if match and path.is_file():
            found.setdefault(int(match.group(1)), path.name)
    return found


def _write(path: Path, write, *args) -> Path:
    """Run an atomic write; an OSError becomes one line naming the file (disk full: free space, re-run)."""
    try:
        return write(path, *args)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise GenerationWriteError(f"disk full writing {path}; free space and re-run "
                                       "(finished images are kept)") from exc
        raise GenerationWriteError(f"cannot write {path}: {exc.strerror or exc}; fix the folder (permissions, "
                                   "space) and re-run (finished images are kept)") from exc


@torch.inference_mode()
def mapped_w(generator: StyleGANGenerator, z: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """float32 [N, w_dim]: row i = ``G.mapping(z_i)["w"]``, untruncated (the latent-direction input)."""
    device = next(generator.parameters()).device
    rows = [generator.mapping(torch.from_numpy(z[i:i + batch_size]).to(device))["w"].float().cpu().numpy()
            for i in range(0, len(z), batch_size)]
    return np.concatenate(rows) if rows else np.zeros((0, generator.w_space_dim), np.float32)


def run_generate(config: GenerateConfig, progress: Progress | None = None) -> GenerateSummary:
    """Generate ``config.num`` images into the output folder (resumable), plus latents.npy, w.npy and generated.csv.

    The metadata describe every step-1 image in the folder: images of an earlier run with the same
    settings beyond ``config.num`` are kept and listed (rows up to the largest index); with
    ``overwrite`` they are removed, so the folder holds exactly what the settings make.
    progress(done, total) as images are written (images already there count as done).

    Under torchrun each rank generates the images i with i mod N == rank, and rank 0 writes the
    lists after a barrier; with ``config.shard`` ("K/N") this process does share K and writes no
    lists: :func:`merge_generate_shards` writes them once every shard is done. The lists hold only
    what (seed, index) and the folder determine, so they are byte-identical to a one-process run.
    """
    start = time.perf_counter()
    ctx = init_distributed(config.shard)
    config = config.resolved()
    out_dir, checkpoint = Path(config.out), Path(config.checkpoint)
    refuse_overlap({"--out": out_dir}, {flag_of(config, "checkpoint"): checkpoint},
                   reserved=image_folders(config.paths, own=config.paths.generated_dir))
    generator = _load(config, ctx)
    shard = (ctx.rank, ctx.world_size) if ctx.sharded and not ctx.grouped else None
    # torchrun: rank 0 claims the folder, the others check the same recipe (all refuse alike) and never write it
    with claim_output(out_dir, _recipe(config, generator, checkpoint), overwrite=config.overwrite, owned=_owned(ctx),
                      record_name=MANIFEST_NAME, info={"checkpoint_path": str(checkpoint)}, shard=shard,
                      writer=ctx.is_main or not ctx.grouped, what="images"):
        names = [image_name(i, config.image_format) for i in range(config.num)]
        if (ctx.is_main or not ctx.grouped) and not ctx.sharded:
            clean_stale_temp_files(out_dir)  # never under shards sharing a folder: another may be writing
        ctx.barrier()
        mine = ctx.take(range(config.num))
        todo = [i for i in mine if not (out_dir / names[i]).exists()]
        skipped = len(mine) - len(todo)
        tick = ProgressCounter(progress if ctx.is_main else None, len(mine), skipped)
        _generate_images(generator, config, out_dir, names, mine, todo, tick)
        counts = ctx.gather((len(todo), skipped))
        ctx.barrier()
        kept_beyond = 0
        if ctx.is_main and not (ctx.sharded and not ctx.grouped):
            kept_beyond = _write_lists(config, generator, out_dir)
    written, skipped = (sum(c[0] for c in counts), sum(c[1] for c in counts)) if counts else (len(todo), skipped)
    return GenerateSummary(out_dir, config.num, written, skipped, generator.checkpoint_key,
                           time.perf_counter() - start, kept_beyond=kept_beyond,
                           device=str(next(generator.parameters()).device), rank=ctx.rank,
                           world_size=ctx.world_size, shard=config.shard)


def merge_generate_shards(config: GenerateConfig, progress: Progress | None = None) -> GenerateSummary:
    """After ``--shard K/N`` runs (their folders copied into one): write latents.npy, w.npy and
    generated.csv exactly as a one-process run would. Refuses, naming them, while images are missing."""
    start = time.perf_counter()
    if config.shard is not None:
        raise GenerationError("merge the shards with the flags of the run but without --shard")
    config = config.resolved()
    out_dir = Path(config.out)
    generator = _load(config, init_distributed(None))
    with FolderLock(out_dir), merging(out_dir, _recipe(config, generator, Path(config.checkpoint)), MANIFEST_NAME,
                                      info={"checkpoint_path": str(Path(config.checkpoint))}):
        clean_stale_temp_files(out_dir)  # every shard has finished: temp files are a killed shard's leftovers
        kept_beyond = _write_lists(config, generator, out_dir)
    if progress is not None:
        progress(config.num, config.num)
    return GenerateSummary(out_dir, config.num, 0, config.num, generator.checkpoint_key, time.perf_counter() - start,
                           kept_beyond=kept_beyond, device=str(next(generator.parameters()).device), merged=True)


def _load(config: GenerateConfig, ctx: DistContext) -> StyleGANGenerator:
    """The generator on this rank's device, validated before anything is written."""
    try:
        device = resolve_device(ctx.device(config.device))
    except RuntimeError as exc:
        raise GenerationError(str(exc)) from exc
    return load_generator(Path(config.checkpoint), which=entry_for_weights(config.weights), device=device)


def _write_lists(config: GenerateConfig, generator: StyleGANGenerator, out_dir: Path) -> int:
    """latents.npy, w.npy and generated.csv for every step-1 image in the folder; returns the images
    kept beyond ``num`` (an earlier run's, same settings). Refuses while an image below ``num`` is missing."""
    names = [image_name(i, config.image_format) for i in range(config.num)]
    missing = [name for name in names if not (out_dir / name).is_file()]
    if missing:
        raise GenerationError(f"{out_dir} lacks {len(missing)} of the {config.num} images ({', '.join(missing[:5])}"
                              f"{' ...' if len(missing) > 5 else ''}); fix: re-run the shards that own them "
                              "(image i belongs to shard i mod N), copy their images here, then merge again")
    existing = _existing_images(out_dir)
    extra = sorted(i for i in existing if i >= config.num)
    described = list(range(config.num)) + extra
    rows = (max(described) + 1) if described else 0
    z = latents_for(config.seed, range(rows), generator.z_space_dim)
    _write(out_dir / LATENTS_NAME, atomic_save_npy, z)
    _write(out_dir / W_NAME, atomic_save_npy, mapped_w(generator, z))
    frame = pd.DataFrame({
        "img_name": names + [existing[i] for i in extra], "index": described, "seed": config.seed,
        "truncation_psi": config.trunc_psi, "truncation_layers": config.trunc_layers,
        "checkpoint_key": generator.checkpoint_key,
    })
    _write(out_dir / CSV_NAME, atomic_write_csv, frame, GENERATED_CSV_COLUMNS)
    return len(extra)


def _generate_images(generator: StyleGANGenerator, config: GenerateConfig, out_dir: Path, names: list[str],
                     mine: Sequence[int], todo: list[int], tick: Callable[[], None]) -> None:
    """Generate the images ``todo`` in the batches an uninterrupted run has (``mine`` cut every
    ``batch_size`` images), a whole batch even where some of its images exist; a thread pool encodes
    and writes while the device works.

    Why whole batches: a batch of another size is another computation, and a kernel may then round a
    pixel the other way (+-1 in about 1e-4 of the uint8 values, ``benchmarks/batch_margins.py``). A
    resumed run repeats the first run's batches, so it ends bit-identical to an uninterrupted run on
    the same machine, for the price of at most a batch's worth of images already there.
    """
    wanted = set(todo)
    pending: deque[Future] = deque()
    max_pending = max(2 * config.batch_size, 8)
    with ThreadPoolExecutor(max_workers=config.writer_threads) as pool:
        for first in range(0, len(mine), config.batch_size):
            batch = list(mine[first:first + config.batch_size])
            if wanted.isdisjoint(batch):
                continue
            images = synthesize_uint8(generator, latents_for(config.seed, batch, generator.z_space_dim),
                                      config.trunc_psi, config.trunc_layers)
            for index, image in zip(batch, images):
                if index in wanted:
                    pending.append(pool.submit(_write, out_dir / names[index], atomic_save_image, image,
                                               config.jpeg_quality))
            # count each write as it lands (a Ctrl-C then says how many are kept), and never hold more than
            # ~2 batches in flight (bounded memory)
            while pending and (len(pending) > max_pending or pending[0].done()):
                pending.popleft().result()
                tick()
        while pending:
            pending.popleft().result()
            tick()
