"""Run the numbered steps in order (the integration layer: the only package that imports all others).

Each step's config is built by its own script from the same flags a person would type
(``build_parser`` + ``config_from_args``), then the step's package function is called from one
table (``STEPS``) and its ``Summary`` object is read: no step's printed text is parsed. Steps are named "1" .. "9"; step 7 has two routes that
both lead to steps 8 and 9 and both run: "7a" (latent directions, no training; first) and "7b" (the
fine-tune), then "7c" (the refine option's edit correction, which needs both). ``--from 7`` starts at 7a,
``--to 7`` ends after 7c. A finished step leaves a marker
``{root}/.pipeline/step{ID}.json`` holding its arguments and the fingerprints (size + sha256) of the
files it read and of the single files it wrote; a later run skips a step only when its marker matches AND its
outputs exist unchanged, until an earlier step actually ran again (then every later step runs too: each is
resumable, so only new work is done). A swapped checkpoint at the same path, or deleted or damaged outputs, make
the step run again; outputs made again by the step's own script under other settings (the recipe beside them
changed too) are a person's and are kept.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.cli import StepStopped, parse_step_config, progress_bar, python_command, run_guarded
from common.fingerprint import file_fingerprint
from common.io import atomic_write_json
from common.paths import GENERATION_JSON, REPO_ROOT, PipelinePaths
from common.recipe import RECIPE_JSON
from common.settings import SettingError, Settings, device_setting, setting
from common.steps import USER_ERRORS, Summary
from gender_cnn.filter import FILTER_RECIPE
from gender_cnn.hand_labels import hand_labels_digest
from gender_cnn.schema import TRAIN_CONFIG_JSON
from stylegan.finetune_schema import FinetuneRunFiles, find_latest_checkpoint
from stylegan.generate import MANIFEST_NAME

logger = logging.getLogger(__name__)

SCRIPTS_DIR = REPO_ROOT / "stylegan_and_segmentation"
DEMO_ROOT = REPO_ROOT / "demo_run"
MARKER_DIR = ".pipeline"

@dataclass(frozen=True)
class Step:
    """One row of the pipeline: its script (flags -> config) and its package function (config -> Summary)."""

    id: str
    script: str
    what: str
    run: str                          # "package.module:function" the script calls, imported when the step runs
    unattended: tuple[str, ...] = ()  # flags the runner adds: no person is there (step 2 serves no page)


STEPS: dict[str, Step] = {step.id: step for step in (
    Step("1", "01_generate_images.py", "generate images", "stylegan.generate:run_generate"),
    Step("2", "02_label_images.py", "hand labels", "gender_cnn.labeller.step:run_labeller", ("--no-serve",)),
    Step("3", "03_train_gender_cnn.py", "train gender/quality CNNs", "gender_cnn.train:run_training"),
    Step("4", "04_filter_images.py", "filter good-quality women", "gender_cnn.filter:run_filter"),
    Step("5", "05_run_segmentation.py", "segment faces", "segmentation.segment:run_segmentation"),
    Step("6", "06_compute_property_scores.py", "property scores", "pipeline.property_scores_step:run_property_scores"),
    Step("7a", "07_fit_latent_directions.py", "fit latent directions (no training)",
         "pipeline.latent_directions:run_fit_latent_directions"),
    Step("7b", "07_finetune_stylegan.py", "fine-tune conditional StyleGAN", "stylegan.finetune_step:run_finetune"),
    Step("7c", "07_fit_edit_correction.py", "train the refine's edit correction",
         "stylegan.refine_correction_step:run_fit_edit_correction"),
    Step("8", "08_generate_with_properties.py", "generate from properties",
         "stylegan.property_generation:run_generate_with_properties"),
    Step("9", "09_evaluate_control.py", "compare control methods", "pipeline.evaluate_control_step:run_evaluate_control"),
)}
STEP_SCRIPTS: dict[str, tuple[str, str]] = {key: (step.script, step.what) for key, step in STEPS.items()}
"""id -> (script file, what it does): the same table, for callers that only need names."""
STEP_ORDER: tuple[str, ...] = tuple(STEP_SCRIPTS)
STEP_GROUPS: dict[str, tuple[str, ...]] = {"7": ("7a", "7b", "7c")}
"""A bare number that names several steps: ``--from 7`` starts at the first, ``--to 7`` ends at the last."""


def step_id(step: int | str, end: str = "first") -> str:
    """Normalise a step given as 7, "7", "7a" ...; a group ("7") resolves to its first or last member."""
    text = str(step).strip().lower()
    if text in STEP_GROUPS:
        members = STEP_GROUPS[text]
        return members[0] if end == "first" else members[-1]
    if text not in STEP_SCRIPTS:
        raise ValueError(f"unknown step {step!r}; steps are {', '.join(STEP_ORDER)} (7 = 7a, 7b and 7c)")
    return text


def steps_between(first: int | str, last: int | str) -> list[str]:
    """The step ids from ``first`` to ``last`` inclusive, in pipeline order (empty if last comes first)."""
    a, b = STEP_ORDER.index(step_id(first, "first")), STEP_ORDER.index(step_id(last, "last"))
    return list(STEP_ORDER[a:b + 1])


class StepFailed(RuntimeError):
    exit_code = 1


class BadInput(StepFailed):
    """Input the user can fix (e.g. a bad ``--labels`` file, a full disk): a one-line error, exit code 2."""

    exit_code = 2


class Interrupted(StepFailed):
    """Ctrl-C: finished items are kept, a re-run continues; exit code 130."""

    exit_code = 130


def _step_name(value: str | int) -> str:
    return step_id(value)


@dataclass(frozen=True)
class PipelineOptions(Settings):
    """run_pipeline's settings (its flags are declared here, ranges included)."""

    root: Path = setting(REPO_ROOT, concept="root", help=f"output root (default: the repository, {REPO_ROOT}; "
                                                          f"with --demo: {DEMO_ROOT})")
    demo: bool = setting(False, help=f"run every step on tiny random-weight models on CPU, under {DEMO_ROOT} (no "
                                     "downloads)")
    first: str | int = setting("1", flag="--from", validate=_step_name,
                               help="first step to run (1-6, 7a, 7b, 7c, 8, 9; 7 = from 7a)")
    last: str | int = setting("9", flag="--to", validate=_step_name,
                              help="last step to run (1-6, 7a, 7b, 7c, 8, 9; 7 = up to 7c)")
    device: str = device_setting(help="auto | cpu | cuda | cuda:N (the demo always uses cpu)")
    labels: Path | None = setting(None, concept="hand_labels_csv",
                                  help="hand labels CSV (ours or the original's format) to use instead of labelling "
                                       "by hand: it replaces the hand labels (backed up first)",
                                  show="none: label in the browser, or use the labels already there")
    redo: bool = setting(False, help="run the selected steps even if they finished before")
    quiet: bool = setting(False, kept_aliases=("-q",), help="no progress bars; summaries only")
    threads: int | None = setting(None, low=1, help="CPU threads for torch in every step (default: torch's choice)")
    limit: int | None = setting(None, concept="limit", low=1,
                                help="passed to every step that takes --limit, and to step 1 as --num (smoke runs; "
                                     "each step says what it counts)")
    step_args: dict[str, list[str]] = field(default_factory=dict)  # extra flags per step id (tests, power users)

    def check(self) -> None:
        unknown = [key for key in self.step_args if key not in STEP_ORDER]
        if unknown:  # an int key (1) would be ignored without a word
            raise SettingError(f"step_args keys are step ids ({', '.join(STEP_ORDER)}), got {unknown}")
        if not steps_between(self.first, self.last):
            raise SettingError(f"--from must not come after --to ({', '.join(STEP_ORDER)}), got --from {self.first} "
                               f"--to {self.last}")


@dataclass
class StepResult:
    number: str  # the step id: "1" .. "6", "7a", "7b", "7c", "8", "9"
    status: str  # ran | skipped | paused | interrupted
    seconds: float = 0.0
    summary: str = ""                  # the step's one-line report
    result: Summary | None = None      # the step function's Summary (None when skipped)


@dataclass
class PipelineReport:
    results: list[StepResult] = field(default_factory=list)
    seconds: float = 0.0
    exit_code: int = 0  # 0 also when paused for labelling; 2 = input to fix; 1 = a step failed; 130 = Ctrl-C

    def table(self) -> str:
        total = max(self.seconds, 1e-9)
        lines = [f"{'step':>4}  {'status':8} {'seconds':>8} {'share':>6}  what"]
        for r in self.results:
            lines.append(f"{r.number:>4}  {r.status:8} {r.seconds:8.1f} {100 * r.seconds / total:5.1f}%  "
                         f"{STEP_SCRIPTS[r.number][1]}")
        lines.append(f"total {self.seconds:.1f}s")
        return "\n".join(lines)


def load_script_file(name: str):
    """Import a script of stylegan_and_segmentation/ by file name (its digits rule out ``import``)."""
    spec = importlib.util.spec_from_file_location(Path(name).stem, SCRIPTS_DIR / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_script(number: int | str):
    """The step script of a step id ("1" .. "9", "7a", "7b", "7c"; 7 = its last member, 7c) as a module."""
    return load_script_file(STEP_SCRIPTS[step_id(number, "last")][0])


def _marker(root: Path, number: str) -> Path:
    return root / MARKER_DIR / f"step{number}.json"


def _latest_finetuned(paths: PipelinePaths) -> list[Path]:
    latest = find_latest_checkpoint(paths.finetuned_dir)
    return [latest] if latest is not None else []


def step_inputs(number: str, paths: PipelinePaths) -> list[Path]:
    """The files step ``number`` reads whose identity decides a re-run (checkpoints, CSVs, records).

    Image folders are not hashed (10,000 files): a step that re-ran upstream makes every later
    step run again anyway. Paths are the defaults under the root; a ``--checkpoint`` given in
    ``step_args`` is the caller's to track.
    """
    table: dict[str, list[Path]] = {
        "1": [paths.stylegan_checkpoint],
        "2": [],
        "3": [],
        "4": [paths.generated_csv, *sorted(paths.cnn_models_dir.glob("*.pt"))],
        "5": [paths.segmentation_checkpoint],
        "6": [paths.crops_csv],
        "7a": [paths.stylegan_checkpoint, paths.generated_csv, paths.all_scores_csv, paths.normalization_json,
               paths.quality_gender_csv],
        "7b": [paths.stylegan_checkpoint, paths.all_scores_csv, paths.normalization_json],
        "7c": [paths.stylegan_checkpoint, paths.directions_pt, *_latest_finetuned(paths)],
        "8": [*_latest_finetuned(paths), paths.directions_pt, paths.edit_correction_pt],
        "9": [*_latest_finetuned(paths), paths.directions_pt, paths.edit_correction_pt, paths.segmentation_checkpoint,
              paths.normalization_json],
    }
    return table[step_id(number)]


READS_HAND_LABELS = ("3", "4")


def _file(path: Path) -> tuple[Path, str]:
    return path.parent, path.name


def step_outputs(number: str, paths: PipelinePaths) -> list[tuple[Path, str]]:
    """(folder, glob) pairs that must each match a file for a finished step to count as done."""
    table: dict[str, list[tuple[Path, str]]] = {
        "1": [_file(paths.generated_csv), _file(paths.latents_npy), _file(paths.w_npy),
              _file(paths.generated_dir / MANIFEST_NAME)],
        "2": [_file(paths.hand_labels_csv)],
        "3": [(paths.cnn_models_dir, "*_fold*.pt"), _file(paths.cnn_logs_dir / TRAIN_CONFIG_JSON)],
        "4": [_file(paths.quality_gender_csv), (paths.filtered_dir, "*")],
        "5": [_file(paths.crops_csv)],
        "6": [_file(paths.all_scores_csv), _file(paths.normalization_json)],
        "7a": [_file(paths.directions_pt)],
        "7b": [(FinetuneRunFiles(paths.finetuned_dir).checkpoints_dir, "checkpoint_*.pt")],
        "7c": [_file(paths.edit_correction_pt)],
        "8": [(paths.root / "stylegan", "*/generated/*.png")],  # finetuned/ or directions/, whichever ran
        "9": [_file(paths.comparison_csv)],
    }
    return table[step_id(number)]


def missing_outputs(number: str, paths: PipelinePaths) -> list[str]:
    """The outputs of a step that are not there (``folder/glob``); empty when the step's work exists."""
    return [str(folder / pattern) for folder, pattern in step_outputs(number, paths)
            if not (folder.is_dir() and any(p.is_file() for p in folder.glob(pattern)))]


def _root_key(path: Path, paths: PipelinePaths) -> str:
    """How a marker names a file: relative to the root when under it (a moved root keeps its markers)."""
    return str(path.relative_to(paths.root)) if path.is_relative_to(paths.root) else str(path)


def output_fingerprints(number: str, paths: PipelinePaths) -> dict[str, str | None]:
    """root-relative path -> ``file_fingerprint`` of each single-file output, None when absent.

    Recorded when the step finishes, so a later run does not skip a step whose file was since damaged or
    replaced (a truncated ``edit_correction.pt`` would otherwise count as done). Step 2's hand labels are left
    out: they grow while a person labels, and that is not a reason to run step 2 again.
    """
    return {_root_key(path, paths): file_fingerprint(path) if path.is_file() else None
            for path in _single_file_outputs(number, paths)}


def _single_file_outputs(number: str, paths: PipelinePaths) -> list[Path]:
    """The outputs a step names as one file (not a glob), step 2's hand labels left out."""
    number = step_id(number)
    if number == "2":
        return []
    return [folder / pattern for folder, pattern in step_outputs(number, paths)
            if not any(ch in pattern for ch in "*?[")]


def changed_outputs(number: str, paths: PipelinePaths, recorded: object) -> list[str]:
    """The single-file outputs that differ from what the step wrote (empty for a marker that did not record them)."""
    if not isinstance(recorded, dict):
        return []
    now = output_fingerprints(number, paths)
    return [key for key, value in now.items() if key in recorded and recorded[key] != value]


RECIPE_FILES = (RECIPE_JSON, GENERATION_JSON, FILTER_RECIPE, TRAIN_CONFIG_JSON)
"""The names a step's record of its settings has in its output folder: ``common.recipe``'s, step 1's manifest,
step 4's recipe, step 3's train_config.json (step 3's only single-file output is its own record)."""


def output_recipes(number: str, paths: PipelinePaths) -> dict[str, str | None]:
    """root-relative path -> ``file_fingerprint`` of the recipe file beside each single-file output, None when
    absent: a step's script rewrites it only when it runs, so a person who made the outputs again by hand under
    other settings changed it, and a torn or stray-edited output left it as it was."""
    recipes = {path.parent / name for path in _single_file_outputs(number, paths) for name in RECIPE_FILES}
    return {_root_key(recipe, paths): file_fingerprint(recipe) if recipe.is_file() else None
            for recipe in sorted(recipes)}


def remade_by_hand(number: str, paths: PipelinePaths, recorded: object) -> bool:
    """True when a recipe recorded beside the step's outputs was since replaced by another readable one (its
    script ran again, by hand, under other settings): the outputs are the person's, not damage, so they are kept
    (running the step again under the runner's flags would replace them, or be refused by the step's recipe)."""
    if not isinstance(recorded, dict):
        return False
    # a torn recipe (it does not read) is damage, not a new one
    return any(key in recorded and value is not None and recorded[key] != value
               and _json_object(paths.root / key) is not None
               for key, value in output_recipes(number, paths).items())


def input_fingerprints(number: str, paths: PipelinePaths) -> dict[str, str | None]:
    """root-relative path -> ``file_fingerprint`` (size:sha256) of each input, None when absent."""
    out: dict[str, str | None] = {}
    number = step_id(number)
    for path in step_inputs(number, paths):
        out[_root_key(path, paths)] = file_fingerprint(path) if path.is_file() else None
    if number in READS_HAND_LABELS:
        # the labels as read (CSV + journal replay): a compaction that keeps the labels changes nothing
        out["hand_labels"] = hand_labels_digest(paths.hand_labels_csv)
    return out


def _json_object(path: Path) -> dict | None:
    """A marker's (or a recipe's) JSON object, or None when it is unreadable (then the step simply runs again)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def step_function(number: str) -> Callable[[Any, Any], Summary]:
    """The package function of a step (``run_<step>(config, progress) -> Summary``)."""
    module_name, function_name = STEPS[number].run.split(":")
    return getattr(importlib.import_module(module_name), function_name)


def run_alone_hint(number: str, argv: list[str]) -> str:
    """The command that runs this step by itself, with this interpreter (it works without an active venv)."""
    script = python_command(), f"stylegan_and_segmentation/{STEPS[number].script}"
    return " ".join(shlex.quote(part) for part in (*script, *argv))


def _call_step(number: str, argv: list[str], quiet: bool = False) -> Summary:
    """Config from the step's own flags, then its package function inside the one error boundary."""
    module = load_script(number)
    try:
        config, _ = parse_step_config(module.build_parser(), module.config_from_args, argv)
    except SystemExit:  # the parser printed its one-line error
        raise BadInput(f"step {number}: invalid flags ({' '.join(argv)}); see: {run_alone_hint(number, ['--help'])}") \
            from None
    with progress_bar(STEPS[number].what, quiet, getattr(config, "progress_unit", "img")) as progress:
        try:
            return run_guarded(step_function(number), config, progress)
        except StepStopped as exc:
            kind = Interrupted if exc.exit_code == 130 else BadInput
            raise kind(f"step {number} ({STEPS[number].script}): {exc}") from None
        except Exception as exc:  # a bug: keep the traceback in the log, say how to reproduce
            logger.exception("step %s failed", number)
            raise StepFailed(f"step {number} ({STEPS[number].script}) failed: {type(exc).__name__}: {exc}; "
                             f"run it alone to see why: {run_alone_hint(number, argv)}") from exc


def _labels_identity(labels: Path | None) -> str | None:
    """What step 2's marker keeps of ``--labels FILE``: its content (an edited file at the same path is
    imported again), never only its path."""
    if labels is None:
        return None
    return file_fingerprint(labels) if Path(labels).is_file() else f"missing:{labels}"


def _flags_of(number: str) -> set[str]:
    """The option strings a step's script accepts (a script offers only flags it uses)."""
    module = load_script(number)
    return set(module.build_parser()._option_string_actions)


DISPLAY_ONLY_FLAGS = frozenset({"-q"})
"""Flags of step_argv that change what a step prints, never what it writes: not part of a marker's record."""


def _recipe_argv(argv: list[str]) -> list[str]:
    """``argv`` without the display-only flags: a finished demo re-run with ``-q`` is skipped, not run again."""
    return [part for part in argv if part not in DISPLAY_ONLY_FLAGS]


def _same_record(previous: object, record: dict) -> bool:
    """A marker's record against this run's, display-only flags left out of both (older markers hold them)."""
    if not isinstance(previous, dict) or not isinstance(previous.get("argv"), list):
        return False
    return {**previous, "argv": _recipe_argv(previous["argv"])} == record


def step_argv(number: str, options: PipelineOptions) -> list[str]:
    flags = _flags_of(number)
    argv = ["--root", str(options.root)]
    if "--device" in flags:
        argv += ["--device", options.device]
    if options.threads is not None and "--threads" in flags:
        argv += ["--threads", str(options.threads)]
    if options.limit is not None and "--limit" in flags:
        argv += ["--limit", str(options.limit)]

    if options.labels is not None and "--replace-labels" in flags:  # the labels file replaces the hand labels
        argv += ["--import", str(options.labels), "--replace-labels"]
    argv += list(STEPS[number].unattended)
    if options.quiet:
        argv.append("-q")
    if options.demo:
        from pipeline.demo import DEMO_STEP_ARGS

        argv += DEMO_STEP_ARGS.get(number, [])
    argv += list(options.step_args.get(number, []))
    if options.limit is not None and number == "1" and "--limit" not in flags:
        argv += ["--num", str(options.limit)]  # step 1 counts its images with --num; the cap comes last, so it wins
    return argv


def _pause_note(number: str, summary: str) -> str:
    following = STEP_ORDER[STEP_ORDER.index(number) + 1] if number != STEP_ORDER[-1] else number
    return (f"\nPaused at step {number}: {summary}\n"
            f"  run the step by itself:\n    {run_alone_hint(number, [])}\n"
            f"  then continue with:\n    {shlex.quote(python_command())} stylegan_and_segmentation/run_pipeline.py "
            f"--from {following}")


def _stop(report: PipelineReport, exc: StepFailed, start: float) -> PipelineReport:
    """End the run on a stop line (exit 2), Ctrl-C (130) or a bug (1), with the table of what ran."""
    print(f"{'' if isinstance(exc, Interrupted) else 'error: '}{exc}", file=sys.stderr)
    report.seconds = time.perf_counter() - start
    print(report.table())
    report.exit_code = exc.exit_code
    return report


def run_pipeline(options: PipelineOptions) -> int:
    """Run steps first..last and print the table; returns the process exit code (0 also when paused)."""
    return run_steps(options).exit_code


def run_steps(options: PipelineOptions) -> PipelineReport:
    """Run steps first..last; the report holds every step's status, seconds and Summary object."""
    start = time.perf_counter()
    paths = PipelinePaths(options.root)
    report = PipelineReport()
    upstream_ran = False
    try:
        selected = steps_between(options.first, options.last)
        if options.labels is not None and "2" not in selected:
            raise BadInput(f"--labels {options.labels} is imported by step 2, which this run does not include "
                           f"(--from {options.first} --to {options.last}); fix: start at step 2 (--from 2), or drop "
                           "--labels to use the hand labels already there")
        if options.demo:
            from pipeline.demo import prepare_demo

            try:
                print(prepare_demo(paths))
            except USER_ERRORS as exc:
                raise BadInput(f"demo: {exc}") from None
        for number in selected:
            step_start = time.perf_counter()
            argv = step_argv(number, options)
            marker = _marker(options.root, number)
            record = {"argv": _recipe_argv(argv), "labels": _labels_identity(options.labels) if number == "2" else None,
                      "inputs": input_fingerprints(number, paths)}
            previous = _json_object(marker) if marker.is_file() else None
            if not options.redo and not upstream_ran and previous and _same_record(previous.get("record"), record):
                missing = missing_outputs(number, paths)
                changed = changed_outputs(number, paths, previous.get("outputs"))
                if not missing and changed and remade_by_hand(number, paths, previous.get("recipes")):
                    print(f"step {number}: its outputs were made again since by its own script under other "
                          f"settings ({', '.join(changed)}): kept, not run again (to make them with this run's flags, run "
                          f"the step alone with them plus --overwrite: {run_alone_hint(number, argv)} --overwrite)")
                    atomic_write_json(marker, {**previous, "outputs": output_fingerprints(number, paths),
                                               "recipes": output_recipes(number, paths)})
                    report.results.append(StepResult(number, "skipped"))
                    upstream_ran = True     # as after a run: later steps may read what it made (step 4's images)
                    continue
                if not missing and not changed:  # skipped only when the marker matches AND its outputs are intact
                    print(f"step {number}: finished earlier, skipped ({previous.get('summary', '')})")
                    report.results.append(StepResult(number, "skipped"))
                    continue
                if missing:
                    print(f"step {number}: finished earlier, but outputs are missing ({', '.join(missing)}): "
                          "running it again")
                else:
                    print(f"step {number}: finished earlier, but its outputs changed since ({', '.join(changed)}): "
                          "running it again")
            print(f"== step {number}: {STEP_SCRIPTS[number][1]}", flush=True)
            result = _call_step(number, argv, options.quiet)
            summary = result.line()
            if getattr(result, "paused", False):  # a person has work to do before the next step
                report.results.append(StepResult(number, "paused", result=result))
                print(_pause_note(number, summary))
                break
            print(summary)
            seconds = time.perf_counter() - step_start
            report.results.append(StepResult(number, "ran", seconds, summary, result))
            atomic_write_json(marker, {"record": record, "outputs": output_fingerprints(number, paths),
                                       "recipes": output_recipes(number, paths), "summary": summary,
                                       "seconds": round(seconds, 2)})
            upstream_ran = True
    except KeyboardInterrupt:  # between steps (inside one, the boundary says how many items are kept)
        return _stop(report, Interrupted("interrupted between steps; finished steps are kept; re-run to continue"),
                     start)
    except StepFailed as exc:
        return _stop(report, exc, start)
    report.seconds = time.perf_counter() - start
    print(report.table())
    if options.demo:
        print(f"demo outputs are under {options.root} (random-weight models: the images are not faces).")
    return report

