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
from scipy import stats

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


def _finite_pair(a: np.ndarray, b: np.ndarray) -> bool:
    return len(a) >= 2 and np.ptp(a) > 0 and np.ptp(b) > 0


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(stats.pearsonr(a, b).statistic) if _finite_pair(a, b) else float("nan")


def _pearson_ci(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Fisher-z confidence interval of Pearson's r (scipy); NaN where r is undefined or n <= 3."""
    if not _finite_pair(a, b) or len(a) <= 3:
        return float("nan"), float("nan")
    ci = stats.pearsonr(a, b).confidence_interval(level)
    return float(ci.low), float(ci.high)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(stats.spearmanr(a, b).statistic) if _finite_pair(a, b) else float("nan")


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of y on x (scipy.stats.linregress); NaN when x does not vary."""
    if len(x) < 2 or np.ptp(x) == 0:
        return float("nan")
    if np.ptp(y) == 0:
        return 0.0
    return float(stats.linregress(x, y).slope)


def _mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Student-t interval of a mean over few sweeps (20 by default); NaN for fewer than 2 values."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return float("nan"), float("nan")
    if np.ptp(values) == 0:
        return float(values[0]), float(values[0])
    low, high = stats.t.interval(level, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
    return float(low), float(high)


def _single_judge(samples: pd.DataFrame) -> None:
    if "judge" in samples and samples["judge"].nunique() > 1:
        raise ValueError(f"samples hold several judges ({sorted(samples['judge'].unique())}); select one first")


def control_metrics(samples: pd.DataFrame, properties: Sequence[str] = PROPERTY_NAMES) -> pd.DataFrame:
    """Per property: Pearson r (95% CI), Spearman rho, MAE, monotonic share, mean control slope (95% CI), counts.

    Only the sweeps of that property count, and only images the scorer measured (finite value
    of that property). A sweep is monotonic when every step is >= 0 and the end is above the
    start (a flat sweep is not control); sweeps with a failed image are left out of that share.
    ``samples`` must hold one judge (see ``comparison_table`` for several).
    """
    _single_judge(samples)
    rows = []
    for prop in properties:
        part = samples[samples["property"] == prop]
        req, meas = part[f"requested_{prop}"].to_numpy(float), part[f"measured_{prop}"].to_numpy(float)
        ok = np.isfinite(meas)
        sweeps = [g.sort_values("value_index") for _, g in part.groupby("z_index")]
        measured = [g[f"measured_{prop}"].to_numpy(float) for g in sweeps]
        complete = [m for m in measured if np.isfinite(m).all()]
        monotonic = [bool(np.all(np.diff(m) >= 0) and m[-1] > m[0]) for m in complete]
        slopes = [_slope(g[f"requested_{prop}"].to_numpy(float)[np.isfinite(m)], m[np.isfinite(m)])
                  for g, m in zip(sweeps, measured)]
        slopes = [v for v in slopes if np.isfinite(v)]
        r_low, r_high = _pearson_ci(req[ok], meas[ok])
        s_low, s_high = _mean_ci(slopes)
        rows.append({
            "property": prop, "pearson_r": _pearson(req[ok], meas[ok]), "pearson_r_low": r_low,
            "pearson_r_high": r_high, "spearman_rho": _spearman(req[ok], meas[ok]),
            "mae": float(np.abs(meas[ok] - req[ok]).mean()) if ok.any() else float("nan"),
            "monotonic_share": float(np.mean(monotonic)) if monotonic else float("nan"),
            "control_slope": float(np.mean(slopes)) if slopes else float("nan"),
            "control_slope_low": s_low, "control_slope_high": s_high,
            "num_images": int(len(part)), "num_valid": int(ok.sum()), "num_sweeps": len(sweeps),
            "num_complete_sweeps": len(complete),
        })
    return pd.DataFrame(rows, columns=list(METRIC_COLUMNS))


def leakage_matrix(samples: pd.DataFrame, properties: Sequence[str] = PROPERTY_NAMES) -> pd.DataFrame:
    """L[p, q]: mean over sweeps of p of |slope of measured q against requested p| (rows: swept p)."""
    _single_judge(samples)
    matrix = np.full((len(properties), len(properties)), np.nan)
    for i, prop in enumerate(properties):
        part = samples[samples["property"] == prop]
        for j, other in enumerate(properties):
            slopes = []
            for _, g in part.groupby("z_index"):
                x, y = g[f"requested_{prop}"].to_numpy(float), g[f"measured_{other}"].to_numpy(float)
                ok = np.isfinite(y)
                s = _slope(x[ok], y[ok])
                if np.isfinite(s):
                    slopes.append(abs(s))
            if slopes:
                matrix[i, j] = float(np.mean(slopes))
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
