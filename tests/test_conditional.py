"""Conditional G/D (step 7): exact step-0 equivalence, gradient on the new weights, frozen synthesis, loading."""
from __future__ import annotations

import pytest
import torch
from tiny_models import TINY_G_32_W24

from common.checkpoints import CheckpointError
from stylegan.checkpoint import load_discriminator, load_generator, write_random_checkpoint
from stylegan.conditional import (
    ConditionalGenerator,
    build_conditional_discriminator,
    build_conditional_generator,
    d_layer_names,
    freeze_synthesis,
    load_conditional_generator,
    property_ranges,
    set_trainable_d_layers,
)

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    return write_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pth", seed=3, **TINY_G_32_W24)


def test_step0_generator_equals_pretrained_for_every_condition(tiny_ckpt):
    base = load_generator(tiny_ckpt)
    cond_g = build_conditional_generator(base, seed=5).eval()
    z = torch.randn(6, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = base(z)
        for trial in range(3):
            c = torch.rand(6, 5, generator=torch.Generator().manual_seed(trial)) * 4 - 2  # even out of range
            got = cond_g(z, c)
            assert torch.equal(got["image"], expected["image"])
            assert torch.equal(got["w"], expected["w"])
            assert torch.equal(got["z"], expected["z"])
        # truncation follows the base as well
        assert torch.equal(cond_g(z, c, trunc_psi=0.7, trunc_layers=4)["image"],
                           base(z, trunc_psi=0.7, trunc_layers=4)["image"])
    # and the condition does reach the embedding (so new columns can learn)
    assert got["embedding"].abs().sum() > 0


def test_widening_keeps_old_column_scale(tiny_ckpt):
    cond_g = build_conditional_generator(load_generator(tiny_ckpt), embed_dim=7)
    dense0 = cond_g.mapping.dense0
    assert dense0.weight.shape == (20, 16)
    assert dense0.scale == pytest.approx(2 ** 0.5 / 16 ** 0.5 * 0.01)  # fan-in of z alone, not z + embedding
    assert cond_g.condition.columns.weight.shape == (20, 7)
    assert torch.count_nonzero(cond_g.condition.columns.weight) == 0


def test_new_weights_get_gradient_and_synthesis_frozen(tiny_ckpt):
    cond_g = build_conditional_generator(load_generator(tiny_ckpt))
    freeze_synthesis(cond_g)
    out = cond_g(torch.randn(4, 16), torch.rand(4, 5))["image"]
    out.square().mean().backward()
    assert cond_g.condition.columns.weight.grad is not None
    assert cond_g.condition.columns.weight.grad.abs().sum() > 0
    assert cond_g.mapping.dense3.weight.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in cond_g.synthesis.parameters())


def test_step0_discriminator_equals_pretrained_and_projection_learns(tiny_ckpt):
    base = load_discriminator(tiny_ckpt)
    disc = build_conditional_discriminator(base)
    images = torch.randn(4, 3, 32, 32)
    c = torch.rand(4, 5)
    with torch.no_grad():
        assert torch.equal(disc(images, c), base(images))
    disc(images, c).sum().backward()
    assert disc.projection[2].weight.grad.abs().sum() > 0


def test_trainable_d_layers(tiny_ckpt):
    disc = build_conditional_discriminator(load_discriminator(tiny_ckpt))
    names = set_trainable_d_layers(disc, "2")
    top = d_layer_names(disc)[:2]
    assert names == ["projection"] + top
    trainable = {n.split(".")[0] for n, p in disc.named_parameters() if p.requires_grad}
    assert trainable == {"projection", *top}
    set_trainable_d_layers(disc, "all")
    assert {n.split(".")[0] for n, p in disc.named_parameters() if not p.requires_grad} == {
        f"input{b}" for b in range(1, disc.num_blocks)}  # lower-resolution FromRGB: unused at lod 0
    with pytest.raises(ValueError, match="train_d_layers"):
        set_trainable_d_layers(disc, "99")


def test_bad_condition_shape_is_a_clear_error(tiny_ckpt):
    cond_g = build_conditional_generator(load_generator(tiny_ckpt))
    with pytest.raises(ValueError, match=r"condition must have shape \[2, 5\]"):
        cond_g(torch.randn(2, 16), torch.rand(2, 4))
    with pytest.raises(ValueError, match="unconditional"):
        ConditionalGenerator(dict(resolution=8, label_size=3))


def test_property_ranges_follow_normalisation():
    config = {"property_names": ["eyes", "face_pose", "mouth"],
              "normalization": {"scales": {"eyes": {"kind": "minmax", "target": [0.0, 1.0]},
                                           "face_pose": {"kind": "symmetric"}, "mouth": {"kind": "zscore"}}},
              "condition_stats": {"mouth": {"min": -1.5, "max": 2.5}}}
    assert property_ranges(config) == {"eyes": (0.0, 1.0), "face_pose": (-1.0, 1.0), "mouth": (-1.5, 2.5)}


def test_load_conditional_generator_rejects_other_files(tmp_path, tiny_ckpt):
    with pytest.raises(CheckpointError, match="not found"):
        load_conditional_generator(tmp_path / "none.pt")
    with pytest.raises(CheckpointError, match="not a step-7 checkpoint"):
        load_conditional_generator(tiny_ckpt)
