"""lab.world_family: issue 21's rule, InterFaceGAN's reference recipe, and the resumable per-world cache."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import lab.world_family as family
from lab.control_lab import interfacegan_boundary, interfacegan_count
from lab.world_family import CANDIDATES, WorldSpec, arm_summary, rule_by_arm, rule_check, run_world


def _summary(rows: list[tuple[str, float, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"world": "w", "half": "tuned", "arm": arm, "mean_r": r, "leakage": leak}
                         for arm, r, leak in rows])


def test_the_rule_compares_the_default_with_the_best_candidate_that_leaks_little():
    a, b, c = (cand.name for cand in CANDIDATES[:3])
    met = rule_check(_summary([(a, 0.90, 0.30), (b, 0.80, 0.15), (c, 0.70, 0.10), ("default", 0.79, 0.12)]))
    row = met.iloc[0]
    assert row["best_arm"] == b and row["met"] and row["r_shortfall"] == 0.0   # a leaks too much to compete
    short = rule_check(_summary([(a, 0.90, 0.30), (b, 0.80, 0.15), ("default", 0.70, 0.12)])).iloc[0]
    assert not short["met"] and short["r_shortfall"] == pytest.approx(0.08)
    leaky = rule_check(_summary([(a, 0.90, 0.30), (b, 0.80, 0.15), ("default", 0.85, 0.25)])).iloc[0]
    assert not leaky["met"] and leaky["r_shortfall"] == 0.0 and not leaky["leakage_ok"]
    # none <= 0.2: those within 0.02 of the lowest compete, and the default must be among them
    none = rule_check(_summary([(a, 0.90, 0.40), (b, 0.80, 0.25), (c, 0.75, 0.26), ("default", 0.79, 0.265)]))
    assert none.iloc[0]["best_arm"] == b and none.iloc[0]["met"]
    over = rule_check(_summary([(a, 0.90, 0.40), (b, 0.80, 0.25), ("default", 0.85, 0.30)])).iloc[0]
    assert not over["met"] and not over["leakage_ok"]                             # 0.30 > lowest 0.25 + 0.02
    # the reference and SeFa are measured beside, never candidates
    ref = rule_check(_summary([(a, 0.80, 0.15), ("interfacegan", 0.99, 0.01), ("default", 0.79, 0.15)]))
    assert ref.iloc[0]["best_arm"] == a and ref.iloc[0]["met"]



def test_rule_by_arm_ranks_each_setting_as_if_it_were_the_default():
    """The defaults are read off this table (tuned half): most worlds met, then the smallest worst shortfall."""
    a, b, c = (cand.name for cand in CANDIDATES[:3])
    rows = [("w1", a, 0.90, 0.30), ("w1", b, 0.80, 0.15), ("w1", c, 0.70, 0.10),
            ("w2", a, 0.95, 0.25), ("w2", b, 0.70, 0.18), ("w2", c, 0.75, 0.12)]
    summary = pd.DataFrame([{"world": w, "half": "tuned", "arm": arm, "mean_r": r, "leakage": leak}
                            for w, arm, r, leak in rows])
    table = rule_by_arm(summary).set_index("arm")
    assert list(table.index) == [b, c, a]        # one world each; b falls shorter elsewhere: 0.03 < 0.08
    assert table.at[c, "worlds_met"] == 1 and table.at[c, "worst_r_shortfall"] == pytest.approx(0.08)  # w1: 0.8-0.02
    assert table.at[b, "worlds_met"] == 1 and table.at[b, "worst_r_shortfall"] == pytest.approx(0.03)  # w2: 0.75-0.02
    assert table.at[a, "worlds_met"] == 0 and table.at[a, "worlds_leakage_ok"] == 0
    assert table.at[c, "worlds"] == 2 and table.at[c, "mean_r"] == pytest.approx(0.725)


def test_interfacegan_boundary_follows_its_recipe():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((2000, 16))
    truth = rng.standard_normal(16)
    truth /= np.linalg.norm(truth)
    score = w @ truth + 0.1 * rng.standard_normal(2000)
    normal = interfacegan_boundary(w, score, seed=0)
    assert np.linalg.norm(normal) == pytest.approx(1.0) and normal @ truth > 0.9
    assert interfacegan_count(2000) == 40 and interfacegan_count(30) == 1 and interfacegan_count(4) == 1
    # only the ends of the ranking count: the middle of the samples can be anything
    middle = np.argsort(score)[60:-60]
    scrambled = w.copy()
    scrambled[middle] = rng.standard_normal((len(middle), 16))
    np.testing.assert_allclose(interfacegan_boundary(scrambled, score, seed=0), normal)


@pytest.mark.usefixtures("single_thread")
def test_run_world_caches_arm_by_arm_and_renders_identical_edits_once(tmp_path, monkeypatch):
    spec = WorldSpec("tiny", "tuned", 32, 16, "strong", 120, "noisy")
    ridge_cap, ridge_nocap = (f"ridge hold {c} euclidean" for c in ("cap", "nocap"))
    record = run_world(spec, 0, tmp_path, eval_num_z=2, eval_num_values=3, arms=[ridge_cap, ridge_nocap, "sefa"],
                       tag="test")
    arms = record["arms"]
    assert set(arms) == {ridge_cap, ridge_nocap, "sefa"} and arms[ridge_cap]["tag"] == "test"
    assert arms[ridge_nocap]["same_edits_as"] == ridge_cap      # held edits inside the range: the cap never binds
    assert arms[ridge_nocap]["mean_r"] == arms[ridge_cap]["mean_r"]
    on_disk = json.loads((tmp_path / "tiny-seed0-z2x3.json").read_text())
    assert set(on_disk["arms"]) == set(arms)
    # the default arm is the candidate with the default's settings: no world is rebuilt for it

    def no_build(*args, **kwargs):
        raise AssertionError("the world was rebuilt")

    monkeypatch.setattr(family, "build_world", no_build)
    again = run_world(spec, 0, tmp_path, eval_num_z=2, eval_num_values=3, arms=[ridge_cap, "default"])
    assert again["arms"]["default"]["same_settings_as"] == ridge_cap
    summary = arm_summary([again])
    assert set(summary["arm"]) == {ridge_cap, ridge_nocap, "sefa", "default"} and (summary["seeds"] == 1).all()
