"""Step 9's orchestration: every control method against the unedited generator, one judge, one measure.

It lives in ``pipeline/`` because it joins the packages: the methods come from ``stylegan``, the
independent judge (FaceXFormer + step-6 scores) from ``segmentation``, the female share from
``gender_cnn``. Each method is swept with the same design on the same latents (drawn
independently of step 1's, see ``stylegan.control_measures.evaluation_latents``) and judged by the same
scorer. Writes, under ``stylegan/finetuned/evaluation/``: ``comparison.csv``,
``comparison_sweeps.png``, ``report.md`` (the verdict), and each method's own outputs in
``<method>/`` (samples, metrics with 95% intervals, leakage matrix, plots, sweep sheets).
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from common.markdown import markdown_table
from common.paths import PROPERTY_NAMES
from common.settings import (
    StepConfig,
    batch_size_setting,
    device_setting,
    limit_setting,
    overwrite_setting,
    seed_setting,
    setting,
    weights_setting,
)
from common.recipe import Recipe
from common.steps import Progress, ProgressCounter, StepError
from stylegan.comparison import (
    COMPARISON_COLUMNS,
    COMPARISON_CSV,
    COMPARISON_PNG,
    comparison_sheet,
    comparison_table,
    verdicts,
    write_csv,
)
from stylegan.control_measures import (
    EVAL_LATENT_STREAM,
    REPORT_MD,
    BrightnessScorer,
    ControlConfig,
    ControlResult,
    evaluate_control,
    evaluation_latents,
    is_stand_in,
    write_control_outputs,
)
from stylegan.control_methods import DIRECTIONS, FINETUNED, REFINE_OFF, SEFA, ControlMethod, refine_setting

SCORERS = ("segmentation", "brightness")
JUDGE_MODES = ("auto", "main")
QUALITY_MODES = ("inception", "tiny", "off")
QUALITY_CSV = "quality.csv"
AGREEMENT_CSV = "judge_agreement.csv"
IDENTITY_CSV = "identity.csv"
EXTRA_COLUMNS = ("identity_distance", "identity_changed_share", "fid", "kid_mean", "kid_std")
"""Appended to comparison.csv after the contract columns: quality next to control (per method; identity per
method and swept property; FID/KID of the sweep extremes, or of the filtered split for the baseline)."""
_QUALITY_STREAM = 9_000_010  # random requests for the quality samples: a stream of their own
CONTROLS = ("all", DIRECTIONS, FINETUNED, SEFA)
CROPS = ("mtcnn", "full")


class ControlEvaluationError(StepError, RuntimeError):
    """A missing or unusable input of step 9 (the script prints it on one line and exits 2)."""


@dataclass(frozen=True)
class EvaluateControlConfig(StepConfig):
    """Step 9's settings; every path None = the pipeline's default under ``root``."""

    control: str = setting("all", choices=CONTROLS, help="methods to compare with the unedited generator (all = "
                                                         "every one that exists; the baseline is always measured)")
    scorer: str = setting("segmentation", choices=SCORERS,
                          help="segmentation = the real, independent judge; brightness = a labelled stand-in")
    crop: str = setting("mtcnn", choices=CROPS, help="face crop before parsing")
    weights: str = weights_setting("ema", help="fine-tune: ema = the EMA generator, raw = the trained weights, auto "
                                               "= ema when the checkpoint has it")
    num_z: int = setting(20, low=1, help="K latents per property sweep (the same for every method; own stream, "
                                         "never step 1's)")
    num_values: int = setting(9, low=2, help="grid points per sweep")
    seed: int = seed_setting("seed of the evaluation latents (own stream, never step 1's)")
    batch_size: int = batch_size_setting(16)
    sheet_z: int = setting(3, low=1, help="latents shown in each method's sweep sheets")
    device: str = device_setting()
    checkpoint: Path | None = setting(None, concept="finetuned_checkpoint", aliases=("--checkpoint",))
    directions: Path | None = setting(None, concept="directions", fill=False)
    sefa: Path | None = setting(None, path="sefa_pt", fill=False,
                                help="SeFa directions (default: stylegan/directions/sefa.pt, written by step 7a)")
    stylegan_checkpoint: Path | None = setting(None, concept="stylegan_checkpoint",
                                               help="base generator for the baseline and the directions")
    segmentation_checkpoint: Path | None = setting(None, concept="segmentation_checkpoint")
    trust_checkpoint: bool = setting(False, concept="trust_checkpoint",
                                     help="allow the FaceXFormer file's saved args or numpy values, never code (see "
                                          "step 5)")
    normalization: Path | None = setting(None, concept="normalization_json", fill=False,
                                         help="step 6's normalization.json; also sets the sweep ranges (a file "
                                              "given must be one; without the default file: the methods' ranges)")
    gender_models: Path | None = setting(None, path="cnn_models_dir", fill=False,
                                         help="gender CNN folder for the female share (skipped if absent)")
    out: Path | None = setting(None, path="evaluation_dir", output="dir", help="output folder")
    random_weight_models: bool = setting(False, help="say in the report that the models have random weights (the "
                                                     "demo sets it)")
    judges: str = setting("auto", choices=JUDGE_MODES,
                          help="auto: also the independent judges that are installed (dlib landmarks and identity, "
                               "FaceXFormer's pose head); main: only the main judge")
    quality: str = setting("inception", choices=QUALITY_MODES,
                           help="FID/KID features: inception (the file download_models.py fetches), tiny (a "
                                "stand-in for demos/tests, not comparable with published FID) or off")
    quality_num: int = setting(200, low=4, help="images per FID/KID set (every set is cut to the same count)")
    inception: Path | None = setting(None, path="inception_weights", fill=False, help="FID Inception weights")
    refine: str = refine_setting(REFINE_OFF, "; on: a directions+refine row beside directions (default: off)")
    limit: int | None = limit_setting("latents per sweep (caps --num-z)")
    overwrite: bool = overwrite_setting("start over in a folder made by another recipe (common.recipe)")

    @property
    def design(self) -> ControlConfig:
        return ControlConfig(num_z=self.num_z, num_values=self.num_values, seed=self.seed,
                             batch_size=self.batch_size, sheet_z=self.sheet_z)

    def resolved(self) -> EvaluateControlConfig:
        """Default paths filled in, and ``--limit`` applied to ``--num-z``."""
        resolved = super().resolved()
        if self.limit is not None:
            resolved = replace(resolved, num_z=min(self.num_z, self.limit), limit=None)
        return resolved


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
    judges: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    refine_note: str = ""    # what --refine resolved to (empty when off)

    def r(self, method: str, prop: str) -> float:
        row = self.table[(self.table["method"] == method) & (self.table["property"] == prop)
                         & (self.table["judge"] == self.judge)]
        return float(row["pearson_r"].iloc[0])

    def line(self) -> str:
        rs = "; ".join(f"{p} " + "/".join(f"{self.r(m, p):.2f}" for m in self.methods) for p in PROPERTY_NAMES)
        label = " [STAND-IN scorer]" if self.stand_in else ""
        others = f"; other judges: {', '.join(self.judges)}" if self.judges else ""
        missing = f"; missing: {'; '.join(self.missing)}" if self.missing else ""
        if self.refine_note:
            missing = f"; {self.refine_note}{missing}"
        return (f"step 9: {'/'.join(self.methods)} compared on {self.images} images ({self.valid} measured by "
                f"{self.judge}){label}; r {rs}{others}{missing}; comparison in {self.out_dir / COMPARISON_CSV} "
                f"({self.seconds:.1f}s)")


# ----------------------------------------------------------------------------------------------
# inputs


def load_methods_and_refine(config: EvaluateControlConfig, device
                            ) -> tuple[list[ControlMethod], str, dict[str, Path | None]]:
    """Baseline first, then the requested methods that exist (``stylegan.control_resolver``; with ``refine``
    on, ``directions+refine`` right after ``directions``, on the same generator), what ``refine``
    resolved to (a note for the summary; empty when off), and every file the step reads (flag -> path)."""
    from common.folders import image_folders, refuse_overlap
    from stylegan.control_resolver import resolve_control_methods

    paths = config.paths
    plan = resolve_control_methods(paths, config.control,
                                   {DIRECTIONS: config.directions, SEFA: config.sefa, FINETUNED: config.checkpoint},
                                   config.stylegan_checkpoint, config.refine, config.checkpoint)
    inputs = {**plan.inputs(), "--stylegan-checkpoint": plan.stylegan,
              "--normalization": config.normalization or paths.normalization_json,
              "--segmentation-checkpoint": config.segmentation_checkpoint or paths.segmentation_checkpoint}
    # the evaluation folder never is, holds or sits inside a file it reads, nor lies in an image folder
    refuse_overlap({"--out": Path(config.resolved().out)}, inputs, reserved=image_folders(paths))
    return plan.load(device, config.batch_size, config.weights, baseline=True), plan.refine.note, inputs


OWNED = (COMPARISON_CSV, COMPARISON_PNG, REPORT_MD, QUALITY_CSV, IDENTITY_CSV, AGREEMENT_CSV, "*/*.csv", "*/*.png",
         "*/*.md", "*/*.json", "renders/*/*.npz")
"""Step 9's files in its folder: the comparison, each method's folder, and the render cache of a killed run."""
RENDERS = "renders"


def evaluation_recipe(config: EvaluateControlConfig, inputs: dict[str, Path | None], device,
                      generator_entry: str | None = None) -> Recipe:
    """What step 9's renders and figures are made from: the design, judges and every file read (each
    method's, the judge's, normalization.json, step 3's gender models, the Inception file when used), and the
    base generator's entry when it is not the default; not --batch-size, --sheet-z or paths."""
    from common.recipe import Recipe
    from stylegan.control_methods import generator_entry_setting

    settings = {key: getattr(config, key) for key in ("control", "scorer", "crop", "weights", "num_z", "num_values",
                                                       "seed", "judges", "quality", "quality_num",
                                                       "random_weight_models")}
    settings.update(refine=str(config.refine) not in ("off",), device_type=getattr(device, "type", str(device)))
    settings.update(generator_entry_setting(generator_entry))
    files = {flag.lstrip("-").replace("-", "_"): path for flag, path in inputs.items()}
    models = Path(config.gender_models or config.paths.cnn_models_dir)
    for model in sorted(models.glob("gender_fold*.pt")) if models.is_dir() else []:
        files[f"gender_model_{model.stem}"] = model
    if config.quality == "inception":
        files["inception"] = config.inception or config.paths.inception_weights
    return Recipe.of("9", settings, files)


class CachedRenders:
    """A control method whose renders are kept in ``folder`` (one ``.npz`` per call, keyed by the request's
    bytes) until step 9 finishes: a killed run, re-run under the same recipe, renders nothing twice."""

    def __init__(self, method: ControlMethod, folder: Path):
        self.method, self.folder = method, Path(folder)

    def __getattr__(self, name: str):
        return getattr(self.method, name)

    def render(self, z: np.ndarray, targets: np.ndarray, return_report: bool = False):
        import hashlib
        import io

        from common.io import atomic_write_bytes

        z, targets = np.ascontiguousarray(z, np.float32), np.ascontiguousarray(targets, np.float32)
        key = hashlib.sha256(z.tobytes() + b"|" + targets.tobytes() + str(z.shape).encode()).hexdigest()[:32]
        path = self.folder / f"{key}.npz"
        try:
            with np.load(path, allow_pickle=False) as saved:
                images, reached = saved["images"], saved["reached"]
        except (OSError, ValueError, KeyError):  # absent, or torn by a kill: render again
            images, reached = self.method.render(z, targets, return_report=True)
            buffer = io.BytesIO()
            np.savez(buffer, images=np.asarray(images), reached=np.asarray(reached))
            atomic_write_bytes(path, buffer.getvalue())
        return (images, reached) if return_report else images


def sweep_ranges(config: EvaluateControlConfig, methods: list[ControlMethod]) -> dict[str, tuple[float, float]]:
    """One set of sweep ranges for every method: step 6's normalisation, else the first method that knows.

    A ``--normalization`` file given by the flag must exist and hold a fitted scale per property (one line
    otherwise: a run on default ranges was silently another evaluation); only the default file may be absent.
    """
    from common.records import read_normalization
    from stylegan.conditional import property_ranges

    normalization = config.normalization or config.paths.normalization_json
    if config.normalization is not None or Path(normalization).is_file():
        fix = ("give step 6's normalization.json to --normalization (or drop the flag), or re-run step 6"
               if config.normalization is not None else "re-run step 6, which writes normalization.json")
        try:
            return property_ranges({"normalization": read_normalization(normalization, fix=fix)})
        except (ValueError, TypeError, AttributeError) as exc:
            if isinstance(exc, StepError):
                raise
            raise ControlEvaluationError(f"{normalization} is not a readable normalization.json ({exc}); "
                                         f"fix: {fix}") from exc
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
                                    trusted=config.trust_checkpoint)
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
    config = config.resolved()
    device = resolve_device(config.device)  # a DeviceError is a StepError
    methods, refine_note, inputs = load_methods_and_refine(config, device)
    judges = make_judges(config, device)  # every model is loaded (and checked) before the folder is claimed
    ranges = sweep_ranges(config, methods)  # and the normalization file read
    from common.recipe import claim_output, owned_by_patterns

    recipe = evaluation_recipe(config, inputs, device, methods[0].generator.checkpoint_key)   # [0]: the baseline
    with claim_output(Path(config.out), recipe, overwrite=config.overwrite,
                      owned=owned_by_patterns(*OWNED), what="evaluation outputs"):
        renders = Path(config.out) / RENDERS
        methods = [CachedRenders(method, renders / method.name.replace("+", "_")) for method in methods]
        summary = _evaluate(config, device, methods, judges, ranges, refine_note, start, progress)
        shutil.rmtree(renders, ignore_errors=True)  # finished: the cache only ever serves a killed run's re-run
    return summary


def _evaluate(config: EvaluateControlConfig, device, methods: list[ControlMethod], judges,
              ranges: dict[str, tuple[float, float]], refine_note: str, start: float,
              progress: Progress | None) -> EvaluateControlSummary:
    """Judge every method, swept over ``ranges``, into a folder whose recipe is this run's."""
    scorer, gender = judges
    design = config.design
    z = evaluation_latents(design.seed, design.num_z, methods[0].z_dim)
    base = np.full((design.num_z, len(PROPERTY_NAMES)), np.nan, dtype=np.float32)  # only the swept one is requested
    per_method = design.num_z * design.num_values * len(PROPERTY_NAMES)
    total = per_method * len(methods)
    tick = ProgressCounter(progress, total)
    from pipeline.judging import JudgePanel

    panel = JudgePanel(config.paths, device, enabled=config.judges == "auto", keep_extremes=config.quality != "off")
    extreme = _extreme_rows(ranges, base, design)
    results: dict[str, ControlResult] = {}
    records = {}
    for method in methods:
        judged, records[method.name] = panel.wrap(scorer, extreme)
        results[method.name] = evaluate_control(lambda zb, tb, m=method: m.render(zb, tb, return_report=True),
                                                judged, z, base, ranges, design, gender=gender, progress=tick)
    out_dir = Path(config.out)
    stand_in = is_stand_in(scorer)
    meta = {"scorer": getattr(scorer, "name", type(scorer).__name__), "stand_in": stand_in, "num_z": design.num_z,
            "sheet_z": design.sheet_z, "weights": config.weights,
            "held": "not requested (fine-tune: its training median; directions: the edit's own rule)"}
    for method in methods:
        write_control_outputs(results[method.name], out_dir / method.name,
                              {**meta, "checkpoint": method.description}, design.num_values)
    from pipeline.judging import agreement_table, drop_unmeasured, identity_table, judge_samples

    all_samples = {m: pd.concat([r.samples, *judge_samples(r.samples, records[m])], ignore_index=True)
                   for m, r in results.items()}
    table = drop_unmeasured(comparison_table(all_samples, with_ci=True))
    identity = identity_table({m: r.samples for m, r in results.items()}, records, methods[0].name)
    if panel.landmark_judge is not None and not (identity["pairs"] > 0).any():
        panel.missing["identity"] = "MTCNN found no face in the unedited or the edited images"
        identity = identity.iloc[0:0]
    quality = quality_table(config, methods, records, ranges, device, panel.missing)
    agreement = agreement_table(all_samples)
    table = _with_extra_columns(table, identity, quality)
    from common.io import atomic_save_image, atomic_write_csv, atomic_write_text

    write_csv(table, out_dir, EXTRA_COLUMNS)
    atomic_write_csv(out_dir / IDENTITY_CSV, identity)
    atomic_write_csv(out_dir / QUALITY_CSV, quality)
    atomic_write_csv(out_dir / AGREEMENT_CSV, agreement)
    requested = {p: list(np.linspace(ranges[p][0], ranges[p][1], design.num_values)) for p in PROPERTY_NAMES}
    sheet = comparison_sheet({m: r.sheets for m, r in results.items()}, requested, z_rows=1)
    atomic_save_image(out_dir / COMPARISON_PNG, sheet)
    lines = verdicts(table)
    judge = str(table["judge"].iloc[0]) if len(table) else scorer.__class__.__name__
    other_judges = tuple(j for j in table["judge"].drop_duplicates() if j != judge)
    missing = tuple(f"{what}: {why}" for what, why in panel.missing.items())
    atomic_write_text(out_dir / REPORT_MD, _report(config, methods, table, lines, meta["scorer"], ranges, stand_in)
                      + _judges_report(identity, quality, agreement, other_judges, missing))
    valid = sum(int(r.samples["valid"].sum()) for r in results.values())
    return EvaluateControlSummary(out_dir, tuple(m.name for m in methods), judge, total, valid,
                                  time.perf_counter() - start, stand_in, table, tuple(lines), other_judges, missing,
                                  refine_note)


def _extreme_rows(ranges, base: np.ndarray, design: ControlConfig) -> np.ndarray:
    """True for design rows at either end of a sweep (the strongest edits), in evaluate_control's order."""
    from stylegan.control_measures import sweep_design

    rows = sweep_design(ranges, base, design.num_values)
    return rows["value_index"].isin([0, design.num_values - 1]).to_numpy()


def _quality_extractor(config: EvaluateControlConfig, device, missing: dict[str, str]):
    """(feature extractor, its name) or (None, "") with the reason in ``missing``."""
    from common.checkpoints import CheckpointError
    from judges import TinyFeatureExtractor, load_inception_extractor

    if config.quality == "off":
        missing["FID/KID"] = "turned off (--quality off)"
        return None, ""
    if config.quality == "tiny":
        return TinyFeatureExtractor(), "tiny stand-in features (not Inception: not comparable with published FID)"
    path = config.inception or config.paths.inception_weights
    try:
        return load_inception_extractor(path, device), "Inception-v3 (torch-fidelity weights, pool3 2048-d)"
    except CheckpointError as exc:
        missing["FID/KID"] = f"{str(exc).splitlines()[0]}; run python download_models.py"
        return None, ""


def quality_table(config: EvaluateControlConfig, methods: list[ControlMethod], records, ranges, device,
                  missing: dict[str, str]) -> pd.DataFrame:
    """FID/KID against step 4's filtered set, every set cut to one count: the base generator's filtered
    samples (the other half of the filtered set), each method's sweep extremes, and each method over random
    requests of every property."""
    from judges import distances_from_features, equal_count_subsample, extract_features
    from pipeline.judging import load_reference_images

    columns = ["method", "samples", "count", "fid", "kid_mean", "kid_std", "features"]
    extractor, name = _quality_extractor(config, device, missing)
    if extractor is None:
        return pd.DataFrame(columns=columns)
    folder = config.paths.filtered_dir
    reference = load_reference_images(folder, 2 * config.quality_num, config.seed) if folder.is_dir() else []
    if len(reference) < 4:
        missing["FID/KID"] = f"fewer than 4 filtered images in {folder} (step 4) to compare against"
        return pd.DataFrame(columns=columns)
    order = np.random.default_rng([_QUALITY_STREAM, config.seed]).permutation(len(reference))
    half = len(reference) // 2
    sets: list[tuple[str, str, np.ndarray]] = [(methods[0].name, "filtered split (base generator, step-4 filter)",
                                                reference[order[half:]])]
    reference = reference[order[:half]]
    lo = np.array([ranges[p][0] for p in PROPERTY_NAMES])
    hi = np.array([ranges[p][1] for p in PROPERTY_NAMES])
    z_all = evaluation_latents(config.seed, config.num_z + config.quality_num, methods[0].z_dim)[config.num_z:]
    targets = np.random.default_rng([_QUALITY_STREAM, config.seed, 1]).uniform(
        lo, hi, size=(config.quality_num, len(PROPERTY_NAMES))).astype(np.float32)
    for method in methods[1:]:
        if records[method.name].extremes:
            sets.append((method.name, "sweep extremes", np.stack(records[method.name].extremes)))
        sets.append((method.name, "random requests", np.asarray(method.render(z_all, targets))))
    count = min([len(reference)] + [len(images) for _, _, images in sets])
    rows = []
    for method, kind, images in sets:
        ref, gen = equal_count_subsample(reference, images, config.seed)
        ref, gen = ref[:count], gen[:count]
        result = distances_from_features(extract_features(ref, extractor, device, config.batch_size),
                                         extract_features(gen, extractor, device, config.batch_size),
                                         seed=config.seed)
        rows.append({"method": method, "samples": kind, "count": result.count, "fid": result.fid,
                     "kid_mean": result.kid_mean, "kid_std": result.kid_std, "features": name})
    return pd.DataFrame(rows, columns=columns)


def _with_extra_columns(table: pd.DataFrame, identity: pd.DataFrame, quality: pd.DataFrame) -> pd.DataFrame:
    """Identity (per method and swept property) and FID/KID (the edits' extremes; the baseline's filtered
    split) next to every judge's control figures."""
    out = table.copy()
    ident = identity.set_index(["method", "property"]) if len(identity) else None
    out["identity_distance"] = [ident.at[(m, p), "identity_distance"] if ident is not None and (m, p) in ident.index
                                else np.nan for m, p in zip(out["method"], out["property"])]
    out["identity_changed_share"] = [ident.at[(m, p), "identity_changed_share"]
                                     if ident is not None and (m, p) in ident.index else np.nan
                                     for m, p in zip(out["method"], out["property"])]
    main = quality[quality["samples"] != "random requests"].drop_duplicates("method").set_index("method") \
        if len(quality) else None
    for column in ("fid", "kid_mean", "kid_std"):
        out[column] = [main.at[m, column] if main is not None and m in main.index else np.nan for m in out["method"]]
    return out


def _judges_report(identity: pd.DataFrame, quality: pd.DataFrame, agreement: pd.DataFrame,
                   other_judges: tuple[str, ...], missing: tuple[str, ...]) -> str:
    missing_text = "\n".join(f"- {line}" for line in missing) or "- nothing: every judge and figure is present"
    judges_text = ", ".join(other_judges) or "none"
    sections = [f"""
## Other judges, identity and image quality
Independent judges besides the main one: {judges_text}. `landmarks` (dlib's 68 points in MTCNN's box; a
model family other than FaceXFormer's) measures eyes, mouth and pose; hair has no landmark measure.
`facexformer_heads` is FaceXFormer's own head-pose head (pose only; the same network as the main judge, so
not independent of it). Their rows are in comparison.csv with their name in `judge`.

Missing figures:
{missing_text}
"""]
    if len(agreement):
        sections.append("### Judge agreement on the same generated images (Pearson r; judge_agreement.csv)\n"
                        "High r: the judges see the same change, so a control figure is not one model's blind "
                        "spot. Low r where one judge reports control: trust it less.\n\n"
                        + markdown_table(agreement) + "\n")
    if len(identity):
        sections.append("### Identity (identity.csv)\nDistance between dlib face embeddings of each sweep image "
                        "and the unedited (baseline) image of the same latent; above 0.6 dlib calls it another "
                        "person. A method that changes the person to change a property shows up here.\n\n"
                        + markdown_table(identity) + "\n")
    if len(quality):
        sections.append("### Image quality against step 4's filtered set (quality.csv)\nFID and KID (x1, mean "
                        "+- std over subsets) at one sample count for every set: lower is closer to the "
                        "filtered real set. The filtered split is the floor (the base generator itself); a "
                        "method that controls well by wrecking the faces has a much larger FID/KID.\n\n"
                        + markdown_table(quality) + "\n")
    return "\n".join(sections)


def _report(config: EvaluateControlConfig, methods: list[ControlMethod], table: pd.DataFrame, lines: list[str],
            scorer_name: str, ranges: dict[str, tuple[float, float]], stand_in: bool) -> str:
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
    shown = table[list(COMPARISON_COLUMNS) + ["pearson_r_low", "pearson_r_high", "leakage_max"]]
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
{markdown_table(shown)}

`leakage_mean` / `leakage_max`: mean and largest over the other properties of their mean |slope| against the
requested one (step-6 units; pose spans 2). `failed_share`: images the judge could not measure (or whose sweep
left a slope undefined). `female_share`: gender CNN p(woman) >= 0.5 (nan: no model).
`pearson_r_low/high`: 95% Fisher interval (report only; comparison.csv holds the contract columns).

## Files
`{COMPARISON_CSV}`, `{COMPARISON_PNG}` (one sweep row per method for the same latent), and per method
`<method>/` with that method's samples, metrics, leakage matrix, plots and sweep sheets.
"""
