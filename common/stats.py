"""The statistics of evaluation (Pearson, Spearman, least-squares slope, intervals), with one rule for bad input.

The rule, the same for every function here:

* a pair with a NaN or an infinite value on either side is left out (a judge that failed on an image says so
  with NaN; it is not a value);
* on the pairs that remain, a statistic is NaN exactly where it cannot say anything about the relation: a
  correlation needs at least ``MIN_PAIRS_CORRELATION`` pairs (two points always correlate perfectly) and both
  sides varying; a slope of y on x needs two pairs and x varying (a y that does not vary has slope 0: a flat
  response is an answer, not a failure); a mean's interval needs two values.

scipy computes every figure (``pearsonr``, ``spearmanr``, ``linregress``, Student's t); this module only
applies the rule, so callers never write their own guard. Numpy and scipy only: any package may import it.
(Step 6's property formulas are not statistics of this kind and do not use it: ``face_pose`` matches
``numpy.corrcoef`` bit for bit, see ``segmentation.property_scores``.)
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats as _scipy

__all__ = ["MIN_PAIRS_CORRELATION", "finite_pairs", "mean_ci", "pearson", "pearson_ci", "slope", "spearman", "varies"]

MIN_PAIRS_CORRELATION = 3
"""Fewest finite pairs a correlation is computed on: two points always give r = +-1, which says nothing."""


def finite_pairs(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """float64 copies of x and y without the pairs where either side is NaN or infinite."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def varies(values: np.ndarray) -> bool:
    """Whether finite values take more than one value (a constant side makes a correlation undefined)."""
    return len(values) > 0 and bool(np.ptp(values) > 0)


def _correlation_defined(x: np.ndarray, y: np.ndarray) -> bool:
    return len(x) >= MIN_PAIRS_CORRELATION and varies(x) and varies(y)


def pearson(x: Any, y: Any) -> float:
    """Pearson's r over the finite pairs; NaN below ``MIN_PAIRS_CORRELATION`` pairs or with a constant side."""
    x, y = finite_pairs(x, y)
    if not _correlation_defined(x, y):
        return math.nan
    return float(_scipy.pearsonr(x, y).statistic)


def pearson_ci(x: Any, y: Any, level: float = 0.95) -> tuple[float, float]:
    """Fisher-z interval of Pearson's r over the finite pairs; NaN where r is undefined or n <= 3 (no spread)."""
    x, y = finite_pairs(x, y)
    if not _correlation_defined(x, y) or len(x) <= 3:
        return math.nan, math.nan
    ci = _scipy.pearsonr(x, y).confidence_interval(level)
    return float(ci.low), float(ci.high)


def spearman(x: Any, y: Any) -> float:
    """Spearman's rho over the finite pairs; NaN below ``MIN_PAIRS_CORRELATION`` pairs or with a constant side."""
    x, y = finite_pairs(x, y)
    if not _correlation_defined(x, y):
        return math.nan
    return float(_scipy.spearmanr(x, y).statistic)


def slope(x: Any, y: Any) -> float:
    """Least-squares slope of y on x over the finite pairs; NaN below two pairs or when x does not vary;
    0 when y does not vary."""
    x, y = finite_pairs(x, y)
    if len(x) < 2 or not varies(x):
        return math.nan
    if not varies(y):
        return 0.0
    return float(_scipy.linregress(x, y).slope)


def mean_ci(values: Sequence[float] | np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean of the finite values; NaN for fewer than two, a point for constant ones."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    values = values[np.isfinite(values)]
    if len(values) < 2:
        return math.nan, math.nan
    if not varies(values):
        return float(values[0]), float(values[0])
    low, high = _scipy.t.interval(level, len(values) - 1, loc=values.mean(), scale=_scipy.sem(values))
    return float(low), float(high)
