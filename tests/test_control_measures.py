"""Control metrics (step 9) on arrays with known answers, and the evaluation loop with stand-ins."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from common.paths import PROPERTY_NAMES
from stylegan.control_measures import (
    BrightnessScorer,
    ControlConfig,
    control_metrics,
    evaluate_control,
    is_stand_in,
    leakage_matrix,
    sweep_design,
    write_control_outputs,
)

RANGES = {p: ((-1.0, 1.0) if p == "face_pose" else (0.0, 1.0)) for p in PROPERTY_NAMES}


def _samples(measure) -> pd.DataFrame:
    """A design of 3 z x 5 values, measured by ``measure(requested [N, 5]) -> [N, 5]``."""
    design = sweep_design(RANGES, np.full((3, 5), 0.5), 5)
    req = design[[f"requested_{p}" for p in PROPERTY_NAMES]].to_numpy(float)
    meas = measure(req)
    for i, p in enumerate(PROPERTY_NAMES):
        design[f"measured_{p}"] = meas[:, i]
    return design


def test_sweep_design_holds_the_others():
    design = sweep_design(RANGES, np.array([[0.1, 0.2, 0.3, 0.4, 0.5], [0.6, 0.7, 0.8, 0.9, -0.5]]), 3)
    assert len(design) == 5 * 2 * 3
    pose = design[(design["property"] == "face_pose") & (design["z_index"] == 1)]
    assert pose["requested_face_pose"].tolist() == [-1.0, 0.0, 1.0]
    assert (pose["requested_eyes"] == 0.6).all() and (pose["requested_mouth"] == 0.9).all()


def test_perfect_control_gives_ideal_metrics():
    metrics = control_metrics(_samples(lambda req: req.copy())).set_index("property")
    assert np.allclose(metrics["pearson_r"], 1.0) and np.allclose(metrics["spearman_rho"], 1.0)
    assert np.allclose(metrics["mae"], 0.0) and np.allclose(metrics["monotonic_share"], 1.0)
    assert np.allclose(metrics["control_slope"], 1.0)
    leak = leakage_matrix(_samples(lambda req: req.copy())).to_numpy()
    assert np.allclose(np.diag(leak), 1.0) and np.allclose(leak - np.diag(np.diag(leak)), 0.0)


def test_no_control_and_leakage_are_reported():
    rng = np.random.default_rng(0)

    def measure(req):
        out = rng.uniform(0, 1, size=req.shape)  # eyes etc. ignore the request
        out[:, 1] = 0.3 + 0.5 * req[:, 0]  # hair_color follows the *eyes* request: leakage
        return out

    samples = _samples(measure)
    metrics = control_metrics(samples).set_index("property")
    assert abs(metrics.loc["mouth", "pearson_r"]) < 0.6
    leak = leakage_matrix(samples)
    assert leak.loc["eyes", "hair_color"] == pytest.approx(0.5)
    # hair_color's own sweep: the measured value depends on the (held) eyes only -> flat, no control
    assert metrics.loc["hair_color", "control_slope"] == pytest.approx(0.0)
    assert metrics.loc["hair_color", "monotonic_share"] == 0.0  # a flat sweep is not monotonic control


def test_spearman_sees_monotone_nonlinear_control_and_nan_is_left_out():
    def measure(req):
        out = req ** 3
        out[::7, 0] = np.nan  # failed measurements
        return out

    samples = _samples(measure)
    m = control_metrics(samples).set_index("property")
    assert m.loc["hair_length", "spearman_rho"] == pytest.approx(1.0)
    assert m.loc["hair_length", "pearson_r"] < 1.0
    assert m.loc["eyes", "num_valid"] < m.loc["eyes", "num_images"]
    assert m.loc["eyes", "num_complete_sweeps"] < m.loc["eyes", "num_sweeps"]


def test_evaluate_control_with_stand_ins_writes_every_output(tmp_path):
    """generate: image brightness bands set from the request, so the brightness scorer recovers it."""

    def generate(z, cond):
        images = np.zeros((len(z), 20, 20, 3), dtype=np.uint8)
        for band, rows in enumerate(np.array_split(np.arange(20), 5)):
            value = cond[:, band] if band < 4 else (cond[:, 4] + 1) / 2
            images[:, rows] = np.round(value * 255).astype(np.uint8)[:, None, None, None]
        return images

    config = ControlConfig(num_z=3, num_values=4, batch_size=7, sheet_z=2)
    calls = []
    result = evaluate_control(generate, BrightnessScorer(), np.zeros((3, 8)), np.full((3, 5), 0.5), RANGES, config,
                              gender=lambda images: np.full(len(images), 0.8), progress=calls.append)
    assert sum(calls) == 3 * 4 * 5 and len(result.samples) == 60
    metrics = control_metrics(result.samples).set_index("property")
    assert (metrics["pearson_r"] > 0.999).all() and (metrics["mae"] < 0.01).all()
    assert all(len(images) == 2 * 4 for images in result.sheets.values())
    scorer = BrightnessScorer()
    paths = write_control_outputs(result, tmp_path, {"scorer": scorer.name, "stand_in": is_stand_in(scorer),
                                                     "num_z": 3, "sheet_z": 2}, 4)
    for path in paths.values():
        assert path.is_file() and path.stat().st_size > 0
    report = (tmp_path / "report.md").read_text()
    assert "WARNING: the scorer is a stand-in" in report and "female share: 1.000 of 60" in report


def test_a_stand_in_is_recognised_by_its_type_not_its_name(tmp_path):
    class Renamed(BrightnessScorer):
        name = judge = "brightness bands"

    class RealJudge:
        name = "a judge whose description says stand-in"

        def __call__(self, images):
            return np.zeros((len(images), 5))

    assert is_stand_in(Renamed()) and is_stand_in(BrightnessScorer()) and not is_stand_in(RealJudge())
    result = evaluate_control(lambda z, c: np.zeros((len(z), 10, 10, 3), np.uint8), RealJudge(), np.zeros((1, 4)),
                              np.full((1, 5), 0.5), RANGES, ControlConfig(num_z=1, num_values=2, sheet_z=0))
    judge = RealJudge()
    write_control_outputs(result, tmp_path, {"scorer": judge.name, "stand_in": is_stand_in(judge)}, 2)
    assert "WARNING" not in (tmp_path / "report.md").read_text()


def test_scorer_shape_is_checked():
    with pytest.raises(ValueError, match="scorer returned shape"):
        evaluate_control(lambda z, c: np.zeros((len(z), 8, 8, 3), np.uint8), lambda im: np.zeros((len(im), 3)),
                         np.zeros((1, 4)), np.full((1, 5), 0.5), RANGES, ControlConfig(num_z=1, num_values=2))


def test_heatmap_labels_show_small_slopes_instead_of_zero():
    from stylegan.control_measures import heatmap_label

    assert heatmap_label(0.1234) == "0.12" and heatmap_label(0.0) == "0.00" and heatmap_label(float("nan")) == "nan"
    assert heatmap_label(0.0031) == "3.1e-03" and heatmap_label(-0.00042) == "-4.2e-04"


def test_one_definition_of_leakage_and_failed_share():
    """Leakage of p = mean over q != p of (mean over sweeps of |slope of q on p|), a NaN slope left out and its
    sweep's images counted as failed; a property the judge never measures fails nothing.

    Before the one definition, stylegan.directions pooled every (property, sweep) slope into one mean, and step 9
    averaged per property: the same figure only while no slope is NaN (here it is)."""
    from stylegan.control_measures import overall, sweep_measures

    requested = np.tile(np.linspace(0.0, 1.0, 5), 3)
    sweep = np.repeat(np.arange(3), 5)
    measured = np.zeros((15, 4))
    measured[:, 0] = requested                              # control
    measured[:, 1] = 0.2 * requested                        # leaks 0.2 into q=1
    measured[:, 2] = np.where(sweep == 0, 0.6, 0.0) * requested   # leaks 0.6 in sweep 0 only
    measured[sweep == 2, 2] = np.nan                         # ...and sweep 2 fails on q=2 (NaN slope)
    measured[:, 3] = np.nan                                  # a property this judge does not measure
    m = sweep_measures(requested, measured, sweep, 0)
    assert m["pearson_r"] == pytest.approx(1.0) and m["control_slope"] == pytest.approx(1.0)
    assert np.isnan(m["leakage_row"][3])
    assert m["leakage_row"][2] == pytest.approx(0.3)         # (0.6 + 0.0) / 2 sweeps, the NaN one left out
    assert m["leakage_mean"] == pytest.approx((0.2 + 0.3) / 2)
    assert m["leakage_max"] == pytest.approx(0.3)
    assert m["failed_share"] == pytest.approx(1 / 3)         # sweep 2's images
    assert m["monotonic_share"] == 1.0
    assert overall([0.1, np.nan, 0.3]) == pytest.approx(0.2)
