"""The one sweep-grid builder (``stylegan.sweeps``)."""
from __future__ import annotations

import numpy as np

from stylegan.sweeps import sweep_targets


def test_row_k_times_v_plus_s_is_latent_k_at_value_s_with_the_others_from_its_base():
    base = np.array([[0.1, np.nan, 0.3], [0.4, 0.5, np.nan]])
    values = np.array([0.0, 0.5, 1.0], np.float32)
    targets = sweep_targets(base, 1, values)
    assert targets.shape == (6, 3) and targets.dtype == np.float64   # the base's dtype
    for k in range(2):
        for s in range(3):
            row = targets[k * 3 + s]
            assert row[1] == values[s]
            np.testing.assert_array_equal(np.delete(row, 1), np.delete(base[k], 1))  # NaN = NaN here
    assert np.isnan(base[0, 1])  # the base is not written to
