"""Step 7, second route: fit latent directions from step 1's w codes and step 6's scores (no training).

Reads ``generated.csv`` + ``latents.npy`` (or ``w.npy``) from step 1 and ``all_scores.csv`` +
``normalization.json`` from step 6, matches scores to latents by ``img_name``, and writes
``directions.pt`` (:mod:`stylegan.directions`), a report (markdown + CSVs) and one sweep sheet
per property into the directions folder.

Faces on request must stay women: by default only latents whose image step 4 kept (present in
the filtered folder) are fitted on, and when step 4's ``gender_score`` table is there a gender
direction is fitted on every generated latent, so the report can say which share of edited
latents the gender model still calls a woman.

When a scorer is passed in (the script builds step 9's segmentation scorer), the choice between
ridge and SVM is made per property by the control that edits achieve on held-out latents
(:func:`stylegan.directions.select_by_control`); otherwise by held-out prediction r.
The step is idempotent: a finished ``directions.pt`` whose recorded inputs and settings match
is kept (``overwrite`` refits).
"""
from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.contact_sheet import make_contact_sheet
from common.fingerprint import file_fingerprint
from common.folders import image_folders, refuse_overlap
from common.io import (
    atomic_save_image,
    atomic_write_csv,
    atomic_write_json,
    atomic_write_text,
    clean_stale_temp_files,
    read_csv_checked,
)
from common.markdown import markdown_table
from common.paths import (
    DIRECTIONS_PT,
    GENERATED_CSV,
    GENERATION_JSON,
    IMAGE_SUFFIXES,
    LATENTS_NPY,
    PROPERTY_NAMES,
    SEFA_PT,
    W_NPY,
)
from common.recipe import Recipe, claim_output, owned_by_patterns, read_recipe
from common.records import read_code_array, read_normalization, read_score_table
from common.runtime import resolve_device
from common.settings import (
    StepConfig,
    batch_size_setting,
    device_setting,
    flag_of,
    limit_setting,
    overwrite_setting,
    seed_setting,
    setting,
    weights_setting,
)
from common.steps import Progress, ProgressCounter, StepError
from stylegan.checkpoint import entry_for_weights, load_generator, weights_for_entry
from stylegan.directions import (
    DEFAULT_CAP,
    DEFAULT_HOLD,
    DEFAULT_METRIC,
    LAYER_RANGES,
    METHODS_ALLOWED,
    SEFA_COMPONENTS,
    METRICS_ALLOWED,
    LatentDirections,
    available_layer_ranges,
    combine_directions,
    fit_directions,
    fit_sefa_directions,
    load_directions,
    make_renderer,
    render_edit,
    select_by_control,
)
from stylegan.sweeps import sweep_targets

logger = logging.getLogger(__name__)

__all__ = ["FitDirectionsConfig", "FitDirectionsSummary", "FitDirectionsInputError", "run_fit_directions",
           "load_w_codes", "REPORT_MD", "REPORT_CSV", "ANGLES_CSV", "SELECTION_CSV"]

REPORT_MD = "report.md"
REPORT_CSV = "directions_report.csv"
ANGLES_CSV = "direction_angles.csv"
SELECTION_CSV = "selection.csv"
SUMMARY_JSON = "summary.json"
REPORT_COLUMNS = ("property", "method", "layers", "num_samples", "heldout_r", "heldout_r_ridge", "heldout_r_svm",
                  "slope", "bound_low", "bound_high", "female_share")
SELECT_ALLOWED = ("auto", "control", "heldout-r")
Scorer = Callable[[np.ndarray], np.ndarray]


class FitDirectionsInputError(StepError, RuntimeError):
    """An input of the step is missing or inconsistent; the message names the file and the fix."""


@dataclass(frozen=True)
class FitDirectionsConfig(StepConfig):
    """Settings of step 7a. Every path None = the pipeline's default under ``root`` (``resolved()``);
    ``all_scored`` fits on every scored image instead of those step 4 kept (then ``filtered_dir`` is unused)."""

    checkpoint: Path | None = setting(None, concept="stylegan_checkpoint", aliases=("--checkpoint",))
    generated_dir: Path | None = setting(None, flag="", path="generated_dir",
                                         help="step 1: generated.csv, latents.npy, optionally w.npy")
    scores_csv: Path | None = setting(None, concept="all_scores_csv", aliases=("--scores",))
    normalization_json: Path | None = setting(None, concept="normalization_json")
    out_dir: Path | None = setting(None, flag="--out", path="directions_dir", output="dir", help="output folder")
    filtered_dir: Path | None = setting(None, flag="", path="filtered_dir", help="step 4's kept images")
    quality_gender_csv: Path | None = setting(None, concept="quality_gender_csv",
                                              help="step 4's scores CSV: a gender direction, the female share")
    all_scored: bool = setting(False, help="fit on every scored image, not only those step 4 kept (faces may then "
                                           "be men)")
    # the control choice's scorer (built by pipeline.latent_directions): segmentation + step 6, gender CNN
    segmentation_checkpoint: Path | None = setting(None, concept="segmentation_checkpoint",
                                                   help="the FaceXFormer checkpoint of the control choice's scorer")
    cnn_models_dir: Path | None = setting(None, flag="", path="cnn_models_dir", help="step 3's CNN models")
    crop: str = setting("mtcnn", choices=("mtcnn", "full"), help="scorer's face crop (as step 9)")
    trust_checkpoint: bool = setting(False, concept="trust_checkpoint",
                                     help="allow the FaceXFormer file's saved args or numpy values, never code (see "
                                          "step 5)")
    device: str = device_setting()
    overwrite: bool = overwrite_setting()
    weights: str = weights_setting()
    method: str = setting("auto", choices=METHODS_ALLOWED,
                          help="direction per property: ridge on all scored samples, InterFaceGAN's SVM on the "
                               "extremes, or auto (chosen per property, see --select)")
    select: str = setting("auto", choices=SELECT_ALLOWED,
                          help="how auto chooses: control = edits rendered and scored on held-out latents (needs "
                               "the segmentation model); heldout-r = prediction r (asked for only: prediction is not control); auto = control "
                               "when possible, else the default rule (ridge, chosen on the control lab's worlds)")
    layer_ranges: tuple[str, ...] = setting(("all",), choices=LAYER_RANGES, metavar="RANGE,...",
                                            help=f"synthesis layer ranges tried by --select control, from "
                                                 f"{', '.join(LAYER_RANGES)}")
    hold: bool = setting(DEFAULT_HOLD, both=True,
                         help="edits hold unrequested properties at their current values (joint solve); --no-hold "
                              "leaves them free (InterFaceGAN's single-direction move)")
    metric: str = setting(DEFAULT_METRIC, choices=METRICS_ALLOWED,
                          help="edits move the least in this metric (whitened = w's covariance)")
    cap: float | None = setting(DEFAULT_CAP, low=0.0, low_open=True, words={"none": None, "off": None},
                                help="edits keep every prediction within mean +- CAP sd of the fitted samples, "
                                     "widened to the scores seen in fitting, which are always reachable (> 0; "
                                     "'none' = off)")
    svm_count: int | None = setting(None, low=1, help="samples per end for the SVM (default: 2%% of N, at least "
                                                      "min(N/4, 500))")
    sefa_components: int = setting(SEFA_COMPONENTS, low=0,
                                   help="also write sefa.pt: SeFa's label-free directions, the top N eigen-directions "
                                        "of the style weights each named by its correlation with step 6's scores (0 = "
                                        "no SeFa)")
    gender_guard: bool = setting(True, both=True, help="edits hold step 4's gender_score (a ridge direction fitted "
                                                       "on every generated latent)")
    num_heldout: int = setting(16, low=2, help="scored latents the control choice judges on (its candidates are "
                                               "fitted without them) and the sheets show")
    num_values: int = setting(5, low=2, help="targets per sweep")
    sheet_rows: int = setting(4, flag="", low=1, help="rows of each sweep sheet")
    batch_size: int = batch_size_setting(16)
    seed: int = seed_setting()
    limit: int | None = limit_setting("scored images fitted on")

    def resolved(self) -> FitDirectionsConfig:
        """Default paths filled in; with ``all_scored`` no filtered folder (every scored image is fitted on)."""
        resolved = super().resolved()
        return replace(resolved, filtered_dir=None) if self.all_scored else resolved

    def fingerprint_settings(self) -> dict:
        """The settings that change the result (not where files live, not batch size)."""
        out = asdict(self)
        out["which"] = entry_for_weights(out.pop("weights"))  # the generator entry, as fitted files record it
        for key in ("root", "checkpoint", "generated_dir", "scores_csv", "normalization_json", "out_dir", "filtered_dir",
                    "quality_gender_csv", "batch_size", "sheet_rows", "segmentation_checkpoint", "cnn_models_dir",
                    "crop", "trust_checkpoint", "device", "overwrite"):
            out.pop(key)
        out["layer_ranges"] = list(self.layer_ranges)
        return out


@dataclass(frozen=True)
class FitDirectionsSummary:
    out_dir: Path
    num_samples: dict[str, int]
    methods: dict[str, str]
    heldout_r: dict[str, float]
    female_share: float | None
    selected_by: str
    seconds: float
    skipped: bool = False

    def line(self) -> str:
        if self.skipped:
            return f"step 7 (directions): {self.out_dir / DIRECTIONS_PT} is up to date (inputs unchanged); kept it"
        parts = ", ".join(f"{p} {self.methods[p]} r={self.heldout_r[p]:.2f} (n={self.num_samples[p]})"
                          for p in self.methods)
        female = "" if self.female_share is None else f"; predicted female share after edits {self.female_share:.0%}"
        return (f"step 7 (directions): {parts}; chosen by {self.selected_by}{female}; "
                f"wrote {self.out_dir} in {self.seconds:.1f}s")


# ----------------------------------------------------------------------------------------------
# inputs


def _require(path: Path | None, what: str, fix: str) -> Path:
    if path is None or not Path(path).is_file():
        raise FitDirectionsInputError(f"{what} not found: {path}; {fix}")
    return Path(path)


@torch.inference_mode()
def load_w_codes(generator: torch.nn.Module, generated_dir: Path, indices: np.ndarray, trunc_psi: float,
                 trunc_layers: int, batch_size: int = 1024) -> np.ndarray:
    """w codes float32 [len(indices), w_dim] of step 1's images: w.npy when present, else mapped from latents.npy.

    When step 1 truncated every layer the image's w is ``w_avg + psi (w - w_avg)``, and that is
    what is returned; a truncation of only some layers has no single w per image and is refused.
    """
    w_path, z_path = generated_dir / W_NPY, generated_dir / LATENTS_NPY
    rows = int(indices.max(initial=-1)) + 1
    if w_path.is_file():
        w = read_code_array(w_path, "step 1's w.npy", generator.w_space_dim, rows)[indices]
    else:
        z_all = read_code_array(z_path, "step 1's latents.npy", generator.z_space_dim, rows)
        device = next(generator.parameters()).device
        parts = []
        for first in range(0, len(indices), batch_size):
            z = torch.from_numpy(z_all[indices[first:first + batch_size]]).to(device)
            parts.append(generator.mapping(z)["w"].float().cpu().numpy())
        w = np.concatenate(parts) if parts else np.zeros((0, generator.w_space_dim), np.float32)
    if trunc_psi < 1.0 and trunc_layers > 0:
        if trunc_layers < generator.num_layers:
            raise FitDirectionsInputError(
                f"step 1 truncated only the first {trunc_layers} of {generator.num_layers} layers (psi {trunc_psi}), "
                "so an image has no single w; regenerate with --trunc-layers 0 or all layers")
        w_avg = generator.truncation.w_avg.cpu().numpy()
        w = (w_avg + trunc_psi * (w - w_avg)).astype(np.float32)
    return w


def _kept_names(filtered_dir: Path) -> set[str]:
    if not filtered_dir.is_dir():
        raise FitDirectionsInputError(f"step 4's filtered folder not found: {filtered_dir}; run step 4, or fit on "
                                      "every scored image with --all-scored (faces on request may then be men)")
    return {p.name for p in filtered_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}


def _matched_rows(config: FitDirectionsConfig) -> tuple[Any, dict[str, Any]]:
    """all_scores.csv rows joined to generated.csv's index (and gender_score), kept images only."""

    generated_csv = _require(config.generated_dir / GENERATED_CSV, "step 1's generated.csv", "run step 1")
    scores_csv = _require(config.scores_csv, "step 6's all_scores.csv", "run steps 5 and 6")
    try:
        generated = read_csv_checked(generated_csv, ["img_name", "index", "truncation_psi", "truncation_layers"],
                                     whole_rows=True, dtype={"img_name": str})
    except ValueError as exc:
        raise FitDirectionsInputError(str(exc)) from exc
    text, values = read_score_table(scores_csv, PROPERTY_NAMES, "correct that row, or re-run step 6")
    scores = text[["img_name"]].assign(**{p: values[:, j] for j, p in enumerate(PROPERTY_NAMES)})
    merged = scores.merge(generated[["img_name", "index"]], on="img_name", how="left")
    unmatched = int(merged["index"].isna().sum())
    if unmatched == len(merged):
        raise FitDirectionsInputError(f"no img_name of {scores_csv} is in {generated_csv}: the scores belong to other "
                                      "images; rerun steps 5 and 6 on step 1's images")
    merged = merged[merged["index"].notna()].copy()
    merged["index"] = merged["index"].astype(np.int64)
    counts = {"scored": len(scores), "unmatched": unmatched}
    if config.filtered_dir is not None:
        kept = _kept_names(config.filtered_dir)
        before = len(merged)
        merged = merged[merged["img_name"].isin(kept)]
        counts["not_kept"] = before - len(merged)
        if merged.empty:
            raise FitDirectionsInputError(f"none of the scored images is in step 4's kept folder {config.filtered_dir}")
    merged = merged.sort_values("index", kind="stable").reset_index(drop=True)
    if config.limit is not None:
        merged = merged.iloc[: max(0, config.limit)]
    psi = generated["truncation_psi"].astype(float).unique()
    layers = generated["truncation_layers"].astype(int).unique()
    if len(psi) != 1 or len(layers) != 1:
        raise FitDirectionsInputError(f"{generated_csv} mixes truncation settings; regenerate step 1 in one run")
    counts["trunc_psi"], counts["trunc_layers"] = float(psi[0]), int(layers[0])
    keys = generated["checkpoint_key"].dropna().astype(str).unique() if "checkpoint_key" in generated else []
    counts["checkpoint_key"] = str(keys[0]) if len(keys) == 1 else None
    counts["generated"] = generated
    return merged, counts


def _recipe(config: FitDirectionsConfig, device: torch.device, judged: bool) -> Recipe:
    """What directions.pt is fitted from: the settings that change it, the kept images' names and the
    fingerprint of every file read (with a scorer, its model and crop too); not paths or --batch-size."""
    files: dict[str, Path | None] = {
        "checkpoint": config.checkpoint, "generated_csv": config.generated_dir / GENERATED_CSV,
        "generation_json": config.generated_dir / GENERATION_JSON, "scores_csv": config.scores_csv,
        "normalization_json": config.normalization_json, W_NPY: config.generated_dir / W_NPY,
        LATENTS_NPY: config.generated_dir / LATENTS_NPY, "quality_gender_csv": config.quality_gender_csv}
    settings = dict(config.fingerprint_settings(), device_type=device.type, judged_by_scorer=judged)
    if judged:
        files["segmentation_checkpoint"] = config.segmentation_checkpoint
        settings["crop"] = config.crop
    if config.filtered_dir is not None and Path(config.filtered_dir).is_dir():
        names = "\n".join(sorted(_kept_names(Path(config.filtered_dir))))
        settings["kept_images_sha256"] = hashlib.sha256(names.encode()).hexdigest()
    return Recipe.of("7a", settings, files)


def _refuse_foreign_latents(config: FitDirectionsConfig) -> None:
    """w.npy and the images must come from this generator: step 1's generation.json (its recipe) says which."""
    record = config.generated_dir / GENERATION_JSON
    made_by = read_recipe(record)
    fix = ("pass the generator step 1 used (--stylegan-checkpoint), or rerun step 1 with this one (--overwrite) "
           "and steps 4-6 after it")
    if made_by is None:
        raise FitDirectionsInputError(f"{record} not found: nothing says which generator made step 1's w.npy and "
                                      f"images; fix: {fix}")
    if made_by.inputs.get("checkpoint") != file_fingerprint(config.checkpoint):
        raise FitDirectionsInputError(f"step 1's images and w codes in {config.generated_dir} were made by another "
                                      f"generator than {config.checkpoint} (its {record.name} records another "
                                      f"checkpoint fingerprint); fix: {fix}")


# ----------------------------------------------------------------------------------------------
# the step


def run_fit_directions(config: FitDirectionsConfig, progress: Progress | None = None, *,
                       scorer: Scorer | None = None, gender: Scorer | None = None) -> FitDirectionsSummary:
    """Fit, choose, report. ``scorer`` (images -> [N, 5] step-6 scores) enables the choice by control;
    ``gender`` (images -> P(woman)) adds the measured female share of the edited images; ``progress``
    is called with the number of images rendered (a tqdm bar's update)."""
    start = time.perf_counter()
    config = config.resolved()
    out_dir = Path(config.out_dir)
    _require(config.checkpoint, "StyleGAN checkpoint", "run download_models.py (or the demo)")
    normalization_json = _require(config.normalization_json, "step 6's normalization.json", "run step 6")
    inputs = {flag_of(config, "checkpoint"): config.checkpoint, "step 1's folder": config.generated_dir,
              flag_of(config, "scores_csv"): config.scores_csv, "--normalization": config.normalization_json,
              "step 4's kept images": config.filtered_dir, "--quality-gender-csv": config.quality_gender_csv}
    paths = config.paths
    refuse_overlap({"--out": out_dir}, inputs, reserved=image_folders(paths, own=paths.directions_dir))
    _refuse_foreign_latents(config)
    device = resolve_device(config.device)
    target = out_dir / DIRECTIONS_PT
    owned = owned_by_patterns(DIRECTIONS_PT, SEFA_PT, REPORT_MD, REPORT_CSV, ANGLES_CSV, SELECTION_CSV,
                              SUMMARY_JSON, "sweep_*.png")
    recipe = _recipe(config, device, scorer is not None)
    with claim_output(out_dir, recipe, overwrite=config.overwrite, owned=owned, what="directions") as claim:
        finished = target.is_file() and (config.sefa_components == 0 or (out_dir / SEFA_PT).is_file())
        if claim.continued and finished:  # finished earlier under this very recipe
            return _summary_of(load_directions(target), out_dir, time.perf_counter() - start, skipped=True)
        clean_stale_temp_files(out_dir)
        return _fit(config, progress, scorer, gender, recipe, device, normalization_json, start)


def _fit(config: FitDirectionsConfig, progress: Callable[[int, int], None] | None, scorer: Scorer | None,
         gender: Scorer | None, recipe: Recipe, device: torch.device, normalization_json: Path,
         start: float) -> FitDirectionsSummary:
    """The fit, the choice and the report, into a folder whose recipe is this run's."""
    out_dir, target = Path(config.out_dir), Path(config.out_dir) / DIRECTIONS_PT
    rows, counts = _matched_rows(config)
    generator = load_generator(config.checkpoint, which=entry_for_weights(config.weights), device=device)
    if counts["checkpoint_key"] not in (None, generator.checkpoint_key):
        raise FitDirectionsInputError(
            f"step 1 made its images with the '{counts['checkpoint_key']}' entry of the checkpoint, this run loads "
            f"'{generator.checkpoint_key}': pass --weights {weights_for_entry(counts['checkpoint_key'])}")
    w = load_w_codes(generator, config.generated_dir, rows["index"].to_numpy(), counts["trunc_psi"],
                     counts["trunc_layers"])
    scores = rows[list(PROPERTY_NAMES)].to_numpy(np.float64)
    normalization = read_normalization(normalization_json)
    fingerprint = file_fingerprint(config.checkpoint)
    fit_options = dict(hold=config.hold, metric=config.metric, cap=config.cap, svm_count=config.svm_count,
                       generator_fingerprint=fingerprint, normalization=normalization)

    # held-out latents (scored, kept): the control choice's candidates are fitted without them (the
    # final directions then use every row); the sheets and the female share show them
    rng = np.random.default_rng(config.seed)
    num_heldout = min(config.num_heldout, max(2, len(w) // 5))
    heldout = np.sort(rng.permutation(len(w))[:num_heldout])
    fit_rows = np.setdiff1d(np.arange(len(w)), heldout)
    gender_model = _gender_direction(config, generator, counts)
    guards = {"gender_score": gender_model} if gender_model is not None and config.gender_guard else {}
    use_control = scorer is not None and config.select in ("auto", "control") and config.method == "auto"
    if config.select == "control" and scorer is None:
        raise FitDirectionsInputError("--select control needs a scorer (the segmentation model of step 5)")
    selection = None
    if use_control:
        candidates = {m: fit_directions(w[fit_rows], scores[fit_rows], config.seed, method=m,
                                        **fit_options).with_guards(**guards) for m in ("ridge", "svm")}
        ranges = tuple(r for r in config.layer_ranges if r in available_layer_ranges(generator.num_layers))
        ranges = ranges or ("all",)
        total = len(PROPERTY_NAMES) * len(candidates) * len(ranges) * len(heldout) * config.num_values
        selection = select_by_control(candidates, w[heldout], make_renderer(generator, config.batch_size), scorer,
                                      num_values=config.num_values, layer_ranges=ranges, gender=gender,
                                      progress=ProgressCounter(progress, total))
        picks = {p: (v["candidate"], v["layers"]) for p, v in selection.directions.info["selected_from"].items()}
        finals = {m: fit_directions(w, scores, config.seed, method=m, **fit_options).with_guards(**guards)
                  for m in ("ridge", "svm")}
        directions = combine_directions(finals, picks)
        # held-out r of each candidate on all rows (the record fit_directions keeps)
        directions.info["heldout_r"] = {p: {m: finals[m].info["heldout_r"][p].get(m, float("nan"))
                                            for m in finals} for p in PROPERTY_NAMES}
        selected_by = "control on held-out latents"
    elif config.method == "auto" and config.select == "heldout-r":
        # asked for explicitly (never a default: prediction is not control): per property the method whose
        # calibrated prediction of held-out scores is better
        finals = {m: fit_directions(w, scores, config.seed, method=m, **fit_options).with_guards(**guards)
                  for m in ("ridge", "svm")}
        heldout_r = {p: {m: finals[m].info["heldout_r"][p].get(m, float("nan")) for m in finals}
                     for p in PROPERTY_NAMES}
        picks = {p: ("svm" if not heldout_r[p]["ridge"] >= heldout_r[p]["svm"] else "ridge", "all")
                 for p in PROPERTY_NAMES}
        directions = combine_directions(finals, picks)
        directions.info["heldout_r"] = heldout_r
        selected_by = "held-out prediction r (--select heldout-r)"
    else:
        directions = fit_directions(w, scores, config.seed, method=config.method, **fit_options).with_guards(**guards)
        selected_by = (f"request ({config.method})" if config.method != "auto" else
                       f"the default rule for this shape: {directions.info['default_rule']} (no scorer to choose "
                       "by control)")
    directions.info.update({
        "inputs": recipe.record(), "selected_by": selected_by, "generator_entry": generator.checkpoint_key,
        "counts": {k: v for k, v in counts.items() if k != "generated"},
        "heldout_indices": rows["index"].to_numpy()[heldout].tolist(),
    })

    female = _female_shares(directions, gender_model, w[heldout], config.num_values)
    directions.info["female_share"] = female
    seconds_fit = time.perf_counter() - start
    directions.info["seconds_fit"] = seconds_fit
    out_dir.mkdir(parents=True, exist_ok=True)
    sheets = _write_sheets(directions, generator, w[heldout[: config.sheet_rows]], out_dir, config)
    report = _report_table(directions, female)
    atomic_write_csv(out_dir / REPORT_CSV, report, REPORT_COLUMNS)
    angles = _angle_table(directions)
    atomic_write_csv(out_dir / ANGLES_CSV, angles)
    if selection is not None:
        atomic_write_csv(out_dir / SELECTION_CSV, selection.table)
    seconds = time.perf_counter() - start
    atomic_write_text(out_dir / REPORT_MD, _markdown(directions, report, angles, selection, counts, sheets,
                                                    config, seconds, generator))
    atomic_write_json(out_dir / SUMMARY_JSON, {"seconds": seconds, "num_samples": len(w), "selected_by": selected_by,
                                               "methods": dict(zip(PROPERTY_NAMES, directions.methods))})
    if config.sefa_components > 0:   # SeFa's label-free directions, named and calibrated on the same scores
        sefa = fit_sefa_directions(generator, w, scores, config.seed, num_components=config.sefa_components,
                                   hold=config.hold, metric=config.metric, cap=config.cap,
                                   generator_fingerprint=fingerprint, normalization=normalization)
        sefa = sefa.with_guards(**guards)
        sefa.info.update({"inputs": recipe.record(), "selected_by": "SeFa (label-free; named by step 6's scores)",
                          "generator_entry": generator.checkpoint_key})
        sefa.save(out_dir / SEFA_PT)
    directions.save(target)   # last: its presence means the step finished
    return _summary_of(directions, out_dir, seconds)


def _summary_of(directions: LatentDirections, out_dir: Path, seconds: float, skipped: bool = False):
    props = directions.property_names
    heldout = {p: _chosen_r(directions, j) for j, p in enumerate(props)}
    shares = directions.info.get("female_share") or {}
    overall = shares.get("edited")
    return FitDirectionsSummary(out_dir, dict(zip(props, directions.info.get("num_samples", [0] * len(props)))),
                                dict(zip(props, directions.methods)), heldout, overall,
                                directions.info.get("selected_by", "?"), seconds, skipped)


def _chosen_r(directions: LatentDirections, j: int) -> float:
    record = directions.info.get("heldout_r", {}).get(directions.property_names[j], {})
    return float(record.get(directions.methods[j], float("nan")))


def _gender_direction(config: FitDirectionsConfig, generator, counts: dict) -> LatentDirections | None:
    """A ridge direction for step 4's gender_score over every generated latent that has one (or None)."""
    if config.quality_gender_csv is None or not Path(config.quality_gender_csv).is_file():
        return None
    text, values = read_score_table(config.quality_gender_csv, ["gender_score"], "correct that row, or re-run step 4")
    table = text[["img_name"]].assign(gender_score=values[:, 0])
    merged = table.merge(counts["generated"][["img_name", "index"]], on="img_name")
    counts["gender_score_missing"] = int(merged["gender_score"].isna().sum())  # stated in the report
    merged = merged[merged["gender_score"].notna()]
    if len(merged) < 10 or merged["gender_score"].nunique() < 2:
        return None
    w = load_w_codes(generator, config.generated_dir, merged["index"].to_numpy(np.int64), counts["trunc_psi"],
                     counts["trunc_layers"])
    score = merged["gender_score"].to_numpy(np.float64)[:, None]
    return fit_directions(w, score, config.seed, method="ridge", property_names=("gender_score",), cap=None)


def _female_shares(directions: LatentDirections, gender: LatentDirections | None, w: np.ndarray,
                   num_values: int) -> dict | None:
    """Share of held-out latents whose predicted gender_score is >= 0.5, before and after sweeping each property
    (and, when edits hold gender, what the share would be without that guard)."""
    if gender is None:
        return None
    out: dict[str, float] = {"unedited": float(np.mean(gender.predict(w)[:, 0] >= 0.5))}
    lo, hi = directions.sweep_range()
    edited_all = []
    for j, prop in enumerate(directions.property_names):
        if not directions.fitted[j]:
            continue
        base = np.repeat(w, num_values, axis=0)
        targets = sweep_targets(np.full((len(w), len(directions.property_names)), np.nan), j,
                                np.linspace(lo[j], hi[j], num_values))
        pred = gender.predict(directions.edit(base, targets))[:, 0]
        out[prop] = float(np.mean(pred >= 0.5))
        edited_all.append(pred)
        if directions.guard_names:
            free = gender.predict(directions.edit(base, targets, guard=False))[:, 0]
            out.setdefault("unguarded", []).append(free)
    if edited_all:
        out["edited"] = float(np.mean(np.concatenate(edited_all) >= 0.5))
    if "unguarded" in out:
        out["edited_without_gender_guard"] = float(np.mean(np.concatenate(out.pop("unguarded")) >= 0.5))
    return out


def _report_table(directions: LatentDirections, female: dict | None):
    import pandas as pd

    lo, hi = directions.bounds()
    rows = []
    for j, prop in enumerate(directions.property_names):
        record = directions.info.get("heldout_r", {}).get(prop, {})
        rows.append({
            "property": prop, "method": directions.methods[j], "layers": directions.layers[j],
            "num_samples": directions.info.get("num_samples", [None] * len(directions.methods))[j],
            "heldout_r": _chosen_r(directions, j), "heldout_r_ridge": record.get("ridge", float("nan")),
            "heldout_r_svm": record.get("svm", float("nan")), "slope": directions.slopes[j],
            "bound_low": lo[j], "bound_high": hi[j],
            "female_share": (female or {}).get(prop, float("nan")),
        })
    return pd.DataFrame(rows, columns=list(REPORT_COLUMNS))


def _angle_table(directions: LatentDirections):
    """Angle in degrees between each pair of fitted directions (90 = independent)."""
    import pandas as pd

    n = directions.directions
    cos = np.clip(n @ n.T, -1.0, 1.0)
    angles = np.degrees(np.arccos(cos))
    fitted = directions.fitted
    angles[~fitted, :] = np.nan
    angles[:, ~fitted] = np.nan
    frame = pd.DataFrame(angles, columns=list(directions.property_names))
    frame.insert(0, "property", list(directions.property_names))
    return frame


def _write_sheets(directions: LatentDirections, generator, w: np.ndarray, out_dir: Path,
                  config: FitDirectionsConfig) -> list[str]:
    """One sweep sheet per property: rows = held-out latents, columns = requested values across the cap."""
    lo, hi = directions.sweep_range()
    names = []
    for j, prop in enumerate(directions.property_names):
        if not directions.fitted[j]:
            continue
        base = np.repeat(w, config.num_values, axis=0)
        targets = sweep_targets(np.full((len(w), len(directions.property_names)), np.nan), j,
                                np.linspace(lo[j], hi[j], config.num_values))
        edited, reached = directions.edit(base, targets, return_report=True)
        images = render_edit(generator, base, edited, directions.layers[j], config.batch_size)
        captions = [f"{t:.2f}" + ("" if ok else " (cap)") for t, ok in zip(targets[:, j], reached[:, j])]
        sheet = make_contact_sheet(list(images), captions, ncols=config.num_values, thumb=128,
                                   title=f"{prop}: {directions.methods[j]} direction, {directions.layers[j]} layers")
        name = f"sweep_{prop}.png"
        atomic_save_image(out_dir / name, np.asarray(sheet))
        names.append(name)
    return names


def _markdown(directions: LatentDirections, report, angles, selection, counts: dict, sheets: list[str],
              config: FitDirectionsConfig, seconds: float, generator) -> str:
    female = directions.info.get("female_share")
    parts = [
        "# Latent directions (step 7a)", "",
        f"Generator: `{config.checkpoint}` [{generator.checkpoint_key}], w_dim {directions.w_dim}, "
        f"{generator.resolution} px. Samples: {counts['scored']} scored images, {counts['unmatched']} not in "
        f"generated.csv, {counts.get('not_kept', 0)} not kept by step 4 (left out); "
        f"{int(np.max(directions.info['num_samples']))} fitted. Chosen by {directions.info['selected_by']}. "
        f"Edit defaults: hold={directions.hold}, metric={directions.metric}, cap={directions.cap} sd. "
        f"Time: {seconds:.1f}s.", "",
        "## Per property", "",
        "held-out r: Pearson r between the calibrated prediction and the score on held-out samples "
        "(prediction, not control: step 9 measures control).", "",
        markdown_table(report), "",
        "## Angle between directions (degrees; 90 = independent)", "", markdown_table(angles), "",
    ]
    if selection is not None:
        parts += ["## Choice by control on held-out latents", "", markdown_table(selection.table), ""]
    if female is not None:
        guard = ("Edits hold the gender direction's prediction (gender guard on)." if directions.guard_names
                 else "Edits do not hold gender (gender guard off).")
        parts += ["## Female share (gender direction fitted on step 4's gender_score)", "",
                  "Share of held-out kept latents the gender direction predicts as women (score >= 0.5), "
                  f"unedited and over each property's sweep. {guard} Images without a gender_score in step 4's "
                  f"table (left out of the gender direction): {counts.get('gender_score_missing', 0)}.", "",
                  ", ".join(f"{k} {v:.0%}" for k, v in female.items()), ""]
    parts += ["## Sweeps", ""] + [f"![{s}]({s})" for s in sheets] + [""]
    return "\n".join(parts)
