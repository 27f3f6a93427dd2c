"""Ways to get faces with requested properties, behind one interface (steps 8 and 9).

A *control method* turns latents ``z [N, z_dim]`` and requested property values ``targets [N, P]``
(step 6's normalised scale, NaN = no request) into uint8 images. Three exist:

- ``BaselineMethod``: the unedited base generator. It ignores the targets, so step 9 can show
  what "no control" measures (r ~ 0) with the same design and the same judge.
- ``FinetunedMethod``: the latent-conditioned fine-tune of step 7 (``07_finetune_stylegan.py``).
  It needs a full condition vector: properties not requested are held at its training median.
- ``DirectionsMethod``: latent directions (``07_fit_latent_directions.py``): z -> mapping -> w ->
  ``directions.edit`` -> synthesis, optionally on a range of synthesis layers only. Properties not
  requested are left to the edit's own rule (held or free, its option).

All three start from the same z, so step 9's comparison sheet shows the same person per row.
This module never imports segmentation: scoring is the caller's business.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from common.checkpoints import load_state_dict_checked
from common.paths import PROPERTY_NAMES
from common.settings import setting
from common.steps import StepError
from stylegan.directions import SEFA
from stylegan.networks import StyleGANGenerator, postprocess_uint8

__all__ = [
    "ControlMethod", "BaselineMethod", "FinetunedMethod", "DirectionsMethod", "BASELINE", "DIRECTIONS", "FINETUNED",
    "SEFA",
    "fill_unrequested", "render_batched", "load_baseline_method", "load_finetuned_method", "load_directions_method",
    "load_refiner", "load_regressor", "REFINE_HELP", "DIRECTIONS_REFINE", "REFINE_OFF", "REFINE_AUTO", "RefineChoice",
    "resolve_refine", "with_refiner",
]

BASELINE, FINETUNED, DIRECTIONS = "baseline", "finetuned", "directions"
"""The methods' names: the ``method`` column of comparison.csv and the values of ``--control``; ``SEFA`` (``sefa``)
is the directions route with SeFa's label-free directions (``stylegan.directions.fit_sefa_directions``)."""
DIRECTIONS_REFINE = "directions+refine"
"""The directions method with the "refine" option on: its own row in comparison.csv beside ``directions``."""
REFINE_OFF, REFINE_AUTO = "off", "auto"
"""``--refine`` of steps 8 and 9: off | auto (the newest step-7b checkpoint's regressor, if any) | a path."""
REFINE_FIX = "pass --refine a step-7b checkpoint_NNNNNN.pt that carries a property regressor, or auto, or off"
"""The advice of an unreadable ``--refine`` file (not the fine-tune reader's ``--finetuned-checkpoint`` advice)."""
REFINE_HELP = ("directions only: refine each linear edit through the generator and the learned property "
               "regressor of a step-7b checkpoint (never the judge): off, auto (--finetuned-checkpoint or the newest "
               "step-7b checkpoint, when it carries a regressor; else off), or a checkpoint's path. With step 7c's "
               "edit correction for these files the learned method, else the slower gradient method. Its price per "
               "image and its control in the lab: docs/finetune-refine.md")

Ranges = dict[str, tuple[float, float]]


def refine_setting(default: str, help_tail: str) -> Any:
    """The one ``--refine`` declaration (steps 8, 9 and the studio): off | auto | a step-7b checkpoint's path."""
    return setting(default, metavar="{off,auto,PATH}", pattern=r"\s*\S.*",
                   mismatch="must be off, auto or the path of a step-7b checkpoint", help=REFINE_HELP + help_tail)


class ControlMethodError(StepError, ValueError):
    """A control method a step cannot use as asked, or whose files do not fit together (an unknown method,
    directions vs generator, a regressor-less or mismatched refine checkpoint, an incomplete directions file):
    one line naming the file or flag and the fix. The one class for steps 7c, 8, 9 and the studio."""


@runtime_checkable
class ControlMethod(Protocol):
    """z [N, z_dim] + targets [N, P] (NaN = no request) -> uint8 NHWC images (and a reached report)."""

    name: str             # "baseline" | "finetuned" | "directions" (the comparison's method column)
    description: str      # one line for reports: which file, which settings
    z_dim: int
    ranges: Ranges | None  # the property ranges this method was built for, when it knows them

    def render(self, z: np.ndarray, targets: np.ndarray,
               return_report: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Images; with return_report also ``reached`` bool [N, P] (True where nothing was requested)."""
        ...


def _check_inputs(z: np.ndarray, targets: np.ndarray, z_dim: int,
                  num_properties: int = len(PROPERTY_NAMES)) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(z, dtype=np.float32)
    targets = np.asarray(targets, dtype=np.float32)
    if z.ndim != 2 or z.shape[1] != z_dim:
        raise ValueError(f"z must have shape [batch, {z_dim}], got {list(z.shape)}")
    if targets.shape != (len(z), num_properties):
        raise ValueError(f"targets must have shape [{len(z)}, {num_properties}], got {list(targets.shape)}")
    return z, targets


def render_batched(fn: Callable[[torch.Tensor, np.ndarray], tuple[torch.Tensor, np.ndarray]], z: np.ndarray,
                   targets: np.ndarray, batch_size: int, device: torch.device, resolution: int,
                   return_report: bool) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Run ``fn(z_batch, targets_batch) -> (raw images, reached)`` over batches; uint8 NHWC out."""
    images, reached = [], []
    with torch.inference_mode():
        for i in range(0, len(z), batch_size):
            zb = torch.from_numpy(np.ascontiguousarray(z[i:i + batch_size])).to(device)
            raw, ok = fn(zb, targets[i:i + batch_size])
            images.append(postprocess_uint8(raw.float()))
            reached.append(np.asarray(ok, dtype=bool))
    out = np.concatenate(images) if images else np.zeros((0, resolution, resolution, 3), np.uint8)
    if not return_report:
        return out
    return out, (np.concatenate(reached) if reached else np.zeros(targets.shape, bool))


def fill_unrequested(targets: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """NaN entries of targets [N, P] replaced by ``fill`` [P] (the fine-tune's training medians)."""
    targets = np.asarray(targets, dtype=np.float32)
    return np.where(np.isnan(targets), np.asarray(fill, dtype=np.float32)[None], targets).astype(np.float32)


class BaselineMethod:
    """The unedited base generator, ``G(z)`` with stored noise: ignores every request (the control floor)."""

    name = BASELINE

    def __init__(self, generator: StyleGANGenerator, batch_size: int = 16, description: str | None = None):
        self.generator = generator
        self.batch_size = batch_size
        self.z_dim = generator.z_space_dim
        self.ranges: Ranges | None = None
        path = getattr(generator, "checkpoint_path", "the base generator")
        self.description = description or f"unedited base generator {path} (ignores the requested values)"

    def render(self, z, targets, return_report=False):
        z, targets = _check_inputs(z, targets, self.z_dim)
        device = next(self.generator.parameters()).device

        def one(zb: torch.Tensor, tb: np.ndarray):
            return self.generator(zb, randomize_noise=False)["image"], np.isnan(tb)  # nothing requested is reached

        return render_batched(one, z, targets, self.batch_size, device, self.generator.resolution, return_report)


class FinetunedMethod:
    """The step-7 conditional generator; unrequested properties at its training median."""

    name = FINETUNED

    def __init__(self, generator, batch_size: int = 16, description: str | None = None):
        from stylegan.finetune_schema import FinetuneSettings

        settings = FinetuneSettings.of(generator)
        self.generator = generator
        self.batch_size = batch_size
        self.z_dim = generator.z_space_dim
        self.ranges: Ranges | None = settings.ranges
        self.median = settings.median_vector()
        self.description = description or (f"fine-tuned generator {getattr(generator, 'checkpoint_path', '')} "
                                           f"(step {getattr(generator, 'step', '?')}; unrequested properties at "
                                           "the training median)")

    def render(self, z, targets, return_report=False):
        z, targets = _check_inputs(z, targets, self.z_dim)
        device = next(self.generator.parameters()).device
        low = np.array([self.ranges[p][0] for p in PROPERTY_NAMES], dtype=np.float32)
        high = np.array([self.ranges[p][1] for p in PROPERTY_NAMES], dtype=np.float32)

        def one(zb: torch.Tensor, tb: np.ndarray):
            # the conditional G has no notion of "unreachable": a request inside the trained range counts as reached
            reached = np.isnan(tb) | ((tb >= low - 1e-6) & (tb <= high + 1e-6))
            cond = torch.from_numpy(fill_unrequested(tb, self.median)).to(device)
            return self.generator(zb, cond)["image"], reached

        return render_batched(one, z, targets, self.batch_size, device, self.generator.resolution, return_report)


def _synthesize(generator: StyleGANGenerator, wp: torch.Tensor) -> torch.Tensor:
    """Raw image from wp [N, L, D] (stored noise, no truncation), as ``G(z)`` would make it."""
    image = generator.synthesis(wp, None, False)["image"]
    return torch.tanh(image) if generator.final_tanh else image


class DirectionsMethod:
    """Latent directions: z -> mapping -> w -> ``directions.edit`` -> synthesis.

    ``directions`` is a fitted ``stylegan.directions.LatentDirections``: its ``edit(w, targets,
    return_report=True)`` gives the edited w and what was reached, its ``layer_mask_for(requested,
    num_layers)`` the synthesis layers that see the edited w (the union of the requested properties'
    layer ranges; all layers when nothing is requested); the other layers keep the original w.
    With ``refiner`` (a ``stylegan.refine.EditRefiner``: the "refine" option) the linear edit is
    then refined through the generator and the learned property regressor; ``reached`` stays the
    linear edit's report.
    (``stylegan.directions.make_generate_fn`` renders the same images without the reached report.)
    """

    name = DIRECTIONS

    def __init__(self, generator: StyleGANGenerator, directions: Any, batch_size: int = 16,
                 ranges: Ranges | None = None, description: str | None = None, refiner: Any = None):
        if directions.w_dim != generator.w_space_dim:
            raise ControlMethodError(f"directions are {directions.w_dim}-d, the generator's w is {generator.w_space_dim}-d")
        self.generator = generator
        self.directions = directions
        self.refiner = refiner   # a stylegan.refine.EditRefiner for the same generator, or None (linear edit only)
        self.batch_size = batch_size
        self.z_dim = generator.z_space_dim
        self.ranges = ranges
        self.description = description or "latent directions (edit of w)"

    def render(self, z, targets, return_report=False):
        z, targets = _check_inputs(z, targets, self.z_dim)
        device = self.generator.truncation.w_avg.device
        num_layers = self.generator.num_layers

        def one(zb: torch.Tensor, tb: np.ndarray):
            w = self.generator.mapping(zb)["w"].float()
            w_edit, reached = self.directions.edit(w.cpu().numpy(), tb, return_report=True)
            w_edit = torch.from_numpy(np.asarray(w_edit, dtype=np.float32)).to(device)
            masks = np.stack([self.directions.layer_mask_for(np.isfinite(row), num_layers) for row in tb])
            if self.refiner is not None:   # the "refine" option: the linear edit polished by the learned regressor
                wp, images = self.refiner.refine_and_render(w, w_edit, tb, torch.from_numpy(masks).to(device))
                return (images if images is not None else _synthesize(self.generator, wp)), reached
            mask = torch.from_numpy(masks).to(device)[:, :, None]          # [N, L, 1]
            wp = torch.where(mask, w_edit[:, None, :], w[:, None, :])      # [N, L, D]
            return _synthesize(self.generator, wp), reached

        return render_batched(one, z, targets, self.batch_size, device, self.generator.resolution, return_report)


# ----------------------------------------------------------------------------------------------
# loading (the scripts' side: file paths -> methods)


def generator_entry_setting(entry: str | None) -> dict[str, str]:
    """The base generator's entry as a recipe setting of steps 8 and 9, written only when it is not the default
    (smoothed) one: folders made before the directions rendered in their own entry keep their recipe, and those
    made in another entry than now are refused."""
    from stylegan.checkpoint import recorded_entry

    entry = recorded_entry(entry)
    return {} if entry == "auto" else {"generator_entry": entry}


def load_baseline_method(stylegan_checkpoint: Path | str, device: str | torch.device = "cpu",
                         batch_size: int = 16, which: str = "auto") -> BaselineMethod:
    """The step-1 generator (same entry rule as step 1: generator_smooth when present)."""
    from stylegan.checkpoint import load_generator

    return BaselineMethod(load_generator(stylegan_checkpoint, which=which, device=device), batch_size)


def load_finetuned_method(checkpoint: Path | str, device: str | torch.device = "cpu", batch_size: int = 16,
                          weights: str = "ema") -> FinetunedMethod:
    """A step-7 fine-tuned checkpoint (EMA weights by default)."""
    from stylegan.conditional import load_conditional_generator

    generator = load_conditional_generator(checkpoint, device=device, which=weights)
    weights = "raw" if weights == "raw" else "ema"   # what was loaded ("auto" is ema: both are always there)
    generator.checkpoint_path = str(checkpoint)
    return FinetunedMethod(generator, batch_size,
                           description=f"fine-tuned generator {checkpoint} (step {generator.step}, {weights} weights; "
                                       "unrequested properties at the training median)")


def load_regressor(finetune_checkpoint: Path | str, directions: Any, device: str | torch.device = "cpu") -> Any:
    """The learned property regressor that a step-7b (fine-tune) checkpoint carries, frozen, on ``device``:
    what refines the directions' edits (:func:`load_refiner`) and what step 7c trains their correction with.

    Refused in one line (``ControlMethodError``) when the checkpoint has no regressor or was trained on
    another normalisation than the directions were fitted on (their property scales would differ).
    """
    from stylegan.conditional import read_finetune_checkpoint
    from stylegan.property_regressor import PropertyRegressor, RegressorConfig

    ckpt = read_finetune_checkpoint(finetune_checkpoint, fix=REFINE_FIX)
    state, settings = ckpt.get("regressor"), ckpt["config"].get("regressor")
    fix = "fix: use a checkpoint of 07_finetune_stylegan.py trained with lambda_prop > 0 on the same step-6 scores"
    if not isinstance(state, dict) or not isinstance(settings, dict):
        raise ControlMethodError(f"{finetune_checkpoint} carries no property regressor; {fix}")
    saved_names = tuple(ckpt["config"].get("property_names") or PROPERTY_NAMES)
    names = tuple(getattr(directions, "property_names", PROPERTY_NAMES))
    if saved_names != names:
        raise ControlMethodError(f"{finetune_checkpoint}'s regressor predicts {', '.join(saved_names)}, the directions "
                         f"{', '.join(names)}; {fix}")
    saved_norm, norm = ckpt["config"].get("normalization"), getattr(directions, "normalization", None)
    if norm is not None and saved_norm is not None and saved_norm != norm:
        raise ControlMethodError(f"{finetune_checkpoint}'s regressor was trained on another normalisation than the "
                         f"directions were fitted on; {fix}")
    try:
        regressor = PropertyRegressor(RegressorConfig(**settings))
    except (TypeError, ValueError) as exc:  # the file's settings do not describe a regressor
        raise ControlMethodError(f"{finetune_checkpoint}: its property regressor cannot be rebuilt ({exc}); {fix}") from None
    load_state_dict_checked(regressor, state, finetune_checkpoint, fix.removeprefix("fix: "), entry="regressor",
                            what="the regressor its config describes")
    return regressor.to(device).eval().requires_grad_(False)


def load_refiner(finetune_checkpoint: Path | str, generator: StyleGANGenerator, directions: Any,
                 config: Any = None, correction: Path | str | None = None) -> Any:
    """The "refine" option for a directions method: the regressor of a step-7b checkpoint
    (:func:`load_regressor`) wrapped in a ``stylegan.refine.EditRefiner`` for ``generator``.

    ``correction``: step 7c's edit correction for these directions and this regressor (its file, checked
    by :func:`stylegan.refine_correction_step.find_edit_correction`): the refine is then the ``learned``
    method (the correction plus a few Broyden passes, a fraction of the gradient method's cost) unless
    ``config`` says otherwise; without one the gradient method.
    """
    from stylegan.refine import EditRefiner, RefineConfig
    from stylegan.refine_correction_step import LEARNED_REFINE, read_edit_correction

    device = next(generator.parameters()).device
    regressor = load_regressor(finetune_checkpoint, directions, device)
    model = None
    if correction is not None:
        model = read_edit_correction(correction, w_dim=generator.w_space_dim,
                                     num_properties=len(directions.property_names)).to(device)
        config = config or LEARNED_REFINE
    return EditRefiner.for_directions(generator, regressor, directions, config or RefineConfig(), model)


def load_directions_method(stylegan_checkpoint: Path | str, directions_path: Path | str,
                           device: str | torch.device = "cpu", batch_size: int = 16,
                           which: str = "auto", refine_checkpoint: Path | str | None = None,
                           refine_config: Any = None, name: str = DIRECTIONS) -> DirectionsMethod:
    """The step-1 generator plus a directions file fitted for it (refused if fitted for another one).

    ``refine_checkpoint``: a step-7b checkpoint whose learned regressor refines every edit (the
    directions route's "refine" option, :func:`load_refiner`); None = the linear edit alone.
    A refined method is named ``directions+refine`` (its own row in step 9). ``name``: the method's
    name (``sefa`` for SeFa's file, step 7a's ``sefa.pt``). ``which="auto"`` renders with the checkpoint entry
    the directions were fitted in (``LatentDirections.generator_entry``; smoothed when the file does not say)."""
    from stylegan.checkpoint import load_generator
    from stylegan.conditional import property_ranges
    from stylegan.directions import load_directions, require_w_dim

    try:
        directions = load_directions(directions_path, checkpoint=stylegan_checkpoint)
    except (KeyError, TypeError) as exc:  # a file from another version of the format: refit, never a traceback
        raise ControlMethodError(f"{directions_path} is not a complete directions file (missing or odd entry {exc}); refit "
                         "with 07_fit_latent_directions.py") from exc
    generator = load_generator(stylegan_checkpoint, which=directions.generator_entry if which == "auto" else which,
                               device=device)
    require_w_dim(directions_path, directions.w_dim, generator.w_space_dim)
    normalization = getattr(directions, "normalization", None)
    ranges = property_ranges({"normalization": normalization}) if normalization else None
    options = f"hold={getattr(directions, 'hold', '?')}, metric={getattr(directions, 'metric', '?')}, " \
              f"cap={getattr(directions, 'cap', '?')}"
    methods = ", ".join(f"{p} {m}" for p, m in zip(PROPERTY_NAMES, getattr(directions, "methods", ())))
    refiner = None
    if refine_checkpoint is not None:
        refiner = load_refiner(refine_checkpoint, generator, directions, refine_config)
        options += f"; refined with the regressor of {refine_checkpoint}"
    kind = "SeFa directions" if name == SEFA else "latent directions"
    method = DirectionsMethod(generator, directions, batch_size, ranges,
                              description=f"{kind} {directions_path} on {stylegan_checkpoint} "
                                          f"({methods}; {options})", refiner=refiner)
    method.name = DIRECTIONS_REFINE if refiner is not None else name
    return method


# ----------------------------------------------------------------------------------------------
# the "refine" option of steps 8 and 9


@dataclass(frozen=True)
class RefineChoice:
    """What ``--refine`` resolved to: the step-7b checkpoint whose regressor refines, or None and why not."""

    checkpoint: Path | None
    note: str     # one line for the step's summary
    correction: Path | None = None   # step 7c's edit correction for these directions and this regressor, if any
    correction_note: str = ""        # why there is none (empty when there is one or the refine is off)

    @property
    def on(self) -> bool:
        return self.checkpoint is not None

    def with_correction(self, correction_pt: Path, stylegan_checkpoint: Path, directions: Path | None) -> RefineChoice:
        """This choice with step 7c's correction when ``correction_pt`` was trained for exactly this generator,
        directions file and regressor (the ``learned`` refine, a fraction of the cost), else as it is, its
        note saying why not (:func:`stylegan.refine_correction_step.find_edit_correction`)."""
        from stylegan.refine_correction_step import find_edit_correction

        if not self.on or directions is None:
            return self
        found, why = find_edit_correction(correction_pt, stylegan_checkpoint, directions, self.checkpoint)
        if found is None:
            if Path(correction_pt).exists():   # said now: the slower method may take hours where 7c's took minutes
                logging.getLogger(__name__).warning("the refine runs the slower gradient method: %s", why)
            return replace(self, note=f"{self.note} (gradient method: {why})", correction_note=why)
        return replace(self, correction=found, note=f"{self.note} and step 7c's edit correction {found}")


def _has_regressor(checkpoint: Path) -> bool:
    from stylegan.conditional import read_finetune_checkpoint

    ckpt = read_finetune_checkpoint(checkpoint, fix=REFINE_FIX)
    return isinstance(ckpt.get("regressor"), dict) and isinstance(ckpt["config"].get("regressor"), dict)


def resolve_refine(refine: str | Path, finetuned_dir: Path, checkpoint: Path | None = None) -> RefineChoice:
    """``off`` -> none; ``auto`` -> ``checkpoint`` (the step's --checkpoint) or the newest step-7b
    checkpoint in ``finetuned_dir`` when it carries a regressor, else none (said in the note);
    anything else is a path that must exist (its regressor is checked when loaded)."""
    from stylegan.conditional import newest_valid_checkpoint

    if str(refine) == REFINE_OFF:
        return RefineChoice(None, "")
    if str(refine) == REFINE_AUTO:
        found = checkpoint or newest_valid_checkpoint(finetuned_dir)
        if found is None:
            return RefineChoice(None, f"refine auto: off (no step-7b checkpoint in {finetuned_dir})")
        if not _has_regressor(Path(found)):
            return RefineChoice(None, f"refine auto: off ({found} carries no property regressor)")
        return RefineChoice(Path(found), f"refined with the regressor of {found}")
    path = Path(refine)
    if not path.is_file():
        raise FileNotFoundError(f"--refine {path}: no such file; pass a step-7b checkpoint "
                                "(07_finetune_stylegan.py), auto or off")
    if not _has_regressor(path):   # checked now (a damaged file raises here): nothing is planned around a bad file
        raise ControlMethodError(f"--refine {path} carries no property regressor; fix: use a checkpoint of "
                                 "07_finetune_stylegan.py trained with lambda_prop > 0, auto or off")
    return RefineChoice(path, f"refined with the regressor of {path}")


def with_refiner(method: DirectionsMethod, checkpoint: Path | str, config: Any = None,
                 correction: Path | str | None = None) -> DirectionsMethod:
    """A second directions method on the same generator and directions whose edits are refined by the
    regressor of ``checkpoint`` (:func:`load_refiner`; with step 7c's ``correction`` the learned method),
    named ``directions+refine``."""
    refiner = load_refiner(checkpoint, method.generator, method.directions, config, correction)
    how = f", {refiner.config.method} refine" + (f" with the edit correction {correction}" if correction else "")
    refined = DirectionsMethod(method.generator, method.directions, method.batch_size, method.ranges,
                               description=f"{method.description}; refined with the regressor of {checkpoint}{how}",
                               refiner=refiner)
    refined.name = DIRECTIONS_REFINE
    return refined
