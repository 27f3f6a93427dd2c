"""Loading genforce checkpoints in every layout, inferring settings, and clear errors for wrong files."""
from __future__ import annotations

import pytest
import torch
from tiny_models import TINY_G_ODD

from common.checkpoints import CheckpointError
from stylegan import StyleGANGenerator, load_discriminator, load_generator, write_random_checkpoint
from stylegan.checkpoint import infer_generator_config


@pytest.fixture
def tiny_ckpt(tmp_path):
    path = tmp_path / "tiny.pth"
    write_random_checkpoint(path, **TINY_G_ODD)
    return path


def _image(G, z):
    with torch.no_grad():
        return G(z)["image"]


def test_auto_prefers_generator_smooth_and_infers_config(tiny_ckpt):
    ckpt = torch.load(tiny_ckpt, weights_only=True)
    ckpt["generator"] = {k: v + 1.0 if v.is_floating_point() and v.ndim > 0 else v for k, v in ckpt["generator"].items()}
    torch.save(ckpt, tiny_ckpt)
    G = load_generator(tiny_ckpt)
    assert G.checkpoint_key == "generator_smooth" and not G.training
    for key, value in TINY_G_ODD.items():
        assert G.config[key] == value
    raw = load_generator(tiny_ckpt, which="generator")
    assert raw.checkpoint_key == "generator"
    z = torch.randn(2, 8)
    assert not torch.allclose(_image(G, z), _image(raw, z))
    D = load_discriminator(tiny_ckpt)
    assert D.resolution == 16 and D.checkpoint_key == "discriminator"
    assert D(torch.zeros(2, 3, 16, 16)).shape == (2, 1)


@pytest.mark.parametrize("layout", ["flat", "models", "bare", "module_prefix", "no_smooth"])
def test_every_genforce_layout_loads_the_same_generator(tiny_ckpt, tmp_path, layout):
    ckpt = torch.load(tiny_ckpt, weights_only=True)
    expected = load_generator(tiny_ckpt)
    if layout == "models":
        data = {"models": ckpt, "running_metadata": {"iter": 3, "seen_img": 12}}
    elif layout == "bare":
        data = ckpt["generator_smooth"]
    elif layout == "module_prefix":
        data = {k: {f"module.{n}": t for n, t in v.items()} for k, v in ckpt.items()}
    elif layout == "no_smooth":
        data = {"generator": ckpt["generator_smooth"], "discriminator": ckpt["discriminator"]}
    else:
        data = ckpt
    path = tmp_path / f"{layout}.pth"
    torch.save(data, path)
    G = load_generator(path)
    assert G.checkpoint_key == {"bare": "state_dict", "no_smooth": "generator"}.get(layout, "generator_smooth")
    z = torch.randn(3, 8)
    assert torch.equal(_image(G, z), _image(expected, z))


def test_infers_conditional_and_full_size_configs():
    cond = StyleGANGenerator(32, z_space_dim=16, w_space_dim=24, mapping_fmaps=20, label_size=3, fmaps_base=256,
                             fmaps_max=16)
    cfg = infer_generator_config(cond.state_dict())
    assert cfg["label_size"] == 3 and cfg["z_space_dim"] == 16 and cfg["fmaps_base"] == 256
    full = infer_generator_config(StyleGANGenerator(256).state_dict())
    assert full == dict(resolution=256, z_space_dim=512, w_space_dim=512, label_size=0, mapping_layers=8,
                        mapping_fmaps=512, repeat_w=True, image_channels=3, fmaps_base=16384, fmaps_max=512)


def test_missing_file_names_path_and_source(tmp_path):
    with pytest.raises(CheckpointError) as info:
        load_generator(tmp_path / "stylegan_model.pth")
    message = str(info.value)
    assert "not found" in message and "stylegan_model.pth" in message and "by hand" in message


def test_truncated_file_is_a_clear_error(tiny_ckpt, tmp_path):
    data = tiny_ckpt.read_bytes()
    broken = tmp_path / "broken.pth"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_generator(broken)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_generator(empty)


def test_wrong_keys_and_shapes_are_listed(tiny_ckpt, tmp_path):
    ckpt = torch.load(tiny_ckpt, weights_only=True)
    sd = ckpt["generator_smooth"]
    del sd["synthesis.layer1.apply_noise.noise"]
    sd["synthesis.extra.weight"] = torch.zeros(1)
    sd["synthesis.layer3.style.weight"] = torch.zeros(5, 12)
    torch.save(ckpt, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as info:
        load_generator(tmp_path / "bad.pth")
    message = str(info.value)
    assert "1 missing: synthesis.layer1.apply_noise.noise" in message
    assert "1 unexpected: synthesis.extra.weight" in message
    assert "synthesis.layer3.style.weight (file [5, 12], expected [" in message
    assert "\n" not in message


def test_not_a_stylegan_file(tmp_path):
    torch.save({"state_dict_backbone": {"backbone.0.weight": torch.zeros(2)}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no 'generator'"):
        load_generator(tmp_path / "other.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="expected a dict"):
        load_generator(tmp_path / "list.pt")


def test_unsafe_pickle_is_refused(tmp_path):
    import fractions

    torch.save({"generator": fractions.Fraction(1, 3)}, tmp_path / "unsafe.pth")
    with pytest.raises(CheckpointError, match="fractions.Fraction") as info:
        load_generator(tmp_path / "unsafe.pth")
    assert "weights_only" not in str(info.value) and "trust" not in str(info.value)


def test_override_conflicting_with_shapes_is_an_error(tiny_ckpt):
    with pytest.raises(CheckpointError, match="z_space_dim=512 was requested"):
        load_generator(tiny_ckpt, z_space_dim=512)
    G = load_generator(tiny_ckpt, fused_scale="auto")
    assert G.config["fused_scale"] == "auto"
    with pytest.raises(ValueError, match="invalid which"):
        load_generator(tiny_ckpt, which="ema")
