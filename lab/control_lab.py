"""A control lab with ground truth: both step-7 routes measured in a world whose properties are known exactly.

On real faces nobody knows the true eye openness of a generated image; the judge (segmentation +
step 6) has its own errors. Here the world is built so that the truth is a fixed function of the
image that nothing trains on:

* a frozen generator in genforce's format (the project's own classes, random initialisation,
  32 px by default): the "pretrained" model;
* five properties (:func:`lab_raw_properties`): brightness of bands and borders, a colour
  balance and a left/right asymmetry of the image, normalised by step 6's ``PropertyNormalizer``
  fitted on the base samples (min-max; face_pose to [-1, 1]). A random generator entangles them
  (global brightness moves several at once), as real faces entangle their properties;
* both routes fed exactly as in a real run: the directions (``stylegan.directions.fit_directions``)
  fitted on the base samples' w codes and scores; the fine-tune (``stylegan.finetune_trainer.Finetuner``)
  trained on the same images and scores with the *learned* property regressor
  (``stylegan.property_regressor``) as its auxiliary loss, never with the judge;
* both judged on latents from step 9's own stream (``stylegan.control_measures.evaluation_latents``, never
  the fitted ones) through step 9's ``evaluate_control`` and ``comparison_table``, with the exact
  properties as the scorer, and through the same ``ControlMethod`` classes steps 8 and 9 use.

What a 32-64 px world can show: how control grows with fine-tune steps and samples, what the edit
options (method, hold, metric) do to r and leakage, whether the learned-regressor loss suffices.
What it cannot: the step counts, lambda or sample sizes of a 256 px face run (other networks,
other properties, a judge with its own noise). The README says what a real run should use.
"""
from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from common.io import atomic_torch_save
from common.paths import PROPERTY_NAMES
from segmentation.normalize import PropertyNormalizer
from stylegan.checkpoint import load_discriminator, load_generator, write_random_checkpoint
from stylegan.comparison import comparison_table
from stylegan.conditional import (
    build_conditional_discriminator,
    build_conditional_generator,
    clone_frozen,
    property_ranges,
)
from stylegan.control_measures import (
    ControlConfig,
    ControlResult,
    evaluate_control,
    evaluation_latents,
)
from stylegan.control_methods import BaselineMethod, DirectionsMethod, FinetunedMethod
from stylegan.directions import (
    LatentDirections,
    available_layer_ranges,
    directions_from_normals,
    fit_directions,
    fit_sefa_directions,
)
from stylegan.finetune_schema import FinetuneSettings
from stylegan.finetune_trainer import FinetuneConfig, Finetuner
from stylegan.networks import postprocess_uint8
from stylegan.property_regressor import RegressorConfig, train_property_regressor
from stylegan.refine import EditRefiner, RefineConfig

__all__ = [
    "LabConfig", "LabWorld", "LabJudge", "lab_raw_properties", "build_world", "evaluate_method",
    "fit_lab_directions", "directions_arm", "baseline_arm", "finetune_arm", "lab_regressor", "refine_arm",
    "RegressorScorer", "select_refine_layers", "interfacegan_boundary", "interfacegan_directions",
    "interfacegan_count",
    "base_correlations", "comparison_rows", "summarise", "finetune_as_regressor_sees_it",
]

Say = Callable[[str], None]
"""say(line): a line of news for a person (not ``common.steps.Progress``, which counts items)."""


@dataclass(frozen=True)
class LabConfig:
    """The world and both routes' settings. Defaults: the benchmark's full lab (minutes on 2 cores)."""

    resolution: int = 32
    world_seed: int = 0
    width: int = 32                      # fmaps_max of the random generator (and z/w dims unless w_dim is set)
    num_samples: int = 2000              # scored base samples (step 1 + step 6 of a real run)
    w_dim: int | None = None             # z and w size (None: width); 512 is a real run's
    entangle: float = 0.0                # 0: the generator's own entanglement; > 0: each property also reads
    #                                      this share of its neighbour's (cyclic), see LabJudge
    score_noise: float = 0.0             # sd of the measurement noise on the scored samples, as a share of each
    #                                      property's range (the scorer's test-retest noise); judging stays exact
    # directions
    directions_method: str = "auto"      # auto | ridge | svm (one for all properties)
    hold: bool | None = None             # None / "default": fit_directions' defaults
    metric: str | None = None
    cap: float | None | str = "default"
    refine: RefineConfig = RefineConfig()  # the directions' "refine" option (learned regressor, stylegan.refine)
    # fine-tune
    finetune_steps: tuple[int, ...] = (600, 1200, 2400, 3600)  # evaluated after each
    batch_size: int = 8
    lr_g: float = 0.01
    lr_d: float = 0.001
    lambda_prop: float = 3.0
    ema_beta: float = 0.95
    regressor_epochs: int = 20
    regressor_width: int = 16
    train_seed: int = 0
    # judging (step 9's design)
    eval_num_z: int = 20
    eval_num_values: int = 9
    eval_seed: int = 0
    batch: int = 64

    def __post_init__(self) -> None:
        if self.resolution not in (16, 32, 64):
            raise ValueError(f"the lab's worlds are 16, 32 or 64 px, got {self.resolution}")
        if self.num_samples < 50:
            raise ValueError(f"num_samples must be >= 50, got {self.num_samples}")
        if self.entangle < 0 or self.score_noise < 0:
            raise ValueError(f"entangle and score_noise must be >= 0, got {self.entangle}, {self.score_noise}")
        if list(self.finetune_steps) != sorted(set(self.finetune_steps)):
            raise ValueError(f"finetune_steps must be increasing, got {self.finetune_steps}")


def lab_raw_properties(images_u8: np.ndarray) -> dict[str, np.ndarray]:
    """The world's truth: five fixed functions of a uint8 NHWC image (any size), float64 each.

    eyes: brightness of a band at 25-45% of the height; hair_color: brightness of the top 20%;
    hair_length: brightness of the outer 15% columns below the top quarter; mouth: red minus
    blue in the lower-middle block; face_pose: right-half minus left-half brightness.
    """
    x = np.asarray(images_u8, dtype=np.float64) / 255.0
    n, h, w, _ = x.shape
    lum = x.mean(axis=3)

    def rows(a: float, b: float) -> slice:
        return slice(int(round(a * h)), max(int(round(b * h)), int(round(a * h)) + 1))

    def cols(a: float, b: float) -> slice:
        return slice(int(round(a * w)), max(int(round(b * w)), int(round(a * w)) + 1))

    edge = max(1, int(round(0.15 * w)))
    sides = np.concatenate([lum[:, rows(0.25, 1.0), :edge], lum[:, rows(0.25, 1.0), w - edge:]], axis=2)
    mouth = x[:, rows(0.62, 0.85), cols(0.3, 0.7)]
    return {
        "eyes": lum[:, rows(0.25, 0.45), cols(0.15, 0.85)].mean(axis=(1, 2)),
        "hair_color": lum[:, rows(0.0, 0.2)].mean(axis=(1, 2)),
        "hair_length": sides.mean(axis=(1, 2)),
        "mouth": (mouth[..., 0] - mouth[..., 2]).mean(axis=(1, 2)),
        "face_pose": lum[:, :, w // 2:].mean(axis=(1, 2)) - lum[:, :, : w // 2].mean(axis=(1, 2)),
    }


class LabJudge:
    """images_u8 -> [N, 5] exact properties on step 6's normalised scale (the lab's scorer).

    With a ``mixing`` matrix M [5, 5] (a strongly entangled world) the properties are first standardised
    with fixed constants (``centre``, ``scale``: the base samples' mean and sd) and mixed, property i
    reading ``M[i] @ standardised``; still a fixed function of the image that nothing trains on.
    """

    name = "lab truth (exact image properties, step-6 normaliser)"

    def __init__(self, normalizer: PropertyNormalizer, mixing: np.ndarray | None = None,
                 centre: np.ndarray | None = None, scale: np.ndarray | None = None):
        self.normalizer = normalizer
        self.mixing, self.centre, self.scale = mixing, centre, scale

    def raw(self, images_u8: np.ndarray) -> dict[str, np.ndarray]:
        """The (mixed) raw properties before step 6's normaliser."""
        return mix_properties(lab_raw_properties(images_u8), self.mixing, self.centre, self.scale)

    def __call__(self, images_u8: np.ndarray) -> np.ndarray:
        normalised = self.normalizer.apply(self.raw(images_u8))
        return np.stack([np.asarray(normalised[p], dtype=np.float64) for p in PROPERTY_NAMES], axis=1)


def entangling_matrix(strength: float) -> np.ndarray | None:
    """[5, 5]: property i reads itself plus ``strength`` x property i+1 (cyclic); None for strength 0."""
    if strength == 0:
        return None
    p = len(PROPERTY_NAMES)
    return np.eye(p) + strength * np.roll(np.eye(p), 1, axis=1)


def mix_properties(raw: dict[str, np.ndarray], mixing: np.ndarray | None, centre: np.ndarray | None,
                   scale: np.ndarray | None) -> dict[str, np.ndarray]:
    if mixing is None:
        return raw
    x = (np.stack([raw[p] for p in PROPERTY_NAMES], axis=1) - centre) / scale
    mixed = x @ mixing.T
    return {p: mixed[:, j] for j, p in enumerate(PROPERTY_NAMES)}


@dataclass
class LabWorld:
    config: LabConfig
    generator: Any                 # StyleGANGenerator (frozen, eval)
    discriminator: Any
    z: np.ndarray                  # [N, z_dim] base latents (step 1)
    w: np.ndarray                  # [N, w_dim] their w codes
    images_u8: np.ndarray          # [N, R, R, 3]
    scores: np.ndarray             # [N, 5] the base samples' scores as the pipeline sees them (step 6: the truth,
    #                                plus the scorer's noise in a noisy world)
    normalizer: PropertyNormalizer
    judge: LabJudge
    ranges: dict[str, tuple[float, float]]
    stats: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: float = 0.0
    exact_scores: np.ndarray | None = None  # [N, 5] the truth itself (equal to scores without noise)


def build_world(config: LabConfig = LabConfig()) -> LabWorld:
    """The frozen random generator, its base samples (z, w, images) and their normalised true scores."""
    start = time.perf_counter()
    w_dim = config.w_dim or config.width
    dims = dict(fmaps_base=config.width * config.resolution * 2, fmaps_max=config.width,
                z_space_dim=w_dim, w_space_dim=w_dim, mapping_fmaps=w_dim)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_random_checkpoint(Path(tmp) / "g.pth", resolution=config.resolution, seed=config.world_seed,
                                       **dims)
        generator, discriminator = load_generator(path), load_discriminator(path)
    generator.requires_grad_(False)
    rng = np.random.default_rng([config.world_seed, 1])
    z = rng.standard_normal((config.num_samples, generator.z_space_dim)).astype(np.float32)
    ws, images = [], []
    with torch.no_grad():
        for i in range(0, len(z), config.batch):
            out = generator(torch.from_numpy(z[i:i + config.batch]))
            ws.append(out["w"].numpy())
            images.append(postprocess_uint8(out["image"]))
    w, images_u8 = np.concatenate(ws), np.concatenate(images)
    raw = lab_raw_properties(images_u8)
    mixing = entangling_matrix(config.entangle)
    centre = scale = None
    if mixing is not None:
        stacked = np.stack([raw[p] for p in PROPERTY_NAMES], axis=1)
        centre, scale = stacked.mean(axis=0), np.where(stacked.std(axis=0) > 0, stacked.std(axis=0), 1.0)
    normalizer = PropertyNormalizer.fit(mix_properties(raw, mixing, centre, scale))
    judge = LabJudge(normalizer, mixing, centre, scale)
    exact = judge(images_u8).astype(np.float32)
    scores = exact
    if config.score_noise > 0:
        span = np.array([2.0 if p == "face_pose" else 1.0 for p in PROPERTY_NAMES])
        noise = np.random.default_rng([config.world_seed, 3]).standard_normal(exact.shape)
        scores = (exact + config.score_noise * span * noise).astype(np.float32)
    stats = {p: {"min": float(exact[:, j].min()), "max": float(exact[:, j].max()),
                 "median": float(np.median(exact[:, j])), "mean": float(exact[:, j].mean()),
                 "std": float(exact[:, j].std())} for j, p in enumerate(PROPERTY_NAMES)}
    ranges = property_ranges({"normalization": normalizer.to_dict(), "property_names": list(PROPERTY_NAMES)})
    return LabWorld(config, generator, discriminator, z, w, images_u8, scores, normalizer, judge, ranges, stats,
                    time.perf_counter() - start, exact)


def base_correlations(world: LabWorld) -> pd.DataFrame:
    """Pearson r between the properties over the base samples (the entanglement to overcome)."""
    return pd.DataFrame(np.corrcoef(world.exact_scores.T.astype(np.float64)), index=list(PROPERTY_NAMES),
                        columns=list(PROPERTY_NAMES))


def evaluate_method(world: LabWorld, method: Any) -> ControlResult:
    """Step 9's sweep of one ``ControlMethod`` on step 9's latents, judged by the exact properties."""
    cfg = world.config
    design = ControlConfig(num_z=cfg.eval_num_z, num_values=cfg.eval_num_values, seed=cfg.eval_seed,
                           batch_size=cfg.batch, sheet_z=1)
    z = evaluation_latents(cfg.eval_seed, cfg.eval_num_z, world.generator.z_space_dim)
    base = np.full((cfg.eval_num_z, len(PROPERTY_NAMES)), np.nan, dtype=np.float32)  # as step 9: only the swept one
    return evaluate_control(lambda zb, tb: method.render(zb, tb, return_report=True), world.judge, z, base,
                            world.ranges, design)


def fit_lab_directions(world: LabWorld, num_samples: int | None = None, **options: Any) -> tuple[LatentDirections, float]:
    """fit_directions on the first ``num_samples`` base samples (w codes + true scores); returns (model, seconds)."""
    cfg = world.config
    n = num_samples or len(world.w)
    kwargs = dict(method=cfg.directions_method, hold=cfg.hold, metric=cfg.metric, cap=cfg.cap,
                  normalization=world.normalizer.to_dict())
    kwargs.update(options)
    start = time.perf_counter()
    model = fit_directions(world.w[:n], world.scores[:n], seed=cfg.train_seed, **kwargs)
    return model, time.perf_counter() - start


def interfacegan_count(num_samples: int) -> int:
    """InterFaceGAN's ``chosen_num_or_ratio=0.02``: 2% of the samples from each end of the ranking."""
    return max(1, min(int(0.02 * num_samples), num_samples // 2))


def interfacegan_boundary(w: np.ndarray, score: np.ndarray, seed: int = 0, ratio: float = 0.02,
                          split: float = 0.7) -> np.ndarray:
    """Unit normal [D] of InterFaceGAN's ``train_boundary`` (genforce/interfacegan, utils/manipulator.py),
    written anew: rank by score, take ``ratio`` of the samples from each end, train a linear SVM
    (``SVC(kernel="linear")``, C=1) on a random ``split`` of each end (the rest was their validation)."""
    from sklearn.svm import SVC

    ok = np.isfinite(score)
    w, score = w[ok], score[ok]
    order = np.argsort(score, kind="stable")[::-1]
    chosen = max(1, min(int(len(w) * ratio), len(w) // 2))
    train = max(1, int(chosen * split))
    rng = np.random.default_rng(seed)
    positive = w[order[:chosen]][rng.permutation(chosen)[:train]]
    negative = w[order[-chosen:]][rng.permutation(chosen)[:train]]
    x = np.concatenate([positive, negative])
    y = np.concatenate([np.ones(train, dtype=np.int64), np.zeros(train, dtype=np.int64)])
    normal = SVC(kernel="linear").fit(x, y).coef_.reshape(-1).astype(np.float64)
    return normal / np.linalg.norm(normal)


def interfacegan_directions(w: np.ndarray, scores: np.ndarray, seed: int = 0,
                            normalization: dict | None = None) -> LatentDirections:
    """InterFaceGAN's boundaries, each calibrated by least squares of score on the projection, edited along the
    boundary alone (free, no cap): a requested value becomes a distance to move."""
    normals = [interfacegan_boundary(w, scores[:, j], seed) for j in range(scores.shape[1])]
    return directions_from_normals(w, scores, normals, ("interfacegan",) * scores.shape[1], hold=False,
                                   metric="euclidean", cap=None, normalization=normalization)


def comparison_rows(method_name: str, result: ControlResult) -> pd.DataFrame:
    """Step 9's comparison.csv rows for one method, plus ``leakage_max``: the largest off-diagonal leakage of
    each swept property (the lab's target is "every leakage <= 0.2", not only the mean)."""
    return comparison_table({method_name: result.samples}, with_ci=True).drop(columns=["pearson_r_low",
                                                                                       "pearson_r_high"])


def directions_arm(world: LabWorld, directions: LatentDirections) -> pd.DataFrame:
    """comparison.csv rows (one per property, with leakage_max) of the directions method."""
    method = DirectionsMethod(world.generator, directions, world.config.batch, world.ranges)
    return comparison_rows("directions", evaluate_method(world, method))


def baseline_arm(world: LabWorld) -> pd.DataFrame:
    return comparison_rows("baseline", evaluate_method(world, BaselineMethod(world.generator, world.config.batch)))


def lab_regressor(world: LabWorld) -> tuple[torch.nn.Module, dict[str, Any], float]:
    """The learned property regressor on the base images and scores, as step 7b trains it (never the judge).

    Returns (frozen regressor, its held-out metrics, seconds)."""
    cfg = world.config
    start = time.perf_counter()
    regressor, metrics = train_property_regressor(
        world.images_u8, world.scores, epochs=cfg.regressor_epochs, batch_size=32, seed=cfg.train_seed,
        config=RegressorConfig(input_size=cfg.resolution, width=cfg.regressor_width))
    return regressor, metrics, time.perf_counter() - start


def refine_arm(world: LabWorld, directions: LatentDirections, regressor: torch.nn.Module,
               config: RefineConfig | None = None) -> pd.DataFrame:
    """comparison.csv rows of the directions method with the "refine" option (linear edit, then a few
    gradient steps through the generator and the learned regressor; see ``stylegan.refine``).
    ``config``: default the world's ``LabConfig.refine``."""
    refiner = EditRefiner.for_directions(world.generator, regressor, directions, config or world.config.refine)
    method = DirectionsMethod(world.generator, directions, world.config.batch, world.ranges, refiner=refiner)
    return comparison_rows("directions", evaluate_method(world, method))


class RegressorScorer:
    """images_u8 -> [N, 5] as the learned regressor sees them: the scorer that *chooses* (never the judge)."""

    judge = "learned regressor"

    def __init__(self, regressor: torch.nn.Module):
        self.regressor = regressor

    @torch.no_grad()
    def __call__(self, images_u8: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(images_u8)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        return self.regressor(x).double().numpy()


def select_refine_layers(world: LabWorld, directions: LatentDirections, regressor: torch.nn.Module,
                         config: RefineConfig | None = None, num_z: int = 8, num_values: int = 5,
                         r_tolerance: float = 0.05) -> tuple[LatentDirections, pd.DataFrame]:
    """Per property, the synthesis-layer range (all / coarse / middle / fine, those the generator has) whose
    refined edits leak least, as the *learned regressor* measures them on fresh latents (neither fitted
    on nor step 9's): among the ranges whose r is within ``r_tolerance`` of the best, the lowest mean
    leakage per unit of control slope (a range that moves nothing leaks nothing, too).

    Returns (directions with the chosen ``layers``, the table of every range's r / slope / leakage).
    """
    cfg = world.config
    rng = np.random.default_rng([cfg.world_seed, 2])           # a stream of its own
    z = rng.standard_normal((num_z, world.generator.z_space_dim)).astype(np.float32)
    design = ControlConfig(num_z=num_z, num_values=num_values, seed=0, batch_size=cfg.batch, sheet_z=0)
    base = np.full((num_z, len(PROPERTY_NAMES)), np.nan, dtype=np.float32)
    scorer = RegressorScorer(regressor)
    tables = []
    for layers in available_layer_ranges(world.generator.num_layers):
        candidate = directions.with_options(layers=(layers,) * len(PROPERTY_NAMES))
        refiner = EditRefiner.for_directions(world.generator, regressor, candidate, config or cfg.refine)
        method = DirectionsMethod(world.generator, candidate, cfg.batch, world.ranges, refiner=refiner)
        result = evaluate_control(lambda zb, tb: method.render(zb, tb, return_report=True), scorer, z, base,
                                  world.ranges, design)
        rows = comparison_rows("directions", result)
        rows["layers"] = layers
        tables.append(rows)
    table = pd.concat(tables, ignore_index=True)
    table["leak_per_slope"] = table["leakage_mean"] / table["control_slope"].abs()
    table["chosen"] = False
    picks = []
    for prop in PROPERTY_NAMES:
        part = table[table["property"] == prop]
        close = part[part["pearson_r"] >= part["pearson_r"].max() - r_tolerance]
        pick = close["leak_per_slope"].fillna(np.inf).idxmin()
        table.loc[pick, "chosen"] = True
        picks.append(str(table.at[pick, "layers"]))
    return directions.with_options(layers=tuple(picks)), table


def finetune_arm(world: LabWorld, say: Say | None = None,
                 on_step: Callable[[int], None] | None = None,
                 regressor: tuple[torch.nn.Module, dict[str, Any], float] | None = None,
                 training: dict[str, Any] | None = None,
                 on_checkpoint: Callable[[int, pd.DataFrame], None] | None = None,
                 state_file: Path | None = None,
                 ) -> tuple[dict[int, pd.DataFrame], dict[str, Any]]:
    """Fine-tune with the learned regressor (trained here unless given, as :func:`lab_regressor` returns it),
    judge G_ema after each listed step count; ``say`` gets each step count's r as a line, ``on_checkpoint``
    (steps, rows) each judged checkpoint as soon as it is judged. ``training``: ``FinetuneConfig`` settings
    that replace the lab's (e.g. ``{"decorrelate": 1.0}``). ``state_file``: the trainer's state is written there
    (atomically) at each listed step count and read back when present, so a stopped run resumes its training
    exactly (every draw of step s comes from (seed, s)); step counts already passed are not judged again.

    Returns ({steps: comparison rows}, info with the regressor's held-out r and seconds).
    """
    cfg = world.config
    regressor, metrics, regressor_seconds = regressor if regressor is not None else lab_regressor(world)
    trainer = _lab_finetuner(world, regressor, training, state_file)
    settings = FinetuneSettings(normalization=world.normalizer.to_dict(), condition_stats=world.stats)
    out: dict[int, pd.DataFrame] = {}
    train_seconds = 0.0
    for steps in cfg.finetune_steps:
        if trainer.step_count > steps:   # resumed past it: judged before the stop
            continue
        t0 = time.perf_counter()
        while trainer.step_count < steps:
            row = trainer.step()
            if not np.isfinite(row["loss_g"]) or not np.isfinite(row["loss_d"]):
                raise FloatingPointError(f"control lab: non-finite loss at step {trainer.step_count}: {row}")
            if on_step is not None:
                on_step(1)
        train_seconds += time.perf_counter() - t0
        if state_file is not None:
            atomic_torch_save(state_file, trainer.state_dict())
        g_ema = clone_frozen(trainer.G_ema)
        g_ema.finetune_settings = settings
        method = FinetunedMethod(g_ema, cfg.batch, description=f"lab fine-tune, {steps} steps")
        out[steps] = comparison_rows("finetuned", evaluate_method(world, method))
        if on_checkpoint is not None:
            on_checkpoint(steps, out[steps])
        if say is not None:
            r = out[steps].set_index("property")["pearson_r"]
            say(f"fine-tune {steps} steps: " + " ".join(f"{p} {r[p]:.3f}" for p in PROPERTY_NAMES))
    info = {"regressor_seconds": regressor_seconds, "train_seconds": train_seconds,
            "regressor_r": {p: metrics.get(f"r_{p}") for p in PROPERTY_NAMES}}
    return out, info


def _lab_finetuner(world: LabWorld, regressor: torch.nn.Module, training: dict[str, Any] | None,
                   state_file: Path | None) -> Finetuner:
    """The lab's fine-tune trainer (``training`` replaces the lab's settings), at ``state_file``'s state when given."""
    cfg = world.config
    config = FinetuneConfig(steps=max(cfg.finetune_steps), batch_size=cfg.batch_size, lr_g=cfg.lr_g, lr_d=cfg.lr_d,
                            lambda_prop=cfg.lambda_prop, ema_beta=cfg.ema_beta, seed=cfg.train_seed)
    if training:
        config = replace(config, **training)
    trainer = Finetuner(build_conditional_generator(world.generator, seed=cfg.train_seed),
                        build_conditional_discriminator(world.discriminator, seed=cfg.train_seed),
                        world.images_u8, world.scores, config, regressor)
    if state_file is not None and Path(state_file).is_file():
        trainer.load_state_dict(torch.load(state_file, map_location="cpu", weights_only=True))
    return trainer


def finetune_as_regressor_sees_it(world: LabWorld, regressor: torch.nn.Module, training: dict[str, Any] | None,
                                  state_file: Path) -> tuple[int, pd.DataFrame]:
    """(the state's step, comparison rows) of a saved fine-tune judged by its own learned regressor instead of the
    exact properties: a diagnostic, never the judge. Where the judge sees leakage the regressor does not, the
    regressor's error is the limit; where the regressor sees it too, the training is."""
    trainer = _lab_finetuner(world, regressor, training, state_file)
    g_ema = clone_frozen(trainer.G_ema)
    g_ema.finetune_settings = FinetuneSettings(normalization=world.normalizer.to_dict(), condition_stats=world.stats)
    method = FinetunedMethod(g_ema, world.config.batch, description=f"lab fine-tune, {trainer.step_count} steps")
    rows = comparison_rows("finetuned", evaluate_method(replace(world, judge=RegressorScorer(regressor)), method))
    return trainer.step_count, rows


def summarise(rows: pd.DataFrame, columns: Sequence[str] = ("pearson_r", "spearman_rho", "mae", "leakage_mean", "leakage_max")
              ) -> pd.DataFrame:
    return rows.set_index("property")[list(columns)]


SMALL_LAB = LabConfig(width=16, num_samples=400, finetune_steps=(300,), eval_num_z=6, eval_num_values=5,
                      regressor_epochs=6)
"""The lab that runs in CI (tests/test_control_lab.py): a narrower generator, fewer samples, a short fine-tune,
a smaller sweep; the directions with the library's defaults (``fit_directions(w, scores)``)."""


def small_lab(seed: int = 0, config: LabConfig = SMALL_LAB) -> dict[str, dict[str, float]]:
    """Per method and property: pearson_r, leakage_mean and leakage_max. Methods: 'directions' (the library's
    defaults), 'refined' (the same directions with the refine option), 'sefa', 'interfacegan' (the reference),
    'finetuned', 'baseline'; 'world': the number of property pairs with |r| >= 0.3 in the base set and each
    property's std.

    ``seed`` is the training seed (fine-tune and regressor draws, directions' held-out split); the
    world is the same for every seed, as a test's is.
    """
    config = replace(config, train_seed=seed)
    world = build_world(config)
    directions, _ = fit_lab_directions(world)
    norm = world.normalizer.to_dict()
    tables = {"directions": directions_arm(world, directions), "baseline": baseline_arm(world),
              "sefa": directions_arm(world, fit_sefa_directions(world.generator, world.w, world.scores, seed,
                                                                normalization=norm)),
              "interfacegan": directions_arm(world, interfacegan_directions(world.w, world.scores, seed, norm))}
    regressor = lab_regressor(world)
    tables["refined"] = refine_arm(world, directions, regressor[0])
    by_steps, _ = finetune_arm(world, regressor=regressor)
    tables["finetuned"] = by_steps[max(by_steps)]
    out = {name: {f"{p}_{k}": float(rows.set_index("property").at[p, k]) for p in PROPERTY_NAMES
                  for k in ("pearson_r", "leakage_mean", "leakage_max")} for name, rows in tables.items()}
    corr = base_correlations(world).to_numpy()
    out["world"] = {"entangled_pairs": float((np.abs(corr[np.triu_indices(len(corr), 1)]) >= 0.3).sum()),
                    **{f"{p}_std": world.stats[p]["std"] for p in PROPERTY_NAMES}}
    return out
