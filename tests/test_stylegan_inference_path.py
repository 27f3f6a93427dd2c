"""The generator's inference-mode fast path computes what genforce's op order (no_grad, autograd) computes."""
from __future__ import annotations

import copy

import pytest
import torch
from tiny_models import TINY_G_32

from stylegan.networks import StyleGANGenerator
from stylegan.random_weights import recipe_state_dict


def _random(G: StyleGANGenerator, seed_offset: int = 0) -> StyleGANGenerator:
    G.load_state_dict(recipe_state_dict(G, seed_offset), strict=True)
    return G


def _pair(G, z, **kwargs):
    torch.manual_seed(1)
    with torch.inference_mode():
        fast = G(z, **kwargs)
    torch.manual_seed(1)
    with torch.no_grad():
        reference = G(z, **kwargs)
    return fast, reference


@pytest.mark.parametrize("fused_scale", [False, True])  # 'up' (upsample+conv) and 'fused_up' layers
def test_inference_path_equals_autograd_path(fused_scale, single_thread):
    G = _random(StyleGANGenerator(32, fused_scale=fused_scale)).eval()
    z = torch.randn(3, 512, generator=torch.Generator().manual_seed(0))
    for kwargs in ({}, {"randomize_noise": True}, {"trunc_psi": 0.7, "trunc_layers": 4}, {"lod": 0.4}):
        fast, reference = _pair(G, z, **kwargs)
        assert fast["image"].is_contiguous()
        torch.testing.assert_close(fast["image"], reference["image"], atol=1e-4, rtol=1e-4,
                                   msg=lambda m: f"{kwargs}: {m}")
        for key in ("w", "wp", "style05"):
            torch.testing.assert_close(fast[key], reference[key], atol=1e-5, rtol=0)


def test_cached_kernels_follow_weight_changes(single_thread):
    """Optimiser steps, load_state_dict and .to() all change what the fast path computes."""
    G = _random(StyleGANGenerator(16)).eval()
    z = torch.randn(2, 512, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        G(z)  # fill the caches
        before = G(z)["image"]
    with torch.no_grad():
        for p in G.synthesis.parameters():
            p.add_(torch.randn_like(p) * 0.3)  # in place, as an optimiser step
        G.synthesis.layer2.apply_noise.noise.mul_(-1.0)
    with torch.inference_mode():
        after = G(z)["image"]
    _, reference = _pair(G, z)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, reference["image"], atol=1e-4, rtol=1e-4)

    other = _random(StyleGANGenerator(16), seed_offset=7).state_dict()
    G.load_state_dict(other)
    with torch.inference_mode():
        loaded = G(z)["image"]
    fresh = _random(StyleGANGenerator(16), seed_offset=7).eval()
    with torch.inference_mode():
        torch.testing.assert_close(loaded, fresh(z)["image"], atol=0, rtol=0)
        doubled = copy.deepcopy(G).to(torch.float64)
        torch.testing.assert_close(doubled(z.double())["image"].float(), loaded, atol=1e-4, rtol=1e-4)


def test_training_and_no_grad_keep_genforces_op_order(single_thread):
    """Only inference_mode takes the fast path: fine-tuning (and its no_grad fakes) is unchanged."""
    G = _random(StyleGANGenerator(16)).eval()
    z = torch.randn(2, 512, generator=torch.Generator().manual_seed(0))
    calls = []
    layer = G.synthesis.layer3
    original = layer._forward_inference
    layer._forward_inference = lambda *a: calls.append(1) or original(*a)
    with torch.no_grad():
        G(z)
    G(z)
    assert calls == []
    with torch.inference_mode():
        G(z)
    assert calls == [1]


@pytest.mark.parametrize("fused_scale", [False, True])
def test_prepacked_kernels_compute_the_same_image_and_follow_weight_changes(fused_scale, single_thread):
    """prepack_for_cpu: batch-of-one inference renders use oneDNN kernels packed once (same maths,
    float rounding apart); a batch of two, no_grad and a weight update keep working."""
    from stylegan.networks import prepack_for_cpu

    G = _random(StyleGANGenerator(**dict(TINY_G_32, fused_scale=fused_scale))).eval()
    plain = copy.deepcopy(G)
    assert prepack_for_cpu(G) == G.synthesis.num_layers - 1        # every layer but the constant one
    z = torch.randn(2, G.z_space_dim, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        for batch in (z[:1], z):
            torch.testing.assert_close(G(batch)["image"], plain(batch)["image"], atol=1e-4, rtol=1e-4)
        first = G(z[:1])["image"].clone()
        assert torch.equal(first, G(z[:1])["image"])                  # the packed kernel is reused, same bits
    with torch.no_grad():
        G.synthesis.layer5.weight.mul_(1.5)
        plain.synthesis.layer5.weight.mul_(1.5)
        torch.testing.assert_close(G(z[:1])["image"], plain(z[:1])["image"], atol=1e-4, rtol=1e-4)
    with torch.inference_mode():
        after = G(z[:1])["image"]
    assert not torch.allclose(after, first) and torch.allclose(after, plain(z[:1])["image"], atol=1e-4, rtol=1e-4)


def test_run_layers_and_block_image_are_forward_in_pieces(single_thread):
    """Synthesis resumed from a kept activation gives the bits of one forward; an earlier block's to-RGB is
    forward's image at that integer lod before its nearest upsampling."""
    G = _random(StyleGANGenerator(**TINY_G_32)).eval()
    z = torch.randn(1, G.z_space_dim, generator=torch.Generator().manual_seed(3))
    synthesis = G.synthesis
    with torch.inference_mode():
        wp = G.truncation(G.mapping(z)["w"])
        whole = synthesis(wp)["image"]
        x = synthesis.run_layers(wp, 0, 4)
        x = synthesis.run_layers(wp, 4, 6, x)
        x = synthesis.run_layers(wp, 6, synthesis.num_layers, x)
        assert torch.equal(synthesis.block_image(x, synthesis.num_blocks - 1), whole)
        early = synthesis.block_image(synthesis.run_layers(wp, 0, 6), 2)       # 16 px
        assert early.shape[-1] == 16 and torch.equal(early, synthesis(wp, lod=1)["image"][:, :, ::2, ::2])
    with pytest.raises(ValueError, match="x exactly when start > 0"):
        synthesis.run_layers(wp, 2, 4)
