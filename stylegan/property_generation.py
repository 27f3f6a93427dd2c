"""Step 8: faces with requested property values, from either control method, plus sweep grids.

Values are on step 6's normalised scale (eyes, hair_color, hair_length, mouth in [0, 1],
face_pose in [-1, 1]). ``control`` picks the method: ``finetuned`` (step 7's conditional
generator; properties left out are held at its training median) or ``directions`` (latent
directions on the step-1 generator; properties left out follow the edit's own rule, held or free).
``auto`` uses the one that exists; with both, the one step 9's comparison.csv ranks higher with the
real judge (mean Pearson r over the properties), else the fine-tune. ``all`` runs every method that
exists, each into its own folder (the demo uses it). ``refine`` (off | auto | a step-7b checkpoint)
refines the directions' edits with that checkpoint's learned regressor (``stylegan.refine``), into
``generated_refine/`` beside the linear edits; the summary says which regressor, or why auto stayed off.
Image i uses z from (seed, i) as step 1 does, so the same seed gives the same people with either method.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from common.paths import PROPERTY_NAMES, PipelinePaths
from common.settings import (
    SettingError,
    StepConfig,
    flag_of,
    batch_size_setting,
    device_setting,
    limit_setting,
    overwrite_setting,
    seed_setting,
    setting,
    weights_setting,
)
from common.steps import StepError
from stylegan.control_methods import (
    DIRECTIONS,
    FINETUNED,
    REFINE_AUTO,
    REFINE_HELP,
    REFINE_OFF,
    ControlMethod,
)
from stylegan.finetune_schema import FinetuneRunFiles

__all__ = ["GeneratePropertiesConfig", "PropertyGenerationSummary", "MethodGeneration", "PropertyGenerationError",
           "run_generate_with_properties", "choose_control", "CONTROL_OPTIONS", "PROPERTIES_CSV"]

CONTROL_OPTIONS = ("auto", DIRECTIONS, FINETUNED, "all")
PROPERTIES_CSV = "properties.csv"
SWEEP_Z_OFFSET = 10_000  # sweep rows use z from (seed, 10000 + k): other people than the images
Progress = Callable[[int, int], None]


class PropertyGenerationError(StepError, RuntimeError):
    """A missing input or a conflicting output folder (the script prints one line and exits 2)."""


def sweep_list(chosen: Sequence[str]) -> tuple[str, ...]:
    """--sweep values (repeatable, 'all' = every property) -> unique properties in PROPERTY_NAMES order."""
    if "all" in chosen:
        return PROPERTY_NAMES
    return tuple(p for p in PROPERTY_NAMES if p in chosen)


@dataclass(frozen=True)
class GeneratePropertiesConfig(StepConfig):
    """Step 8's settings; every path None = the pipeline's default under ``root``."""

    control: str = setting("auto", choices=CONTROL_OPTIONS,
                           help="auto = the one that exists (with both: step 9's better one, else finetuned); all = "
                                "every one, each into its own folder")
    requested: tuple[float | None, ...] = setting(  # PROPERTY_NAMES order; None = not requested
        (None,) * len(PROPERTY_NAMES), element_flags=tuple(f"--{p.replace('_', '-')}" for p in PROPERTY_NAMES),
        metavar="X", help="normalised {flag} (default: not requested; see --control)")
    num: int = setting(8, low=0, help="images with these values (image i: z from seed, i)")
    seed: int = seed_setting()
    sweeps: tuple[str, ...] = setting((), flag="--sweep", repeat=True, collect=sweep_list, choices=PROPERTY_NAMES,
                                      words={"all": "all"}, metavar="{" + ",".join(PROPERTY_NAMES) + ",all}",
                                      help="write a sweep grid of this property (repeatable; 'all' = every property)")
    sweep_z: int = setting(4, low=1, help="rows (latents) of each sweep grid")
    sweep_values: int = setting(7, low=2, help="columns (values) of each sweep grid")
    weights: str = weights_setting("ema", help="fine-tune: ema = the EMA generator, raw = the trained weights, auto = "
                                               "ema when the checkpoint has it")
    batch_size: int = batch_size_setting(16)
    device: str = device_setting()
    checkpoint: Path | None = setting(None, concept="finetuned_checkpoint", aliases=("--checkpoint",))
    directions: Path | None = setting(None, concept="directions", fill=False)
    stylegan_checkpoint: Path | None = setting(None, concept="stylegan_checkpoint",
                                               help="directions only: the base generator")
    out: Path | None = setting(None, output="dir", help="output folder (default: stylegan/finetuned/generated or "
                                                        "stylegan/directions/generated)")
    overwrite: bool = overwrite_setting()
    refine: str = setting(REFINE_OFF, metavar="{off,auto,PATH}", pattern=r"\s*\S.*",
                          mismatch="must be off, auto or the path of a step-7b checkpoint",
                          help=REFINE_HELP + " (default: off; output default: stylegan/directions/generated_refine)")
    limit: int | None = limit_setting("images (caps --num)")

    def check(self) -> None:
        if self.control == "all" and self.out is not None:
            raise SettingError("--control all writes each method into its own folder; drop --out or pick one "
                               "method")

    def resolved(self) -> GeneratePropertiesConfig:
        """Default paths filled in (the output folder depends on the method: see run_generate_with_properties),
        and ``--limit`` applied to ``--num``."""
        resolved = super().resolved()
        if self.limit is not None:
            resolved = replace(resolved, num=min(self.num, self.limit), limit=None)
        return resolved

    def targets(self) -> np.ndarray:
        """float64 [P]: the requested values as typed, NaN where not set."""
        return np.array([np.nan if v is None else v for v in self.requested], dtype=np.float64)


@dataclass(frozen=True)
class MethodGeneration:
    """What one method wrote."""

    out_dir: Path
    control: str
    written: int
    skipped: int
    unreached: int
    sweeps: tuple[str, ...]
    source: str

    def text(self) -> str:
        sweeps = f", sweep grids for {', '.join(self.sweeps)}" if self.sweeps else ""
        unreached = (f" ({self.unreached} could not reach every requested value within the edit's cap; see "
                     "properties.csv)" if self.unreached else "")
        return (f"{self.control}: {self.written} images written ({self.skipped} already there){unreached}{sweeps} "
                f"in {self.out_dir} from {self.source}")


@dataclass(frozen=True)
class PropertyGenerationSummary:
    runs: tuple[MethodGeneration, ...]
    seconds: float
    refine_note: str = ""    # what --refine resolved to (directions only; empty when off or not asked)

    def line(self) -> str:
        note = f"; {self.refine_note}" if self.refine_note else ""
        return f"step 8: {'; '.join(run.text() for run in self.runs)}{note} in {self.seconds:.1f}s"


def choose_control(paths: PipelinePaths, finetuned: Path | None, directions: Path | None,
                   comparison_csv: Path | None = None) -> str:
    """``auto``: the method that exists; with both, step 9's better one (real judge), else the fine-tune."""
    if finetuned is None and directions is None:
        raise PropertyGenerationError(
            f"no control method: no fine-tuned checkpoint in {FinetuneRunFiles(paths.finetuned_dir).checkpoints_dir} and no "
            f"directions file {paths.directions_pt}; run step 7 (07_fit_latent_directions.py or "
            "07_finetune_stylegan.py) or pass --finetuned-checkpoint / --directions")
    if finetuned is None or directions is None:
        return FINETUNED if finetuned is not None else DIRECTIONS
    csv = comparison_csv or paths.comparison_csv
    if csv.is_file():
        import pandas as pd

        try:
            table = pd.read_csv(csv)
            real = table[table["judge"] == "segmentation"]
            means = real.groupby("method")["pearson_r"].mean()
            if DIRECTIONS in means and FINETUNED in means and np.isfinite(means).all():
                return DIRECTIONS if means[DIRECTIONS] > means[FINETUNED] else FINETUNED
        except (ValueError, KeyError, pd.errors.ParserError):
            pass  # an unreadable comparison is no reason to fail: fall back to the fine-tune
    return FINETUNED


def refined_generated_dir(paths: PipelinePaths) -> Path:
    """Default output of ``--control directions --refine ...``: beside the linear edits, never mixed with them."""
    return paths.directions_refined_generated_dir


def _load_methods(config: GeneratePropertiesConfig, device) -> tuple[list[tuple[ControlMethod, str, Path]], str]:
    """The chosen method(s), each with a description of its source and its default output folder, and
    what ``refine`` resolved to (a note for the summary; empty when no directions method runs)."""
    from stylegan.control_methods import (
        load_directions_method, load_finetuned_method, resolve_refine, with_refiner,
    )
    from stylegan.finetune_schema import find_latest_checkpoint

    paths = config.paths
    finetuned = config.checkpoint or find_latest_checkpoint(paths.finetuned_dir)
    directions = config.directions or (paths.directions_pt if paths.directions_pt.is_file() else None)
    if config.control == "all":
        controls = [c for c, found in ((DIRECTIONS, directions), (FINETUNED, finetuned)) if found is not None]
        if not controls:
            choose_control(paths, None, None)  # raises the "no control method" error
    elif config.control == "auto":
        controls = [choose_control(paths, finetuned, directions)]
    else:
        controls = [config.control]
    out, note = [], ""
    for control in controls:
        if control == FINETUNED:
            if finetuned is None:
                raise PropertyGenerationError(f"no fine-tuned checkpoint in {FinetuneRunFiles(paths.finetuned_dir).checkpoints_dir}; "
                                              f"run 07_finetune_stylegan.py or pass {flag_of(config, 'checkpoint')}")
            _refuse_overlap(config.out or paths.finetuned_generated_dir, {flag_of(config, "checkpoint"): finetuned})
            method = load_finetuned_method(finetuned, device, config.batch_size, config.weights)
            out.append((method, f"{finetuned}, {config.weights} weights", paths.finetuned_generated_dir))
            continue
        if directions is None:
            raise PropertyGenerationError(f"no directions file {paths.directions_pt}; run 07_fit_latent_directions.py "
                                          "or pass --directions")
        base = config.stylegan_checkpoint or paths.stylegan_checkpoint
        refine = resolve_refine(config.refine, paths.finetuned_dir, config.checkpoint)
        default_out = refined_generated_dir(paths) if refine.on else paths.directions_generated_dir
        _refuse_overlap(config.out or default_out, {"--directions": directions, "--stylegan-checkpoint": base,
                                                     "--refine": refine.checkpoint})
        method = load_directions_method(base, directions, device, config.batch_size)
        source = f"{directions} on {base}"
        if refine.on:
            try:
                method = with_refiner(method, refine.checkpoint)
            except ValueError as exc:  # mismatched or regressor-less checkpoint: the step's one-line error
                raise PropertyGenerationError(str(exc)) from exc
            source += f", refined with the regressor of {refine.checkpoint}"
        note = refine.note
        out.append((method, source, default_out))
    if DIRECTIONS not in controls and str(config.refine) != REFINE_OFF:
        if str(config.refine) != REFINE_AUTO:
            raise PropertyGenerationError(f"--refine {config.refine} refines the directions route, which does not "
                                          f"run here (control {', '.join(controls)}); use --control directions or "
                                          "--refine off")
        note = f"refine auto: not used (control {', '.join(controls)})"
    return out, note


def _refuse_overlap(out_dir: Path, inputs: dict[str, Path]) -> None:
    """The output folder never is, holds or sits inside a model file it reads (one-line error)."""
    from common.folders import FolderOverlapError, refuse_overlap

    try:
        refuse_overlap({"--out": out_dir}, inputs)
    except FolderOverlapError as exc:
        raise PropertyGenerationError(str(exc)) from exc


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-9


def _check_existing(csv_path: Path, out_dir: Path, names: list[str], frame, control: str, seed: int):
    """Refuse a folder holding images made with other values, seed or method (resume needs the same ones)."""
    from common.io import read_csv_checked

    old = read_csv_checked(csv_path, ["img_name", "seed", *PROPERTY_NAMES]).set_index("img_name")
    new = frame.set_index("img_name")
    for name in names:
        if name in old.index and (out_dir / name).exists():
            row = old.loc[name]
            same_method = str(row.get("control", FINETUNED)) == control
            same_values = all(_same(float(row[p]), float(new.at[name, p])) for p in PROPERTY_NAMES)
            if int(row["seed"]) != seed or not same_values or not same_method:
                raise PropertyGenerationError(f"{out_dir} holds {name} made with other values, seed or method; use "
                                              "another --out or --overwrite")
    return old


def run_generate_with_properties(config: GeneratePropertiesConfig,
                                 progress: Progress | None = None) -> PropertyGenerationSummary:
    """Write ``num`` images for one property vector and a sweep grid per requested property, per method.

    Resumable: images that exist are skipped, provided properties.csv says they were made with the
    same values, seed and method (otherwise an error, or overwrite). Every model is loaded (and
    checked) before anything is written. progress(done, total) after every batch.
    """
    from common.runtime import resolve_device

    start = time.perf_counter()
    config = config.resolved()
    device = resolve_device(config.device)  # a DeviceError is a StepError
    methods, refine_note = _load_methods(config, device)
    per_method = config.num + len(config.sweeps) * config.sweep_z * config.sweep_values
    total, done = per_method * len(methods), 0

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    runs = tuple(_generate(config, method, source, Path(config.out) if config.out is not None else default_out, tick)
                 for method, source, default_out in methods)
    return PropertyGenerationSummary(runs, time.perf_counter() - start, refine_note)


def _generate(config: GeneratePropertiesConfig, method: ControlMethod, source: str, out_dir: Path,
              tick: Callable[[int], None]) -> MethodGeneration:
    import pandas as pd

    from common.io import atomic_save_image, atomic_write_csv
    from stylegan.generate import latents_for

    targets = config.targets()
    if method.name == FINETUNED:  # what the conditional generator is actually given
        targets = np.where(np.isnan(targets), method.median.astype(np.float64), targets)
    names = [f"{i:06d}.png" for i in range(config.num)]
    frame = pd.DataFrame({"img_name": names, "index": range(config.num), "seed": config.seed,
                          **{p: float(targets[j]) for j, p in enumerate(PROPERTY_NAMES)},
                          "control": method.name, "source": source})
    csv_path = out_dir / PROPERTIES_CSV
    reached_all = np.ones(config.num, dtype=bool)
    if csv_path.is_file() and not config.overwrite:
        old = _check_existing(csv_path, out_dir, names, frame, method.name, config.seed)
        if "reached" in old:  # images kept from an earlier run keep their report
            known = old["reached"].reindex(names)
            reached_all = np.where(known.isna(), True, known.astype(str) == "True").astype(bool)
    todo = [i for i in range(config.num) if config.overwrite or not (out_dir / names[i]).exists()]
    tick(config.num - len(todo))
    for first in range(0, len(todo), config.batch_size):
        batch = todo[first:first + config.batch_size]
        z = latents_for(config.seed, batch, method.z_dim)
        images, reached = method.render(z, np.repeat(targets[None], len(batch), axis=0), return_report=True)
        for i, image, ok in zip(batch, images, reached):
            atomic_save_image(out_dir / names[i], image)
            reached_all[i] = bool(ok.all())
        tick(len(batch))
    out_dir.mkdir(parents=True, exist_ok=True)
    frame["reached"] = reached_all
    atomic_write_csv(csv_path, frame)
    ranges = _ranges(config, method)
    for prop in config.sweeps:
        atomic_save_image(out_dir / f"sweep_{prop}.png", _sweep_sheet(method, config, targets, ranges, prop))
        tick(config.sweep_z * config.sweep_values)
    return MethodGeneration(out_dir, method.name, len(todo), config.num - len(todo), int((~reached_all).sum()),
                            tuple(config.sweeps), source)


def _ranges(config: GeneratePropertiesConfig, method: ControlMethod) -> dict[str, tuple[float, float]]:
    """The method's own ranges, else step 6's normalisation, else the scale's nominal range."""
    import json

    from stylegan.conditional import property_ranges

    if method.ranges:
        return dict(method.ranges)
    norm = config.paths.normalization_json
    if norm.is_file():
        try:
            return property_ranges({"normalization": json.loads(norm.read_text())})
        except (ValueError, AttributeError):
            pass
    return property_ranges({})


def _sweep_sheet(method: ControlMethod, config: GeneratePropertiesConfig, centre: np.ndarray,
                 ranges: dict[str, tuple[float, float]], prop: str):
    """Rows: latents (seed, 10000 + k); columns: ``prop`` from its min to its max, the rest as requested."""
    from common.contact_sheet import make_contact_sheet
    from stylegan.generate import latents_for

    j = PROPERTY_NAMES.index(prop)
    values = np.linspace(ranges[prop][0], ranges[prop][1], config.sweep_values, dtype=np.float32)
    z = latents_for(config.seed, range(SWEEP_Z_OFFSET, SWEEP_Z_OFFSET + config.sweep_z), method.z_dim)
    z_rows = np.repeat(z, config.sweep_values, axis=0)
    targets = np.repeat(centre[None], len(z_rows), axis=0)
    targets[:, j] = np.tile(values, config.sweep_z)
    images, reached = [], []
    for first in range(0, len(z_rows), config.batch_size):
        sl = slice(first, first + config.batch_size)
        batch, ok = method.render(z_rows[sl], targets[sl], return_report=True)
        images += list(batch)
        reached += list(ok[:, j])
    captions = [f"{prop[:6]}={v:.2f}" + ("" if ok else " x") for v, ok in zip(targets[:, j], reached)]
    title = (f"{method.name}: {prop} from {ranges[prop][0]:g} to {ranges[prop][1]:g}; rows: z; others fixed"
             + ("; x = not reached" if not all(reached) else ""))
    return make_contact_sheet(images, captions, ncols=config.sweep_values, thumb=96, title=title)

