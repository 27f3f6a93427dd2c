"""The studio's render backend: the models of one pipeline root and what a view renders.

Where packages meet: the base generator (step 1), the fine-tuned conditional generator (step 7)
and the latent directions (step 7's training-free route, fitted or SeFa's) are loaded once and
rendered from the same z. Truncation (psi, layers) applies to every method alike, after the edit, so "base vs
edited" compares like with like. Everything runs in float32 under ``torch.inference_mode`` with
the generators' stored noise, one face at a time (``pipeline.studio.frames``), so a face is a
pure function of its :class:`ViewParams` and seed on a given device and thread count: that is
what lets a saved PNG, or any tile of a strip, regenerate exactly.

Why not ``ControlMethod.render(z, targets)`` of steps 8/9: the studio also needs truncation and a
layer range per view; those are render-time arguments here, on the same generator objects.
"""
from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.fingerprint import file_fingerprint
from common.paths import PROPERTY_NAMES, PipelinePaths
from pipeline.demo import DEMO_STYLEGAN
from pipeline.studio.frames import EXACT, PREVIEW, FaceFrames, FrameCache
from pipeline.studio.params import REFINED, ViewParams
from stylegan.checkpoint import load_generator
from stylegan.conditional import (
    ConditionalGenerator,
    load_conditional_generator,
    newest_valid_checkpoint,
    property_ranges,
)
from stylegan.control_methods import DIRECTIONS, FINETUNED, REFINE_AUTO, SEFA, load_refiner, resolve_refine
from stylegan.control_resolver import METHOD_SOURCES, find_method_files
from stylegan.directions import DirectionsMismatchError, available_layer_ranges, layer_mask, load_directions
from stylegan.generate import latents_for
from stylegan.networks import StyleGANGenerator, prepack_for_cpu

logger = logging.getLogger(__name__)

STEP1_SEED = 0
"""Studio seed s is image s of a default step-1 run: z = z_for(STEP1_SEED, s)."""
W_CACHE_SEEDS = 1024
"""Seeds whose w the studio keeps (2 KB each at 512-d)."""
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
    sefa: Any | None = None                # the same class, SeFa's directions (step 7a's sefa.pt)
    refiner: Any | None = None             # stylegan.refine.EditRefiner on the directions: directions+refine
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
        return tuple(m for m, obj in (("directions", self.directions), (REFINED, self.refiner), ("sefa", self.sefa),
                                      ("finetuned", self.finetuned)) if obj is not None)

    def edits(self, face: str) -> Any:
        """The directions object of an edit face (``directions``, ``directions+refine`` or ``sefa``)."""
        found = {"directions": self.directions, REFINED: self.directions, "sefa": self.sefa}[face]
        if found is None:
            raise ValueError(f"no {'SeFa' if face == 'sefa' else 'latent'} directions loaded")
        return found

    @property
    def num_layers(self) -> int:
        return int(self.generator.num_layers)

    @property
    def resolution(self) -> int:
        return int(self.generator.resolution)

    def z(self, seeds: list[int]) -> np.ndarray:
        return latents_for(STEP1_SEED, seeds, self.generator.z_space_dim)

    def w(self, seed: int) -> torch.Tensor:
        """The base generator's w [1, D] of one seed, mapped once per thread count (the bits depend on it)."""
        cache = self.__dict__.setdefault("_w_by_seed", OrderedDict())
        key = (seed, torch.get_num_threads())
        w = cache.get(key)
        if w is None:
            with torch.inference_mode():
                w = self.generator.mapping(torch.as_tensor(self.z([seed]), device=self.device))["w"]
            cache[key] = w
            while len(cache) > W_CACHE_SEEDS:
                cache.popitem(last=False)
        return w


def is_demo_generator(generator: StyleGANGenerator) -> bool:
    """The demo's tiny random-weight architecture (``pipeline.demo.DEMO_STYLEGAN``)."""
    return all(generator.config.get(k) == v for k, v in DEMO_STYLEGAN.items())


def _identity(path: Path, **extra: str) -> dict[str, str]:
    return {"path": str(path), "fingerprint": file_fingerprint(path), **extra}


def load_studio_models(paths: PipelinePaths, device: str | torch.device = "cpu",
                       finetuned_checkpoint: Path | None = None, directions_file: Path | None = None,
                       weights: str = "ema", sefa_file: Path | None = None, refine: str = REFINE_AUTO) -> StudioModels:
    """Load what exists under ``paths``: the step-1 generator (required), the newest fine-tune and
    the latent directions (each optional, found by ``stylegan.control_resolver`` as steps 8 and 9
    find them; a note says what is missing and how to make it).

    ``refine`` (steps 8 and 9's ``--refine``: off | auto | a step-7b checkpoint): the regressor that refines
    the directions' edits, offered as the method ``directions+refine`` (auto: the fine-tune's, when it has one).

    Raises ``CheckpointError``/``FileNotFoundError`` (clear messages) for a missing or broken
    generator, or for an explicitly given file that does not load.
    """
    generator = load_generator(paths.stylegan_checkpoint, device=device)
    generator.requires_grad_(False)
    models = StudioModels(generator=generator, demo=is_demo_generator(generator))
    models.identity["stylegan"] = _identity(paths.stylegan_checkpoint, entry=generator.checkpoint_key)
    normalization_ranges = _ranges_from_normalization(paths.normalization_json)

    if finetuned_checkpoint is None:  # the newest valid one; what it skipped goes to the page's notes
        finetuned_checkpoint = newest_valid_checkpoint(paths.finetuned_dir, models.notes)
    files = find_method_files(paths, {FINETUNED: finetuned_checkpoint, DIRECTIONS: directions_file,
                                      SEFA: sefa_file})
    models.notes += [source.missing(paths) for source in METHOD_SOURCES
                     if source.name in (FINETUNED, DIRECTIONS) and files[source.name] is None]  # SeFa: optional
    if files[FINETUNED] is not None:
        checkpoint = files[FINETUNED]
        finetuned = load_conditional_generator(checkpoint, device=device, which=weights)
        models.finetuned = finetuned
        loaded = "raw" if weights == "raw" else "ema"   # "auto" loads ema: one identity for one set of weights
        models.identity["finetuned"] = _identity(Path(checkpoint), weights=loaded, step=str(finetuned.step))
        settings = finetuned.finetune_settings
        models.ranges = {k: (float(v[0]), float(v[1])) for k, v in settings.ranges.items()}
        models.medians = settings.median_vector()
    if models.finetuned is None and normalization_ranges:
        models.ranges = normalization_ranges

    for name, given in ((DIRECTIONS, directions_file), (SEFA, sefa_file)):
        if files[name] is None:
            continue
        try:
            setattr(models, name, load_directions(files[name], checkpoint=paths.stylegan_checkpoint,
                                                  w_dim=generator.w_space_dim))
            models.identity[name] = _identity(files[name])
        except DirectionsMismatchError as exc:
            if given is not None:
                raise
            models.notes.append(f"{'SeFa' if name == SEFA else 'latent'} directions not loaded: {exc}")
    def entry_of(directions: Any) -> str:   # a file that does not say renders in the default entry (loaded above)
        return generator.checkpoint_key if directions.generator_entry == "auto" else directions.generator_entry

    fitted_in = next((entry_of(d) for d in (models.directions, models.sefa) if d is not None), generator.checkpoint_key)
    if models.directions is not None and models.sefa is not None and entry_of(models.sefa) != fitted_in:
        # one generator renders every face here, as the latent directions' entry: SeFa's would be moved in another
        models.notes.append(f"SeFa directions not loaded: {files[SEFA]} renders in the '{entry_of(models.sefa)}' "
                            f"entry, the latent directions in '{fitted_in}'; fix: fit both with one --weights in "
                            "step 7a")
        models.sefa = None
        models.identity.pop(SEFA, None)
    if fitted_in != generator.checkpoint_key:
        # the directions live in that entry's w space (step 1 made its faces with it): every face renders with it
        generator = load_generator(paths.stylegan_checkpoint, which=fitted_in, device=device)
        generator.requires_grad_(False)
        models.generator = generator
        models.identity["stylegan"] = _identity(paths.stylegan_checkpoint, entry=generator.checkpoint_key)
    if models.directions is not None:
        choice = resolve_refine(refine, paths.finetuned_dir, files[FINETUNED])
        choice = choice.with_correction(paths.edit_correction_pt, paths.stylegan_checkpoint, files[DIRECTIONS])
        if choice.on:
            models.refiner = load_refiner(choice.checkpoint, generator, models.directions,
                                          correction=choice.correction)
            config = models.refiner.config
            how = f"{config.method}, {config.steps} steps"
            fingerprint = f"{file_fingerprint(choice.checkpoint)} ({how})"
            if choice.correction is not None:   # step 7c's correction: another one refines differently
                how += f", edit correction {choice.correction}"
                fingerprint += f" + {file_fingerprint(choice.correction)}"
            # the fingerprint names the regressor's file and the refine settings: another either way is refused
            models.identity["refine"] = {"path": str(choice.checkpoint), "settings": how, "fingerprint": fingerprint}
            if choice.correction is None:
                models.notes.append(f"directions+refine runs the slower gradient method: {choice.correction_note}")
        elif choice.note:
            models.notes.append(f"directions+refine not offered: {choice.note}")
    for model in (models.generator, models.finetuned):  # batch-of-one CPU renders: kernels packed once
        if model is not None:
            prepack_for_cpu(model)
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
    (``LatentDirections.layer_mask_for``; every layer when nothing is requested).
    """
    if layers == "auto":
        return directions.layer_mask_for(np.asarray(targets), num_layers)
    return layer_mask(num_layers, layers)


def layer_choices(num_layers: int) -> tuple[str, ...]:
    """The ``layers`` values a view may use with this generator (a 32 px model has no fine layers)."""
    return ("auto",) + available_layer_ranges(num_layers)


REFINED_CACHE = 64
"""Refined codes the studio keeps (a refine costs several generator passes; a view asks for its faces again)."""


def refined_wp(models: StudioModels, seed: int, targets: np.ndarray, layers: str, w: torch.Tensor,
               w_edit: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The refined ``wp`` [1, L, D] of one face (before truncation), computed once per seed, request, layers
    and thread count (the bits depend on it)."""
    cache = models.__dict__.setdefault("_refined", OrderedDict())
    key = (seed, np.asarray(targets, np.float32).tobytes(), layers, torch.get_num_threads())
    wp = cache.get(key)
    if wp is None:
        with torch.inference_mode(False):
            wp = models.refiner.refine(w, w_edit, targets, mask[None]).detach()
        cache[key] = wp
        while len(cache) > REFINED_CACHE:
            cache.popitem(last=False)
    else:
        cache.move_to_end(key)
    return wp


@dataclass(frozen=True)
class FaceLatent:
    """What one face is before synthesis: the generator that draws it and its ``wp`` [1, L, D]."""

    generator: StyleGANGenerator
    wp: torch.Tensor
    reached: np.ndarray | None = None   # directions: bool [P], False = the cap stopped the edit short


@torch.inference_mode()
def face_latent(models: StudioModels, face: str, seed: int, targets: Any, psi: float = 1.0,
                trunc_layers: int = 0, layers: str = "auto", refine: bool = True) -> FaceLatent:
    """The ``wp`` of one face (base | directions | directions+refine | sefa | finetuned) of seed ``seed`` (one z,
    batch of one).

    Truncation ``w_avg + psi (wp - w_avg)`` on the first ``trunc_layers`` layers comes after the
    edit for every method, as each generator's own forward applies it. ``refine=False``: a
    directions+refine face is its linear edit (a preview while a slider moves; the refined code is the
    exact frame's).
    """
    device = models.device
    targets = np.asarray(targets, dtype=np.float32).reshape(1, -1)
    generator = models.generator
    reached = None
    if face == "base":
        wp = generator.truncation(models.w(seed))
    elif face == "finetuned":
        if models.finetuned is None:
            raise ValueError("no fine-tuned generator loaded")
        generator = models.finetuned
        z = torch.as_tensor(models.z([seed]), device=device)
        cond = np.where(np.isnan(targets), models.medians[None], targets).astype(np.float32)
        wp = generator.truncation(generator.map(z, torch.as_tensor(cond, device=device))["w"])
    elif face in ("directions", "sefa", REFINED):
        directions = models.edits(face)
        w = models.w(seed)
        w_edit, ok = directions.edit(w.double().cpu().numpy(), targets, return_report=True)
        reached = np.asarray(ok, dtype=bool)[0]
        w_edit = torch.as_tensor(np.asarray(w_edit, dtype=np.float32), device=device)
        mask = torch.from_numpy(edit_layer_mask(directions, generator.num_layers, layers, targets))
        if face == REFINED and refine:
            wp = refined_wp(models, seed, targets, layers, w, w_edit, mask.to(device))
        else:
            wp = torch.where(mask.to(device)[None, :, None], w_edit[:, None, :], w[:, None, :])
    else:
        raise ValueError(f"unknown face {face!r}")
    return FaceLatent(generator, generator.truncation(wp, psi, trunc_layers), reached)


def render_face(models: StudioModels, params: ViewParams, face: str, frames: FaceFrames | None = None,
                kind: str = EXACT, seed: int | None = None) -> np.ndarray:
    """One face [S, S, 3]: ``face`` (base or a single method) at ``seed`` (default ``params.seed``).

    Views, saves, exports and regeneration all call this (one face, batch of one), so a saved PNG
    and any tile of a strip regenerate bit for bit on the same device and thread count.
    """
    latent = face_latent(models, face, params.seed if seed is None else seed, params.targets, params.psi,
                         params.trunc_layers, params.layers)
    return (frames or FaceFrames(FrameCache(0))).frame(latent.generator, latent.wp, kind)


@dataclass(frozen=True)
class ViewRender:
    """A rendered view: a sheet with one row per seed and columns base | method(s)."""

    sheet_u8: np.ndarray          # [rows * S, cols * S, 3]; S = resolution (exact) or 64 (preview)
    columns: tuple[str, ...]      # "base", then the methods
    seeds: tuple[int, ...]
    render_seconds: float
    unreached: tuple[str, ...] = ()  # properties latent directions could not reach within the cap (any row)
    frame: str = EXACT            # exact | preview

    def layout(self) -> dict[str, Any]:
        """``X-Studio-Layout``: the same for a preview and the exact frame of one view."""
        return {"columns": list(self.columns), "seeds": list(self.seeds), "unreached": list(self.unreached)}


def render_view(models: StudioModels, params: ViewParams, frames: FaceFrames | None = None,
                kind: str = EXACT) -> ViewRender:
    """The page's image: for seeds seed..seed+strip-1 (each face a batch of one), base then each method.

    ``kind=preview`` (a slider is moving): the exact sheet when every face of it is in the cache,
    else a sheet of 64 px previews (generators of 64 px or less: always exact).
    """
    start = time.perf_counter()
    frames = frames or FaceFrames(FrameCache(0))
    seeds = tuple(range(params.seed, params.seed + params.strip))
    columns = ("base",) + params.methods
    latents = [[face_latent(models, column, seed, params.targets, params.psi, params.trunc_layers, params.layers,
                            refine=kind == EXACT) for seed in seeds] for column in columns]
    if kind == PREVIEW and (not frames.can_preview(models.generator) or all(
            frames.cached(f.generator, f.wp) is not None for column in latents for f in column)):
        kind = EXACT   # an exact frame after all: directions+refine's faces are the refined ones, not the previews'
        latents = [[face_latent(models, column, seed, params.targets, params.psi, params.trunc_layers, params.layers)
                    for seed in seeds] if column == REFINED else faces for column, faces in zip(columns, latents)]
    tiles = [[frames.frame(f.generator, f.wp, kind) for f in column] for column in latents]
    sheet = np.concatenate([np.concatenate(column, axis=0) for column in tiles], axis=1)
    reached = [f.reached for column in latents for f in column if f.reached is not None]
    short = (~np.stack(reached)).any(axis=0) if reached else np.zeros(len(PROPERTY_NAMES), bool)
    unreached = tuple(name for name, miss in zip(PROPERTY_NAMES, short) if miss)
    return ViewRender(sheet, columns, seeds, time.perf_counter() - start, unreached, kind)
