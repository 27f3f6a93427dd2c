"""Step 9's comparison of control methods: comparison.csv schema and rows, the baseline floor, leakage,
failed and female shares, the verdict, and the three ControlMethod implementations on a tiny generator."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from tiny_models import TINY_G_16

from common.paths import PROPERTY_NAMES
from stylegan.checkpoint import load_generator, write_random_checkpoint
from stylegan.comparison import COMPARISON_COLUMNS, comparison_table, verdicts, write_csv
from stylegan.control_measures import BrightnessScorer, ControlConfig, evaluate_control, evaluation_latents
from stylegan.control_methods import BaselineMethod, ControlMethod, DirectionsMethod, FinetunedMethod
from stylegan.generate import latents_for

pytestmark = pytest.mark.usefixtures("single_thread")

RANGES = {p: ((-1.0, 1.0) if p == "face_pose" else (0.0, 1.0)) for p in PROPERTY_NAMES}
CONFIG = ControlConfig(num_z=4, num_values=5, batch_size=8, sheet_z=1)


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    path = tmp_path_factory.mktemp("g") / "stylegan_model.pth"
    write_random_checkpoint(path, seed=0, **TINY_G_16)
    return load_generator(path)


class BandMethod:
    """A method that controls perfectly in the stand-in scorer's world: band j's brightness = target j.

    ``leak`` moves hair_color's band by leak x (requested eyes - 0.5): a known off-target slope.
    ``fail_every`` makes every n-th image black (the judge below then fails on it).
    """

    z_dim = 16
    ranges = None
    description = "bands set to the targets"

    def __init__(self, name: str, leak: float = 0.0, noise: float = 0.0):
        self.name, self.leak, self.noise = name, leak, noise

    def render(self, z, targets, return_report=False):
        t = np.where(np.isnan(targets), np.array([0.5, 0.5, 0.5, 0.5, 0.0]), targets).astype(np.float64)
        t[:, 4] = (t[:, 4] + 1) / 2
        t[:, 1] = t[:, 1] + self.leak * (t[:, 0] - 0.5)
        t = t + self.noise * np.asarray(z, dtype=np.float64)[:, :5]
        bands = np.array_split(np.arange(20), 5)
        images = np.zeros((len(z), 20, 4, 3), np.uint8)
        for j, rows in enumerate(bands):
            images[:, rows] = np.clip(np.round(t[:, j] * 255), 0, 255).astype(np.uint8)[:, None, None, None]
        return (images, ~np.isnan(targets) | True) if return_report else images


def _run(method, scorer=None, gender=None, z=None):
    z = latents_for(7, range(CONFIG.num_z), 16) if z is None else z
    base = np.full((CONFIG.num_z, 5), np.nan, np.float32)
    return evaluate_control(lambda zb, tb: method.render(zb, tb, return_report=True), scorer or BrightnessScorer(),
                            z, base, RANGES, CONFIG, gender=gender).samples


def test_comparison_csv_has_the_contract_columns_and_one_row_per_method_judge_property(tmp_path):
    samples = {"baseline": _run(BandMethod("baseline", noise=0.1)), "directions": _run(BandMethod("directions")),
               "finetuned": _run(BandMethod("finetuned", leak=0.4))}
    relabelled = samples["finetuned"].assign(judge="second-judge")
    samples["finetuned"] = pd.concat([samples["finetuned"], relabelled], ignore_index=True)
    table = comparison_table(samples)
    frame = pd.read_csv(write_csv(table, tmp_path))
    assert list(frame.columns) == list(COMPARISON_COLUMNS)
    assert len(frame) == (1 + 1 + 2) * len(PROPERTY_NAMES)
    keys = list(zip(frame["method"], frame["judge"], frame["property"]))
    assert len(set(keys)) == len(keys)
    assert frame["method"].drop_duplicates().tolist() == ["baseline", "directions", "finetuned"]
    assert set(frame.loc[frame["method"] == "finetuned", "judge"]) == {"brightness-stand-in", "second-judge"}
    # step 9 writes it through the same function, its extra columns after the contract's
    frame = pd.read_csv(write_csv(table.assign(fid=1.5), tmp_path, ["fid"]))
    assert list(frame.columns) == [*COMPARISON_COLUMNS, "fid"] and (frame["fid"] == 1.5).all()


def test_baseline_shows_no_control_where_perfect_control_shows_full_control(generator):
    """The unedited generator ignores requests: every sweep is flat, so r, slope, leakage and monotonic share are 0."""
    table = comparison_table({"baseline": _run(BaselineMethod(generator)), "perfect": _run(BandMethod("perfect"))})
    base = table[table["method"] == "baseline"].set_index("property")
    perfect = table[table["method"] == "perfect"].set_index("property")
    # (0 up to a uint8 step where batch composition changes a pixel's rounding on some CPUs)
    assert (base["pearson_r"].abs() < 0.05).all() and (base["control_slope"].abs() < 1e-3).all()
    assert (base["leakage_mean"] < 1e-3).all() and (base["monotonic_share"] == 0.0).all()
    assert (base["mae"] > 0.1).all()  # it misses the requested values
    # the same measure, on a method that does control: r ~ 1, slope ~ 1, no leakage (8-bit rounding aside)
    assert (perfect["pearson_r"] > 0.999).all() and np.allclose(perfect["control_slope"], 1.0, atol=0.01)
    assert (perfect["leakage_mean"] < 0.01).all() and (perfect["monotonic_share"] == 1.0).all()


def test_leakage_failed_and_female_shares():
    leaky = _run(BandMethod("leaky", leak=0.4), gender=lambda images: np.where(images[:, 0, 0, 0] > 128, 0.9, 0.1))
    row = comparison_table({"leaky": leaky}).set_index("property")
    # sweeping eyes moves hair_color with slope 0.4 and nothing else: mean over the 4 others = 0.1
    assert row.at["eyes", "leakage_mean"] == pytest.approx(0.1, abs=0.01)
    assert row.at["mouth", "leakage_mean"] == pytest.approx(0.0, abs=0.01)
    assert (row["failed_share"] == 0.0).all()
    # female = eyes band bright: in the eyes sweep 2 of 5 values (0.75, 1.0) exceed 128/255
    assert row.at["eyes", "female_share"] == pytest.approx(2 / 5)

    def failing(images):
        out = BrightnessScorer()(images)
        out[::4, 2] = np.nan  # the judge fails on every 4th image for hair_length
        return out

    failing.judge = "flaky"
    row = comparison_table({"m": _run(BandMethod("m"), scorer=failing)}).set_index("property")
    assert row.at["hair_length", "failed_share"] == pytest.approx(0.25)
    assert row.at["eyes", "failed_share"] == 0.0
    assert np.isnan(row.at["eyes", "female_share"])  # no gender model


def test_verdict_names_the_better_method_and_the_floor():
    table = comparison_table({"baseline": _run(BaselineMethodStub()), "good": _run(BandMethod("good")),
                              "noisy": _run(BandMethod("noisy", noise=0.3))}, with_ci=True)
    lines = verdicts(table)
    assert len(lines) == len(PROPERTY_NAMES)
    assert all(line.split(": best ")[1].startswith("good") for line in lines)
    assert any("clearly better than noisy" in line for line in lines)
    flat = comparison_table({"baseline": _run(BaselineMethodStub()), "flat": _run(BaselineMethodStub())},
                            with_ci=True)
    assert all("no method shows measurable control" in line for line in verdicts(flat))


class BaselineMethodStub(BandMethod):
    """Ignores the targets (a constant grey image per z)."""

    def __init__(self):
        super().__init__("flat")

    def render(self, z, targets, return_report=False):
        return super().render(z, np.full_like(targets, np.nan), return_report)


def test_methods_share_latents_and_fill_unrequested_values(generator):
    z = evaluation_latents(0, 3, 16)
    assert not np.allclose(z, latents_for(0, range(3), 16))  # never step 1's latents
    assert np.array_equal(z, evaluation_latents(0, 3, 16))
    baseline = BaselineMethod(generator, batch_size=3)  # one batch: the direct call's computation, bit for bit
    assert isinstance(baseline, ControlMethod)
    nothing = np.full((3, 5), np.nan, np.float32)
    images, reached = baseline.render(z, nothing, return_report=True)
    with torch.no_grad():
        direct = generator(torch.from_numpy(z))["image"]
    from stylegan.networks import postprocess_uint8

    assert np.array_equal(images, postprocess_uint8(direct)) and reached.all()
    requested = nothing.copy()
    requested[:, 0] = 0.9
    assert not baseline.render(z, requested, return_report=True)[1][:, 0].any()  # the floor reaches nothing


def _directions(generator, layers=("all",) * 5, seed=0):
    """Ridge directions on the tiny generator's w, scores a planted linear function of w."""
    from stylegan.directions import fit_directions

    with torch.no_grad():
        w = generator.mapping(torch.from_numpy(latents_for(seed, range(200), 16)))["w"].numpy()
    planted = np.random.default_rng(seed).standard_normal((16, 5))
    scores = 0.5 + 0.1 * (w - w.mean(0)) @ planted / np.abs((w - w.mean(0)) @ planted).max(0)
    return fit_directions(w, scores, method="ridge").with_options(layers=tuple(layers))


def test_directions_method_renders_through_the_mapping_and_its_layer_ranges(generator):
    from stylegan.directions import make_generate_fn

    z = evaluation_latents(1, 2, 16)
    nothing = np.full((2, 5), np.nan, np.float32)
    directions = _directions(generator)
    method = DirectionsMethod(generator, directions, batch_size=2)  # the batch of make_generate_fn below
    assert isinstance(method, ControlMethod)
    # no request: the unedited image, the baseline's (up to a uint8 step from the float64 solve)
    unedited = method.render(z, nothing).astype(int) - BaselineMethod(generator).render(z, nothing)
    assert np.abs(unedited).max() <= 1
    targets = nothing.copy()
    targets[:, 0] = 0.55
    images, reached = method.render(z, targets, return_report=True)
    assert reached.all()
    # the same images as the directions module's own renderer (one rule for layer ranges)
    assert np.array_equal(images, make_generate_fn(generator, directions)(z, targets))
    # an eyes edit on the coarse layers only differs from the same edit on every layer
    coarse = DirectionsMethod(generator, directions.with_options(layers=("coarse",) + ("all",) * 4))
    assert not np.array_equal(coarse.render(z, targets), images)
    assert not np.array_equal(images, method.render(z, nothing))


def test_finetuned_method_holds_unrequested_values_at_the_training_median(generator):
    from stylegan.conditional import build_conditional_generator
    from stylegan.finetune_schema import FinetuneSettings

    conditional = build_conditional_generator(generator)
    conditional.finetune_settings = FinetuneSettings(condition_stats={p: {"median": 0.3, "min": 0.0, "max": 1.0}
                                                                      for p in PROPERTY_NAMES})
    torch.manual_seed(0)
    with torch.no_grad():  # make the condition matter
        for param in conditional.condition.parameters():
            param.normal_()
    method = FinetunedMethod(conditional.eval(), batch_size=2)
    z = evaluation_latents(2, 3, 16)
    partial = np.full((3, 5), np.nan, np.float32)
    partial[:, 0] = 0.8
    full = np.full((3, 5), 0.3, np.float32)
    full[:, 0] = 0.8
    images, reached = method.render(z, partial, return_report=True)
    assert np.array_equal(images, method.render(z, full)) and reached.all()
    other = full.copy()
    other[:, 0] = 0.1
    assert not np.array_equal(images, method.render(z, other))
    outside = partial.copy()
    outside[:, 0] = 1.5  # beyond the trained range: reported
    assert not method.render(z, outside, return_report=True)[1][:, 0].any()
