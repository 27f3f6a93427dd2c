"""How far two judges agree: Pearson r between their measures of the same images.

A judge is a table indexed by image with one column per property. Agreement is computed on the
images both judges measured (NaN in either is left out); with fewer than 3 such images, or a
constant column, r is NaN and the row says why.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np


def pearson_r(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    """(r, n) over the pairs where both are finite; r is NaN for n < 3 or a constant side."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    keep = np.isfinite(a) & np.isfinite(b)
    n = int(keep.sum())
    if n < 3:
        return math.nan, n
    a, b = a[keep], b[keep]
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan, n
    from scipy.stats import pearsonr

    return float(pearsonr(a, b).statistic), n


def judge_agreement(judges: Mapping[str, object], properties: Sequence[str]):
    """Pearson r between every pair of judges, per property both measure.

    judges: name -> pandas DataFrame (index = image, columns = properties). Returns a DataFrame with
    columns ``property, judge_a, judge_b, pearson_r, n``.
    """
    import pandas as pd

    names = list(judges)
    rows = []
    for prop in properties:
        having = [name for name in names if prop in judges[name].columns]
        for i, first in enumerate(having):
            for second in having[i + 1 :]:
                a, b = judges[first][prop], judges[second][prop]
                common = a.index.intersection(b.index)
                r, n = pearson_r(a.loc[common].to_numpy(), b.loc[common].to_numpy())
                rows.append({"property": prop, "judge_a": first, "judge_b": second, "pearson_r": r, "n": n})
    return pd.DataFrame(rows, columns=["property", "judge_a", "judge_b", "pearson_r", "n"])
