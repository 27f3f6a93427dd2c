"""stylegan.directions on synthetic linear worlds, where the right answer is known exactly."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_models import TINY_G_16_WIDE

from common.fingerprint import file_fingerprint
from common.paths import PROPERTY_NAMES
from stylegan.directions import (
    DirectionsMismatchError,
    LatentDirections,
    fit_directions,
    layer_mask,
    load_directions,
    mix_layers,
    select_by_control,
)

D = 24
P = len(PROPERTY_NAMES)


def linear_world(n: int = 600, seed: int = 0, noise: float = 0.05, isotropic: bool = False):
    """Correlated w codes, five properties that are fixed linear functions of w plus a little noise."""
    rng = np.random.default_rng(seed)
    mix = np.eye(D) if isotropic else np.eye(D) + 0.3 * rng.standard_normal((D, D))
    w = rng.standard_normal((n, D)) @ mix.T + 0.5
    beta = rng.standard_normal((P, D)) / np.sqrt(D)
    scores = w @ beta.T * 0.2 + 0.5 + noise * rng.standard_normal((n, P))
    return w.astype(np.float32), scores, beta


@pytest.fixture(scope="module")
def world():
    return linear_world()


@pytest.fixture(scope="module", params=["ridge", "svm"])
def fitted(request, world):
    w, scores, _ = world
    return fit_directions(w, scores, seed=0, method=request.param)


def reachable_targets(model: LatentDirections, n: int, seed: int, share: float = 0.6) -> np.ndarray:
    """Values well inside the cap's bounds, some NaN (no request)."""
    rng = np.random.default_rng(seed)
    lo, hi = model.bounds()
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    t = mid + half * rng.uniform(-share, share, (n, P))
    t[rng.random((n, P)) < 0.3] = np.nan
    return t


@pytest.mark.parametrize("hold", [False, True])
@pytest.mark.parametrize("metric", ["euclidean", "whitened"])
def test_reachable_targets_are_hit(fitted, world, hold, metric):
    w = world[0][:50]
    t = reachable_targets(fitted, len(w), seed=1)
    edited, reached = fitted.edit(w, t, return_report=True, hold=hold, metric=metric)
    assert edited.dtype == np.float32 and edited.shape == w.shape
    got = fitted.predict(edited)
    ask = np.isfinite(t)
    assert np.abs(got[ask] - t[ask]).max() <= 1e-3
    assert reached.all()


def test_hold_keeps_unrequested_properties(fitted, world):
    w = world[0][:50]
    t = np.full((len(w), P), np.nan)
    t[:, 1] = fitted.bounds()[1][1] - 0.1 * (fitted.bounds()[1][1] - fitted.bounds()[0][1])
    before = fitted.predict(w)
    held = fitted.predict(fitted.edit(w, t, hold=True))
    assert np.abs(held[:, 1] - t[:, 1]).max() <= 1e-3
    others = [j for j in range(P) if j != 1]
    assert np.abs(held[:, others] - before[:, others]).max() <= 1e-3
    # left free, the correlated directions move the others: holding is an actual constraint
    free = fitted.predict(fitted.edit(w, t, hold=False))
    assert np.abs(free[:, others] - before[:, others]).max() > 1e-2


@pytest.mark.parametrize("hold", [False, True])
def test_cap_is_respected_and_unreachable_targets_are_reported(fitted, world, hold):
    w = world[0][:40]
    lo, hi = fitted.bounds()
    t = np.full((len(w), P), np.nan)
    t[:20, 0] = hi[0] + 5 * (hi[0] - lo[0])      # far above the cap
    t[20:, 0] = (lo[0] + hi[0]) / 2               # reachable
    t[:, 3] = lo[3] - 1.0                         # below the cap for everyone
    edited, reached = fitted.edit(w, t, return_report=True, hold=hold)
    got = fitted.predict(edited)
    assert not reached[:20, 0].any() and reached[20:, 0].all()
    assert not reached[:, 3].any()
    assert reached[:, [1, 2, 4]].all()           # nothing was requested there
    np.testing.assert_allclose(got[:20, 0], hi[0], atol=1e-4)  # moved as far as allowed, not further
    np.testing.assert_allclose(got[:, 3], lo[3], atol=1e-4)
    start = fitted.predict(w)
    assert (got <= np.maximum(hi, start) + 1e-4).all() and (got >= np.minimum(lo, start) - 1e-4).all()
    # without a cap the same request is met
    uncapped, reached_all = fitted.edit(w, t, return_report=True, hold=hold, cap=None)
    assert reached_all.all()
    assert np.abs(fitted.predict(uncapped)[:20, 0] - t[:20, 0]).max() <= 1e-3


def test_nan_rows_are_left_out_per_property(world):
    w, scores, _ = world
    holed = scores.copy()
    missing = np.zeros(len(w), dtype=bool)
    missing[::3] = True
    holed[missing, 2] = np.nan
    holed[missing[::-1], 4] = np.nan
    model = fit_directions(w, holed, method="ridge")
    assert model.info["num_samples"] == [600, 600, int((~missing).sum()), 600, int((~missing).sum())]
    only = fit_directions(w[~missing], scores[~missing], method="ridge")
    np.testing.assert_allclose(model.directions[2], only.directions[2], atol=1e-9)
    np.testing.assert_allclose(model.slopes[2], only.slopes[2], rtol=1e-9)
    full = fit_directions(w, scores, method="ridge")
    np.testing.assert_allclose(model.directions[[0, 1, 3]], full.directions[[0, 1, 3]], atol=1e-12)


def test_property_without_scores_gets_no_direction_and_is_reported(world):
    w, scores, _ = world
    scores = scores.copy()
    scores[:, 4] = np.nan
    model = fit_directions(w, scores, method="ridge")
    assert model.methods[4] == "none" and list(model.fitted) == [True] * 4 + [False]
    assert np.isnan(model.predict(w[:3])[:, 4]).all()
    t = np.full((3, P), np.nan)
    t[:, 0], t[:, 4] = model.predict(w[3:6])[:, 0], 0.5
    edited, reached = model.edit(w[:3], t, return_report=True)
    assert reached[:, 0].all() and not reached[:, 4].any()
    assert np.abs(model.predict(edited)[:, 0] - t[:, 0]).max() <= 1e-3


def test_float32_in_and_out(fitted, world):
    w = world[0][:5]
    assert w.dtype == np.float32
    pred = fitted.predict(w)
    assert pred.shape == (5, P) and np.isfinite(pred).all()
    out = fitted.edit(w, np.full((5, P), np.nan))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, w)          # no request: no change


def test_svm_on_extremes_recovers_a_planted_direction():
    w, scores, beta = linear_world(n=2000, seed=3, noise=0.02, isotropic=True)
    model = fit_directions(w, scores, method="svm")
    truth = beta / np.linalg.norm(beta, axis=1, keepdims=True)
    cosine = np.sum(model.directions * truth, axis=1)
    assert cosine.min() > 0.95, cosine
    # the calibration recovers the planted slope along the direction (scores = 0.2 * beta . w + ...)
    np.testing.assert_allclose(model.slopes, 0.2 * np.linalg.norm(beta, axis=1), rtol=0.05)


def test_auto_follows_the_shape_rule_never_the_heldout_prediction_r(world):
    """Issue 21 §1: ``method="auto"`` is the default rule for the data's shape; the held-out prediction r of
    the method used is only recorded. Reproduction (before): auto fitted ridge and SVM and kept, per property,
    the one with the higher held-out r."""
    from stylegan.directions import default_settings

    w, scores, _ = world
    model = fit_directions(w, scores)
    rule = default_settings(len(w), w.shape[1])
    assert set(model.methods) == {rule.method} and model.info["default_rule"] == rule.rule
    assert (model.hold, model.metric, model.cap) == (rule.hold, rule.metric, rule.cap)
    for name in PROPERTY_NAMES:
        r = model.info["heldout_r"][name]
        assert set(r) == {rule.method} and r[rule.method] > 0.9


def test_bad_shapes_give_clear_errors(world):
    w, scores, _ = world
    with pytest.raises(ValueError, match=r"scores must have shape \[600, 5\]"):
        fit_directions(w, scores[:, :3])
    with pytest.raises(ValueError, match="w codes"):
        fit_directions(w[:, :, None], scores)
    with pytest.raises(ValueError, match="method must be one of"):
        fit_directions(w, scores, method="lasso")
    model = fit_directions(w, scores, method="ridge")
    with pytest.raises(ValueError, match=r"targets must have shape \[2, 5\]"):
        model.edit(w[:2], np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"latents must be w codes of shape \[N, 24\]"):
        model.predict(np.zeros((2, 25)))


# ----------------------------------------------------------------------------------------------
# save / load


def test_save_load_round_trip_and_refusals(tmp_path, world):
    w, scores, _ = world
    gen_a, gen_b = tmp_path / "a.pth", tmp_path / "b.pth"
    gen_a.write_bytes(b"generator a")
    gen_b.write_bytes(b"generator b")
    norm = {"method": "minmax", "params": {"eyes": [0.0, 1.0]}}
    model = fit_directions(w, scores, generator_fingerprint=file_fingerprint(gen_a), normalization=norm,
                           hold=True, cap=2.5)
    path = model.save(tmp_path / "directions" / "directions.pt")
    assert path.stat().st_size < 100_000
    torch.load(path, weights_only=True)   # plain data only

    loaded = load_directions(path, checkpoint=gen_a, w_dim=D, normalization=norm)
    np.testing.assert_allclose(loaded.predict(w[:7]), model.predict(w[:7]), atol=1e-12)
    assert loaded.hold and loaded.cap == 2.5 and loaded.methods == model.methods
    t = reachable_targets(model, 7, seed=2)
    np.testing.assert_array_equal(loaded.edit(w[:7], t), model.edit(w[:7], t))

    with pytest.raises(DirectionsMismatchError, match="fitted for generator .* not this one"):
        load_directions(path, checkpoint=gen_b)
    with pytest.raises(DirectionsMismatchError, match="24-d directions, the generator's w has 512"):
        load_directions(path, w_dim=512)
    with pytest.raises(DirectionsMismatchError, match="has properties"):
        load_directions(path, property_names=("eyes", "mouth"))
    with pytest.raises(DirectionsMismatchError, match="another normalisation"):
        load_directions(path, normalization={"method": "zscore"})
    with pytest.raises(FileNotFoundError, match="07_fit_latent_directions"):
        load_directions(tmp_path / "absent.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(DirectionsMismatchError, match="junk.pt .* is not a PyTorch checkpoint: it looks like plain text"):
        load_directions(tmp_path / "junk.pt")


# ----------------------------------------------------------------------------------------------
# layer ranges and choosing by control


def test_layer_masks_follow_resolution():
    # a 32 px StyleGAN v1 has 8 layers: 4, 4, 8, 8 (coarse), 16, 16, 32, 32 (middle), no fine layers
    assert layer_mask(8, "coarse").tolist() == [True] * 4 + [False] * 4
    assert layer_mask(8, "middle").tolist() == [False] * 4 + [True] * 4
    assert layer_mask(14, "fine").tolist() == [False] * 8 + [True] * 6      # 256 px
    assert layer_mask(14, "all").all()
    with pytest.raises(ValueError, match="no fine layers"):
        layer_mask(8, "fine")
    orig, edit = np.zeros((2, 3)), np.ones((2, 3))
    wp = mix_layers(orig, edit, layer_mask(8, "coarse"))
    assert wp.shape == (2, 8, 3) and wp.dtype == np.float32
    assert (wp[:, :4] == 1).all() and (wp[:, 4:] == 0).all()


def _layer_world(seed: int = 0):
    """Eight layers; eyes is read from the coarse layers only, mouth from the middle ones only.

    Their directions overlap in w, so an edit of eyes on all layers leaks into mouth, while the
    same edit on the coarse layers does not.
    """
    rng = np.random.default_rng(seed)
    beta = rng.standard_normal((P, D)) / np.sqrt(D)
    beta[3] = 0.7 * beta[0] + 0.3 * beta[3]             # mouth entangled with eyes
    reads = [slice(0, 4), slice(0, 8), slice(0, 8), slice(4, 8), slice(0, 8)]

    def render(w_original, w_edited, layers="all"):
        return mix_layers(w_original, w_edited, layer_mask(8, layers))    # stand-in "image": wp itself

    def scorer(wp):
        return np.stack([wp[:, reads[j]].mean(axis=1) @ beta[j] for j in range(P)], axis=1)

    w = rng.standard_normal((800, D)).astype(np.float32)
    return w, scorer(render(w, w)), render, scorer


def test_select_by_control_prefers_the_direction_that_controls(world):
    w, scores, render, scorer = _layer_world()
    # free edits: the layer range is what keeps eyes from moving mouth here
    good = fit_directions(w[:600], scores[:600], method="ridge", hold=False)
    shuffled = scores[:600].copy()
    shuffled[:, 1] = np.random.default_rng(1).permutation(shuffled[:, 1])  # hair_color learnt from noise
    bad = fit_directions(w[:600], shuffled, method="ridge", hold=False)
    result = select_by_control({"bad": bad, "good": good}, w[600:620], render, scorer,
                               layer_ranges=("all", "coarse", "middle"))
    table = result.table
    chosen = table[table["chosen"]].set_index("property")
    assert chosen.loc["hair_color", "method"] == "good"
    np.testing.assert_allclose(result.directions.directions[1], good.directions[1])
    assert chosen.loc["eyes", "layers"] == "coarse" and chosen.loc["mouth", "layers"] == "middle"
    assert result.directions.layers[0] == "coarse"
    eyes = table[(table["property"] == "eyes") & (table["method"] == "good")].set_index("layers")
    assert eyes.loc["coarse", "leakage_mean"] < eyes.loc["all", "leakage_mean"]
    assert eyes.loc["all", "pearson_r"] > 0.99


@pytest.mark.parametrize("hold", [False, True])
def test_guards_are_held_by_every_edit(world, tmp_path, hold):
    """A guard (step 4's gender_score) entangled with eyes stays put while eyes changes."""
    w, scores, beta = world
    other = np.random.default_rng(7).standard_normal(D) / np.sqrt(D)
    gender_score = (w @ (0.6 * beta[0] + 0.6 * other))[:, None] * 0.2 + 0.6       # leans on eyes
    gender = fit_directions(w, gender_score, method="ridge", property_names=("gender_score",), cap=None)
    model = fit_directions(w, scores, method="ridge").with_guards(gender_score=gender)
    lo, hi = model.bounds()
    t = np.full((30, P), np.nan)
    start, sd = model.predict(w[:30])[:, 0], model.slopes[0] * model.proj_std[0]
    t[:, 0] = np.where(start + sd <= hi[0], start + sd, start - sd)                 # one sd, inside the cap
    edited, reached = model.edit(w[:30], t, return_report=True, hold=hold)
    assert reached.all() and np.abs(model.predict(edited)[:, 0] - t[:, 0]).max() <= 1e-3
    np.testing.assert_allclose(model.predict_guards(edited), model.predict_guards(w[:30]), atol=1e-3)
    unguarded = model.edit(w[:30], t, hold=hold, guard=False)
    assert np.abs(model.predict_guards(unguarded) - model.predict_guards(w[:30])).max() > 0.02
    loaded = load_directions(model.save(tmp_path / "d.pt"))
    assert loaded.guard_names == ("gender_score",)
    np.testing.assert_array_equal(loaded.edit(w[:30], t, hold=hold), edited)


def test_layer_mask_for_a_request_is_the_union_of_the_requested_ranges(world):
    w, scores, _ = world
    model = fit_directions(w, scores, method="ridge").with_options(
        layers=("coarse", "middle", "all", "coarse", "all"))
    t = np.full((2, P), np.nan)
    t[0, 0] = 0.5
    assert model.layer_mask_for(t, 8).tolist() == [True] * 4 + [False] * 4
    t[1, 1] = 0.5
    assert model.layer_mask_for(t, 8).all()
    assert model.layer_mask_for(np.array([False, False, False, True, False]), 14).sum() == 4


def test_sweep_range_stays_within_the_cap_and_the_scores_seen(world):
    w, scores, _ = world
    model = fit_directions(w, scores, method="ridge", cap=10.0)     # a wide cap: the scores' range binds
    lo, hi = model.sweep_range()
    np.testing.assert_allclose(lo, scores.min(axis=0))
    np.testing.assert_allclose(hi, scores.max(axis=0))
    narrow_lo, narrow_hi = model.sweep_range(cap=1.0)              # a narrow cap binds
    b_lo, b_hi = model.bounds(cap=1.0)
    np.testing.assert_allclose(narrow_lo, b_lo)
    np.testing.assert_allclose(narrow_hi, b_hi)


def _parallel_world(metric: str):
    """eyes and mouth nearly parallel (< 15 degrees): holding mouth while moving eyes needs a huge joint move."""
    w, scores, beta = linear_world(n=800, seed=5, noise=0.002)
    rng = np.random.default_rng(5)
    w64 = w.astype(np.float64)
    scores[:, 3] = (w64 @ (beta[0] + 0.03 * rng.standard_normal(D))) * 0.2 + 0.5   # mouth ~ eyes
    model = fit_directions(w, scores, method="ridge", hold=True, metric=metric, cap=3.0)
    assert np.degrees(np.arccos(model.directions[0] @ model.directions[3])) < 15
    return w, scores, model


@pytest.mark.parametrize("metric", ["euclidean", "whitened"])
def test_a_target_inside_the_scores_seen_is_reached_however_long_the_move(metric):
    """Issue 21 §1: neither the value cap nor the step limit stops a target inside the fitted scores' range.

    Reproduction (format 1): eyes requested 2 sd of the predictions away while mouth, nearly parallel, is held:
    about 2 / sin(15 degrees) = 7.7 sd of w along the move, beyond 2 * cap = 6, so the step limit cut it short
    and reported it not reached although the scores seen in fitting go that far."""
    w, scores, model = _parallel_world(metric)
    t = np.full((20, P), np.nan)
    start, sd = model.predict(w[:20])[:, 0], model.slopes[0] * model.proj_std[0]
    t[:, 0] = np.where(start + 2 * sd <= scores[:, 0].max(), start + 2 * sd, start - 2 * sd)
    assert (t[:, 0] >= scores[:, 0].min()).all() and (t[:, 0] <= scores[:, 0].max()).all()
    edited, reached = model.edit(w[:20], t, return_report=True)
    assert reached.all()
    np.testing.assert_allclose(model.predict(edited)[:, 0], t[:, 0], atol=1e-4)
    # the value cap never clips inside the range seen: its bounds hold the scores' min..max
    lo, hi = model.bounds(cap=0.5)
    assert (lo <= scores.min(axis=0) + 1e-12).all() and (hi >= scores.max(axis=0) - 1e-12).all()
    old = model.with_options(edit_rule=1)              # a format-1 file keeps its rule
    assert not old.edit(w[:20], t, return_report=True)[1][:, 0].all()


@pytest.mark.parametrize("metric", ["euclidean", "whitened"])
def test_cap_shortens_a_huge_joint_move_beyond_the_scores_seen(metric):
    w, scores, model = _parallel_world(metric)
    lo, hi = model.bounds()
    t = np.full((20, P), np.nan)
    t[:, 0] = scores[:, 0].max() + 0.5 * np.ptp(scores[:, 0])          # beyond the scores seen
    capped, reached = model.edit(w[:20], t, return_report=True)
    free, reached_free = model.edit(w[:20], t, return_report=True, cap=None)
    assert reached_free.all() and not reached[:, 0].any()
    assert (np.linalg.norm(capped - w[:20], axis=1) < 0.9 * np.linalg.norm(free - w[:20], axis=1)).all()
    before = model.predict(w[:20])
    np.testing.assert_allclose(model.predict(capped)[:, 1:], before[:, 1:], atol=1e-3)   # still held
    # a plain single-property sweep across the bounds is never shortened
    one = fit_directions(w, linear_world(n=800, seed=5, noise=0.002)[1], method="ridge", hold=False)
    lo1, hi1 = one.bounds()
    t1 = np.full((20, P), np.nan)
    t1[:10, 2], t1[10:, 2] = lo1[2] + 1e-6, hi1[2] - 1e-6
    assert one.edit(w[:20], t1, return_report=True)[1].all()


def test_a_file_missing_an_entry_is_refused_in_one_line(tmp_path):
    """An older or hand-edited file lacking an entry is a clear DirectionsMismatchError, never a KeyError."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(200, 8)).astype(np.float32)
    scores = np.stack([w[:, i] * 0.1 + 0.5 for i in range(len(PROPERTY_NAMES))], axis=1)
    path = fit_directions(w, scores).save(tmp_path / "d.pt")
    data = torch.load(path, weights_only=True)
    del data["guard_names"]
    torch.save(data, path)
    with pytest.raises(DirectionsMismatchError, match="missing guard_names"):
        load_directions(path)


def test_a_format_1_file_keeps_its_fit_time_settings_and_says_a_refit_gives_the_new_defaults(tmp_path, caplog):
    w, scores, _ = linear_world(n=300, seed=2)
    model = fit_directions(w, scores, method="ridge", hold=False, metric="whitened", cap=2.0)
    data = model.to_dict()
    assert data["format_version"] == 2 and data["edit_rule"] == 2
    data["format_version"] = 1
    del data["edit_rule"]
    path = tmp_path / "v1.pt"
    torch.save(data, path)
    with caplog.at_level("WARNING", logger="stylegan.directions"):
        old = load_directions(path)
    assert (old.hold, old.metric, old.cap, old.edit_rule) == (False, "whitened", 2.0, 1)
    notes = [r.getMessage() for r in caplog.records if "refit" in r.getMessage()]
    assert len(notes) == 1 and "\n" not in notes[0] and "new defaults" in notes[0]
    lo_old, hi_old = old.bounds()
    lo_new, hi_new = model.bounds()
    assert (hi_old <= hi_new + 1e-12).all() and (hi_old < scores.max(axis=0)).any()   # the narrower format-1 cap
    caplog.clear()
    with caplog.at_level("WARNING", logger="stylegan.directions"):
        load_directions(model.save(tmp_path / "v2.pt"))
    assert not caplog.records


# ----------------------------------------------------------------------------------------------
# the "refine" option (stylegan.refine): the linear edit refined through a generator and a property model


class _BandMeans(torch.nn.Module):
    """A fixed differentiable "property model": mean brightness of five image regions (images_pm1 -> [N, 5]).

    The refinement is an optimiser: these tests check that it does what it is asked with the model it is
    given (the control lab judges it with an independent truth, README "Control lab")."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lum = x.mean(dim=1)
        h = lum.shape[1]
        half = h // 2
        return torch.stack([lum[:, : h // 4].mean(dim=(1, 2)), lum[:, h // 4: half].mean(dim=(1, 2)),
                            lum[:, half:, :half].mean(dim=(1, 2)), lum[:, half:, half:].mean(dim=(1, 2)),
                            x[:, 0].mean(dim=(1, 2)) - x[:, 2].mean(dim=(1, 2))], dim=1)


@pytest.fixture(scope="module")
def refine_world(tmp_path_factory):
    from stylegan.checkpoint import load_generator, write_random_checkpoint

    torch.set_num_threads(1)
    path = write_random_checkpoint(tmp_path_factory.mktemp("g") / "g.pth", seed=3, **TINY_G_16_WIDE)
    generator = load_generator(path).requires_grad_(False)
    model = _BandMeans()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        out = generator(torch.randn(400, 16, generator=gen))
        w, scores = out["w"].numpy(), model(out["image"]).numpy().astype(np.float64)
    return generator, model, w, scores


def _regressor_errors(generator, model, directions, base, linear, wp,
                      targets) -> tuple[float, float, float, float]:
    """(requested error before, after; held drift before, after) of a refine, in units of each direction's
    calibrated spread, as the learned regressor sees them."""
    start = _model_values(generator, model, torch.from_numpy(base)[:, None].expand(-1, generator.num_layers, -1))
    before = _model_values(generator, model, torch.from_numpy(linear)[:, None].expand(-1, generator.num_layers, -1))
    after = _model_values(generator, model, wp)
    ask = np.isfinite(targets)
    scale = directions.slopes * directions.proj_std

    def err(v):
        return np.abs((v - targets) / scale)[ask].mean()

    def drift(v):
        return np.abs((v - start) / scale)[~ask].mean()

    return err(before), err(after), drift(before), drift(after)


def _model_values(generator, model, wp: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(generator.synthesis(wp, None, False)["image"]).numpy()


# Refine margins: over world seeds 3-7 (generator) x 0-4 (samples, targets), under ATEN_CPU_CAPABILITY=default, avx2
# and avx512 (native, 2-core Intel Xeon), the ratio after / before was at most 0.263 for the requested error
# (0.035-0.263) and 0.291 for the held drift (0.101-0.291), identical across the three; asserted < 0.5.
def test_refine_reaches_requests_and_holds_the_rest_better_than_the_linear_edit(refine_world):
    """Starting from the calibrated linear edit, the refinement cuts both the requested-property error and the
    drift of the unrequested properties, as the property model measures them."""
    from stylegan.refine import EditRefiner, RefineConfig

    generator, model, w, scores = refine_world
    directions = fit_directions(w, scores, method="ridge", hold=True)
    base = w[:24]
    rng = np.random.default_rng(1)
    lo, hi = directions.sweep_range(1.5)
    targets = np.full((len(base), P), np.nan)
    j = np.arange(len(base)) % P
    targets[np.arange(len(base)), j] = rng.uniform(lo[j], hi[j])
    linear = directions.edit(base, targets)
    refiner = EditRefiner.for_directions(generator, model, directions, RefineConfig(steps=40))
    mask = torch.ones(len(base), generator.num_layers, dtype=torch.bool)
    wp = refiner.refine(torch.from_numpy(base), torch.from_numpy(linear), targets, mask)
    assert wp.shape == (len(base), generator.num_layers, base.shape[1]) and not wp.requires_grad
    err_before, err_after, drift_before, drift_after = _regressor_errors(generator, model, directions, base, linear, wp,
                                                                      targets)
    print(f"requested error {err_before:.3f} -> {err_after:.3f}, held drift {drift_before:.3f} -> {drift_after:.3f}")
    assert err_after < 0.5 * err_before
    assert drift_after < 0.5 * drift_before


def test_refine_keeps_unmasked_layers_and_zero_steps_is_the_linear_edit(refine_world):
    from stylegan.refine import EditRefiner, RefineConfig

    generator, model, w, scores = refine_world
    directions = fit_directions(w, scores, method="ridge")
    base = w[:6]
    targets = np.full((len(base), P), np.nan)
    targets[:, 0] = directions.sweep_range(1.0)[1][0]
    linear = directions.edit(base, targets)
    coarse = torch.from_numpy(np.tile(layer_mask(generator.num_layers, "coarse"), (len(base), 1)))
    for steps, wplus in ((0, False), (5, True)):
        refiner = EditRefiner.for_directions(generator, model, directions, RefineConfig(steps=steps, wplus=wplus))
        wp = refiner.refine(torch.from_numpy(base), torch.from_numpy(linear), targets, coarse).numpy()
        assert np.array_equal(wp[:, ~coarse[0].numpy()], np.repeat(base[:, None], (~coarse[0]).sum().item(), axis=1))
        if steps == 0:
            assert np.array_equal(wp, mix_layers(base, linear, coarse[0].numpy()))
        else:
            assert not np.allclose(wp[:, 0], wp[:, 1])          # w+: one code per edited layer
    with pytest.raises(ValueError, match="property_scale"):
        EditRefiner(generator, model, np.zeros(P))


def test_load_refiner_takes_the_finetune_checkpoints_regressor_and_refuses_others(tmp_path, refine_world):
    from stylegan.conditional import FINETUNE_FORMAT_VERSION
    from stylegan.control_methods import DirectionsMethod, load_refiner
    from stylegan.property_regressor import PropertyRegressor, RegressorConfig
    from stylegan.refine import EditRefiner

    generator, _, w, scores = refine_world
    norm = {"eyes": {"min": 0.0, "max": 1.0}}
    directions = fit_directions(w, scores, method="ridge", normalization=norm)
    settings = {"input_size": 16, "width": 4, "num_outputs": P}
    regressor = PropertyRegressor(RegressorConfig(**settings))

    def checkpoint(name, **config):
        path = tmp_path / name
        torch.save({"format_version": FINETUNE_FORMAT_VERSION, "config": config,
                    "regressor": regressor.state_dict() if "regressor" in config else None}, path)
        return path

    good = checkpoint("good.pt", regressor=settings, normalization=norm)
    refiner = load_refiner(good, generator, directions)
    assert isinstance(refiner, EditRefiner)
    method = DirectionsMethod(generator, directions, 4, refiner=refiner)
    targets = np.full((2, P), np.nan, dtype=np.float32)
    targets[:, 1] = 0.5
    images = method.render(np.zeros((2, 16), np.float32), targets)
    assert images.shape == (2, 16, 16, 3) and images.dtype == np.uint8
    with pytest.raises(ValueError, match="carries no property regressor"):
        load_refiner(checkpoint("none.pt", normalization=norm), generator, directions)
    with pytest.raises(ValueError, match="another normalisation"):
        load_refiner(checkpoint("other.pt", regressor=settings, normalization={"eyes": {"min": 0.0, "max": 2.0}}),
                     generator, directions)


def _refine_errors(refine_world, config, correction_steps: int = 0, seed: int = 1, correction=None):
    """(requested error, held drift) before and after a refine method, as the property model measures them
    (a learned method trains its correction here unless one is given)."""
    from stylegan.refine import EditRefiner
    from stylegan.refine_correction import CorrectionConfig, fit_edit_correction

    generator, model, w, scores = refine_world
    directions = fit_directions(w, scores, method="ridge", hold=True)
    base = w[:24]
    rng = np.random.default_rng(seed)
    lo, hi = directions.sweep_range(1.5)
    targets = np.full((len(base), P), np.nan)
    j = np.arange(len(base)) % P
    targets[np.arange(len(base)), j] = rng.uniform(lo[j], hi[j])
    linear = directions.edit(base, targets)
    if config.method == "learned" and correction is None:
        correction, _ = fit_edit_correction(generator, model, directions,
                                            CorrectionConfig(steps=correction_steps, batch=16, hidden=64, seed=seed))
    refiner = EditRefiner.for_directions(generator, model, directions, config, correction)
    mask = torch.ones(len(base), generator.num_layers, dtype=torch.bool)
    wp, images = refiner.refine_and_render(torch.from_numpy(base), torch.from_numpy(linear), targets, mask)
    if images is not None:   # the image it returns is the refined codes' own render
        assert torch.allclose(images, generator.synthesis(wp, None, False)["image"], atol=1e-5)
    return _regressor_errors(generator, model, directions, base, linear, wp, targets)


# Margins of the cheap methods (tiny 16 px world, generator seed 3, target seeds 1 and 2, ATEN_CPU_CAPABILITY default
# and avx2, AMD EPYC): secant requested error after / before 0.679-0.683 (identical on both), learned (150 training
# steps) 0.295-0.389; both asserted < 0.8. One seed runs here (the suite's time).
@pytest.mark.parametrize("seed", [1])
def test_secant_refine_cuts_the_requested_error_at_a_few_renders(refine_world, seed):
    """The secant method (one render per correction, no backward pass) lowers the requested error it is given
    and never returns codes the property model finds worse than the linear edit."""
    from stylegan.refine import RefineConfig

    e0, e1, d0, d1 = _refine_errors(refine_world, RefineConfig(method="secant"), seed=seed)
    print(f"secant: requested error {e0:.3f} -> {e1:.3f}, held drift {d0:.3f} -> {d1:.3f}")
    assert e1 < 0.8 * e0


# Learned correction followed by 2 Broyden passes (150 training steps, the correction's initial weights from its seed
# since step 7c; generator seeds 3-5 x correction seeds 1-2 x ATEN_CPU_CAPABILITY default and avx2, AMD EPYC,
# 2026-12-07): correction alone / linear requested error 0.37-0.86, after the passes / linear 0.06-0.32, held drift
# 0.22-0.47 of the linear edit's, and 0.16-0.74 of the correction alone's error; with the fixture's generator (seed 3)
# and seed 1: 0.43, 0.22-0.23, 0.27-0.34, 0.52-0.53 on both instruction sets. Asserted < 0.9, < 0.35, < 0.5 and < 0.75
# (every measured case passes).
@pytest.mark.parametrize("seed", [1])
def test_learned_correction_cuts_the_requested_error_in_one_pass(refine_world, seed):
    """The learned one-step correction, trained through the generator and the property model, moves the linear
    edit toward its request at the cost of one render; two Broyden passes from there cut the rest."""
    from stylegan.refine import RefineConfig
    from stylegan.refine_correction import CorrectionConfig, fit_edit_correction

    generator, model, w, scores = refine_world
    correction, _ = fit_edit_correction(generator, model, fit_directions(w, scores, method="ridge", hold=True),
                                        CorrectionConfig(steps=150, batch=16, hidden=64, seed=seed))
    e0, e1, d0, d1 = _refine_errors(refine_world, RefineConfig(method="learned"), seed=seed, correction=correction)
    print(f"learned: requested error {e0:.3f} -> {e1:.3f}, held drift {d0:.3f} -> {d1:.3f}")
    assert e1 < 0.9 * e0
    _, e2, _, d2 = _refine_errors(refine_world, RefineConfig(method="learned", steps=2), seed=seed,
                                  correction=correction)
    print(f"learned + 2 passes: requested error {e0:.3f} -> {e2:.3f}, held drift {d0:.3f} -> {d2:.3f}")
    assert e2 < 0.35 * e0 and d2 < 0.5 * d0
    assert e2 < 0.75 * e1


def test_the_correction_trains_on_edits_rendered_only_on_the_requested_propertys_layers(refine_world, monkeypatch):
    """The directions method and the refiner put an edit only on the layers fitted for the requested property; the
    correction used to be trained on edits rendered on every layer, so a coarse-only property was corrected for an
    image nobody renders. Every edited render in training keeps w on the other layers."""
    import dataclasses

    from stylegan.refine_correction import CorrectionConfig, CorrectionTrainer

    generator, model, w, scores = refine_world
    directions = dataclasses.replace(fit_directions(w, scores, method="ridge", hold=True), layers=("coarse",) * P)
    coarse = layer_mask(generator.num_layers, "coarse")
    assert coarse.any() and not coarse.all()
    seen = []
    real = generator.synthesis.forward

    def spy(wp, *args, **kwargs):
        seen.append(wp.detach().clone())
        return real(wp, *args, **kwargs)

    monkeypatch.setattr(generator.synthesis, "forward", spy)
    trainer = CorrectionTrainer(generator, model, directions, CorrectionConfig(steps=1, batch=4, hidden=16, seed=1))
    seen.clear()
    trainer.train_step()
    base, edited = seen            # the base images (w everywhere), then the corrected edits
    assert torch.equal(edited[:, ~torch.from_numpy(coarse)], base[:, ~torch.from_numpy(coarse)])
    assert not torch.equal(edited[:, torch.from_numpy(coarse)], base[:, torch.from_numpy(coarse)])


# Margins of the Broyden method (same tiny world; generator seeds 3-5 x target seeds 1-3, ATEN_CPU_CAPABILITY default
# and avx2 identical, AMD EPYC): after 3 passes requested error after / before 0.25-0.61, held drift 0.32-0.75; with
# the fixture's generator (seed 3) 0.29-0.43 and 0.47-0.65; asserted < 0.6 and < 0.85.
@pytest.mark.parametrize("seed", [2])
def test_broyden_refine_cuts_error_and_drift_in_three_passes(refine_world, seed):
    """Three passes (render, property model, one backward each) on a Jacobian estimate that every pass corrects cut
    both the requested error and the held drift; the refined image is the one rendered last-best (checked inside
    _refine_errors), so no render is repeated."""
    from stylegan.refine import RefineConfig

    e0, e1, d0, d1 = _refine_errors(refine_world, RefineConfig(method="broyden", steps=3), seed=seed)
    print(f"broyden: requested error {e0:.3f} -> {e1:.3f}, held drift {d0:.3f} -> {d1:.3f}")
    assert e1 < 0.6 * e0
    assert d1 < 0.85 * d0


def test_refine_methods_need_their_inputs(refine_world):
    from stylegan.refine import EditRefiner, RefineConfig

    generator, model, _, _ = refine_world
    assert [RefineConfig(method=m).steps for m in ("gradient", "secant", "learned", "broyden")] == [30, 6, 0, 3]
    for config in (RefineConfig(method="secant"), RefineConfig(method="broyden")):
        with pytest.raises(ValueError, match="directions"):
            EditRefiner(generator, model, np.ones(P), config)
    with pytest.raises(ValueError, match="correction"):
        EditRefiner(generator, model, np.ones(P), RefineConfig(method="learned"))
    with pytest.raises(ValueError, match="method"):
        RefineConfig(method="newton")


def test_an_unreadable_refine_file_names_the_refine_flag(tmp_path, refine_world):
    """Hostile pass: `studio --refine JUNK` said "pass another --finetuned-checkpoint", a flag the user had not
    used; the advice now names --refine."""
    from common.checkpoints import CheckpointError
    from stylegan.control_methods import load_refiner

    generator, _, w, scores = refine_world
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    with pytest.raises(CheckpointError) as info:
        load_refiner(junk, generator, fit_directions(w, scores, method="ridge"))
    assert "--refine" in str(info.value) and "--finetuned-checkpoint" not in str(info.value)
    assert len(str(info.value).splitlines()) == 1
