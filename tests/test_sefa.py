"""SeFa (stylegan.directions.fit_sefa_directions): the style weights' eigen-directions, named by the scores."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_models import TINY_G_16_WIDE

from common.paths import PROPERTY_NAMES
from stylegan.checkpoint import load_generator, write_random_checkpoint
from stylegan.directions import SEFA, fit_sefa_directions, layer_mask, load_directions, sefa_weight

pytestmark = pytest.mark.usefixtures("single_thread")
P = len(PROPERTY_NAMES)


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    path = write_random_checkpoint(tmp_path_factory.mktemp("g") / "g.pth", seed=1, **TINY_G_16_WIDE)
    return load_generator(path).requires_grad_(False)


@pytest.fixture(scope="module")
def planted(generator):
    """w codes of the generator, and scores that are linear in w along eigen-directions 3, 0, 5, 1, 2 of A'A."""
    with torch.no_grad():
        w = generator.mapping(torch.randn(600, 16, generator=torch.Generator().manual_seed(0)))["w"].numpy()
    weight = sefa_weight(generator)
    values, vectors = np.linalg.eigh(weight.T @ weight)
    top = vectors[:, np.argsort(values)[::-1]].T
    picks = [3, 0, 5, 1, 2]
    rng = np.random.default_rng(0)
    signs = np.array([1.0, -1.0, 1.0, -1.0, 1.0])
    scores = np.stack([signs[j] * (w @ top[k]) for j, k in enumerate(picks)], axis=1)
    scores = 0.5 + 0.1 * scores / scores.std(axis=0) + 0.01 * rng.standard_normal(scores.shape)
    return w, scores, top, picks, signs


def test_sefa_weight_stacks_every_style_layer_of_the_range_with_unit_rows(generator):
    full = sefa_weight(generator)
    rows = sum(getattr(generator.synthesis, f"layer{i}").style.weight.shape[0] for i in range(generator.num_layers))
    assert full.shape == (rows, generator.w_space_dim)
    np.testing.assert_allclose(np.linalg.norm(full, axis=1), 1.0, atol=1e-12)
    coarse = sefa_weight(generator, "coarse")
    assert len(coarse) < len(full) and layer_mask(generator.num_layers, "coarse").sum() < generator.num_layers


def test_each_property_is_named_by_its_best_correlated_eigen_direction(generator, planted):
    w, scores, top, picks, signs = planted
    model = fit_sefa_directions(generator, w, scores, seed=0, num_components=8)
    assert model.methods == (SEFA,) * P and model.layers == ("all",) * P
    assert model.info["sefa"]["component"] == picks
    for j, k in enumerate(picks):   # the eigenvector itself, oriented so the score rises along it
        assert model.directions[j] @ top[k] * signs[j] == pytest.approx(1.0, abs=1e-9)
    assert (model.slopes > 0).all()
    # calibrated like every direction: requested values are reached, unrequested ones held
    t = np.full((10, P), np.nan)
    t[:, 2] = np.linspace(scores[:, 2].min(), scores[:, 2].max(), 10)
    edited, reached = model.edit(w[:10], t, return_report=True)
    assert reached.all()
    np.testing.assert_allclose(model.predict(edited)[:, 2], t[:, 2], atol=1e-4)


def test_components_go_to_at_most_one_property_and_the_top_of_the_spectrum_only(generator, planted):
    w, scores, _, picks, _ = planted
    twin = scores.copy()
    twin[:, 1] = scores[:, 0] + 0.001 * np.random.default_rng(1).standard_normal(len(w))  # two scores, one direction
    model = fit_sefa_directions(generator, w, twin, num_components=8)
    components = model.info["sefa"]["component"]
    assert len(set(components)) == P and components[0] == picks[0] and components[1] != picks[0]
    narrow = fit_sefa_directions(generator, w, scores, num_components=3)   # only eigen-directions 0, 1, 2 offered
    named = [k for k in narrow.info["sefa"]["component"] if k >= 0]
    assert sorted(named) == [0, 1, 2] and narrow.methods.count("none") == 2   # the other two: no direction (-1)


def test_sefa_saves_and_loads_like_any_directions_file(generator, planted, tmp_path):
    w, scores, *_ = planted
    model = fit_sefa_directions(generator, w, scores, layers="coarse", generator_fingerprint="g:1")
    loaded = load_directions(model.save(tmp_path / "sefa.pt"), generator_fingerprint="g:1", w_dim=16)
    assert loaded.methods == (SEFA,) * P and loaded.layers == ("coarse",) * P
    t = np.full((4, P), np.nan)
    t[:, 0] = 0.55
    np.testing.assert_array_equal(loaded.edit(w[:4], t), model.edit(w[:4], t))
    with pytest.raises(ValueError, match="16-d"):
        fit_sefa_directions(generator, w[:, :8], scores)
