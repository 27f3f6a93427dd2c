"""Step 7 (fine-tune) in the step contract: its config, its summary and ``run_finetune``.

The run, in named pieces: read the inputs (:func:`load_inputs`), find where to start (a fresh
start or the newest checkpoint, :func:`resume_state`), get the frozen property model (trained first,
or restored from the checkpoint, :func:`property_model_for`), then train with checkpoints, log and
sample sheets (:class:`FinetuneRun`). Resuming repeats the uninterrupted run exactly: every random
draw of step s comes from (seed, s).

Under ``torchrun`` (one process per GPU; gloo on CPU) every process reads the inputs and trains its
share of each step's global batch (``stylegan.finetune_trainer``); rank 0 alone trains the property
regressor (the others receive its weights), writes checkpoints, samples and the log, and reports
progress. A checkpoint holds no trace of the number of processes, so a run resumes with any.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from common.checkpoints import (
    CheckpointError,
    check_finite_tensors,
    check_state_dict_fits,
    load_state_dict_checked,
)
from common.distributed import SINGLE, DistContext, init_distributed
from common.folders import image_folders, refuse_overlap
from common.io import atomic_save_image, atomic_torch_save, atomic_write_csv, atomic_write_json
from common.paths import PROPERTY_NAMES
from common.recipe import Recipe, claim_output
from common.settings import StepConfig, device_setting, flag_of, overwrite_setting, setting, weights_setting
from common.runtime import resolve_device
from common.steps import Progress
from stylegan.checkpoint import entry_for_weights, load_discriminator, load_generator
from stylegan.conditional import (
    FINETUNE_FIX,
    build_conditional_discriminator,
    build_conditional_generator,
    read_finetune_checkpoint,
)
from stylegan.finetune_data import (
    FinetuneDataError,
    FinetuneError,
    TrainingData,
    load_training_data,
    read_normalization,
)
from stylegan.finetune_samples import sweep_grid_image
from stylegan.finetune_schema import (
    FINETUNE_FORMAT_VERSION,
    LOSS_COLUMNS,
    TRAIN_LOG_COLUMNS,
    FinetuneRunFiles,
    FinetuneSettings,
)
from stylegan.finetune_trainer import FinetuneConfig, Finetuner, batch_split, cpu_state
from stylegan.networks import StyleGANDiscriminator, StyleGANGenerator
from stylegan.property_regressor import PropertyRegressor, RegressorConfig, train_property_regressor

logger = logging.getLogger(__name__)

__all__ = ["FinetuneStepConfig", "FinetuneSummary", "FinetuneDivergedError", "run_finetune", "load_inputs",
           "resume_state", "finetune_recipe", "property_model_for", "FinetuneRun", "RESUMABLE_CHANGES"]

RESUMABLE_CHANGES: tuple[str, ...] = ("steps", "checkpoint_every", "sample_every", "keep_checkpoints",
                                      "sample_values", "micro_batches")
"""Training settings that may change when a run is resumed (the number of processes too); every other one must
match the checkpoint."""

ADDED_SETTINGS: dict[str, Any] = {"decorrelate": 0.0, "pair_weight": 0.0, "pair_match": False, "lr_rampdown": 0.0}
"""Training settings added after runs were recorded, with the value those runs trained with: at that value a
setting is left out of the recipe, so a run recorded before it existed still resumes (a checkpoint's
``config['finetune']`` always holds every setting)."""

SAMPLE_Z_STREAM = 7
"""Second word of the seed of the sample sheets' latent: ``default_rng([seed, 7])``."""


class FinetuneDivergedError(FinetuneError):
    """A loss became NaN or infinite; the last state is saved and the message says where."""


@dataclass(frozen=True)
class FinetuneStepConfig(StepConfig):
    """Step 7's settings; every path None = the pipeline's default under ``root``."""

    progress_unit = "step"

    checkpoint: Path | None = setting(None, concept="stylegan_checkpoint", aliases=("--checkpoint",))
    images: Path | None = setting(None, path="filtered_dir", help="training images (step 4's kept images)")
    scores: Path | None = setting(None, concept="all_scores_csv", aliases=("--scores",))
    normalization: Path | None = setting(None, concept="normalization_json")
    out: Path | None = setting(None, path="finetuned_dir", output="dir", help="run folder")
    weights: str = weights_setting(help="base generator of the pretrained checkpoint: ema = genforce's "
                                        "generator_smooth, raw = generator, auto = ema when the checkpoint has it")
    device: str = device_setting()
    num_images: int | None = setting(None, concept="limit", low=1, help="train on at most N images (smoke runs)")
    overwrite: bool = overwrite_setting("start afresh (default: resume from the newest checkpoint in --out)")
    training: FinetuneConfig = setting(default_factory=FinetuneConfig, help="the training settings")

    @property
    def files(self) -> FinetuneRunFiles:
        """The run folder's files (checkpoints, log, samples)."""
        return FinetuneRunFiles(Path(self.resolved().out))


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
    world_size: int = 1

    def line(self) -> str:
        losses = " ".join(f"{k}={self.last_losses[k]:.3f}" for k in ("loss_d", "loss_g_adv", "loss_prop")
                          if k in self.last_losses)
        resumed = f" (resumed at {self.start_step})" if self.start_step else ""
        ranks = f" on {self.world_size} processes" if self.world_size > 1 else ""
        return (f"step 7: fine-tuned steps {self.start_step}->{self.end_step}{resumed} on {self.num_train} images "
                f"({self.num_nan} rows with NaN scores and {self.num_missing} without an image left out){ranks}, "
                f"base entry '{self.checkpoint_key}', checkpoint {self.checkpoint}, {losses}, in {self.seconds:.1f}s")


# ----------------------------------------------------------------------------------------------
# the pieces


@dataclass
class FinetuneInputs:
    """What the run reads: step 6's normalisation, the pretrained G and D, the training data."""

    normalization: dict[str, Any]
    base_g: StyleGANGenerator
    base_d: StyleGANDiscriminator
    data: TrainingData


def load_inputs(config: FinetuneStepConfig) -> FinetuneInputs:
    """Read and check every input; a missing or unusable one is a one-line StepError."""
    config = config.resolved()
    if not config.normalization.is_file():
        raise FinetuneDataError(f"normalization not found: {config.normalization} (run step 6 first)")
    refuse_overlap({"--out": config.out},
                   {"--images": config.images, flag_of(config, "scores"): config.scores,
                    "--normalization": config.normalization, flag_of(config, "checkpoint"): config.checkpoint},
                   reserved=image_folders(config.paths))
    normalization = read_normalization(config.normalization)
    base_g = load_generator(config.checkpoint, which=entry_for_weights(config.weights))
    base_d = load_discriminator(config.checkpoint)
    data = load_training_data(config.images, config.scores, base_g.resolution, config.num_images)
    logger.info("training data: %d images (%d rows with NaN scores, %d without an image left out)",
                len(data.names), data.num_nan, data.num_missing_image)
    return FinetuneInputs(normalization, base_g, base_d, data)


def resume_state(config: FinetuneStepConfig, recipe: Recipe) -> tuple[Path | None, dict[str, Any] | None]:
    """(newest checkpoint, its contents) to resume from, or (None, None) for a fresh start.

    The run folder's recipe was checked first (``common.recipe``: the training settings other than
    :data:`RESUMABLE_CHANGES`, the base entry, the files read, normalization.json among them); the
    newest checkpoint must then be this run's own: trained under this recipe, for these properties,
    at the step its name says. A checkpoint dropped in from another run is refused, never resumed from.
    """
    checkpoints = config.files.checkpoints()
    if not checkpoints:
        return None, None
    latest = checkpoints[-1]
    state = read_finetune_checkpoint(latest)
    try:
        saved = FinetuneSettings.from_dict(state["config"])
    except ValueError as exc:
        raise CheckpointError(f"{latest}: its settings do not read ({exc}); cannot resume; fix: {FINETUNE_FIX}") from exc
    if saved.training is None:
        raise CheckpointError(f"{latest}: config['finetune'] (the run's settings) is missing; cannot resume; "
                              f"fix: {FINETUNE_FIX}")
    _refuse_foreign(latest, state, saved, recipe)
    check_finite_tensors({k: v for k, v in state.items() if isinstance(v, torch.Tensor)}, latest, FINETUNE_FIX)
    for entry in ("generator", "generator_ema", "discriminator"):
        if isinstance(state.get(entry), dict):
            check_finite_tensors(state[entry], latest, FINETUNE_FIX, entry)
    return latest, state


def restore_trainer(trainer: Finetuner, state: dict[str, Any], path: Path) -> None:
    """Resume ``trainer`` from a checkpoint's content: each network through the one fit report, the
    optimisers checked for their two entries; what can still differ (an optimiser's parameter groups)
    is the ValueError torch.optim names, reported against the file."""
    for entry, module in (("generator", trainer.G), ("generator_ema", trainer.G_ema), ("discriminator", trainer.D)):
        check_state_dict_fits(module.state_dict(), state.get(entry), path, FINETUNE_FIX, entry=entry,
                              what=f"the {entry.replace('_', ' ')} this run builds")
    for entry in ("optimizer_g", "optimizer_d"):
        saved = state.get(entry)
        if not isinstance(saved, dict) or not {"state", "param_groups"} <= saved.keys():
            raise CheckpointError(f"{path}: entry {entry!r} is missing or not an optimiser state; cannot resume; "
                                  f"fix: {FINETUNE_FIX}")
    if not isinstance(state.get("step"), int):
        raise CheckpointError(f"{path}: entry 'step' is missing or not an integer; cannot resume; fix: {FINETUNE_FIX}")
    try:
        trainer.load_state_dict(state)
    except ValueError as exc:  # torch.optim.Optimizer.load_state_dict: groups that do not match
        raise CheckpointError(f"{path}: its optimiser state does not fit this run ({exc}); cannot resume; "
                              f"fix: {FINETUNE_FIX}") from None


def _refuse_foreign(path: Path, state: dict[str, Any], saved: FinetuneSettings, recipe: Recipe) -> None:
    """A checkpoint of another run (other properties, another recipe, a step that is not its name's)."""
    fix = (f"move {path.name} out of {path.parent} (the run's own checkpoints stay; nothing was pruned), or "
           "--overwrite to start the run over")
    if tuple(saved.property_names) != tuple(PROPERTY_NAMES):
        raise FinetuneDataError(f"{path} belongs to another run (properties {', '.join(saved.property_names)}, this "
                                f"run trains {', '.join(PROPERTY_NAMES)}); cannot resume from it; fix: {fix}")
    named = int(path.stem.rsplit("_", 1)[-1])
    if int(state.get("step", -1)) != named:
        raise FinetuneDataError(f"{path} holds step {state.get('step')} although its name says {named}: another "
                                f"run's checkpoint renamed; cannot resume from it; fix: {fix}")
    trained_under = Recipe.from_record(saved.recipe) if isinstance(saved.recipe, dict) else None
    differences = trained_under.differences(recipe) if trained_under is not None else ["no recipe recorded"]
    if differences:
        raise FinetuneDataError(f"{path} was trained under another recipe than this run's ({'; '.join(differences)}): "
                                f"another run's checkpoint; cannot resume from it; fix: {fix}")


def finetune_recipe(config: FinetuneStepConfig, base_entry: str, device: torch.device) -> Recipe:
    """What the run's checkpoints are made from: not the settings a resume may change, --limit or paths."""
    config = config.resolved()
    training = {k: v for k, v in asdict(config.training).items() if k not in RESUMABLE_CHANGES
                and not (k in ADDED_SETTINGS and v == ADDED_SETTINGS[k])}
    return Recipe.of("7b", {**training, "base_entry": base_entry, "property_names": list(PROPERTY_NAMES),
                            "device_type": device.type},
                     {"stylegan_checkpoint": config.checkpoint, "scores_csv": config.scores,
                      "normalization_json": config.normalization})


def _owned(folder: Path) -> list[Path]:
    """The run's files (``--overwrite`` removes them; found without a recipe, they are refused)."""
    files = FinetuneRunFiles(folder)
    found = [*files.checkpoints(), files.train_log_csv, files.settings_json, files.regressor_json,
             *(sorted(files.samples_dir.glob("step_*.png")) if files.samples_dir.is_dir() else [])]
    return [p for p in found if p.is_file()]


@dataclass
class PropertyModel:
    """The frozen property model of the auxiliary loss, and what the checkpoint stores about it."""

    model: nn.Module | None
    config: RegressorConfig | None = None
    metrics: dict[str, Any] | None = None

    @property
    def state(self) -> dict[str, torch.Tensor] | None:
        return cpu_state(self.model.state_dict()) if self.model is not None else None


def property_model_for(config: FinetuneStepConfig, data: TrainingData, state: dict[str, Any] | None,
                       latest: Path | None, device: torch.device, ctx: DistContext = SINGLE) -> PropertyModel:
    """The regressor restored from the checkpoint being resumed, or trained now (and its metrics written).

    Under torchrun rank 0 trains it and the other ranks receive its weights (training on a GPU is
    not bit-reproducible, and the ranks must share one model).
    """
    training = config.training
    if training.lambda_prop <= 0 and training.pair_weight <= 0:
        return PropertyModel(None)
    if state is not None and state.get("regressor") is not None:
        settings = state["config"].get("regressor")
        try:
            regressor_config = RegressorConfig(**settings) if isinstance(settings, dict) else None
        except (TypeError, ValueError) as exc:  # the file's settings do not describe a regressor
            regressor_config = None
            problem = str(exc)
        else:
            problem = "config['regressor'] is missing"
        if regressor_config is None:
            raise CheckpointError(f"{latest}: its property regressor cannot be restored ({problem}); "
                                  f"fix: {FINETUNE_FIX}")
        model = PropertyRegressor(regressor_config)
        load_state_dict_checked(model, state["regressor"], latest, FINETUNE_FIX, entry="regressor",
                                what="the regressor its config describes")
        return PropertyModel(model.eval().requires_grad_(False), regressor_config, state.get("regressor_metrics"))
    regressor_config = RegressorConfig()
    if ctx.is_main:
        model, metrics = train_property_regressor(
            data.images_u8, data.conditions, epochs=training.regressor_epochs,
            batch_size=training.regressor_batch_size, seed=training.seed, device=device, config=regressor_config)
        atomic_write_json(config.files.regressor_json, metrics)
    else:
        model, metrics = PropertyRegressor(regressor_config).to(device).eval().requires_grad_(False), None
    if ctx.grouped:
        model, metrics = _from_rank0(model, metrics)
    return PropertyModel(model, regressor_config, metrics)


def _from_rank0(model: nn.Module, metrics: dict[str, Any] | None) -> tuple[nn.Module, dict[str, Any] | None]:
    """Every rank gets rank 0's weights and metrics (torch.distributed broadcast)."""
    with torch.no_grad():
        for tensor in model.state_dict().values():
            torch.distributed.broadcast(tensor, src=0)
    box = [metrics]
    torch.distributed.broadcast_object_list(box, src=0)
    return model, box[0]


def _read_log(path: Path, upto: int) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    frame = pd.read_csv(path)
    return frame[frame["step"] <= upto].to_dict("records")


class FinetuneRun:
    """One run folder being trained: the trainer, its settings, the log so far; writes checkpoints and sheets."""

    def __init__(self, config: FinetuneStepConfig, trainer: Finetuner, settings: FinetuneSettings,
                 prop: PropertyModel, log_rows: list[dict[str, float]], writes: bool = True):
        self.writes = writes  # False on ranks other than 0: they train, rank 0 writes
        self.config = config
        self.files = config.files
        self.trainer = trainer
        self.settings = settings
        self.prop = prop
        self.log_rows = log_rows
        self.sample_z = torch.from_numpy(np.random.default_rng([config.training.seed, SAMPLE_Z_STREAM]).standard_normal(
            (1, trainer.G.z_space_dim)).astype(np.float32))

    def save_checkpoint(self) -> Path:
        """checkpoint_NNNNNN.pt and train_log.csv (atomic), then the oldest checkpoints beyond keep_checkpoints go."""
        if not self.writes:
            return self.files.checkpoint(self.trainer.step_count)
        payload = self.trainer.state_dict()
        payload.update(format_version=FINETUNE_FORMAT_VERSION, config=self.settings.to_dict(),
                       regressor=self.prop.state, regressor_metrics=self.prop.metrics)
        path = atomic_torch_save(self.files.checkpoint(self.trainer.step_count), payload)
        atomic_write_csv(self.files.train_log_csv, pd.DataFrame(self.log_rows, columns=list(TRAIN_LOG_COLUMNS)),
                         TRAIN_LOG_COLUMNS)
        keep = self.config.training.keep_checkpoints
        for stale in (self.files.checkpoints()[:-keep] if keep > 0 else []):
            stale.unlink()
        return path

    def save_samples(self) -> Path:
        step = self.trainer.step_count
        if not self.writes:
            return self.files.sample(step)
        sheet = sweep_grid_image(self.trainer.G_ema, self.sample_z, self.settings.ranges, self.settings.medians,
                                 self.config.training.sample_values,
                                 title=f"step {step}: rows = property sweeps (EMA G)")
        return atomic_save_image(self.files.sample(step), sheet)

    def train(self, progress: Progress | None = None) -> tuple[Path | None, dict[str, float]]:
        """Steps until ``training.steps``; returns (the newest checkpoint written, the last losses)."""
        cfg, trainer = self.config.training, self.trainer
        checkpoint = None
        if trainer.step_count == 0 and cfg.steps > 0:
            self.save_samples()  # step 0: must equal the pretrained generator for every condition
        last: dict[str, float] = self.log_rows[-1] if self.log_rows else {}
        while trainer.step_count < cfg.steps:
            last = trainer.step()
            self.log_rows.append(last)
            if not all(math.isfinite(last[k]) for k in LOSS_COLUMNS):
                checkpoint = self.save_checkpoint()
                raise FinetuneDivergedError(
                    f"non-finite loss at step {trainer.step_count} ({', '.join(f'{k}={last[k]:.4g}' for k in LOSS_COLUMNS)});"
                    f" last state saved to {checkpoint}; fix: lower --lr/--lr-d or raise --r1-gamma, and re-run "
                    "with --overwrite (or resume from an older checkpoint)")
            if progress is not None and self.writes:
                progress(trainer.step_count, cfg.steps)
            if trainer.step_count % cfg.sample_every == 0 or trainer.step_count == cfg.steps:
                self.save_samples()
            if trainer.step_count % cfg.checkpoint_every == 0 or trainer.step_count == cfg.steps:
                checkpoint = self.save_checkpoint()
        return checkpoint, last


def _settings(config: FinetuneStepConfig, inputs: FinetuneInputs, generator, discriminator,
              prop: PropertyModel, world_size: int, recipe: Recipe) -> FinetuneSettings:
    return FinetuneSettings(
        generator=generator.cond_config, discriminator=discriminator.cond_config, property_names=PROPERTY_NAMES,
        normalization=inputs.normalization, condition_stats=inputs.data.stats, training=asdict(config.training),
        embed_dim=generator.embed_dim, base_checkpoint=str(config.resolved().checkpoint),
        base_entry=inputs.base_g.checkpoint_key, num_train_images=len(inputs.data.names),
        regressor=asdict(prop.config) if prop.config is not None else None, regressor_metrics=prop.metrics,
        world_size=world_size, recipe={k: v for k, v in recipe.record().items() if k != "info"})


def _device(name: str) -> torch.device:
    try:
        return resolve_device(name)
    except RuntimeError as exc:
        raise FinetuneError(str(exc)) from exc


# ----------------------------------------------------------------------------------------------
# the step


def run_finetune(config: FinetuneStepConfig, progress: Progress | None = None) -> FinetuneSummary:
    """The whole step: data, regressor, conditional G/D, training with checkpoints, log and sample sheets.

    Resumes from the newest checkpoint in the run folder unless ``config.overwrite``.
    progress(done, total) is called after every training step (by rank 0 under torchrun).
    """
    start = time.perf_counter()
    config = config.resolved()
    ctx = init_distributed()
    try:
        batch_split(config.training, ctx.world_size)
    except ValueError as exc:
        raise FinetuneError(f"{exc}; fix: pick --batch-size and --micro-batches to fit {ctx.world_size} "
                            "process(es)") from exc
    device = _device(ctx.device(config.device))
    inputs = load_inputs(config)
    recipe = finetune_recipe(config, inputs.base_g.checkpoint_key, device)
    with claim_output(config.files.folder, recipe, overwrite=config.overwrite, owned=_owned,
                      writer=ctx.is_main or not ctx.grouped, what="fine-tune checkpoints"):
        ctx.barrier()  # rank 0 has claimed (with --overwrite: emptied) the run folder
        return _train(config, ctx, device, inputs, recipe, progress, start)


def _train(config: FinetuneStepConfig, ctx: DistContext, device: torch.device, inputs: FinetuneInputs,
           recipe: Recipe, progress: Progress | None, start: float) -> FinetuneSummary:
    """Train in a run folder whose recipe is this run's, from its newest checkpoint or from the start."""
    training = config.training
    latest, state = resume_state(config, recipe)
    generator = build_conditional_generator(inputs.base_g, training.embed_dim, training.embed_hidden,
                                            training.cond_lr_mul, seed=training.seed)
    discriminator = build_conditional_discriminator(inputs.base_d, seed=training.seed)
    prop = property_model_for(config, inputs.data, state, latest, device, ctx)
    trainer = Finetuner(generator, discriminator, inputs.data.images_u8, inputs.data.conditions, training,
                        prop.model, device, rank=ctx.rank, world_size=ctx.world_size)
    log_rows: list[dict[str, float]] = []
    if state is not None:
        restore_trainer(trainer, state, latest)
        log_rows = _read_log(config.files.train_log_csv, trainer.step_count)
        logger.info("resumed from %s at step %d", latest, trainer.step_count)
    settings = _settings(config, inputs, generator, discriminator, prop, ctx.world_size, recipe)
    if ctx.is_main:
        atomic_write_json(config.files.settings_json, settings.to_dict())
    run = FinetuneRun(config, trainer, settings, prop, log_rows, writes=ctx.is_main)
    start_step = trainer.step_count
    checkpoint, last = run.train(progress)
    if checkpoint is None:
        # nothing trained now: keep the checkpoint resumed from, or leave a loadable step-0 one (steps == 0)
        checkpoint = latest if latest is not None and latest.is_file() else run.save_checkpoint()
    ctx.barrier()  # every rank returns once rank 0 has written the last checkpoint
    data = inputs.data
    return FinetuneSummary(config.files.folder, checkpoint, start_step, trainer.step_count, len(data.names),
                           data.num_nan, data.num_missing_image, inputs.base_g.checkpoint_key,
                           time.perf_counter() - start, last, ctx.world_size)
