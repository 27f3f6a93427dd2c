"""Learning-rate schedules: one formula for every optimiser that ramps its rate down (step 7b's fine-tune with
``--lr-rampdown``, the refine's gradient method), so the two cannot drift apart."""
from __future__ import annotations

import math

__all__ = ["cosine_rampdown"]


def cosine_rampdown(step: int, total: int, share: float = 1.0) -> float:
    """The rate's multiplier at ``step`` (0-based) of ``total``: 1, then a half cosine towards 0 over the final
    ``share`` of ``total`` (the last step keeps a small rate, so it still moves); a share or total of 0 = 1.

    Adam's steps keep about the rate's size, so a constant rate ends jittering around the optimum by about it;
    NVlabs' projector ramps its rate down the same way."""
    length = share * total
    if length <= 0:
        return 1.0
    left = (total - step) / length      # 1 where the ramp starts, 0 one step after the last
    if left >= 1.0:
        return 1.0
    return 0.5 - 0.5 * math.cos(math.pi * max(left, 0.0))
