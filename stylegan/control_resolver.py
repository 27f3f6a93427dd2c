"""Which control methods a step uses, and from which files: one resolver for steps 8, 9 and the studio.

Before it, step 8 (``property_generation._load_methods``) and step 9
(``evaluate_control_step.load_methods_and_refine``) each discovered the files, handled ``--refine``
and guarded their outputs, with near-identical messages, and the studio found its files a third way.

:data:`METHOD_SOURCES` is a plain table: for each method that needs a file of its own, how the
pipeline finds that file, which flag names it, which script makes it, how it loads and where
step 8 writes its faces. A new method (e.g. SeFa) is one more row; the baseline needs no row (it is
the base generator, which every route reads). No registry, no names looked up as strings.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.concepts import CONCEPTS
from common.paths import PipelinePaths
from stylegan.conditional import newest_valid_checkpoint
from stylegan.control_methods import (
    DIRECTIONS,
    FINETUNED,
    SEFA,
    REFINE_AUTO,
    REFINE_OFF,
    ControlMethod,
    ControlMethodError,
    DirectionsMethod,
    RefineChoice,
    load_baseline_method,
    load_directions_method,
    load_finetuned_method,
    resolve_refine,
    with_refiner,
)
from stylegan.finetune_schema import FinetuneRunFiles

__all__ = ["MethodSource", "METHOD_SOURCES", "MethodPlan", "ControlMethodError", "MissingMethodError",
           "find_method_files", "no_method_message", "choose_control", "resolve_control_methods"]


class MissingMethodError(ControlMethodError, FileNotFoundError):
    """The file of a requested control method (or of every method) is absent."""


@dataclass(frozen=True)
class MethodSource:
    """How one control method is found, loaded and named to the user."""

    name: str                                                 # --control value, comparison.csv's method
    flag: str                                                 # the flag that names its file
    made_by: str                                              # the script that makes the file
    default: Callable[[PipelinePaths], Path | None]           # the pipeline's file when no flag gives one
    absent: Callable[[PipelinePaths], str]                    # "no <file> in <where>" (no fix)
    load: Callable[[Path, MethodPlan, Any, int, str], ControlMethod]  # (file, plan, device, batch, weights)
    describe: Callable[[Path, MethodPlan, str], str]        # one line for summaries: (file, plan, weights)
    generated_dir: Callable[[PipelinePaths], Path]            # step 8's default output folder

    def missing(self, paths: PipelinePaths) -> str:
        return f"{self.absent(paths)}; run {self.made_by} or pass {self.flag}"


def _default_directions(paths: PipelinePaths) -> Path | None:
    return paths.directions_pt if paths.directions_pt.is_file() else None


def _default_sefa(paths: PipelinePaths) -> Path | None:
    return paths.sefa_pt if paths.sefa_pt.is_file() else None


METHOD_SOURCES: tuple[MethodSource, ...] = (
    MethodSource(
        DIRECTIONS, CONCEPTS["directions"].flag, "07_fit_latent_directions.py", _default_directions,
        lambda paths: f"no directions file {paths.directions_pt}",
        lambda file, plan, device, batch, weights: load_directions_method(plan.stylegan, file, device, batch),
        lambda file, plan, weights: f"{file} on {plan.stylegan}",
        lambda paths: paths.directions_generated_dir),
    MethodSource(
        SEFA, "--sefa", "07_fit_latent_directions.py", _default_sefa,
        lambda paths: f"no SeFa directions file {paths.sefa_pt}",
        lambda file, plan, device, batch, weights: load_directions_method(plan.stylegan, file, device, batch,
                                                                          name=SEFA),
        lambda file, plan, weights: f"{file} (SeFa) on {plan.stylegan}",
        lambda paths: paths.sefa_generated_dir),
    MethodSource(
        FINETUNED, CONCEPTS["finetuned_checkpoint"].flag, "07_finetune_stylegan.py",
        lambda paths: newest_valid_checkpoint(paths.finetuned_dir),  # a newer unreadable file: skipped, said
        lambda paths: f"no fine-tuned checkpoint in {FinetuneRunFiles(paths.finetuned_dir).checkpoints_dir}",
        lambda file, plan, device, batch, weights: load_finetuned_method(file, device, batch, weights),
        lambda file, plan, weights: f"{file}, {weights} weights",
        lambda paths: paths.finetuned_generated_dir),
)
"""Every method with a file of its own, in the order steps run and report them."""
_SOURCES = {source.name: source for source in METHOD_SOURCES}


def find_method_files(paths: PipelinePaths,
                      given: Mapping[str, Path | None] | None = None) -> dict[str, Path | None]:
    """Method -> its file: the one ``given`` (a flag), else the pipeline's, else None (absent).

    The pipeline's fine-tune is its newest *valid* checkpoint (a newer file that does not read is
    skipped with a warning)."""
    given = given or {}
    return {s.name: (Path(given[s.name]) if given.get(s.name) is not None else s.default(paths))
            for s in METHOD_SOURCES}


def no_method_message(paths: PipelinePaths, reasons: list[str] | None = None) -> str:
    """The one line for a root where no control method exists (``reasons``: each method's, fix included)."""
    if reasons:
        return f"no control method under {paths.root}: {'; '.join(reasons)}"
    absent = " and ".join(s.absent(paths) for s in METHOD_SOURCES)
    scripts = " or ".join(s.made_by for s in METHOD_SOURCES)
    flags = " / ".join(s.flag for s in METHOD_SOURCES)
    return f"no control method under {paths.root}: {absent}; run step 7 ({scripts}) or pass {flags}"


def choose_control(paths: PipelinePaths, found: Mapping[str, Path | None],
                   comparison_csv: Path | None = None) -> str:
    """``auto``: the method that exists; with several, step 9's best (mean Pearson r with the real judge
    in comparison.csv), else the fine-tune (the pipeline's main route)."""
    present = [name for name, file in found.items() if file is not None]
    if not present:
        raise MissingMethodError(no_method_message(paths))
    if len(present) == 1:
        return present[0]
    csv = comparison_csv or paths.comparison_csv
    if csv.is_file():
        import pandas as pd

        try:
            table = pd.read_csv(csv)
            means = table[table["judge"] == "segmentation"].groupby("method")["pearson_r"].mean()
            ranked = means[[name for name in present if name in means.index]]
            if len(ranked) == len(present) and np.isfinite(ranked).all():  # a tie goes to the fine-tune
                return max(present, key=lambda name: (float(ranked[name]), name == FINETUNED))
        except (ValueError, KeyError, pd.errors.ParserError):
            pass  # an unreadable comparison is no reason to fail: fall back to the fine-tune
    return FINETUNED if FINETUNED in present else present[0]


@dataclass(frozen=True)
class MethodPlan:
    """What a step runs: the chosen methods (table order) and their files, the base generator, and
    what ``--refine`` resolved to. Nothing is loaded until :meth:`load`."""

    paths: PipelinePaths
    files: dict[str, Path]          # chosen method -> its file
    stylegan: Path                  # the base generator (baseline and directions)
    refine: RefineChoice

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.files)

    def inputs(self, name: str | None = None) -> dict[str, Path | None]:
        """Flag -> file that the methods (or one of them) read: for ``common.folders.refuse_overlap``."""
        names = self.names if name is None else (name,)
        files: dict[str, Path | None] = {_SOURCES[n].flag: self.files[n] for n in names}
        if name is None or name in (DIRECTIONS, SEFA):
            files["--stylegan-checkpoint"] = self.stylegan
        if name is None or name == DIRECTIONS:
            files["--refine"] = self.refine.checkpoint
            if self.refine.correction is not None:   # step 7c's file: a recipe input of the refined edits
                files["edit-correction"] = self.refine.correction
        return files

    def describe(self, name: str, weights: str) -> str:
        text = _SOURCES[name].describe(self.files[name], self, weights)
        if name == DIRECTIONS and self.refine.on:
            text += f", {self.refine.note}"   # the regressor, and the edit correction or why none
        return text

    def generated_dir(self, name: str) -> Path:
        """Step 8's default output folder of a method (the refined edits beside, never inside, the linear)."""
        if name == DIRECTIONS and self.refine.on:
            return self.paths.directions_refined_generated_dir
        return _SOURCES[name].generated_dir(self.paths)

    def load_one(self, name: str, device: Any, batch_size: int, weights: str) -> ControlMethod:
        """One chosen method; the directions come refined when ``--refine`` is on (step 8)."""
        method = _SOURCES[name].load(self.files[name], self, device, batch_size, weights)
        return self._refined(method) if name == DIRECTIONS and self.refine.on else method

    def load(self, device: Any, batch_size: int, weights: str, baseline: bool = False) -> list[ControlMethod]:
        """Every chosen method, in table order; ``baseline`` puts the unedited generator first, and
        with ``--refine`` on ``directions+refine`` follows ``directions`` on the same generator (step 9)."""
        methods: list[ControlMethod] = []
        entries: dict[str, str] = {}    # method -> the generator entry it renders in (the latent-direction ones)
        for name in self.names:
            methods.append(_SOURCES[name].load(self.files[name], self, device, batch_size, weights))
            if isinstance(methods[-1], DirectionsMethod):
                entries[name] = methods[-1].generator.checkpoint_key
            if name == DIRECTIONS and self.refine.on:
                methods.append(self._refined(methods[-1]))
        if baseline:   # the unedited faces in the entry the directions render in (step 1's), else the smoothed one
            if len(set(entries.values())) > 1:
                # one unedited face per latent is the reference of every method's identity and FID: edits made
                # in another entry's w space would be judged against another face
                raise ControlMethodError(
                    "the latent-direction methods render in different generator entries ("
                    + ", ".join(f"{label}: '{entry}'" for label, entry in entries.items())
                    + f") of {self.stylegan}; step 9 compares them against one unedited face per latent; fix: "
                    "fit directions.pt and sefa.pt with one --weights in step 7a, or compare them in separate "
                    "runs (--control directions / --control sefa, each with its own --out)")
            entry = next(iter(entries.values()), "auto")
            methods.insert(0, load_baseline_method(self.stylegan, device, batch_size, which=entry))
        return methods

    def _refined(self, method: ControlMethod) -> ControlMethod:
        try:
            return with_refiner(method, self.refine.checkpoint, correction=self.refine.correction)
        except ValueError as exc:  # mismatched or regressor-less checkpoint: one line
            raise ControlMethodError(str(exc)) from exc


def resolve_control_methods(paths: PipelinePaths, control: str,
                            given: Mapping[str, Path | None] | None = None,
                            stylegan_checkpoint: Path | None = None, refine: str | Path = REFINE_OFF,
                            refine_checkpoint: Path | None = None) -> MethodPlan:
    """The plan for ``control``: ``all`` = every method that exists (at least one), ``auto`` =
    :func:`choose_control`, a method's name = that one (its file must exist).

    ``given``: method -> the file its flag names (None = the pipeline's). ``refine``: off | auto | a
    step-7b checkpoint; ``auto`` prefers ``refine_checkpoint`` (the step's --finetuned-checkpoint). It refines
    the directions only: with a path and no directions run it is an error, with auto a note.
    """
    found = find_method_files(paths, given)
    if control == "all":
        chosen = [name for name, file in found.items() if file is not None]
        if not chosen:
            raise MissingMethodError(no_method_message(paths))
    elif control == "auto":
        chosen = [choose_control(paths, found)]
    elif control in _SOURCES:
        if found[control] is None:
            raise MissingMethodError(_SOURCES[control].missing(paths))
        chosen = [control]
    else:
        raise ControlMethodError(f"unknown control method {control!r}; allowed: all, auto, "
                                 f"{', '.join(_SOURCES)}")
    if DIRECTIONS in chosen:
        try:
            choice = resolve_refine(refine, paths.finetuned_dir, refine_checkpoint)
        except FileNotFoundError as exc:
            raise MissingMethodError(str(exc)) from exc
        choice = choice.with_correction(paths.edit_correction_pt, Path(stylegan_checkpoint or paths.stylegan_checkpoint),
                                        found[DIRECTIONS])
    elif str(refine) == REFINE_OFF:
        choice = RefineChoice(None, "")
    elif str(refine) == REFINE_AUTO:
        choice = RefineChoice(None, f"refine auto: not used (control {', '.join(chosen)})")
    else:
        raise ControlMethodError(f"--refine {refine} refines the directions route, which does not run "
                                 f"here (control {', '.join(chosen)}); use --control directions or --refine off")
    return MethodPlan(paths, {name: found[name] for name in chosen},
                      Path(stylegan_checkpoint or paths.stylegan_checkpoint), choice)
