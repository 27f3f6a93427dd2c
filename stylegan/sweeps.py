"""The one sweep-grid builder: every latent repeated over one property's requested values.

Step 7a's control choice and sheets, step 8's sweep sheets and step 9's design all sweep the same
way (row ``k * V + s``: latent k, value s), so a row index means the same thing everywhere.
"""
from __future__ import annotations

import numpy as np


def sweep_targets(base: np.ndarray, column: int, values: np.ndarray) -> np.ndarray:
    """Targets [K * V, P] of a sweep: row ``k * V + s`` is ``base[k]`` with ``column`` set to ``values[s]``.

    ``base`` [K, P] holds the other properties' requests (NaN = not requested) and sets the dtype.
    The latents of the same rows are ``np.repeat(latents, V, axis=0)``.
    """
    base = np.asarray(base)
    values = np.asarray(values)
    targets = np.repeat(base, len(values), axis=0)
    targets[:, column] = np.tile(values, len(base))
    return targets
