"""Run the numbered step scripts in order (the integration layer: the only package that imports all others).

Each step is called in-process through its script's ``main(argv)``, so the runner does exactly
what a person typing the commands would do. Steps are named "1" .. "9"; step 7 has two routes that
both lead to steps 8 and 9 and both run: "7a" (latent directions, no training; first) and "7b" (the
fine-tune). ``--from 7`` starts at 7a, ``--to 7`` ends after 7b. A finished step leaves a marker
``{root}/.pipeline/step{ID}.json`` holding its arguments; a later run skips a step whose marker
matches, until an earlier step actually ran again (then every later step runs too: each is
resumable, so only new work is done).
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from common.io import atomic_write_json
from common.paths import REPO_ROOT, PipelinePaths

logger = logging.getLogger(__name__)

SCRIPTS_DIR = REPO_ROOT / "stylegan_and_segmentation"
DEMO_ROOT = REPO_ROOT / "demo_run"
MARKER_DIR = ".pipeline"

STEP_SCRIPTS: dict[str, tuple[str, str]] = {
    "1": ("01_generate_images.py", "generate images"),
    "2": ("02_label_images.py", "hand labels"),
    "3": ("03_train_gender_cnn.py", "train gender/quality CNNs"),
    "4": ("04_filter_images.py", "filter good-quality women"),
    "5": ("05_run_segmentation.py", "segment faces"),
    "6": ("06_compute_property_scores.py", "property scores"),
    "7a": ("07_fit_latent_directions.py", "fit latent directions (no training)"),
    "7b": ("07_finetune_stylegan.py", "fine-tune conditional StyleGAN"),
    "8": ("08_generate_with_properties.py", "generate from properties"),
    "9": ("09_evaluate_control.py", "compare control methods"),
}
STEP_ORDER: tuple[str, ...] = tuple(STEP_SCRIPTS)
STEP_GROUPS: dict[str, tuple[str, ...]] = {"7": ("7a", "7b")}
"""A bare number that names several steps: ``--from 7`` starts at the first, ``--to 7`` ends at the last."""


def step_id(step: int | str, end: str = "first") -> str:
    """Normalise a step given as 7, "7", "7a" ...; a group ("7") resolves to its first or last member."""
    text = str(step).strip().lower()
    if text in STEP_GROUPS:
        members = STEP_GROUPS[text]
        return members[0] if end == "first" else members[-1]
    if text not in STEP_SCRIPTS:
        raise ValueError(f"unknown step {step!r}; steps are {', '.join(STEP_ORDER)} (7 = 7a and 7b)")
    return text


def steps_between(first: int | str, last: int | str) -> list[str]:
    """The step ids from ``first`` to ``last`` inclusive, in pipeline order (empty if last comes first)."""
    a, b = STEP_ORDER.index(step_id(first, "first")), STEP_ORDER.index(step_id(last, "last"))
    return list(STEP_ORDER[a:b + 1])


def lookup_step(table: dict, step: str, default=None):
    """A per-step table entry keyed by id ("7a", "8") or, for plain numbers, by int (8) as older callers do."""
    if step in table:
        return table[step]
    return table.get(int(step), default) if step.isdigit() else default


class StepFailed(RuntimeError):
    exit_code = 1


class BadInput(StepFailed):
    """Input the user can fix (e.g. a bad ``--labels`` file): a one-line error, exit code 2."""

    exit_code = 2


@dataclass(frozen=True)
class PipelineOptions:
    root: Path = REPO_ROOT
    demo: bool = False
    first: int | str = 1             # a step id ("7a") or number (7 = from 7a)
    last: int | str = 9              # (7 = up to 7b)
    device: str = "auto"
    labels: Path | None = None
    redo: bool = False
    quiet: bool = False
    step_args: dict[int | str, list[str]] = field(default_factory=dict)  # extra flags per step id (tests, power users)


@dataclass
class StepResult:
    number: str  # the step id: "1" .. "6", "7a", "7b", "8", "9"
    status: str  # ran | skipped | paused
    seconds: float = 0.0
    summary: str = ""


@dataclass
class PipelineReport:
    results: list[StepResult] = field(default_factory=list)
    seconds: float = 0.0

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
    """The step script of a step id ("1" .. "9", "7a", "7b"; 7 = the fine-tune, 7b) as a module."""
    return load_script_file(STEP_SCRIPTS[step_id(number, "last")][0])


def _marker(root: Path, number: str) -> Path:
    return root / MARKER_DIR / f"step{number}.json"


def _input_fingerprint(number: str, paths: PipelinePaths) -> str | None:
    """A digest of the hand labels for step 3: new labels make steps 3-9 run again."""
    if number == "3" and paths.hand_labels_csv.is_file():
        return hashlib.sha256(paths.hand_labels_csv.read_bytes()).hexdigest()
    return None


def _call_step(number: str, argv: list[str]) -> str:
    """Run one script's main(argv); its stdout is echoed and its last line returned as the summary."""
    module = load_script(number)
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        try:
            code = module.main(argv)
        except SystemExit as exc:  # argparse errors
            code = exc.code
    output = buffer.getvalue()
    sys.stdout.write(output)
    if code not in (0, None):
        raise StepFailed(f"step {number} ({STEP_SCRIPTS[number][0]}) failed with exit code {code}; "
                         f"run it alone to see why: python stylegan_and_segmentation/{STEP_SCRIPTS[number][0]} "
                         + " ".join(argv))
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _import_labels_file(source: Path, paths: PipelinePaths) -> str:
    """``--labels FILE`` through the labeller's import path: validated against the image folder,
    the old labels (CSV + journal) backed up, the journal folded in first, then replaced."""
    from common.images import list_images
    from common.io import CsvSchemaError
    from gender_cnn.labeller.store import LabelStore, StoreLockedError, read_import_file

    try:
        names = [p.name for p in list_images(paths.generated_dir)]
        labels = read_import_file(source, known_images=names)  # validate before touching anything
        with LabelStore(paths.hand_labels_csv, lock=True) as store:
            changed, backup = store.apply_import(labels, replace=True)
    except (FileNotFoundError, NotADirectoryError, CsvSchemaError, StoreLockedError, OSError) as exc:
        raise BadInput(f"--labels {source}: {exc}") from None
    kept = f"; previous labels backed up to {backup}" if backup else ""
    return (f"step 2: {len(labels)} labels imported from {source} into {paths.hand_labels_csv} "
            f"({changed} changed{kept})")


def _labels_step(options: PipelineOptions, paths: PipelinePaths) -> str | None:
    """Step 2 in a pipeline run: use --labels, the demo rule, or existing labels; else pause with instructions."""
    from gender_cnn.label_state import journal_path_for, load_hand_labels

    if options.labels is not None:
        return _import_labels_file(options.labels, paths)
    if options.demo:
        from pipeline.demo import write_demo_labels

        return write_demo_labels(paths)
    if paths.hand_labels_csv.is_file() or journal_path_for(paths.hand_labels_csv).is_file():
        from common.io import CsvSchemaError

        try:
            labels = load_hand_labels(paths.hand_labels_csv)  # CSV + journal replay, as step 3 reads them
        except (CsvSchemaError, OSError) as exc:
            raise BadInput(f"hand labels: {exc}") from None
        done = int(labels[["gender", "quality"]].notna().any(axis=1).sum())
        return f"step 2: using {done} hand labels in {paths.hand_labels_csv}"
    return None


def step_argv(number: str, options: PipelineOptions) -> list[str]:
    argv = ["--root", str(options.root)]
    if number != "2":
        argv += ["--device", options.device]
    if options.quiet:
        argv.append("-q")
    if options.demo:
        from pipeline.demo import DEMO_STEP_ARGS

        argv += lookup_step(DEMO_STEP_ARGS, number, [])
    return argv + list(lookup_step(options.step_args, number, []))


def run_pipeline(options: PipelineOptions) -> int:
    """Run steps first..last; returns the process exit code (0 also when paused for labelling)."""
    start = time.perf_counter()
    paths = PipelinePaths(options.root)
    report = PipelineReport()
    if options.demo:
        from pipeline.demo import prepare_demo

        print(prepare_demo(paths))
    upstream_ran = False
    try:
        for number in steps_between(options.first, options.last):
            step_start = time.perf_counter()
            argv = step_argv(number, options)
            marker = _marker(options.root, number)
            record = {"argv": argv, "labels": str(options.labels) if options.labels else None,
                      "inputs": _input_fingerprint(number, paths)}
            if (not options.redo and not upstream_ran and marker.is_file()
                    and json.loads(marker.read_text()).get("record") == record):
                previous = json.loads(marker.read_text())
                print(f"step {number}: finished earlier, skipped ({previous.get('summary', '')})")
                report.results.append(StepResult(number, "skipped"))
                continue
            print(f"== step {number}: {STEP_SCRIPTS[number][1]}", flush=True)
            if number == "2":
                summary = _labels_step(options, paths)
                if summary is None:
                    report.results.append(StepResult(number, "paused"))
                    print(
                        f"\nPaused at step 2: no hand labels yet ({paths.hand_labels_csv}).\n"
                        "  Label the images in your browser:\n"
                        "    python stylegan_and_segmentation/02_label_images.py\n"
                        "  (on a remote GPU box: ssh -L 8765:127.0.0.1:8765 host, then open http://127.0.0.1:8765)\n"
                        "  then continue with:\n"
                        "    python stylegan_and_segmentation/run_pipeline.py --from 3\n"
                        "  or pass existing labels: run_pipeline.py --from 2 --labels FILE")
                    break
                print(summary)
            else:
                summary = _call_step(number, argv)
            seconds = time.perf_counter() - step_start
            report.results.append(StepResult(number, "ran", seconds, summary))
            atomic_write_json(marker, {"record": record, "summary": summary, "seconds": round(seconds, 2)})
            upstream_ran = True
    except StepFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        report.seconds = time.perf_counter() - start
        print(report.table())
        return exc.exit_code
    report.seconds = time.perf_counter() - start
    print(report.table())
    if options.demo:
        print(f"demo outputs are under {options.root} (random-weight models: the images are not faces).")
    return 0


def clean_demo(root: Path = DEMO_ROOT) -> None:
    """Remove a demo output root (never the repository itself)."""
    if root.resolve() == REPO_ROOT.resolve():
        raise ValueError("refusing to delete the repository root")
    shutil.rmtree(root, ignore_errors=True)
