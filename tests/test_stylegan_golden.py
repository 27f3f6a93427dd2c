"""Golden equivalence with genforce's own outputs (tests/data/reference, copied from shared/reference), weights rebuilt from the recipe."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tolerances import (
    GOLDEN_DISCRIMINATOR_ATOL,
    GOLDEN_IMAGE_ATOL,
    GOLDEN_IMAGE_RTOL,
    GOLDEN_LATENT_ATOL,
    GOLDEN_SMALL_IMAGE_ATOL,
    RECIPE_RANDN_RELATIVE,
)

from stylegan.networks import StyleGANDiscriminator, StyleGANGenerator, postprocess_uint8
from stylegan.random_weights import recipe_state_dict

# the tolerances the docs state (tests/tolerances.py), as assert_close keywords
IMAGE = {"atol": GOLDEN_IMAGE_ATOL, "rtol": GOLDEN_IMAGE_RTOL}
SLICE_256 = {"atol": GOLDEN_SMALL_IMAGE_ATOL, "rtol": GOLDEN_IMAGE_RTOL}
SMALL = {"atol": GOLDEN_SMALL_IMAGE_ATOL, "rtol": 0}
LATENT = {"atol": GOLDEN_LATENT_ATOL, "rtol": 0}
DISC = {"atol": GOLDEN_DISCRIMINATOR_ATOL, "rtol": 0}


def _load(reference_dir, name):
    path = reference_dir / name
    if not path.is_file():  # a file that was never committed is a failure, never a skip
        pytest.fail(f"golden file missing: {path} (see tests/data/README.md)", pytrace=False)
    return torch.load(path, weights_only=True)


def _check_checksums(state_dict, checksums, exact: bool):
    """Bit-exact recipe weights where randn is (conftest's randn_bit_exact); elsewhere each value within
    RECIPE_RANDN_RELATIVE of the tensor's mean |value| (randn's scalar fallback moves the last ~20 bits' worth: <= 2e-6 of std)."""
    for key, (total, total_abs, first4) in checksums.items():
        flat = state_dict[key].double().flatten()
        if exact:
            assert flat.sum().item() == pytest.approx(total, rel=1e-9, abs=1e-6), key
            assert flat.abs().sum().item() == pytest.approx(total_abs, rel=1e-9, abs=1e-6), key
            assert flat[:4].tolist() == pytest.approx(first4, rel=0, abs=0), key
        else:
            tol = RECIPE_RANDN_RELATIVE * total_abs + 1e-9
            assert abs(flat.sum().item() - total) <= tol and abs(flat.abs().sum().item() - total_abs) <= tol, key
            assert flat[:4].tolist() == pytest.approx(first4, rel=0, abs=RECIPE_RANDN_RELATIVE * total_abs / flat.numel()), key


def _assert_uint8_close(mine: np.ndarray, golden: torch.Tensor) -> None:
    golden = golden.numpy()
    diff = np.abs(mine.astype(np.int16) - golden.astype(np.int16))
    assert diff.max() <= 1
    assert (diff > 0).mean() < 1e-3


def _build(golden):
    G = StyleGANGenerator(**golden["G_config"])
    D = StyleGANDiscriminator(**golden["D_config"])
    return G, D


@pytest.fixture(scope="module")
def golden256(reference_dir):
    golden = _load(reference_dir, "golden_stylegan256.pt")
    G, D = _build(golden)
    g_sd, d_sd = recipe_state_dict(G), recipe_state_dict(D)
    G.load_state_dict(g_sd, strict=True)
    D.load_state_dict(d_sd, strict=True)
    G.eval(), D.eval()
    with torch.inference_mode():  # the fast path every generation script uses
        out = G(golden["z"])
        out_trunc = G(golden["z"], trunc_psi=0.7, trunc_layers=8)
    return golden, G, D, g_sd, d_sd, out, out_trunc


def test_256_generator_outputs_no_grad_path(golden256):
    """genforce's op order (training, no_grad) gives the golden images too."""
    golden, G, _, _, _, _, _ = golden256
    with torch.no_grad():
        out = G(golden["z"])
    torch.testing.assert_close(out["image"], golden["image"], **IMAGE)
    _assert_uint8_close(postprocess_uint8(out["image"]), golden["image_uint8_nhwc"])


def test_256_keys_and_shapes_match_genforce(reference_dir):
    keys = json.loads((reference_dir / "genforce_stylegan256_keys.json").read_text())
    disc_keys = json.loads((reference_dir / "genforce_stylegan256_disc_keys.json").read_text())
    G, D = StyleGANGenerator(256), StyleGANDiscriminator(256)
    assert [(k, list(v.shape)) for k, v in G.state_dict().items()] == [(k, v) for k, v in keys.items()]
    assert [(k, list(v.shape)) for k, v in D.state_dict().items()] == [(k, v) for k, v in disc_keys.items()]
    assert sum(p.numel() for p in G.parameters()) == 26_086_229
    assert len(list(G.buffers())) == 22 and len(list(D.buffers())) == 7


def test_256_recipe_weights_match_checksums(golden256, randn_bit_exact):
    golden, _, _, g_sd, d_sd, _, _ = golden256
    _check_checksums(g_sd, golden["G_weight_checksums"], randn_bit_exact)
    _check_checksums(d_sd, golden["D_weight_checksums"], randn_bit_exact)


def test_256_generator_outputs(golden256):
    golden, _, _, _, _, out, out_trunc = golden256
    torch.testing.assert_close(out["z"], golden["z_normalized"], **LATENT)
    torch.testing.assert_close(out["w"], golden["w"], **LATENT)
    torch.testing.assert_close(out["wp"], golden["wp"], **LATENT)
    torch.testing.assert_close(out_trunc["wp"], golden["wp_trunc"], **LATENT)
    for name, style in golden["styles"].items():
        torch.testing.assert_close(out[name], style, **LATENT)
    for name, style in golden["styles_trunc"].items():
        torch.testing.assert_close(out_trunc[name], style, **LATENT)
    torch.testing.assert_close(out["image"], golden["image"], **IMAGE)
    torch.testing.assert_close(out_trunc["image"], golden["image_trunc"], **IMAGE)
    _assert_uint8_close(postprocess_uint8(out["image"]), golden["image_uint8_nhwc"])
    _assert_uint8_close(postprocess_uint8(out_trunc["image"]), golden["image_trunc_uint8_nhwc"])


@pytest.mark.parametrize("mode", [torch.inference_mode, torch.no_grad])
def test_256_intermediate_features(golden256, mode):
    golden, G, _, _, _, _, _ = golden256
    features: dict = {}
    with mode():
        G(golden["z"], features=features)
    for layer, stages in golden["features"].items():
        for stage, slices in stages.items():
            t = features[layer][stage]
            c = t.shape[2] // 2
            torch.testing.assert_close(t[:, :8, :4, :4], slices["top_left"], **SLICE_256)
            torch.testing.assert_close(t[:, :8, c - 2:c + 2, c - 2:c + 2], slices["center"], **SLICE_256)


def test_256_discriminator(golden256):
    golden, _, D, _, _, _, _ = golden256
    with torch.no_grad():
        torch.testing.assert_close(D(golden["image"]), golden["disc_on_image"], **DISC)
        torch.testing.assert_close(D(golden["image_trunc"]), golden["disc_on_image_trunc"], **DISC)
        both = torch.cat([golden["image"], golden["image_trunc"]])
        torch.testing.assert_close(D(both), golden["disc_on_batch4"], **DISC)


@pytest.mark.parametrize("name", ["golden_stylegan_small.pt", "golden_stylegan_small_cond.pt"])
def test_small_configs(reference_dir, name, randn_bit_exact):
    golden = _load(reference_dir, name)
    G, D = _build(golden)
    G.load_state_dict(golden["G_state_dict"], strict=True)
    D.load_state_dict(golden["D_state_dict"], strict=True)
    # the stored weights are the recipe's, so rebuilding them must give the same tensors
    for key, value in recipe_state_dict(G).items():
        if randn_bit_exact:
            assert torch.equal(value, golden["G_state_dict"][key]), key
        else:
            reference = golden["G_state_dict"][key]
            atol = RECIPE_RANDN_RELATIVE * reference.abs().mean().item() + 1e-9
            torch.testing.assert_close(value, reference, rtol=0, atol=atol, msg=key)
    G.eval(), D.eval()
    label = golden.get("label")
    with torch.no_grad():
        out = G(golden["z"], label=label)
        out_trunc = G(golden["z"], label=label, trunc_psi=0.7, trunc_layers=8)
        features: dict = {}
        G(golden["z"], label=label, features=features)
    torch.testing.assert_close(out["w"], golden["w"], **LATENT)
    torch.testing.assert_close(out["wp"], golden["wp"], **LATENT)
    torch.testing.assert_close(out_trunc["wp"], golden["wp_trunc"], **LATENT)
    for name_, style in golden["styles"].items():
        torch.testing.assert_close(out[name_], style, **LATENT)
    torch.testing.assert_close(out["image"], golden["image"], **SMALL)
    torch.testing.assert_close(out_trunc["image"], golden["image_trunc"], **SMALL)
    _assert_uint8_close(postprocess_uint8(out["image"]), golden["image_uint8_nhwc"])
    for layer, stages in golden["features"].items():
        for stage, value in stages.items():
            t = features[layer][stage]
            if isinstance(value, dict):
                c = t.shape[2] // 2
                torch.testing.assert_close(t[:, :8, :4, :4], value["top_left"], **SMALL)
                torch.testing.assert_close(t[:, :8, c - 2:c + 2, c - 2:c + 2], value["center"], **SMALL)
            else:
                torch.testing.assert_close(t, value, **SMALL)
    if label is not None:
        torch.testing.assert_close(out["embedding"], golden["embedding"], **LATENT)
    with torch.no_grad():
        torch.testing.assert_close(D(golden["image"], label=label), golden["disc_on_image"], **DISC)
        torch.testing.assert_close(D(golden["image_trunc"], label=label), golden["disc_on_image_trunc"],
                                   **DISC)
        both = torch.cat([golden["image"], golden["image_trunc"]])
        both_label = None if label is None else torch.cat([label, label])
        torch.testing.assert_close(D(both, label=both_label), golden["disc_on_batch4"], **DISC)


def test_small_randomize_noise_and_lod(reference_dir):
    golden = _load(reference_dir, "golden_stylegan_small.pt")
    G, D = _build(golden)
    G.load_state_dict(golden["G_state_dict"])
    D.load_state_dict(golden["D_state_dict"])
    G.eval(), D.eval()
    with torch.no_grad():
        torch.manual_seed(1234)
        noisy = G(golden["z"], randomize_noise=True)["image"]
        torch.testing.assert_close(noisy, golden["image_randomize_noise_seed1234"], **SMALL)
        for lod, image in golden["image_lod"].items():
            torch.testing.assert_close(G(golden["z"], lod=lod)["image"], image, **SMALL)
        for lod, score in golden["disc_lod"].items():
            torch.testing.assert_close(D(golden["image"], lod=lod), score, **DISC)


def test_train_mode_has_no_side_effects(reference_dir):
    """genforce style-mixes and moves w_avg in train mode; ours only when asked."""
    golden = _load(reference_dir, "golden_stylegan_small.pt")
    G, _ = _build(golden)
    G.load_state_dict(golden["G_state_dict"])
    G.train()
    w_avg = G.truncation.w_avg.clone()
    with torch.no_grad():
        outs = [G(golden["z"])["image"] for _ in range(5)]
    assert torch.equal(G.truncation.w_avg, w_avg)
    for image in outs:
        torch.testing.assert_close(image, golden["image"], **SMALL)
    with torch.no_grad():
        G(golden["z"], update_w_avg=True)
    assert not torch.equal(G.truncation.w_avg, w_avg)


def test_truncation_needs_both_psi_and_layers(reference_dir):
    golden = _load(reference_dir, "golden_stylegan_small.pt")
    G, _ = _build(golden)
    G.load_state_dict(golden["G_state_dict"])
    G.eval()
    with torch.no_grad():
        psi_only = G(golden["z"], trunc_psi=0.5)["wp"]
        layers_only = G(golden["z"], trunc_layers=4)["wp"]
    torch.testing.assert_close(psi_only, golden["wp"], **LATENT)
    torch.testing.assert_close(layers_only, golden["wp"], **LATENT)


def test_bad_inputs_get_clear_errors():
    G = StyleGANGenerator(8, z_space_dim=4, w_space_dim=4, mapping_fmaps=4, fmaps_base=16, fmaps_max=4)
    D = StyleGANDiscriminator(8, fmaps_base=16, fmaps_max=4)
    with pytest.raises(ValueError, match=r"z must have shape \[batch, 4\]"):
        G(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="must have shape"):
        D(torch.zeros(2, 3, 16, 16))
    with pytest.raises(ValueError, match="divisible"):
        D(torch.zeros(6, 3, 8, 8))
    with pytest.raises(ValueError, match="invalid resolution"):
        StyleGANGenerator(100)
    cond = StyleGANGenerator(8, z_space_dim=4, w_space_dim=4, mapping_fmaps=4, label_size=2, fmaps_base=16,
                             fmaps_max=4)
    with pytest.raises(ValueError, match="conditional"):
        cond(torch.zeros(2, 4))
