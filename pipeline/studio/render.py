"""The studio's render backend: the models of one pipeline root and what a view renders.

Where packages meet: the base generator (step 1), the fine-tuned conditional generator (step 7)
and the latent directions (step 7's training-free route) are loaded once and rendered from the
same z. Truncation (psi, layers) applies to every method alike, after the edit, so "base vs
edited" compares like with like. Everything runs in float32 under ``torch.inference_mode`` with
the generators' stored noise, so a view is a pure function of its :class:`ViewParams` on a given
device: that is what lets a saved PNG regenerate exactly.

Why not ``ControlMethod.render(z, targets)`` of steps 8/9: the studio also needs truncation and a
layer range per view; those are render-time arguments here, on the same generator objects.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.fingerprint import file_fingerprint
from common.paths import PROPERTY_NAMES, PipelinePaths
from pipeline.demo import DEMO_STYLEGAN
from pipeline.studio.params import ViewParams
from stylegan.checkpoint import load_generator
from stylegan.conditional import ConditionalGenerator, load_conditional_generator, property_ranges
from stylegan.control_methods import DIRECTIONS, FINETUNED
from stylegan.control_resolver import METHOD_SOURCES, find_method_files
from stylegan.directions import DirectionsMismatchError, available_layer_ranges, layer_mask, load_directions
from stylegan.generate import latents_for
from stylegan.networks import StyleGANGenerator, postprocess_uint8

logger = logging.getLogger(__name__)

STEP1_SEED = 0
"""Studio seed s is image s of a default step-1 run: z = z_for(STEP1_SEED, s)."""
DEFAULT_RANGES: dict[str, tuple[float, float]] = {p: ((-1.0, 1.0) if p == "face_pose" else (0.0, 1.0))
                                                  for p in PROPERTY_NAMES}


@dataclass
class StudioModels:
    """The models a studio renders with, their file identities, and the sliders' ranges.

    identity: role -> {"path", "fingerprint"} (``common.fingerprint.file_fingerprint``), plus the
    generator entry; a saved PNG records it and regeneration refuses other files.
    """

    generator: StyleGANGenerator
    finetuned: ConditionalGenerator | None = None
    directions: Any | None = None          # stylegan.directions.LatentDirections
    identity: dict[str, dict[str, str]] = field(default_factory=dict)
    ranges: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(DEFAULT_RANGES))
    medians: np.ndarray = field(default_factory=lambda: np.array([0.5, 0.5, 0.5, 0.5, 0.0], np.float32))
    demo: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device

    @property
    def available(self) -> tuple[str, ...]:
        return tuple(m for m, obj in (("directions", self.directions), ("finetuned", self.finetuned))
                     if obj is not None)

    @property
    def num_layers(self) -> int:
        return int(self.generator.num_layers)

    @property
    def resolution(self) -> int:
        return int(self.generator.resolution)

    def z(self, seeds: list[int]) -> np.ndarray:
        return latents_for(STEP1_SEED, seeds, self.generator.z_space_dim)


def is_demo_generator(generator: StyleGANGenerator) -> bool:
    """The demo's tiny random-weight architecture (``pipeline.demo.DEMO_STYLEGAN``)."""
    return all(generator.config.get(k) == v for k, v in DEMO_STYLEGAN.items())


def _identity(path: Path, **extra: str) -> dict[str, str]:
    return {"path": str(path), "fingerprint": file_fingerprint(path), **extra}


def load_studio_models(paths: PipelinePaths, device: str | torch.device = "cpu",
                       finetuned_checkpoint: Path | None = None, directions_file: Path | None = None,
                       weights: str = "ema") -> StudioModels:
    """Load what exists under ``paths``: the step-1 generator (required), the newest fine-tune and
    the latent directions (each optional, found by ``stylegan.control_resolver`` as steps 8 and 9
    find them; a note says what is missing and how to make it).

    Raises ``CheckpointError``/``FileNotFoundError`` (clear messages) for a missing or broken
    generator, or for an explicitly given file that does not load.
    """
    generator = load_generator(paths.stylegan_checkpoint, device=device)
    generator.requires_grad_(False)
    models = StudioModels(generator=generator, demo=is_demo_generator(generator))
    models.identity["stylegan"] = _identity(paths.stylegan_checkpoint, entry=generator.checkpoint_key)
    normalization_ranges = _ranges_from_normalization(paths.normalization_json)

    files = find_method_files(paths, {FINETUNED: finetuned_checkpoint, DIRECTIONS: directions_file})
    models.notes += [source.missing(paths) for source in METHOD_SOURCES if files[source.name] is None]
    if files[FINETUNED] is not None:
        checkpoint = files[FINETUNED]
        finetuned = load_conditional_generator(checkpoint, device=device, which=weights)
        models.finetuned = finetuned
        models.identity["finetuned"] = _identity(Path(checkpoint), weights=weights, step=str(finetuned.step))
        settings = finetuned.finetune_settings
        models.ranges = {k: (float(v[0]), float(v[1])) for k, v in settings.ranges.items()}
        models.medians = settings.median_vector()
    if models.finetuned is None and normalization_ranges:
        models.ranges = normalization_ranges

    if files[DIRECTIONS] is not None:
        try:
            models.directions = load_directions(files[DIRECTIONS], checkpoint=paths.stylegan_checkpoint,
                                                w_dim=generator.w_space_dim)
            models.identity["directions"] = _identity(files[DIRECTIONS])
        except DirectionsMismatchError as exc:
            if directions_file is not None:
                raise
            models.notes.append(f"latent directions not loaded: {exc}")
    if models.demo:
        models.notes.insert(0, "demo models: random weights, the images are not faces and the measures "
                               "mean nothing")
    return models


def _ranges_from_normalization(path: Path) -> dict[str, tuple[float, float]] | None:
    if not path.is_file():
        return None
    try:
        normalization = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ranges = property_ranges({"normalization": normalization})
    return {k: (float(v[0]), float(v[1])) for k, v in ranges.items()}


# ----------------------------------------------------------------------------------------------
# rendering


def edit_layer_mask(directions: Any, num_layers: int, layers: str, targets: np.ndarray) -> np.ndarray:
    """bool [L]: the synthesis layers that get the edited w (the others keep the original w).

    ``auto`` = the union of the ranges step 7 chose for the requested properties
    (``LatentDirections.layer_mask_for``; every layer when nothing is requested). A view's rows
    share their targets, so one mask serves the batch.
    """
    if layers == "auto":
        return directions.layer_mask_for(np.asarray(targets), num_layers)
    return layer_mask(num_layers, layers)


def layer_choices(num_layers: int) -> tuple[str, ...]:
    """The ``layers`` values a view may use with this generator (a 32 px model has no fine layers)."""
    return ("auto",) + available_layer_ranges(num_layers)


@torch.inference_mode()
def render_faces(models: StudioModels, method: str, z: np.ndarray, targets: np.ndarray, psi: float = 1.0,
                 trunc_layers: int = 0, layers: str = "auto", reached: list | None = None) -> np.ndarray:
    """uint8 NHWC faces: z [N, z_dim], targets [N, P] (NaN = no request); method base|directions|finetuned.

    One batch on the device. Truncation ``w_avg + psi (wp - w_avg)`` on the first ``trunc_layers``
    layers comes after the edit for every method. ``reached``: when given, the directions' report
    (bool [N, P], False = the cap stopped the edit short of the request) is appended to it.
    """
    device = models.device
    zt = torch.as_tensor(np.asarray(z, dtype=np.float32), device=device)
    targets = np.asarray(targets, dtype=np.float32)
    generator = models.generator
    if method == "base":
        out = generator(zt, trunc_psi=psi, trunc_layers=trunc_layers, randomize_noise=False)
    elif method == "finetuned":
        if models.finetuned is None:
            raise ValueError("no fine-tuned generator loaded")
        cond = np.where(np.isnan(targets), models.medians[None], targets).astype(np.float32)
        out = models.finetuned(zt, torch.as_tensor(cond, device=device), trunc_psi=psi,
                               trunc_layers=trunc_layers, randomize_noise=False)
    elif method == "directions":
        if models.directions is None:
            raise ValueError("no latent directions loaded")
        w = generator.mapping(zt)["w"]
        w_edit, ok = models.directions.edit(w.double().cpu().numpy(), targets, return_report=True)
        if reached is not None:
            reached.append(np.asarray(ok, dtype=bool))
        w_edit = torch.as_tensor(np.asarray(w_edit, dtype=np.float32), device=device)
        mask = torch.from_numpy(edit_layer_mask(models.directions, generator.num_layers, layers, targets))
        wp = torch.where(mask.to(device)[None, :, None], w_edit[:, None, :], w[:, None, :])
        image = generator.synthesis(generator.truncation(wp, psi, trunc_layers), None, False)["image"]
        out = {"image": torch.tanh(image) if generator.final_tanh else image}
    else:
        raise ValueError(f"unknown method {method!r}")
    return postprocess_uint8(out["image"].float())


@dataclass(frozen=True)
class ViewRender:
    """A rendered view: a sheet with one row per seed and columns base | method(s)."""

    sheet_u8: np.ndarray          # [rows * R, cols * R, 3]
    columns: tuple[str, ...]      # "base", then the methods
    seeds: tuple[int, ...]
    render_seconds: float
    unreached: tuple[str, ...] = ()  # properties latent directions could not reach within the cap (any row)

    def layout(self) -> dict[str, Any]:
        return {"columns": list(self.columns), "seeds": list(self.seeds), "unreached": list(self.unreached)}


def render_view(models: StudioModels, params: ViewParams) -> ViewRender:
    """The page's image: for seeds seed..seed+strip-1 (one batch per column), base then each method."""
    start = time.perf_counter()
    seeds = list(range(params.seed, params.seed + params.strip))
    z = models.z(seeds)
    targets = np.repeat(np.asarray([params.targets], np.float32), len(seeds), axis=0)
    columns = ("base",) + params.methods
    reached: list[np.ndarray] = []
    tiles = [render_faces(models, column, z, targets, params.psi, params.trunc_layers, params.layers, reached)
             for column in columns]
    sheet = np.concatenate([np.concatenate(list(column), axis=0) for column in tiles], axis=1)
    short = (~np.concatenate(reached)).any(axis=0) if reached else np.zeros(len(PROPERTY_NAMES), bool)
    unreached = tuple(name for name, miss in zip(PROPERTY_NAMES, short) if miss)
    return ViewRender(sheet, columns, tuple(seeds), time.perf_counter() - start, unreached)


def render_face(models: StudioModels, params: ViewParams, face: str) -> np.ndarray:
    """One face [R, R, 3]: ``face`` (base or a single method) at ``params.seed``, batch of one.

    Save and regenerate both call this, so a saved PNG regenerates bit for bit on the same device.
    """
    z = models.z([params.seed])
    targets = np.asarray([params.targets], np.float32)
    return render_faces(models, face, z, targets, params.psi, params.trunc_layers, params.layers)[0]

