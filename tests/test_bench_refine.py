"""The refine benchmark's per-world means (issue 21 judges a world by its mean over seeds)."""
from __future__ import annotations

import pytest

from benchmarks.bench_refine import LEAK_TARGET, R_TARGET, world_means
from common.paths import PROPERTY_NAMES


def _row(world: str, seed: int, method: str, r: list[float], leak: list[float]) -> dict:
    return {"world": world, "seed": seed, "method": method, "r_min": min(r), "leakage_max": max(leak),
            **{f"r_{p}": r[i] for i, p in enumerate(PROPERTY_NAMES)},
            **{f"leak_{p}": leak[i] for i, p in enumerate(PROPERTY_NAMES)}}


def test_world_means_average_each_property_over_seeds_then_take_the_worst():
    """Seed 0 misses r on property 0, seed 1 on property 1: each seed fails, their mean meets the target
    (the mean of the per-seed minima would not); another world and method stay apart."""
    rows = [_row("t1", 0, "learned:3", [0.86, 0.99, 0.95, 0.95, 0.95], [0.1, 0.1, 0.25, 0.1, 0.1]),
            _row("t1", 1, "learned:3", [0.99, 0.86, 0.95, 0.95, 0.95], [0.1, 0.1, 0.05, 0.1, 0.1]),
            _row("t1", 0, "gradient:30", [0.5] * 5, [0.5] * 5),
            _row("t5", 0, "learned:3", [0.95] * 5, [0.1, 0.1, 0.1, 0.1, 0.3])]
    means = {(m["world"], m["method"]): m for m in world_means(rows)}
    assert set(means) == {("t1", "learned:3"), ("t1", "gradient:30"), ("t5", "learned:3")}
    t1 = means[("t1", "learned:3")]
    assert t1["seeds"] == "0 1"
    assert t1["r_min"] == pytest.approx(0.925) and t1["r_min"] >= R_TARGET
    assert t1["leakage_max"] == pytest.approx(0.15) and t1["leakage_max"] <= LEAK_TARGET
    assert t1["met"] is True
    assert means[("t1", "gradient:30")]["met"] is False
    assert means[("t5", "learned:3")]["met"] is False   # one leakage over the target
