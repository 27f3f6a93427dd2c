"""Step 7c: the refine option's learned edit correction (``stylegan.refine_correction``), trained and kept.

The directions route's "refine" option (steps 8 and 9's ``--refine``, the studio's ``directions+refine``)
polishes each linear edit with step 7b's learned property regressor. Without this step it runs the
gradient method; with it, the ``learned`` method: this correction plus three Broyden passes, a
fraction of the gradient method's forwards (``benchmarks/bench_refine.py`` measures both). The correction
belongs to one generator, one directions file (7a) and one regressor (7b): the file records their
fingerprints, and steps 8, 9 and the studio use it only when all three are the ones they use
(:func:`find_edit_correction`), else they fall back to the gradient method and say why.

Training is resumable: every ``save_every`` steps the trainer's whole state (model, Adam's moments,
both random generators) is written atomically, so a killed run goes on where it was and ends with the
same correction an uninterrupted one would have (same device and threads).
"""
from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.checkpoints import CheckpointError, load_state_dict_checked, read_checkpoint
from common.fingerprint import file_fingerprint
from common.folders import image_folders, refuse_overlap
from common.io import atomic_torch_save, clean_stale_temp_files
from common.paths import EDIT_CORRECTION_PT
from common.recipe import Recipe, claim_output, owned_by_patterns
from common.runtime import resolve_device
from common.settings import (
    StepConfig,
    device_setting,
    overwrite_setting,
    seed_setting,
    setting,
    weights_setting,
)
from common.steps import Progress, ProgressCounter, StepError
from stylegan.checkpoint import entry_for_weights, load_generator, recorded_entry, weights_for_entry
from stylegan.refine import RefineConfig
from stylegan.refine_correction import (
    CorrectionConfig,
    CorrectionTrainer,
    EditCorrection,
    edit_layers,
    render_raw,
)

__all__ = ["FitCorrectionConfig", "FitCorrectionSummary", "LEARNED_REFINE", "find_edit_correction",
           "read_edit_correction", "run_fit_edit_correction"]

logger = logging.getLogger(__name__)

FORMAT = "edit_correction"
FORMAT_VERSION = 1
STATE_PT = "correction_state.pt"
SHEET_PNG = "correction_sheet.png"
LEARNED_REFINE = RefineConfig(method="learned", steps=3)
"""The refine that a matching correction gives steps 8, 9 and the studio: the correction plus 3 Broyden passes
(the control lab's measured choice at <= 10 forwards, docs/finetune-refine.md)."""
_FIX = "retrain it with 07_fit_edit_correction.py --overwrite"
_ROLES = ("stylegan_checkpoint", "directions", "regressor_checkpoint")
"""The files a correction is trained for (the recipe's inputs, kept in the file too)."""


class FitCorrectionInputError(StepError, RuntimeError):
    """An input of step 7c is missing or does not fit; the message names the file and the fix."""


@dataclass(frozen=True)
class FitCorrectionConfig(StepConfig):
    """Settings of step 7c. Paths None = the pipeline's defaults under ``root``; the regressor is the one
    steps 8 and 9's ``--refine auto`` use (``--finetuned-checkpoint``, else step 7b's newest checkpoint)."""

    stylegan_checkpoint: Path | None = setting(None, concept="stylegan_checkpoint")
    directions: Path | None = setting(None, concept="directions")
    finetuned_checkpoint: Path | None = setting(
        None, concept="finetuned_checkpoint", fill=False,
        help="the step-7b checkpoint whose property regressor the correction is trained with (default: the newest "
             "in stylegan/finetuned, as --refine auto picks)")
    out_dir: Path | None = setting(None, flag="--out", path="edit_correction_dir", output="dir", help="output folder")
    steps: int = setting(CorrectionConfig.steps, low=1, help="training steps")
    batch: int = setting(CorrectionConfig.batch, low=1,
                         help="codes per training step (part of the recipe: it changes the correction)")
    lr: float = setting(CorrectionConfig.lr, low=0.0, low_open=True, help="Adam's learning rate")
    hidden: int = setting(CorrectionConfig.hidden, low=1, high=4096, help="width of the correction's two hidden layers")
    save_every: int = setting(50, low=1, help="steps between resumable saves of the training state (a kill loses "
                                              "at most these)")
    device: str = device_setting()
    weights: str = weights_setting(help="generator weights to train on: auto = the entry the directions were fitted "
                                        "in (which steps 8, 9 and the studio render with); ema / raw must name it")
    overwrite: bool = overwrite_setting()
    seed: int = seed_setting()
    progress_unit = "step"

    def correction_config(self) -> CorrectionConfig:
        return CorrectionConfig(steps=self.steps, batch=self.batch, lr=self.lr, hidden=self.hidden, seed=self.seed)


@dataclass(frozen=True)
class FitCorrectionSummary:
    path: Path
    regressor: Path
    steps: int
    resumed_from: int
    final_loss: float | None
    seconds: float
    used_by: str = ""     # whether steps 8, 9 and the studio will use it, and if not why
    skipped: bool = False

    def line(self) -> str:
        if self.skipped:
            return f"step 7c (edit correction): {self.path} is up to date (inputs unchanged); kept it; {self.used_by}"
        resumed = f", resumed at step {self.resumed_from}" if self.resumed_from else ""
        loss = "" if self.final_loss is None else f", loss of the last 100 steps {self.final_loss:.3f}"
        return (f"step 7c (edit correction): {self.steps} steps{resumed}{loss} with the regressor of "
                f"{self.regressor}; wrote {self.path} and {SHEET_PNG} in {self.seconds:.1f}s; {self.used_by}")


def _regressor_checkpoint(config: FitCorrectionConfig) -> Path:
    from stylegan.control_methods import REFINE_AUTO, resolve_refine

    choice = resolve_refine(REFINE_AUTO, config.paths.finetuned_dir, config.finetuned_checkpoint)
    if not choice.on:
        why = choice.note.removeprefix("refine auto: off (").removesuffix(")")
        fix = ("pass a checkpoint of a run trained with lambda_prop > 0" if config.finetuned_checkpoint is not None
               else "run 07_finetune_stylegan.py (with lambda_prop > 0) or pass --finetuned-checkpoint")
        raise FitCorrectionInputError(f"step 7c trains with step 7b's property regressor: {why}; fix: {fix}")
    return Path(choice.checkpoint)


def _inputs(config: FitCorrectionConfig, regressor: Path) -> dict[str, Path]:
    return dict(zip(_ROLES, (Path(config.stylegan_checkpoint), Path(config.directions), regressor)))


def run_fit_edit_correction(config: FitCorrectionConfig, progress: Progress | None = None) -> FitCorrectionSummary:
    """Train (or resume, or keep) the edit correction of step 7a's directions with step 7b's regressor."""
    from stylegan.control_methods import ControlMethodError, load_regressor
    from stylegan.directions import DirectionsMismatchError, load_directions, require_w_dim

    start = time.perf_counter()
    config = config.resolved()
    out_dir = Path(config.out_dir)
    for path, fix in ((config.stylegan_checkpoint, "run download_models.py (or the demo)"),
                      (config.directions, "run step 7a (07_fit_latent_directions.py)")):
        if not Path(path).is_file():
            raise FitCorrectionInputError(f"{path} not found; fix: {fix}")
    regressor_path = _regressor_checkpoint(config)
    files = _inputs(config, regressor_path)
    refuse_overlap({"--out": out_dir}, dict(zip(("--stylegan-checkpoint", "--directions", "--finetuned-checkpoint"),
                                                files.values())), reserved=image_folders(config.paths))
    device = resolve_device(config.device)
    # every input is checked before the folder is claimed: a refused run leaves a finished correction as it was
    try:
        directions = load_directions(config.directions, checkpoint=config.stylegan_checkpoint)
        generator = load_generator(config.stylegan_checkpoint, which=directions.generator_entry, device=device)
        _refuse_other_weights(config, generator)
        require_w_dim(config.directions, directions.w_dim, generator.w_space_dim)
        regressor = load_regressor(regressor_path, directions, device)
    except (DirectionsMismatchError, ControlMethodError) as exc:
        raise FitCorrectionInputError(str(exc)) from None
    generator.requires_grad_(False)
    # the entry trained on follows from the directions (an input): how --weights spelled it changes nothing
    entry = generator.checkpoint_key
    settings = dict(asdict(config.correction_config()), which=recorded_entry(entry),
                    device_type=device.type)
    recipe = Recipe.of("7c", settings, files)
    target, state_path = out_dir / EDIT_CORRECTION_PT, out_dir / STATE_PT
    owned = owned_by_patterns(EDIT_CORRECTION_PT, STATE_PT, SHEET_PNG)
    with claim_output(out_dir, recipe, overwrite=config.overwrite, owned=owned, what="edit correction") as claim:
        if claim.continued and target.is_file():
            problem = _finished_problem(target, recipe, config)
            if problem is None:
                return FitCorrectionSummary(target, regressor_path, config.steps, 0, None,
                                            time.perf_counter() - start, used_by=_used_by(config, target), skipped=True)
            logger.warning("%s; training it again", problem)
        clean_stale_temp_files(out_dir)
        trainer = CorrectionTrainer(generator, regressor, directions, config.correction_config())
        if claim.continued and state_path.is_file():
            _resume(trainer, state_path)
        resumed_from = trainer.step
        tick = ProgressCounter(progress, config.steps, trainer.step)
        # Ctrl-C waits for the step in flight, whose state is then saved: what the bar counted is what a re-run keeps
        with deferred_interrupt() as interrupted:
            while trainer.step < config.steps:
                loss = trainer.train_step()
                if not np.isfinite(loss):
                    raise FitCorrectionInputError(
                        f"the correction's training diverged (loss {loss} at step {trainer.step}); nothing was "
                        f"written beyond the last good save; fix: a smaller --lr (now {config.lr:g}) with --overwrite")
                tick()
                if interrupted() or (trainer.step % config.save_every == 0 and trainer.step < config.steps):
                    atomic_torch_save(state_path, trainer.state_dict())
                if interrupted():
                    raise KeyboardInterrupt
        model = trainer.frozen()
        _write_sheet(generator, regressor, directions, model, out_dir / SHEET_PNG, config.seed)
        atomic_torch_save(target, {
            "format": FORMAT, "format_version": FORMAT_VERSION, "w_dim": int(model.w_mean.numel()),
            "num_properties": len(directions.property_names), "property_names": list(directions.property_names),
            "config": asdict(config.correction_config()), "which": settings["which"],
            "generator_entry": generator.checkpoint_key,
            "state_dict": model.state_dict(), "made_from": dict(recipe.inputs), "final_loss": trainer.final_loss,
            "refine": asdict(LEARNED_REFINE)})
        state_path.unlink(missing_ok=True)   # the finished file holds everything the state did
        return FitCorrectionSummary(target, regressor_path, config.steps, resumed_from, trainer.final_loss,
                                    time.perf_counter() - start, used_by=_used_by(config, target))


def _refuse_other_weights(config: FitCorrectionConfig, generator: Any) -> None:
    """7c trains on the entry steps 8, 9 and the studio render the directions' edits with (the one the directions
    were fitted in, else the default's); an explicit ``--weights`` naming another entry is refused in one line."""
    if config.weights == "auto":
        return
    asked, used = entry_for_weights(config.weights), generator.checkpoint_key
    if asked != used:
        right = weights_for_entry(used)
        raise FitCorrectionInputError(
            f"the edits of {config.directions} render in the '{used}' entry of {config.stylegan_checkpoint} (steps "
            f"8, 9 and the studio use it), this run asks for '{asked}'; fix: --weights {right} or auto")


def _finished_problem(target: Path, recipe: Recipe, config: FitCorrectionConfig) -> str | None:
    """Why the finished file in a folder of this recipe cannot be kept (damaged, or another recipe's), else None."""
    try:
        data = _read_checked(target)[1]
    except CheckpointError as exc:
        return str(exc)
    if data.get("made_from") != dict(recipe.inputs) or data.get("config") != asdict(config.correction_config()):
        return f"{target} was trained with other inputs or settings than its folder's recipe.json says"
    if data.get("generator_entry") is None:
        return f"{target} does not say which generator entry it was trained on"
    return None


def _used_by(config: FitCorrectionConfig, target: Path) -> str:
    """Whether steps 8, 9 and the studio (``--refine auto``, default paths) will refine with ``target``; if not, why."""
    from stylegan.control_methods import REFINE_AUTO, resolve_refine

    paths = config.paths
    if target.resolve() != paths.edit_correction_pt.resolve():
        return f"steps 8, 9 and the studio look for it at {paths.edit_correction_pt} only: copy it there to use it"
    choice = resolve_refine(REFINE_AUTO, paths.finetuned_dir)
    if not choice.on:
        return f"steps 8, 9 and the studio will not use it: {choice.note}"
    found, why = find_edit_correction(target, paths.stylegan_checkpoint, paths.directions_pt, choice.checkpoint)
    if found is None:
        return f"steps 8, 9 and the studio will not use it with their default files: {why}"
    return "steps 8, 9 and the studio refine with it (--refine auto)"


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[Callable[[], bool]]:
    """Within the block a Ctrl-C (SIGINT) only sets a flag the caller polls between units of work, so a unit is never
    cut in half; outside the main thread, or where SIGINT is ignored, nothing changes."""
    asked: list[int] = []
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield lambda: False
        return

    def handler(signum, frame) -> None:
        if not asked:
            print("\nCtrl-C: stopping after this training step (its state is saved)", file=sys.stderr, flush=True)
        asked.append(signum)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(asked)
    finally:
        signal.signal(signal.SIGINT, previous)


@torch.no_grad()
def _write_sheet(generator: torch.nn.Module, regressor: torch.nn.Module, directions: Any, model: EditCorrection,
                 path: Path, seed: int, faces: int = 4) -> None:
    """The picture to check: per face, the base and, per property with a direction, its linear edit and the
    corrected one toward the top of the scores seen in fitting, each captioned with what the regressor (step 7b's,
    the training signal, not a judge) reads for the requested property."""
    from common.contact_sheet import make_contact_sheet
    from common.io import atomic_save_image
    from stylegan.networks import postprocess_uint8

    device = next(generator.parameters()).device
    gen = torch.Generator().manual_seed(seed + 1)
    w = generator.mapping(torch.randn(faces, generator.z_space_dim, generator=gen).to(device))["w"].float()
    seen = directions.seen_range()
    fitted = [j for j in range(len(directions.property_names)) if directions.fitted[j]]
    images, captions = [], []

    def render(codes: torch.Tensor | None = None, targets: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        mask = None if codes is None else edit_layers(directions, targets, generator.num_layers, device)
        image = render_raw(generator, w, codes, mask)
        return postprocess_uint8(image), regressor(image).float().cpu().numpy()

    base_images, _ = render()
    columns = [(base_images, ["base"] * faces)]
    for j in fitted:
        target = float(seen[j, 0] + 0.9 * (seen[j, 1] - seen[j, 0]))
        targets = np.full((faces, len(directions.property_names)), np.nan, np.float32)
        targets[:, j] = target
        linear = torch.from_numpy(np.asarray(directions.edit(w.cpu().numpy(), targets), np.float32)).to(device)
        corrected = model(w, linear, torch.from_numpy(targets).to(device))
        name = directions.property_names[j]
        for label, codes in ((f"{name} linear", linear), ("corrected", corrected)):
            shown, values = render(codes, targets)
            columns.append((shown, [f"{label} {v:.2f}" for v in values[:, j]]))
    for face in range(faces):
        for shown, labels in columns:
            images.append(shown[face])
            captions.append(labels[face])
    sheet = make_contact_sheet(images, captions, ncols=len(columns), thumb=128,
                               title="step 7c: each property's linear edit and its correction, asked for 90% of "
                                     "the range seen in fitting; captions: what the 7b regressor reads")
    atomic_save_image(path, np.asarray(sheet))


def _resume(trainer: CorrectionTrainer, state_path: Path) -> None:
    """Continue from a killed run's state (this recipe's: the folder's recipe was checked)."""
    fix = f"remove {state_path} to start the training over, or re-run with --overwrite"
    state = read_checkpoint(state_path, fix, kind="edit-correction training state")
    try:
        trainer.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{state_path} is not a training state of this correction ({exc}); fix: {fix}") from None


# ----------------------------------------------------------------------------------------------
# the consumers' side (steps 8, 9, the studio)


def read_edit_correction(path: Path | str, w_dim: int | None = None, num_properties: int | None = None
                         ) -> EditCorrection:
    """The frozen correction of a step-7c file, or a one-line :class:`CheckpointError` (the fix: retrain)."""
    return _read_checked(path, w_dim, num_properties)[0]


def _read_checked(path: Path | str, w_dim: int | None = None, num_properties: int | None = None
                  ) -> tuple[EditCorrection, dict]:
    """(the frozen correction, the file's whole content), read once and checked."""
    data = read_checkpoint(path, _FIX, kind="edit-correction file")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a step-7c edit-correction file (no format '{FORMAT}'); fix: {_FIX}")
    if data.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} has format version {data.get('format_version')}, this code reads "
                              f"{FORMAT_VERSION}; fix: {_FIX}")
    try:
        saved_w, saved_p, hidden = int(data["w_dim"]), int(data["num_properties"]), int(data["config"]["hidden"])
        model = EditCorrection(saved_w, saved_p, hidden)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a complete edit-correction file (missing or odd entry {exc}); "
                              f"fix: {_FIX}") from None
    for what, saved, wanted in (("w size", saved_w, w_dim), ("property count", saved_p, num_properties)):
        if wanted is not None and saved != wanted:
            raise CheckpointError(f"{path} was trained for a {what} of {saved}, not {wanted}; fix: {_FIX}")
    load_state_dict_checked(model, data.get("state_dict"), path, _FIX, entry="state_dict",
                            what="the correction its config describes")
    return model.eval().requires_grad_(False), data


def find_edit_correction(path: Path | str, stylegan_checkpoint: Path | str, directions: Path | str,
                         regressor_checkpoint: Path | str) -> tuple[Path | None, str]:
    """(``path``, "") when it is a step-7c correction trained for exactly these three files, else (None, why):
    a correction of other directions or another regressor would correct the wrong edits."""
    path = Path(path)
    if not path.is_file():
        return None, f"no step-7c edit correction at {path} (07_fit_edit_correction.py trains one)"
    try:
        data = _read_checked(path)[1]   # damaged, another version, NaN weights: the same fallback as a missing file
    except CheckpointError as exc:
        return None, str(exc)
    made_from = data.get("made_from")
    if not isinstance(made_from, dict) or data.get("generator_entry") is None:
        # the entry: step 7c trains on the one the directions were fitted in; an older file may have used another
        return None, f"{path} does not say what it was trained for; {_FIX}"
    now = dict(zip(_ROLES, (stylegan_checkpoint, directions, regressor_checkpoint)))
    for role, file in now.items():
        if made_from.get(role) != file_fingerprint(file):
            return None, f"{path} was trained for another {role.replace('_', ' ')} than {file}; {_FIX}"
    return path, ""

