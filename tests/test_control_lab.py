"""The control lab (lab/control_lab.py): its truth functions, and a small lab run in CI (slow; 1.7-2 min at load ~9
on 2 shared cores, avx2).

The small lab fits latent directions with the library's defaults (ridge, hold, Euclidean, cap 3: linear edits, and
the same edits refined through the learned regressor), SeFa's and InterFaceGAN's recipe beside them, and runs a
300-step fine-tune with that *learned* property regressor in a 32 px world whose five properties are exact
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


# The small lab's thresholds: below the minimum over training seeds 0-2 under ATEN_CPU_CAPABILITY=default and avx2 (the
# native set of the 2-core AMD EPYC that measured them), the record control_lab_small-cpu
# (`python benchmarks/control_lab.py --small-seeds 0 1 2 --isa-sweep`; the figures are its `spread` table).
# The default directions, SeFa and the held linear edits are float64 fits of a world that is the same for every seed:
# their r was the same in every run. Default directions, r: eyes 0.356, hair_color -0.034, hair_length 0.793, mouth
# 0.816, face_pose 0.556 (mean 0.497); hair_color is not asserted: in this narrow world (16 channels, 400 samples) the
# held edit cannot move it while holding the others (docs/control.md reports it). Mean leakage over the properties
# 0.224; InterFaceGAN's free move leaked at least 0.11 (pose) to 1.08 (eyes) per property (mean >= 0.56) at
# r >= 0.74-0.90 (pose 0.20): holding costs r and saves leakage, the trade-off the world family measures.
# SeFa, held: mean r 0.337 (pose -0.71: the named component moves pose the wrong way once the others are held).
# Refined (30 steps through the learned regressor), r min over the 6 runs: eyes 0.821, hair_color 0.742, hair_length
# 0.872, mouth 0.857, face_pose 0.838; its mean r at least 0.32 above the linear edit's.
# The 300-step fine-tune varies by seed and instruction set (hair_length -0.50 to 0.57); the per-property minima
# average 0.07, so only its mean r > 0 is asserted: control emerges, and little more.
# Seconds per run: 103-122 (avx2), 453-743 (default: no vector kernels), at load 6.6-8.9.
DIRECTIONS_R_MIN = {"eyes": 0.25, "hair_length": 0.7, "mouth": 0.7, "face_pose": 0.45}
DIRECTIONS_LEAKAGE_MAX = 0.3             # mean over properties of the default's leakage (measured 0.224)
HOLD_LEAKAGE_RATIO_MAX = 0.7             # the default's mean leakage over InterFaceGAN's free move's (measured <= 0.40)
INTERFACEGAN_MEAN_R_MIN = 0.6            # measured >= 0.72
SEFA_MEAN_R_MIN = 0.2                    # measured 0.337
FINETUNE_MEAN_R_MIN = 0.0
REFINED_R_MIN = {"eyes": 0.7, "hair_color": 0.6, "hair_length": 0.75, "mouth": 0.75, "face_pose": 0.7}
REFINE_GAIN_MIN = 0.2      # refined mean r above the linear edit's mean r (measured >= 0.32)


def _mean(result: dict[str, dict[str, float]], method: str, quantity: str) -> float:
    return float(np.mean([result[method][f"{p}_{quantity}"] for p in PROPERTY_NAMES]))


@pytest.mark.slow
@pytest.mark.usefixtures("single_thread")
def test_small_control_lab(record_property):
    """Every route gives control well above the unedited generator's r = 0, judged by the exact properties; the
    default's held edit leaks far less than InterFaceGAN's free move."""
    result = small_lab(seed=0)
    record_property("small_control_lab", result)
    print("small control lab:", result)
    assert result["world"]["entangled_pairs"] >= 2
    assert all(result["baseline"][f"{p}_pearson_r"] == pytest.approx(0.0, abs=1e-9) for p in PROPERTY_NAMES)
    for p, low in DIRECTIONS_R_MIN.items():
        assert result["directions"][f"{p}_pearson_r"] > low, p
    leakage = _mean(result, "directions", "leakage_mean")
    assert leakage < DIRECTIONS_LEAKAGE_MAX
    assert leakage < HOLD_LEAKAGE_RATIO_MAX * _mean(result, "interfacegan", "leakage_mean")
    assert _mean(result, "interfacegan", "pearson_r") > INTERFACEGAN_MEAN_R_MIN
    assert _mean(result, "sefa", "pearson_r") > SEFA_MEAN_R_MIN
    assert _mean(result, "finetuned", "pearson_r") > FINETUNE_MEAN_R_MIN
    for p, low in REFINED_R_MIN.items():
        assert result["refined"][f"{p}_pearson_r"] > low, p
    assert _mean(result, "refined", "pearson_r") - _mean(result, "directions", "pearson_r") > REFINE_GAIN_MIN


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
