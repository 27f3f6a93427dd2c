"""Step 9's orchestration: every control method against the unedited generator, one judge, one measure.

It lives in ``pipeline/`` because it joins the packages: the methods come from ``stylegan``, the
independent judge (FaceXFormer + step-6 scores) from ``segmentation``, the female share from
``gender_cnn``. Each method is swept with the same design on the same latents (drawn
independently of step 1's, see ``stylegan.control.evaluation_latents``) and judged by the same
scorer. Writes, under ``stylegan/finetuned/evaluation/``: ``comparison.csv``,
``comparison_sweeps.png``, ``report.md`` (the verdict), and each method's own outputs in
``<method>/`` (samples, metrics with 95% intervals, leakage matrix, plots, sweep sheets).
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from common.paths import PROPERTY_NAMES, REPO_ROOT, PipelinePaths
from stylegan.comparison import COMPARISON_COLUMNS, COMPARISON_CSV, COMPARISON_PNG, comparison_sheet, \
    comparison_table, verdicts
from stylegan.control import EVAL_LATENT_STREAM, REPORT_MD, BrightnessScorer, ControlConfig, ControlResult, \
    evaluate_control, evaluation_latents, write_control_outputs
from stylegan.control_methods import DIRECTIONS, FINETUNED, ControlMethod

SCORERS = ("segmentation", "brightness")
CONTROLS = ("all", DIRECTIONS, FINETUNED)
CROPS = ("mtcnn", "full")
Progress = Callable[[int, int], None]


class ControlEvaluationError(RuntimeError):
    """A missing or unusable input of step 9 (the script prints it on one line and exits 2)."""


@dataclass(frozen=True)
class EvaluateControlConfig:
    """Step 9's settings; every path None = the pipeline's default under ``root``."""

    root: Path = REPO_ROOT
    control: str = "all"                 # all | directions | finetuned (the baseline is always measured)
    scorer: str = "segmentation"         # segmentation = the independent judge; brightness = a labelled stand-in
    crop: str = "mtcnn"                  # face crop before parsing: mtcnn | full
    weights: str = "ema"                 # fine-tune weights: ema | raw
    num_z: int = 20                      # latents per property sweep (the same for every method)
    num_values: int = 9                  # grid points per sweep
    seed: int = 0                        # seed of the evaluation latents (own stream, never step 1's)
    batch_size: int = 16
    sheet_z: int = 3                     # latents shown in each method's sweep sheets
    device: str = "auto"
    checkpoint: Path | None = None       # fine-tuned checkpoint (default: the newest of step 7)
    directions: Path | None = None       # directions file (default: stylegan/directions/directions.pt)
    stylegan_checkpoint: Path | None = None
    segmentation_checkpoint: Path | None = None
    trusted_checkpoint: bool = False
    normalization: Path | None = None
    gender_models: Path | None = None
    out: Path | None = None
    random_weight_models: bool = False   # the demo's models: the report says so in its first line

    def __post_init__(self) -> None:
        for name, value, allowed in (("control", self.control, CONTROLS), ("scorer", self.scorer, SCORERS),
                                     ("crop", self.crop, CROPS), ("weights", self.weights, ("ema", "raw"))):
            if value not in allowed:
                raise ValueError(f"invalid {name}={value!r}; allowed: {allowed}")
        self.design  # validates the sweep settings

    @property
    def design(self) -> ControlConfig:
        return ControlConfig(num_z=self.num_z, num_values=self.num_values, seed=self.seed,
                             batch_size=self.batch_size, sheet_z=self.sheet_z)

    @property
    def paths(self) -> PipelinePaths:
        return PipelinePaths(Path(self.root).resolve())

    @property
    def out_dir(self) -> Path:
        return Path(self.out) if self.out is not None else self.paths.evaluation_dir


@dataclass(frozen=True)
class EvaluateControlSummary:
    out_dir: Path
    methods: tuple[str, ...]
    judge: str
    images: int
    valid: int
    seconds: float
    stand_in: bool
    table: pd.DataFrame = field(repr=False)
    verdicts: tuple[str, ...] = ()

    def r(self, method: str, prop: str) -> float:
        row = self.table[(self.table["method"] == method) & (self.table["property"] == prop)]
        return float(row["pearson_r"].iloc[0])

    def line(self) -> str:
        rs = "; ".join(f"{p} " + "/".join(f"{self.r(m, p):.2f}" for m in self.methods) for p in PROPERTY_NAMES)
        label = " [STAND-IN scorer]" if self.stand_in else ""
        return (f"step 9: {'/'.join(self.methods)} compared on {self.images} images ({self.valid} measured by "
                f"{self.judge}){label}; r {rs}; comparison in {self.out_dir / COMPARISON_CSV} "
                f"({self.seconds:.1f}s)")


# ----------------------------------------------------------------------------------------------
# inputs


def load_methods(config: EvaluateControlConfig, device) -> list[ControlMethod]:
    """Baseline first, then the requested methods that exist; a clear error for a missing one."""
    from stylegan.control_methods import load_baseline_method, load_directions_method, load_finetuned_method
    from stylegan.finetune import find_latest_checkpoint

    paths = config.paths
    wanted = (DIRECTIONS, FINETUNED) if config.control == "all" else (config.control,)
    finetuned = config.checkpoint or find_latest_checkpoint(paths.finetuned_dir)
    directions = config.directions or (paths.directions_pt if paths.directions_pt.is_file() else None)
    found = {FINETUNED: finetuned, DIRECTIONS: directions}
    if config.control != "all" and found[config.control] is None:
        where = (f"no fine-tuned checkpoint in {paths.finetuned_dir / 'checkpoints'}; run 07_finetune_stylegan.py "
                 "or pass --checkpoint" if config.control == FINETUNED else
                 f"no directions file {paths.directions_pt}; run 07_fit_latent_directions.py or pass --directions")
        raise ControlEvaluationError(where)
    if not any(found[m] for m in wanted):
        raise ControlEvaluationError(
            f"no control method to evaluate: no fine-tuned checkpoint in {paths.finetuned_dir / 'checkpoints'} and "
            f"no directions file {paths.directions_pt}; run step 7 (07_fit_latent_directions.py and/or "
            "07_finetune_stylegan.py) first")
    base_checkpoint = config.stylegan_checkpoint or paths.stylegan_checkpoint
    methods: list[ControlMethod] = [load_baseline_method(base_checkpoint, device, config.batch_size)]
    if DIRECTIONS in wanted and directions is not None:
        methods.append(load_directions_method(base_checkpoint, directions, device, config.batch_size))
    if FINETUNED in wanted and finetuned is not None:
        methods.append(load_finetuned_method(finetuned, device, config.batch_size, config.weights))
    return methods


def sweep_ranges(config: EvaluateControlConfig, methods: list[ControlMethod]) -> dict[str, tuple[float, float]]:
    """One set of sweep ranges for every method: step 6's normalisation, else the first method that knows."""
    from stylegan.conditional import property_ranges

    normalization = config.normalization or config.paths.normalization_json
    if Path(normalization).is_file():
        try:
            return property_ranges({"normalization": json.loads(Path(normalization).read_text())})
        except (ValueError, AttributeError) as exc:
            raise ControlEvaluationError(f"{normalization} is not a readable normalization.json ({exc}); "
                                         "re-run step 6") from exc
    for method in methods:
        if method.ranges:
            return dict(method.ranges)
    return property_ranges({})


def make_judges(config: EvaluateControlConfig, device):
    """(scorer, gender) callables: the independent segmentation judge or the labelled stand-in."""
    from pipeline.scorers import SegmentationScorer, gender_callable

    paths = config.paths
    if config.scorer == "segmentation":
        scorer = SegmentationScorer(config.segmentation_checkpoint or paths.segmentation_checkpoint,
                                    config.normalization or paths.normalization_json, config.crop, device,
                                    trusted=config.trusted_checkpoint)
    else:
        scorer = BrightnessScorer()
    return scorer, gender_callable(config.gender_models or paths.cnn_models_dir, device)


# ----------------------------------------------------------------------------------------------
# the run


def run_evaluate_control(config: EvaluateControlConfig, progress: Progress | None = None) -> EvaluateControlSummary:
    """Sweep every method with the same design and judge; write comparison.csv, the figure and the report.

    progress(done, total) is called after every batch of images (a tqdm bar in the script).
    """
    from common.runtime import resolve_device

    start = time.perf_counter()
    try:
        device = resolve_device(config.device)
    except RuntimeError as exc:
        raise ControlEvaluationError(str(exc)) from exc
    methods = load_methods(config, device)
    scorer, gender = make_judges(config, device)
    ranges = sweep_ranges(config, methods)
    design = config.design
    z = evaluation_latents(design.seed, design.num_z, methods[0].z_dim)
    base = np.full((design.num_z, len(PROPERTY_NAMES)), np.nan, dtype=np.float32)  # only the swept one is requested
    per_method = design.num_z * design.num_values * len(PROPERTY_NAMES)
    total, done = per_method * len(methods), 0
    results: dict[str, ControlResult] = {}
    for method in methods:
        def tick(n: int) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress(done, total)

        results[method.name] = evaluate_control(lambda zb, tb, m=method: m.render(zb, tb, return_report=True),
                                                scorer, z, base, ranges, design, gender=gender, progress=tick)
    out_dir = config.out_dir
    stand_in = config.scorer != "segmentation"
    meta = {"scorer": getattr(scorer, "name", type(scorer).__name__), "num_z": design.num_z,
            "sheet_z": design.sheet_z, "weights": config.weights,
            "held": "not requested (fine-tune: its training median; directions: the edit's own rule)"}
    for method in methods:
        write_control_outputs(results[method.name], out_dir / method.name,
                              {**meta, "checkpoint": method.description}, design.num_values)
    table = comparison_table({m: r.samples for m, r in results.items()}, with_ci=True)
    from common.io import atomic_save_image, atomic_write_csv, atomic_write_text

    atomic_write_csv(out_dir / COMPARISON_CSV, table[list(COMPARISON_COLUMNS)], COMPARISON_COLUMNS)
    requested = {p: list(np.linspace(ranges[p][0], ranges[p][1], design.num_values)) for p in PROPERTY_NAMES}
    sheet = comparison_sheet({m: r.sheets for m, r in results.items()}, requested, z_rows=1)
    atomic_save_image(out_dir / COMPARISON_PNG, sheet)
    lines = verdicts(table)
    judge = str(table["judge"].iloc[0]) if len(table) else scorer.__class__.__name__
    atomic_write_text(out_dir / REPORT_MD, _report(config, methods, table, lines, meta["scorer"], ranges, stand_in))
    valid = sum(int(r.samples["valid"].sum()) for r in results.values())
    return EvaluateControlSummary(out_dir, tuple(m.name for m in methods), judge, total, valid,
                                  time.perf_counter() - start, stand_in, table, tuple(lines))


def _report(config: EvaluateControlConfig, methods: list[ControlMethod], table: pd.DataFrame, lines: list[str],
            scorer_name: str, ranges: dict[str, tuple[float, float]], stand_in: bool) -> str:
    from stylegan.control import _markdown_table

    warnings = []
    if config.random_weight_models:
        warnings.append("> **These models are the demo's random-weight models: the images are not faces, and "
                        "nothing below says anything about real control.**")
    if stand_in:
        warnings.append("> **WARNING: the scorer is a stand-in (image brightness), not the face segmentation. "
                        "These numbers only show that the pipeline runs.**")
    design = config.design
    method_lines = "\n".join(f"- `{m.name}`: {m.description}" for m in methods)
    range_text = ", ".join(f"{p} {lo:g}..{hi:g}" for p, (lo, hi) in ranges.items())
    verdict = "\n".join(f"- {line}" for line in lines) or "- (no method besides the baseline was evaluated)"
    shown = table[list(COMPARISON_COLUMNS) + ["pearson_r_low", "pearson_r_high"]]
    return f"""# Control comparison (step 9)
{chr(10).join(warnings)}

## Which method controls which property better
{verdict}

The winner is the method with the highest Pearson r between requested and measured value; "clearly"
means its 95% interval lies above the runner-up's. `baseline` (the unedited generator, which ignores
every request) is the floor: a method is only controlling a property where it beats it.

## Setup
{method_lines}
- judge: {scorer_name} (the same for every method; never the regressor used in training)
- design: {design.num_z} latents x {design.num_values} values x {len(PROPERTY_NAMES)} properties per method; each
  sweep requests one property (ranges: {range_text}); the others are not requested.
- latents: `z_k = default_rng([{EVAL_LATENT_STREAM}, {design.seed}, k]).standard_normal(z_dim)`, k < {design.num_z},
  a stream independent of step 1's images (and so of the latents the directions were fitted on); the same z for
  every method.

## comparison.csv
{_markdown_table(shown)}

`leakage_mean`: mean |slope| of each other property against the requested one (step-6 units; pose spans 2).
`failed_share`: images the judge could not measure. `female_share`: gender CNN p(woman) >= 0.5 (nan: no model).
`pearson_r_low/high`: 95% Fisher interval (report only; comparison.csv holds the contract columns).

## Files
`{COMPARISON_CSV}`, `{COMPARISON_PNG}` (one sweep row per method for the same latent), and per method
`<method>/` with that method's samples, metrics, leakage matrix, plots and sweep sheets.
"""
