"""The control lab (lab/control_lab.py): its truth functions, and a small lab run in CI (slow, ~0.5-1.2 min).

The small lab fits SVM latent directions (linear edits, and the same edits refined through the learned regressor) and
runs a 300-step fine-tune with that *learned* property regressor in a 32 px world whose five properties are exact
functions of the image, and judges them (and the unedited generator) with step 9's ``evaluate_control`` on step 9's
own latents.
"""
from __future__ import annotations

import numpy as np
import pytest

from common.paths import PROPERTY_NAMES
from lab.control_lab import LabJudge, lab_raw_properties, small_lab
from segmentation.normalize import PropertyNormalizer


def _image(size: int = 32) -> np.ndarray:
    return np.full((1, size, size, 3), 100, dtype=np.uint8)


def test_lab_properties_read_what_they_say():
    base = lab_raw_properties(_image())
    assert base["face_pose"][0] == 0.0 and base["mouth"][0] == 0.0
    top = _image()
    top[:, :6] = 200                        # the top fifth brighter: hair_color up, nothing else
    raw = lab_raw_properties(top)
    assert raw["hair_color"][0] > base["hair_color"][0]
    assert raw["eyes"][0] == base["eyes"][0] and raw["hair_length"][0] == base["hair_length"][0]
    right = _image()
    right[:, :, 16:] = 160                  # the right half brighter: pose > 0
    assert lab_raw_properties(right)["face_pose"][0] == pytest.approx(60 / 255)
    red = _image()
    red[:, 20:27, 10:22, 0] = 200           # the lower-middle block redder: mouth > 0
    assert lab_raw_properties(red)["mouth"][0] > 0 and lab_raw_properties(red)["eyes"][0] == base["eyes"][0]


def test_lab_judge_uses_step6_scale():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(40, 32, 32, 3), dtype=np.uint8)
    judge = LabJudge(PropertyNormalizer.fit(lab_raw_properties(images)))
    scores = judge(images)
    assert scores.shape == (40, 5)
    for j, p in enumerate(PROPERTY_NAMES):
        low, high = (-1.0, 1.0) if p == "face_pose" else (0.0, 1.0)
        assert scores[:, j].min() == pytest.approx(low) and scores[:, j].max() == pytest.approx(high)


# The small lab's thresholds: below the minimum over training seeds 0-4 under ATEN_CPU_CAPABILITY=default, avx2 and
# avx512 (native; 2-core Intel Xeon), measured with `python benchmarks/control_lab.py --small-seeds 0 1 2 3 4`.
# The SVM directions gave the same r for every seed and instruction set (their fit is float64 and deterministic);
# face_pose is not asserted for them: in this narrow world the held edit moves pose the wrong way (r -0.17), which
# the README reports. The 300-step fine-tune varies widely by seed and instruction set (one property swung from
# r -0.64 to 0.57 for the same seed), so only its mean r over the five properties is asserted.
# Directions, r (every seed and ISA; re-measured 2026-12-02): eyes 0.722, hair_color 0.705, hair_length 0.887, mouth
# 0.782, face_pose -0.169 (mean 0.586).
# Fine-tune, mean r over the five properties: min 0.21, median 0.49, max 0.83 (15 runs); the unedited generator: 0.
# (The fine-tune margin, 0.21, is smaller than its spread, 0.62: the assertion only says that control emerges.)
# The same directions with the refine option (learned regressor, 30 steps), r min over the 15 runs: eyes 0.861,
# hair_color 0.748, hair_length 0.858, mouth 0.855, face_pose 0.437; its mean r 0.772-0.928, at least 0.186 above the
# linear edit's 0.586. Every run 26-28 s (avx2, avx512, quiet box) and 40-69 s (default, load 4-6).
DIRECTIONS_R_MIN = {"eyes": 0.6, "hair_color": 0.55, "hair_length": 0.75, "mouth": 0.6}
FINETUNE_MEAN_R_MIN = 0.0
REFINED_R_MIN = {"eyes": 0.8, "hair_color": 0.7, "hair_length": 0.8, "mouth": 0.8, "face_pose": 0.35}
REFINE_GAIN_MIN = 0.1      # refined mean r above the linear edit's mean r


@pytest.mark.slow
@pytest.mark.usefixtures("single_thread")
def test_small_control_lab(record_property):
    """Both routes give control well above the unedited generator's r = 0, judged by the exact properties."""
    result = small_lab(seed=0)
    record_property("small_control_lab", result)
    print("small control lab:", result)
    assert result["world"]["entangled_pairs"] >= 2
    assert all(result["baseline"][f"{p}_pearson_r"] == pytest.approx(0.0, abs=1e-9) for p in PROPERTY_NAMES)
    for p, low in DIRECTIONS_R_MIN.items():
        assert result["directions"][f"{p}_pearson_r"] > low, p
    mean_r = np.mean([result["finetuned"][f"{p}_pearson_r"] for p in PROPERTY_NAMES])
    assert mean_r > FINETUNE_MEAN_R_MIN
    for p, low in REFINED_R_MIN.items():
        assert result["refined"][f"{p}_pearson_r"] > low, p
    gain = np.mean([result["refined"][f"{p}_pearson_r"] - result["directions"][f"{p}_pearson_r"] for p in PROPERTY_NAMES])
    assert gain > REFINE_GAIN_MIN


@pytest.mark.usefixtures("single_thread")
def test_refine_layers_are_chosen_by_the_learned_regressor_never_the_judge():
    """The lab's layer-range choice for the refine option scores with the learned regressor on latents of its own
    stream, one chosen range per property among those the generator has; the refine arm renders with it."""
    from lab.control_lab import (
        LabConfig,
        build_world,
        fit_lab_directions,
        lab_regressor,
        refine_arm,
        select_refine_layers,
    )
    from stylegan.control_measures import judge_name
    from stylegan.directions import available_layer_ranges
    from stylegan.refine import RefineConfig

    config = LabConfig(width=16, num_samples=200, eval_num_z=2, eval_num_values=3, regressor_epochs=1,
                       refine=RefineConfig(steps=2), directions_method="svm")
    world = build_world(config)
    regressor = lab_regressor(world)[0]
    directions, _ = fit_lab_directions(world)
    chosen, table = select_refine_layers(world, directions, regressor, num_z=2, num_values=3)
    ranges = available_layer_ranges(world.generator.num_layers)
    assert set(table["judge"]) == {"learned regressor"}
    assert len(table) == len(ranges) * len(PROPERTY_NAMES)
    assert table.groupby("property")["chosen"].sum().eq(1).all()
    assert list(chosen.layers) == [table[(table["property"] == p) & table["chosen"]]["layers"].item()
                                   for p in PROPERTY_NAMES]
    rows = refine_arm(world, chosen, regressor)
    assert set(rows["judge"]) == {judge_name(world.judge)} != {"learned regressor"}   # judged by the truth
    assert list(rows["property"]) == list(PROPERTY_NAMES) and rows["pearson_r"].notna().all()
