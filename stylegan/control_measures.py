"""Step 9's measures: how well a control method moves each property, judged independently (sweeps, metrics).

For K latents, each property is swept over a grid from its minimum to its maximum while the
others are held (at the training median by default); every image is scored by a *scorer passed
in as an object* (a callable ``images_u8 [N, H, W, 3] -> [N, 5]`` normalised scores, NaN where it
fails). The real scorer is segmentation + step-6 scores + normalization.json (built in script 09,
since this package never imports segmentation); it must not be the regressor used in training,
or the generator could be judged by the model it learned to fool.

Metrics on arrays (no files, no models): per property Pearson r, Spearman rho, MAE between
requested and measured values, the share of monotonic sweeps, and the leakage matrix
``L[p, q]`` = mean over sweeps of p of |least-squares slope of measured q against requested p|
(the diagonal is the control slope itself, ideally 1; off-diagonal cells should be 0).
"""
from __future__ import annotations

import io
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from common import stats
from common.contact_sheet import make_contact_sheet
from common.io import atomic_save_image, atomic_write_bytes, atomic_write_csv, atomic_write_text
from common.markdown import markdown_table
from common.paths import PROPERTY_NAMES
from stylegan.sweeps import sweep_targets

logger = logging.getLogger(__name__)

__all__ = [
    "ControlConfig", "ControlResult", "sweep_design", "evaluate_control", "control_metrics", "leakage_matrix",
    "BrightnessScorer", "StandInScorer", "is_stand_in", "write_control_outputs", "SAMPLES_CSV", "METRICS_CSV", "LEAKAGE_CSV", "REPORT_MD",
    "SCATTER_PNG", "LEAKAGE_PNG", "judge_name", "evaluation_latents", "EVAL_LATENT_STREAM",
]

Scorer = Callable[[np.ndarray], np.ndarray]
GenerateFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

SAMPLES_CSV = "control_samples.csv"
METRICS_CSV = "control_metrics.csv"
LEAKAGE_CSV = "leakage_matrix.csv"
SCATTER_PNG = "requested_vs_measured.png"
LEAKAGE_PNG = "leakage_heatmap.png"
REPORT_MD = "report.md"
METRIC_COLUMNS = ("property", "pearson_r", "pearson_r_low", "pearson_r_high", "spearman_rho", "mae",
                  "monotonic_share", "control_slope", "control_slope_low", "control_slope_high",
                  "num_images", "num_valid", "num_sweeps", "num_complete_sweeps")
"""Per-method metrics (control_metrics.csv); *_low/*_high: 95% intervals (Fisher z for r, Student t for the
mean slope over sweeps), since 20 sweeps is a small sample."""


EVAL_LATENT_STREAM = 9_000_009
"""First word of the seed of step 9's latents: ``default_rng([EVAL_LATENT_STREAM, seed, k])`` never equals
step 1's ``default_rng([seed, index])`` (numpy pads seeds with zeros, so a distinct non-zero first word is
needed), so directions are never judged on the latents they were fitted on."""


def evaluation_latents(seed: int, num: int, z_dim: int) -> np.ndarray:
    """float32 [num, z_dim]: step 9's latents, drawn independently of step 1's (see EVAL_LATENT_STREAM)."""
    out = np.empty((num, z_dim), dtype=np.float32)
    for k in range(num):
        out[k] = np.random.default_rng([EVAL_LATENT_STREAM, seed, k]).standard_normal(z_dim, dtype=np.float32)
    return out


@dataclass(frozen=True)
class ControlConfig:
    num_z: int = 20            # K random latents
    num_values: int = 9        # grid points per sweep
    seed: int = 0
    batch_size: int = 16
    sheet_z: int = 3           # latents shown in each sweep contact sheet

    def __post_init__(self) -> None:
        if self.num_z < 1 or self.num_values < 2 or self.batch_size < 1:
            raise ValueError(f"need num_z >= 1, num_values >= 2, batch_size >= 1; got {self}")


@dataclass
class ControlResult:
    samples: pd.DataFrame                       # one row per generated image
    sheets: dict[str, list[np.ndarray]] = field(default_factory=dict)  # property -> images (sheet_z x num_values)
    properties: tuple[str, ...] = PROPERTY_NAMES


def sweep_design(ranges: dict[str, tuple[float, float]], base_conditions: np.ndarray, num_values: int,
                 properties: Sequence[str] = PROPERTY_NAMES) -> pd.DataFrame:
    """Rows (property, z_index, value_index, requested_*) for every sweep; base_conditions [K, P] hold the others."""
    base = np.asarray(base_conditions, dtype=np.float64)
    frames = []
    for j, prop in enumerate(properties):
        targets = sweep_targets(base, j, np.linspace(ranges[prop][0], ranges[prop][1], num_values))
        frame = pd.DataFrame({"property": prop, "z_index": np.repeat(np.arange(len(base)), num_values),
                              "value_index": np.tile(np.arange(num_values), len(base))})
        frames.append(frame.assign(**{f"requested_{p}": targets[:, i] for i, p in enumerate(properties)}))
    return pd.concat(frames, ignore_index=True)


def judge_name(scorer: Scorer) -> str:
    """The comparison's ``judge`` column: the scorer's short ``judge`` attribute, else its class name."""
    return str(getattr(scorer, "judge", None) or type(scorer).__name__)


def evaluate_control(generate: GenerateFn, scorer: Scorer, z: np.ndarray, base_conditions: np.ndarray,
                     ranges: dict[str, tuple[float, float]], config: ControlConfig = ControlConfig(),
                     gender: Scorer | None = None, properties: Sequence[str] = PROPERTY_NAMES,
                     progress: Callable[[int], None] | None = None) -> ControlResult:
    """Generate every sweep image, score it, and return the table (requested_*, measured_*, female_prob).

    generate: (z [N, z_dim], conditions [N, P]) -> uint8 [N, H, W, 3], or ``(images, reached [N, P])``
    (a ``ControlMethod.render`` with ``return_report=True``); base_conditions NaN = not requested.
    scorer: images -> [N, P] normalised (NaN = failure); gender: images -> [N] probability of "woman"
    (optional). progress: called with the number of images just finished (a tqdm bar's update).
    The samples get ``judge`` (the scorer's name) and ``reached`` (the method reports the swept
    property's target as reached; always True for a plain generate function).
    """
    properties = tuple(properties)
    design = sweep_design(ranges, base_conditions, config.num_values, properties)
    requested = design[[f"requested_{p}" for p in properties]].to_numpy(np.float32)
    z_rows = np.asarray(z, dtype=np.float32)[design["z_index"].to_numpy()]
    swept = design["property"].map({p: j for j, p in enumerate(properties)}).to_numpy()
    measured = np.full((len(design), len(properties)), np.nan)
    female = np.full(len(design), np.nan)
    reached = np.ones(len(design), dtype=bool)
    sheets: dict[str, list[np.ndarray]] = {p: [] for p in properties}
    keep = (design["z_index"] < config.sheet_z).to_numpy()
    for first in range(0, len(design), config.batch_size):
        sl = slice(first, first + config.batch_size)
        images = generate(z_rows[sl], requested[sl])
        if isinstance(images, tuple):
            images, report = images
            reached[sl] = np.asarray(report, dtype=bool)[np.arange(len(images)), swept[sl]]
        scores = np.asarray(scorer(images), dtype=np.float64)
        if scores.shape != (len(images), len(properties)):
            raise ValueError(f"scorer returned shape {scores.shape}, expected ({len(images)}, {len(properties)})")
        measured[sl] = scores
        if gender is not None:
            female[sl] = np.asarray(gender(images), dtype=np.float64).reshape(-1)
        for offset, image in enumerate(images):
            row = first + offset
            if keep[row]:
                sheets[design.at[row, "property"]].append(image)
        if progress is not None:
            progress(len(images))
    samples = design.copy()
    samples.insert(0, "judge", judge_name(scorer))
    for i, p in enumerate(properties):
        samples[f"measured_{p}"] = measured[:, i]
    samples["female_prob"] = female
    samples["valid"] = np.isfinite(measured).all(axis=1)
    samples["reached"] = reached
    return ControlResult(samples, sheets, properties)


def _single_judge(samples: pd.DataFrame) -> None:
    if "judge" in samples and samples["judge"].nunique() > 1:
        raise ValueError(f"samples hold several judges ({sorted(samples['judge'].unique())}); select one first")


# ----------------------------------------------------------------------------------------------
# the measures, defined once (step 7a's choice, step 9, the lab and the studio call these)

MEASURE_KEYS = ("pearson_r", "spearman_rho", "mae", "control_slope", "leakage_mean", "leakage_max",
                "monotonic_share", "failed_share")
"""What :func:`sweep_measures` returns per swept property (besides the leakage row and the counts)."""


def sweep_measures(requested: Any, measured: Any, sweep_id: Any, j: int) -> dict[str, Any]:
    """Every control measure of property j from its sweeps: the one definition of each.

    requested [N]: the requested value of property j (the swept one) per image; measured [N, P]: what the
    judge measured (step-6 units, pose spans 2; NaN = the judge failed); sweep_id [N]: which sweep (latent)
    each image belongs to. Statistics follow ``common.stats``' rule (NaN pairs left out).

    - ``pearson_r`` / ``spearman_rho`` / ``mae``: requested against measured j over every measured image;
    - ``control_slope``: mean over sweeps of the least-squares slope of measured j on requested j;
    - ``leakage_row`` [P]: per property q, mean over sweeps of |slope of measured q on requested j| (the
      diagonal entry is |control slope|); ``leakage_mean`` / ``leakage_max``: mean and largest over q != j;
      a NaN slope (a sweep with fewer than two measured images of q) is left out; a property the judge
      measured on none of these images (the landmark judge has no hair) has NaN leakage, left out too;
    - ``monotonic_share``: share of the sweeps without a failed image whose measured j never decreases along
      the requested values and ends above its start (a flat sweep is not control);
    - ``failed_share``: share of the images that count for nothing: the judge failed on j, or their sweep
      left a slope of a property it measures NaN.
    """
    requested = np.asarray(requested, dtype=np.float64).reshape(-1)
    measured = np.asarray(measured, dtype=np.float64)
    sweep_id = np.asarray(sweep_id).reshape(-1)
    if measured.ndim != 2 or len(measured) != len(requested) or len(sweep_id) != len(requested):
        raise ValueError(f"requested [N], measured [N, P] and sweep_id [N] must agree, got {requested.shape}, "
                         f"{measured.shape}, {sweep_id.shape}")
    num_props = measured.shape[1]
    ok = np.isfinite(measured[:, j])
    judged = np.isfinite(measured).any(axis=0)    # a property this judge never measures fails nothing
    slopes = []                                    # [sweeps, P]
    monotonic = []
    failed = ~ok
    for k in pd.unique(sweep_id):
        rows = np.flatnonzero(sweep_id == k)
        rows = rows[np.argsort(requested[rows], kind="stable")]
        row_slopes = np.array([stats.slope(requested[rows], measured[rows, q]) for q in range(num_props)])
        slopes.append(row_slopes)
        if not np.isfinite(row_slopes[judged]).all():
            failed[rows] = True
        m = measured[rows, j]
        if np.isfinite(m).all() and len(m) >= 2:
            monotonic.append(bool(np.all(np.diff(m) >= 0) and m[-1] > m[0]))
    slopes_arr = np.array(slopes).reshape(-1, num_props)
    leakage_row = np.array([_nanmean(np.abs(slopes_arr[:, q])) for q in range(num_props)])
    others = np.delete(leakage_row, j)
    others = others[np.isfinite(others)]
    return {
        "pearson_r": stats.pearson(requested, measured[:, j]),
        "spearman_rho": stats.spearman(requested, measured[:, j]),
        "mae": float(np.abs(measured[ok, j] - requested[ok]).mean()) if ok.any() else float("nan"),
        "control_slope": _nanmean(slopes_arr[:, j]),
        "leakage_mean": float(others.mean()) if len(others) else float("nan"),
        "leakage_max": float(others.max()) if len(others) else float("nan"),
        "monotonic_share": float(np.mean(monotonic)) if monotonic else float("nan"),
        "failed_share": float(failed.mean()) if len(failed) else float("nan"),
        "leakage_row": leakage_row,
        "control_slopes": slopes_arr[:, j][np.isfinite(slopes_arr[:, j])],
        "num_images": int(len(requested)), "num_valid": int(ok.sum()), "num_sweeps": int(len(slopes)),
        "num_complete_sweeps": int(len(monotonic)),
    }


def overall(values: Any) -> float:
    """The overall figure of a per-property measure (leakage, r): the mean over properties, NaN ones left out."""
    return _nanmean(np.asarray(values, dtype=np.float64))


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else float("nan")


def samples_measures(samples: pd.DataFrame, prop: str, properties: Sequence[str] = PROPERTY_NAMES) -> dict[str, Any]:
    """:func:`sweep_measures` of one property from step 9's sample table (its sweeps only; one judge)."""
    _single_judge(samples)
    part = samples[samples["property"] == prop]
    measured = part[[f"measured_{p}" for p in properties]].to_numpy(float)
    return sweep_measures(part[f"requested_{prop}"].to_numpy(float), measured, part["z_index"].to_numpy(),
                          list(properties).index(prop))


def control_metrics(samples: pd.DataFrame, properties: Sequence[str] = PROPERTY_NAMES) -> pd.DataFrame:
    """Per property: Pearson r (95% CI), Spearman rho, MAE, monotonic share, mean control slope (95% CI), counts.

    The measures are :func:`sweep_measures`' (the sweeps of that property only); the intervals are
    ``common.stats``' (Fisher z for r, Student t for the mean slope over sweeps, since 20 sweeps is a small
    sample). ``samples`` must hold one judge (see ``comparison_table`` for several).
    """
    rows = []
    for prop in properties:
        m = samples_measures(samples, prop, properties)
        part = samples[samples["property"] == prop]
        r_low, r_high = stats.pearson_ci(part[f"requested_{prop}"], part[f"measured_{prop}"])
        s_low, s_high = stats.mean_ci(m["control_slopes"])
        rows.append({"property": prop, **{k: m[k] for k in ("pearson_r", "spearman_rho", "mae", "monotonic_share",
                                                             "control_slope", "num_images", "num_valid",
                                                             "num_sweeps", "num_complete_sweeps")},
                     "pearson_r_low": r_low, "pearson_r_high": r_high,
                     "control_slope_low": s_low, "control_slope_high": s_high})
    return pd.DataFrame(rows, columns=list(METRIC_COLUMNS))


def leakage_matrix(samples: pd.DataFrame, properties: Sequence[str] = PROPERTY_NAMES) -> pd.DataFrame:
    """L[p, q]: mean over sweeps of p of |slope of measured q against requested p| (rows: swept p)."""
    matrix = np.stack([samples_measures(samples, prop, properties)["leakage_row"] for prop in properties])
    return pd.DataFrame(matrix, index=list(properties), columns=list(properties))


class StandInScorer:
    """Base of scorers that do not measure faces (demos, tests): reports built on them carry a warning.

    A stand-in is recognised by this type, never by a word in its name.
    """

    name = "stand-in"
    judge = "stand-in"


def is_stand_in(scorer: object) -> bool:
    return isinstance(scorer, StandInScorer)


class BrightnessScorer(StandInScorer):
    """STAND-IN scorer for demos and tests only: it measures brightness, not faces.

    Property j = mean brightness of horizontal band j of 5 (0..1), face_pose mapped to [-1, 1].
    It lets steps 8-9 run end to end on random-weight generators, whose images hold no face.
    """

    name = "brightness (stand-in, not a face measurement)"
    judge = "brightness-stand-in"

    def __call__(self, images_u8: np.ndarray) -> np.ndarray:
        images = np.asarray(images_u8, dtype=np.float64)
        bands = np.array_split(np.arange(images.shape[1]), len(PROPERTY_NAMES))
        out = np.stack([images[:, rows].mean(axis=(1, 2, 3)) / 255.0 for rows in bands], axis=1)
        out[:, PROPERTY_NAMES.index("face_pose")] = out[:, PROPERTY_NAMES.index("face_pose")] * 2 - 1
        return out


# ----------------------------------------------------------------------------------------------
# outputs


def _plot_scatter(samples: pd.DataFrame, properties: Sequence[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(properties), figsize=(3.2 * len(properties), 3.4), squeeze=False)
    for ax, prop in zip(axes[0], properties):
        part = samples[samples["property"] == prop]
        x, y = part[f"requested_{prop}"].to_numpy(float), part[f"measured_{prop}"].to_numpy(float)
        ax.scatter(x, y, s=8, alpha=0.5)
        lo = np.nanmin(np.concatenate([x, y])) if np.isfinite(y).any() else x.min()
        hi = np.nanmax(np.concatenate([x, y])) if np.isfinite(y).any() else x.max()
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_title(prop)
        ax.set_xlabel("requested")
        ax.set_ylabel("measured")
    fig.tight_layout()
    _save_figure(fig, path)


def heatmap_label(value: float) -> str:
    """A cell's text: two decimals, or two significant digits below 0.01 (a demo's tiny slopes are not "0.00")."""
    if not np.isfinite(value):
        return "nan"
    if value == 0 or abs(value) >= 0.01:
        return f"{value:.2f}"
    return f"{value:.1e}"


def _plot_leakage(leak: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.8))
    values = leak.to_numpy(float)
    image = ax.imshow(np.nan_to_num(values, nan=0.0), cmap="viridis")
    ax.set_xticks(range(len(leak.columns)), leak.columns, rotation=45, ha="right")
    ax.set_yticks(range(len(leak.index)), leak.index)
    ax.set_xlabel("measured property")
    ax.set_ylabel("swept property")
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            ax.text(j, i, heatmap_label(values[i, j]), ha="center", va="center", color="w", fontsize=8)
    fig.colorbar(image, ax=ax, label="|slope| measured / requested")
    ax.set_title("leakage (diagonal = control)")
    fig.tight_layout()
    _save_figure(fig, path)


def _save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def write_control_outputs(result: ControlResult, out_dir: Path | str, meta: dict[str, Any],
                          num_values: int) -> dict[str, Path]:
    """CSV (samples, metrics, leakage), plots, sweep contact sheets and report.md; returns the paths.

    meta: checkpoint, step, weights, scorer (its name), stand_in (``is_stand_in(scorer)``: the report then
    warns that its numbers say nothing about faces), num_z, sheet_z, held.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    props = result.properties
    metrics = control_metrics(result.samples, props)
    leak = leakage_matrix(result.samples, props)
    paths = {
        "samples": atomic_write_csv(out_dir / SAMPLES_CSV, result.samples),
        "metrics": atomic_write_csv(out_dir / METRICS_CSV, metrics, METRIC_COLUMNS),
        "leakage": atomic_write_csv(out_dir / LEAKAGE_CSV, leak.reset_index(names="swept")),
    }
    _plot_scatter(result.samples, props, out_dir / SCATTER_PNG)
    _plot_leakage(leak, out_dir / LEAKAGE_PNG)
    paths.update(scatter=out_dir / SCATTER_PNG, leakage_plot=out_dir / LEAKAGE_PNG)
    for prop, images in result.sheets.items():
        if images:
            rows = (result.samples["property"] == prop) & (result.samples["z_index"] < meta.get("sheet_z", 3))
            part = result.samples[rows]
            captions = [f"{v:.2f}" + ("" if ok else " x") for v, ok in zip(part[f"requested_{prop}"], part["valid"])]
            sheet = make_contact_sheet(images, captions, ncols=num_values, thumb=112, title=f"sweep of {prop} (rows: z)")
            paths[f"sheet_{prop}"] = atomic_save_image(out_dir / f"sweep_{prop}.png", sheet)
    female = result.samples["female_prob"].to_numpy(float)
    female_line = (f"{np.mean(female[np.isfinite(female)] >= 0.5):.3f} of {int(np.isfinite(female).sum())} images "
                   f"(gender CNN probability >= 0.5)" if np.isfinite(female).any() else "not measured (no gender model)")
    stand_in = bool(meta.get("stand_in"))
    warning = ("\n> **WARNING: the scorer is a stand-in (image brightness), not the face segmentation. These numbers "
               "say nothing about face properties; they only show that the pipeline runs.**\n" if stand_in else "")
    valid = result.samples["valid"].to_numpy(bool)
    text = f"""# Control evaluation (step 9)
{warning}
- checkpoint: `{meta.get('checkpoint')}` (step {meta.get('step')}, weights: {meta.get('weights', 'ema')})
- scorer: {meta.get('scorer')}
- design: {meta.get('num_z')} random z x {num_values} values per sweep x {len(props)} properties = {len(valid)} images
- others held at {meta.get('held', 'the training median')}
- images the scorer could not measure (no face, NaN score): {int((~valid).sum())} of {len(valid)}
- female share: {female_line}

## Per property (requested vs measured, sweeps of that property only)
{markdown_table(metrics)}

`monotonic_share`: share of complete sweeps whose measured value never decreases and ends above its start.
`control_slope`: mean least-squares slope of measured on requested (1 = exact control).

## Leakage matrix (rows: swept property; columns: measured property; |slope|)
{markdown_table(leak, index=True)}

Diagonal = control strength; off-diagonal = how much another property moves when one is swept (ideal 0).

## Files
`{SAMPLES_CSV}` (every image: requested_*, measured_*, female_prob), `{METRICS_CSV}`, `{LEAKAGE_CSV}`,
`{SCATTER_PNG}`, `{LEAKAGE_PNG}`, `sweep_<property>.png` (rows: z, columns: requested value; "x" = not measured).
"""
    paths["report"] = atomic_write_text(out_dir / REPORT_MD, text)
    return paths
