"""The fine-tune lab's record: per-seed checkpoints and their mean over seeds (issue 21 §3 is a mean over seeds)."""
from __future__ import annotations

import pytest

from benchmarks.control_lab_finetune import checkpoint_rows, mean_over_seeds, parse_variant, target_verdicts
from common.paths import PROPERTY_NAMES


def _result(seed: int, variant: str, by_steps: dict[int, tuple[list[float], list[float]]]) -> dict:
    return {"world": "t1", "seed": seed, "variant": variant,
            "checkpoints": {str(s): {"r": r, "leakage_max": leak, "leakage_mean": [0.0] * len(leak), "train_s": 1}
                            for s, (r, leak) in by_steps.items()}}


def test_mean_over_seeds_averages_each_property_then_takes_the_worst():
    n = len(PROPERTY_NAMES)
    # seed 0 leaks 0.26 on the first property and 0.10 elsewhere; seed 1 leaks 0.12 on the first, 0.22 on the last
    a = _result(0, "v", {2400: ([0.95] * n, [0.26] + [0.10] * (n - 1))})
    b = _result(1, "v", {2400: ([0.87] + [0.99] * (n - 1), [0.12] + [0.10] * (n - 2) + [0.22]),
                         600: ([0.5] * n, [0.3] * n)})
    means = mean_over_seeds(checkpoint_rows([a, b]))
    at = {m["steps"]: m for m in means}
    assert at[2400]["seeds"] == "0,1" and at[600]["seeds"] == "1"
    assert at[2400][f"r_{PROPERTY_NAMES[0]}"] == pytest.approx(0.91)
    assert at[2400]["r_min"] == pytest.approx(0.91)
    assert at[2400][f"leak_{PROPERTY_NAMES[0]}"] == pytest.approx(0.19)
    assert at[2400]["leakage_max"] == pytest.approx(0.19)
    # each seed alone fails (r 0.87, leakage 0.26 / 0.22), their mean meets the target
    assert at[2400]["met"] is True
    verdict = target_verdicts(checkpoint_rows([a, b]), means)["t1 v"]
    assert verdict.startswith("met over 2 seed(s) (0,1)")


def test_target_verdicts_say_how_far_a_variant_got_and_skip_variants_never_run():
    n = len(PROPERTY_NAMES)
    rows = checkpoint_rows([_result(0, "short", {1200: ([0.95] * n, [0.1] * n)}), _result(0, "idle", {}),
                            _result(0, "leaky", {2400: ([0.95] * n, [0.1] * (n - 1) + [0.21])})])
    verdicts = target_verdicts(rows, mean_over_seeds(rows))
    assert verdicts["t1 short"] == "not reached (checkpoints judged up to step 1200)"
    assert verdicts["t1 leaky"].startswith("NOT met over 1 seed(s) (0)")
    assert "t1 idle" not in verdicts


def test_parse_variant_rejects_unknown_settings():
    assert parse_variant("pair_weight=3.0,decorrelate=1.0") == (
        "pair_weight=3.0,decorrelate=1.0", {"pair_weight": 3.0, "decorrelate": 1.0})
    with pytest.raises(SystemExit, match="not a FinetuneConfig setting"):
        parse_variant("pair_wieght=3")
