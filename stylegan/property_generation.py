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

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from common.paths import PROPERTY_NAMES
from common.settings import (
    SettingError,
    StepConfig,
    batch_size_setting,
    device_setting,
    limit_setting,
    overwrite_setting,
    seed_setting,
    setting,
    weights_setting,
)
from common.steps import Progress, ProgressCounter, StepError
from stylegan.control_methods import (
    DIRECTIONS,
    FINETUNED,
    REFINE_OFF,
    SEFA,
    ControlMethod,
    generator_entry_setting,
    refine_setting,
)
from stylegan.control_resolver import resolve_control_methods
from stylegan.sweeps import sweep_targets

__all__ = ["GeneratePropertiesConfig", "PropertyGenerationSummary", "MethodGeneration", "PropertyGenerationError",
           "run_generate_with_properties", "CONTROL_OPTIONS", "PROPERTIES_CSV"]

CONTROL_OPTIONS = ("auto", DIRECTIONS, FINETUNED, SEFA, "all")
PROPERTIES_CSV = "properties.csv"
SWEEP_Z_OFFSET = 10_000  # sweep rows use z from (seed, 10000 + k): other people than the images
SWEEP_MAX = 256  # rows or columns of a sweep grid: a sheet of 96-pixel thumbnails, still an image one can open
REQUEST_LIMIT = 1e6  # a normalised request beyond this is no face any method makes (and past float32 it overflowed
#                      to an unedited image reported as reached)


class PropertyGenerationError(StepError, RuntimeError):
    """A missing input or a conflicting output folder (the script prints one line and exits 2)."""


def sweep_list(chosen: Sequence[str]) -> tuple[str, ...]:
    """--sweep values (repeatable, 'all' = every property) -> unique properties in PROPERTY_NAMES order."""
    if "all" in chosen:
        return PROPERTY_NAMES
    return tuple(p for p in PROPERTY_NAMES if p in chosen)


def _sweeps_given(given: Sequence[tuple[str, ...]]) -> tuple[str, ...]:
    """Every --sweep (each may list several, comma-separated) -> unique properties in PROPERTY_NAMES order."""
    return sweep_list([name for names in given for name in names])


@dataclass(frozen=True)
class GeneratePropertiesConfig(StepConfig):
    """Step 8's settings; every path None = the pipeline's default under ``root``."""

    control: str = setting("auto", choices=CONTROL_OPTIONS,
                           help="auto = the one that exists (with both: step 9's better one, else finetuned); all = "
                                "every one, each into its own folder")
    requested: tuple[float | None, ...] = setting(  # PROPERTY_NAMES order; None = not requested
        (None,) * len(PROPERTY_NAMES), element_flags=tuple(f"--{p.replace('_', '-')}" for p in PROPERTY_NAMES),
        metavar="X", low=-REQUEST_LIMIT, high=REQUEST_LIMIT,
        help="normalised {flag} (default: not requested; see --control)")
    num: int = setting(8, low=0, help="images with these values (image i: z from seed, i)")
    seed: int = seed_setting()
    sweeps: tuple[str, ...] = setting((), flag="--sweep", repeat=True, collect=_sweeps_given, choices=PROPERTY_NAMES,
                                      words={"all": PROPERTY_NAMES}, metavar="{" + ",".join(PROPERTY_NAMES) + ",all}",
                                      help="write a sweep grid of this property (repeatable; 'all' = every property)")
    sweep_z: int = setting(4, low=1, high=SWEEP_MAX, help="rows (latents) of each sweep grid")
    sweep_values: int = setting(7, low=2, high=SWEEP_MAX, help="columns (values) of each sweep grid")
    weights: str = weights_setting("ema", help="fine-tune: ema = the EMA generator, raw = the trained weights, auto = "
                                               "ema when the checkpoint has it")
    batch_size: int = batch_size_setting(16)
    device: str = device_setting()
    checkpoint: Path | None = setting(None, concept="finetuned_checkpoint", aliases=("--checkpoint",))
    directions: Path | None = setting(None, concept="directions", fill=False)
    sefa: Path | None = setting(None, path="sefa_pt", fill=False,
                                help="SeFa directions for --control sefa (default: stylegan/directions/sefa.pt, from "
                                     "step 7a)")
    stylegan_checkpoint: Path | None = setting(None, concept="stylegan_checkpoint",
                                               help="directions only: the base generator")
    out: Path | None = setting(None, output="dir", path="finetuned_generated_dir", fill=False,
                               help="output folder (default: stylegan/finetuned/generated or "
                                    "stylegan/directions/generated, by method)")
    overwrite: bool = overwrite_setting()
    refine: str = refine_setting(REFINE_OFF, " (default: off; output default: stylegan/directions/generated_refine)")
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
        body = "; ".join(run.text() for run in self.runs)
        # a refine that ran is named by its method's text already; the note says why one did not
        note = f"; {self.refine_note}" if self.refine_note and self.refine_note not in body else ""
        return f"step 8: {body}{note} in {self.seconds:.1f}s"


def _load_methods(config: GeneratePropertiesConfig, device
                  ) -> tuple[list[tuple[ControlMethod, str, Path, dict[str, Path | None]]], str]:
    """The chosen method(s) (``stylegan.control_resolver``), each with a description of its source, its
    output folder and the files it reads (its recipe's inputs), and what ``refine`` resolved to (a note
    for the summary; empty when off)."""
    from common.folders import image_folders, refuse_overlap

    plan = resolve_control_methods(config.paths, config.control,
                                   {DIRECTIONS: config.directions, SEFA: config.sefa, FINETUNED: config.checkpoint},
                                   config.stylegan_checkpoint, config.refine, config.checkpoint)
    out_dirs = {name: Path(config.out) if config.out is not None else plan.generated_dir(name) for name in plan.names}
    for name, out_dir in out_dirs.items():  # never is, holds or sits inside a file it reads or another step's images
        refuse_overlap({"--out": out_dir}, plan.inputs(name), reserved=image_folders(config.paths))
    methods = []
    for name, out_dir in out_dirs.items():
        files = {flag.lstrip("-").replace("-", "_"): path for flag, path in plan.inputs(name).items()}
        methods.append((plan.load_one(name, device, config.batch_size, config.weights),
                        plan.describe(name, config.weights), out_dir, files))
    return methods, plan.refine.note


OWNED = ("[0-9][0-9][0-9][0-9][0-9][0-9].png", PROPERTIES_CSV, "sweep_*.png")
"""Step 8's own files in its folder (``--overwrite`` removes them; found without a recipe, they are refused)."""


def _known_reached(csv_path: Path, out_dir: Path) -> dict[str, bool]:
    """img_name -> reached, for the images properties.csv lists and the folder holds (this recipe's:
    the folder's recipe was checked first)."""
    from common.io import read_csv_checked

    if not csv_path.is_file():
        return {}
    old = read_csv_checked(csv_path, ["img_name", "reached"], dtype={"img_name": str, "reached": str})
    return {name: reached.strip() == "True" for name, reached in zip(old["img_name"], old["reached"])
            if (out_dir / name).is_file()}


def run_generate_with_properties(config: GeneratePropertiesConfig,
                                 progress: Progress | None = None) -> PropertyGenerationSummary:
    """Write ``num`` images for one property vector and a sweep grid per requested property, per method.

    Resumable under the recipe rule (``common.recipe``): each method's folder records its recipe (method,
    values, seed, weights, device type, the fingerprints of the files it reads) before the first image,
    and properties.csv lists each image as its batch is written; an image that properties.csv lists is
    skipped when the folder's recipe is this run's, and a folder made by another recipe is refused
    (``overwrite`` starts over). Every model is loaded (and checked) before anything is written.
    progress(done, total) after every batch.
    """
    from common.runtime import resolve_device

    start = time.perf_counter()
    config = config.resolved()
    device = resolve_device(config.device)  # a DeviceError is a StepError
    methods, refine_note = _load_methods(config, device)
    per_method = config.num + len(config.sweeps) * config.sweep_z * config.sweep_values
    tick = ProgressCounter(progress, per_method * len(methods))
    runs = tuple(_generate(config, method, source, out_dir, tick, files, device)
                 for method, source, out_dir, files in methods)
    return PropertyGenerationSummary(runs, time.perf_counter() - start, refine_note)


def _recipe(config: GeneratePropertiesConfig, method: ControlMethod, targets: np.ndarray,
            files: dict[str, Path | None], device):
    """What step 8's images are made from: not --num, --batch-size, the sweeps (redrawn every run) or paths."""
    from common.recipe import Recipe

    settings = {"control": method.name, "requested": dict(zip(PROPERTY_NAMES, targets.tolist())),
                "seed": config.seed, "device_type": getattr(device, "type", str(device)), "dtype": "float32"}
    if method.name == FINETUNED:
        settings["weights"] = config.weights
    else:
        settings.update(generator_entry_setting(method.generator.checkpoint_key))
    return Recipe.of("8", settings, files)


def _generate(config: GeneratePropertiesConfig, method: ControlMethod, source: str, out_dir: Path,
              tick: Callable[[int], None], files: dict[str, Path | None], device) -> MethodGeneration:
    from common.recipe import claim_output, owned_by_patterns

    targets = config.targets()
    if method.name == FINETUNED:  # what the conditional generator is actually given
        targets = np.where(np.isnan(targets), method.median.astype(np.float64), targets)
    recipe = _recipe(config, method, targets, files, device)
    with claim_output(out_dir, recipe, overwrite=config.overwrite, owned=owned_by_patterns(*OWNED),
                      info={"source": source}, what="images") as claim:
        return _render_into(config, method, source, out_dir, targets, tick, claim.continued)


def _render_into(config: GeneratePropertiesConfig, method: ControlMethod, source: str, out_dir: Path,
                 targets: np.ndarray, tick: Callable[[int], None], continued: bool) -> MethodGeneration:
    import pandas as pd

    from common.io import atomic_save_image, atomic_write_csv
    from stylegan.generate import latents_for

    names = [f"{i:06d}.png" for i in range(config.num)]
    csv_path = out_dir / PROPERTIES_CSV
    known = _known_reached(csv_path, out_dir) if continued else {}
    reached_all = {name: ok for name, ok in known.items()}
    todo = [i for i in range(config.num) if names[i] not in known]
    tick(config.num - len(todo))

    def write_list() -> None:
        """properties.csv for every image written so far (kept beyond --num too): written after each batch."""
        listed = sorted(reached_all)
        index = [int(Path(n).stem) for n in listed]
        frame = pd.DataFrame({"img_name": listed, "index": index, "seed": config.seed,
                              **{p: float(targets[j]) for j, p in enumerate(PROPERTY_NAMES)},
                              "control": method.name, "source": source, "reached": [reached_all[n] for n in listed]})
        atomic_write_csv(csv_path, frame)

    for first in range(0, len(todo), config.batch_size):
        batch = todo[first:first + config.batch_size]
        z = latents_for(config.seed, batch, method.z_dim)
        images, reached = method.render(z, np.repeat(targets[None], len(batch), axis=0), return_report=True)
        for i, image, ok in zip(batch, images, reached):
            atomic_save_image(out_dir / names[i], image)
            reached_all[names[i]] = bool(ok.all())
        write_list()
        tick(len(batch))
    if not todo:
        write_list()
    ranges = _ranges(config, method)
    for prop in config.sweeps:
        atomic_save_image(out_dir / f"sweep_{prop}.png", _sweep_sheet(method, config, targets, ranges, prop))
        tick(config.sweep_z * config.sweep_values)
    unreached = sum(not reached_all[n] for n in names)
    return MethodGeneration(out_dir, method.name, len(todo), config.num - len(todo), unreached,
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
    targets = sweep_targets(np.repeat(centre[None], config.sweep_z, axis=0), j, values)
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

