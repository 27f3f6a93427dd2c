"""How far two judges agree: Pearson r between their measures of the same images.

A judge is a table indexed by image with one column per property. Agreement is computed on the
images both judges measured (NaN in either is left out); with fewer than 3 such images, or a
constant column, r is NaN and the row says why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from common import stats


def pearson_r(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    """(r, n) over the pairs where both are finite; r follows ``common.stats.pearson`` (NaN for n < 3 or a
    constant side)."""
    x, y = stats.finite_pairs(a, b)
    return stats.pearson(x, y), len(x)


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
