"""Step 9's comparison of control methods on one measure: ``comparison.csv``, a sweep figure, a verdict.

Every method (and the unedited generator as the floor) is swept with the same design on the same
latents and judged by the same scorer; this module turns those per-method sample tables into one
row per (method, judge, property). Arrays and tables only: no models, no segmentation.

Columns (``COMPARISON_COLUMNS``, a contract):
- ``pearson_r``, ``spearman_rho``, ``mae``, ``monotonic_share``, ``control_slope``: as in
  ``stylegan.control_measures.control_metrics`` (the sweeps of that property only).
- ``leakage_mean``: mean over the other properties q of the mean over sweeps of |least-squares slope| of
  measured q against the requested property, in step-6 units (pose spans 2, the others 1); ideal 0. A
  NaN slope is left out and counted in ``failed_share``.
- ``failed_share``: share of that property's sweep images that count for nothing: the judge could not
  measure the property (NaN), or the image's sweep left a slope NaN.
- ``female_share``: share of those images the gender CNN calls a woman (p >= 0.5); NaN without one.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from common.contact_sheet import make_contact_sheet
from common.io import atomic_write_csv
from common.paths import COMPARISON_CSV, PROPERTY_NAMES
from stylegan.control_measures import control_metrics, samples_measures

__all__ = ["COMPARISON_COLUMNS", "COMPARISON_CSV", "COMPARISON_PNG", "comparison_table", "verdicts",
           "comparison_sheet", "method_label"]

COMPARISON_PNG = "comparison_sweeps.png"
COMPARISON_COLUMNS: tuple[str, ...] = (
    "method", "judge", "property", "pearson_r", "spearman_rho", "mae", "monotonic_share", "control_slope",
    "leakage_mean", "failed_share", "female_share",
)
_CI_COLUMNS = ("pearson_r_low", "pearson_r_high")
_REPORT_COLUMNS = (*_CI_COLUMNS, "leakage_max")


def comparison_table(samples_by_method: Mapping[str, pd.DataFrame],
                     properties: Sequence[str] = PROPERTY_NAMES, with_ci: bool = False) -> pd.DataFrame:
    """One row per method x judge x property (method order as given, judges in order of appearance).

    Every figure is ``stylegan.control_measures.sweep_measures``' (the one definition). with_ci adds
    ``pearson_r_low`` / ``pearson_r_high`` (95% Fisher interval) and ``leakage_max`` (the largest
    off-diagonal leakage) for the report; comparison.csv itself holds exactly ``COMPARISON_COLUMNS``.
    """
    properties = tuple(properties)
    rows = []
    for method, samples in samples_by_method.items():
        judges = samples["judge"].drop_duplicates().tolist() if "judge" in samples else ["scorer"]
        for judge in judges:
            part = samples[samples["judge"] == judge] if "judge" in samples else samples
            metrics = control_metrics(part, properties).set_index("property")
            for prop in properties:
                m = samples_measures(part, prop, properties)
                swept = part[part["property"] == prop]
                female = swept["female_prob"].to_numpy(float) if "female_prob" in swept else np.array([])
                female = female[np.isfinite(female)]
                rows.append({
                    "method": method, "judge": judge, "property": prop,
                    **{k: m[k] for k in ("pearson_r", "spearman_rho", "mae", "monotonic_share", "control_slope",
                                         "leakage_mean", "failed_share")},
                    "female_share": float(np.mean(female >= 0.5)) if len(female) else float("nan"),
                    "pearson_r_low": metrics.at[prop, "pearson_r_low"],
                    "pearson_r_high": metrics.at[prop, "pearson_r_high"], "leakage_max": m["leakage_max"],
                })
    columns = list(COMPARISON_COLUMNS) + (list(_REPORT_COLUMNS) if with_ci else [])
    return pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS) + list(_REPORT_COLUMNS))[columns]


def _fmt(v: float) -> str:
    return "nan" if not np.isfinite(v) else f"{v:.2f}"


def verdicts(table: pd.DataFrame, baseline: str = "baseline") -> list[str]:
    """Plain sentences: per judge and property, which method controls it better and whether that is clear.

    The winner is the highest Pearson r; "clearly" when its 95% interval lies above the runner-up's
    (else "not clearly"); a method whose r interval reaches 0, or that does not beat the baseline,
    is said to show no measurable control.
    """
    lines = []
    has_ci = all(c in table for c in _CI_COLUMNS)
    for (judge, prop), part in table.groupby(["judge", "property"], sort=False):
        part = part.assign(_r=part["pearson_r"].fillna(-np.inf)).sort_values("_r", ascending=False)
        methods = part[part["method"] != baseline]
        if methods.empty:
            continue
        best = methods.iloc[0]
        text = (f"{prop} ({judge}): best {best['method']} r={_fmt(best['pearson_r'])}, "
                f"leakage {_fmt(best['leakage_mean'])}")
        if has_ci and np.isfinite(best["pearson_r_low"]):
            text += f" (95% CI {_fmt(best['pearson_r_low'])}..{_fmt(best['pearson_r_high'])})"
        if len(methods) > 1:
            second = methods.iloc[1]
            clear = has_ci and np.isfinite(best["pearson_r_low"]) and np.isfinite(second["pearson_r_high"]) \
                and best["pearson_r_low"] > second["pearson_r_high"]
            text += (f"; {'clearly' if clear else 'not clearly'} better than {second['method']} "
                     f"(r={_fmt(second['pearson_r'])}, leakage {_fmt(second['leakage_mean'])})")
        no_control = (not np.isfinite(best["pearson_r"]) or best["pearson_r"] <= 0
                      or (has_ci and np.isfinite(best["pearson_r_low"]) and best["pearson_r_low"] <= 0))
        if no_control:
            text += "; no method shows measurable control of it"
        lines.append(text)
    return lines


_SHORT = {"eyes": "eyes", "hair_color": "hcol", "hair_length": "hlen", "mouth": "mouth", "face_pose": "pose"}


_METHOD_LABELS = {"directions+refine": "dir+refine"}


def method_label(method: str) -> str:
    """A method's name in a thumbnail caption (at most 10 characters, distinct for every method we make:
    a plain cut would show ``directions+refine`` as ``directions``)."""
    return _METHOD_LABELS.get(method, method)[:10]


def comparison_sheet(sheets_by_method: Mapping[str, Mapping[str, list[np.ndarray]]],
                     requested: Mapping[str, Sequence[float]], properties: Sequence[str] = PROPERTY_NAMES,
                     z_rows: int = 1, thumb: int = 128):
    """One sweep row per method for the same latent(s): a block per property, rows method (x latent).

    sheets_by_method[method][property]: that method's sweep images (latent by latent, one row of
    ``len(requested[property])`` values each). Captions: method, property (short), requested value.
    """
    images, captions = [], []
    ncols = max(len(v) for v in requested.values())
    for prop in properties:
        n = len(requested[prop])
        for k in range(z_rows):
            for method, sheets in sheets_by_method.items():
                row = list(sheets.get(prop, []))[k * n:(k + 1) * n]
                if len(row) < n:
                    continue
                images += row
                captions += [f"{method_label(method)} {_SHORT.get(prop, prop[:5])}={v:.2f}" for v in requested[prop]]
    return make_contact_sheet(images, captions, ncols=ncols, thumb=thumb, title="rows: method, same latent")


def write_csv(table: pd.DataFrame, out_dir: Path | str, extra_columns: Sequence[str] = ()) -> Path:
    """comparison.csv (step 9): the contract columns first, in their order, then ``extra_columns``."""
    columns = list(COMPARISON_COLUMNS) + list(extra_columns)
    return atomic_write_csv(Path(out_dir) / COMPARISON_CSV, table[columns], COMPARISON_COLUMNS)
