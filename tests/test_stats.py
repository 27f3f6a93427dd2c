"""common.stats: one rule for NaN and constant input, scipy's figures underneath."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from common import stats


def test_figures_are_scipys_on_the_finite_pairs():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(50)
    y = 0.7 * x + 0.3 * rng.standard_normal(50)
    xn, yn = x.copy(), y.copy()
    xn[[3, 9]] = np.nan
    yn[[4]] = np.inf
    keep = np.ones(50, bool)
    keep[[3, 4, 9]] = False
    assert stats.pearson(xn, yn) == pytest.approx(scipy_stats.pearsonr(x[keep], y[keep]).statistic, abs=1e-12)
    assert stats.spearman(xn, yn) == pytest.approx(scipy_stats.spearmanr(x[keep], y[keep]).statistic, abs=1e-12)
    assert stats.slope(xn, yn) == pytest.approx(scipy_stats.linregress(x[keep], y[keep]).slope, abs=1e-12)
    low, high = stats.pearson_ci(xn, yn)
    assert low < stats.pearson(xn, yn) < high


@pytest.mark.parametrize("fn", [stats.pearson, stats.spearman])
def test_a_correlation_is_nan_where_it_says_nothing(fn):
    assert math.isnan(fn([1.0, 2.0], [3.0, 5.0]))                  # two points always correlate perfectly
    assert math.isnan(fn([1.0, 2.0, np.nan, 4.0], [1.0, 2.0, 3.0, np.nan]))  # two finite pairs left
    assert math.isnan(fn([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))        # a constant side
    assert math.isnan(fn([1.0, 2.0, 3.0], [4.0, 4.0, 4.0]))
    assert math.isnan(fn([], []))
    assert fn([1.0, 2.0, 3.0], [1.0, 2.0, 4.0]) > 0.9


def test_a_slope_needs_x_to_vary_and_is_zero_for_a_flat_response():
    assert stats.slope([0.0, 1.0], [0.0, 2.0]) == pytest.approx(2.0)
    assert stats.slope([0.0, 1.0, 2.0], [5.0, 5.0, 5.0]) == 0.0
    assert math.isnan(stats.slope([1.0, 1.0, 1.0], [0.0, 1.0, 2.0]))
    assert math.isnan(stats.slope([0.0, 1.0, 2.0], [np.nan, 1.0, np.nan]))
    assert math.isnan(stats.pearson_ci([0.0, 1.0, 2.0], [0.0, 1.0, 3.0])[0])   # n <= 3: no interval


def test_mean_interval():
    assert all(math.isnan(v) for v in stats.mean_ci([1.0]))
    assert stats.mean_ci([2.0, 2.0, np.nan]) == (2.0, 2.0)
    low, high = stats.mean_ci([1.0, 2.0, 3.0, np.nan])
    assert low < 2.0 < high


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="same length"):
        stats.pearson([1.0, 2.0, 3.0], [1.0, 2.0])
