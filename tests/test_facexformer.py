"""FaceXFormer: official key layout, golden equivalence (recipe v2 weights), checkpoint loading."""
from __future__ import annotations

import argparse
import json
import logging
import math
import zlib

import pytest
import torch
from bad_inputs import cheap_facexformer_state_dict
from logit_maps import assert_maps_equal_where_clear, clear_pixels
from tolerances import FACEXFORMER_ATOL, FACEXFORMER_RTOL, RECIPE_RANDN_RELATIVE

from common.checkpoints import CheckpointError
from segmentation import FaceXFormer, load_facexformer
from segmentation.facexformer import (
    clean_checkpoint_path,
    facexformer_key_shapes,
    swin_relative_position_index,
)
from segmentation.random_weights import recipe_state_dict

ATOL, RTOL = FACEXFORMER_ATOL, FACEXFORMER_RTOL


@pytest.fixture(scope="module")
def golden(reference_dir):
    return torch.load(reference_dir / "golden_facexformer.pt", weights_only=True)


@pytest.fixture(scope="module")
def golden_pre(reference_dir):
    return torch.load(reference_dir / "golden_facexformer_preprocess.pt", weights_only=True)


@pytest.fixture(scope="module")
def recipe_sd():
    return recipe_state_dict()


@pytest.fixture(scope="module")
def model(recipe_sd):
    """The contract path: a plain FaceXFormer() and a strict load of the official keys."""
    net = FaceXFormer()
    net.load_state_dict(recipe_sd, strict=True)
    return net.eval()


@pytest.fixture(scope="module")
def golden_outputs(model, golden):
    return model.segment_logits(golden["input"]), model.heads(golden["input"])


_cheap_state_dict = cheap_facexformer_state_dict


# -- layout -----------------------------------------------------------------------------------
def test_state_dict_keys_and_shapes_equal_official_list(model, reference_dir):
    official = json.loads((reference_dir / "facexformer_keys.json").read_text())
    sd = model.state_dict()
    assert list(sd) == list(official)  # same keys, same order
    assert {k: list(v.shape) for k, v in sd.items()} == official
    ints = [k for k, v in sd.items() if v.dtype == torch.int64]
    assert len(ints) == 24 and all(k.endswith("attn.relative_position_index") for k in ints)
    assert all(v.dtype == torch.float32 for k, v in sd.items() if k not in ints)
    assert sum(p.numel() for p in model.parameters()) == 91_985_943


def test_relative_position_index_is_the_standard_swin_index(golden):
    from torchvision.models.swin_transformer import ShiftedWindowAttention

    ours = swin_relative_position_index(7)
    torchvision_index = ShiftedWindowAttention(128, [7, 7], [3, 3], 4).relative_position_index.flatten()
    assert torch.equal(ours, golden["relative_position_index"])
    assert torch.equal(ours, torchvision_index)


def test_recipe_weights_match_golden_checksums(recipe_sd, golden, randn_bit_exact):
    """Bit-exact where randn is (conftest's randn_bit_exact); elsewhere within randn's last bits (see below)."""
    checks = golden["weights_checksums"]
    assert set(checks) == set(recipe_sd)
    for key, tensor in recipe_sd.items():
        values = tensor.double()
        mine = [values.sum().item(), values.abs().sum().item(), *values.flatten()[:4].tolist()]
        if randn_bit_exact or not tensor.is_floating_point():  # integer indices are never drawn
            assert mine == pytest.approx(checks[key], rel=1e-9, abs=1e-9), key
        else:  # sums within 1e-5 of the |sum|, values within 1e-5 of the mean |value|
            total_abs = checks[key][1]
            tol = RECIPE_RANDN_RELATIVE
            assert abs(mine[0] - checks[key][0]) <= tol * total_abs + 1e-9, key
            assert abs(mine[1] - total_abs) <= tol * total_abs + 1e-9, key
            assert mine[2:] == pytest.approx(checks[key][2:], rel=0, abs=tol * total_abs / values.numel()), key


def test_recipe_rule_examples(recipe_sd):
    """Spot-check the recipe rules by hand (README: true division by a Python float)."""
    sd = recipe_sd
    key = "linear_c.2.proj.weight"
    z = torch.randn((256, 512), generator=torch.Generator().manual_seed(zlib.crc32(key.encode())))
    assert torch.equal(sd[key], z / math.sqrt(512.0))
    key = "face_decoder.mask_tokens.weight"
    z = torch.randn((11, 256), generator=torch.Generator().manual_seed(zlib.crc32(key.encode())))
    assert torch.equal(sd[key], z)
    key = "backbone.1.weight"
    z = torch.randn((1024,), generator=torch.Generator().manual_seed(zlib.crc32(key.encode())))
    assert torch.equal(sd[key], 1 + 0.02 * z)


# -- golden equivalence -------------------------------------------------------------------------
def _assert_argmax_matches(logits: torch.Tensor, golden_logits: torch.Tensor) -> None:
    assert_maps_equal_where_clear(logits.argmax(1), golden_logits, FACEXFORMER_ATOL)


def test_seg_logits_match_golden(golden_outputs, golden):
    logits, _ = golden_outputs
    assert logits.shape == (2, 11, 224, 224) and logits.dtype == torch.float32
    torch.testing.assert_close(logits, golden["seg_logits"], atol=ATOL, rtol=RTOL)
    _assert_argmax_matches(logits, golden["seg_logits"])
    assert logits.is_inference() and not logits.requires_grad  # computed without autograd


def test_segment_is_official_softmax_argmax(model, golden_outputs, golden):
    logits, _ = golden_outputs
    labels = model.segment(golden["input"])
    assert labels.dtype == torch.uint8 and labels.shape == (2, 224, 224)
    assert torch.equal(labels, logits.softmax(1).argmax(1).to(torch.uint8))
    clear = clear_pixels(golden["seg_logits"], FACEXFORMER_ATOL)
    assert torch.equal(labels[clear], golden["seg_argmax"][clear])


def test_heads_match_golden(golden_outputs, golden):
    _, heads = golden_outputs
    expected = golden["heads_all_items"]
    assert set(heads) == {"landmark", "headpose", "attribute", "visibility", "age", "gender", "race"}
    for name, value in expected.items():
        torch.testing.assert_close(heads[name], value, atol=ATOL, rtol=RTOL, msg=name)


def test_official_forward_selects_rows_per_task(model, golden):
    with torch.no_grad():
        outs = model(golden["input"], None, torch.tensor([0, 4]))
    names = ["landmark", "headpose", "attribute", "visibility", "age", "gender", "race", "seg"]
    shapes = golden["official_return_shapes_tasks_0_4"]
    assert [list(o.shape) for o in outs] == [shapes[n] for n in names]
    torch.testing.assert_close(outs[7], golden["seg_logits"][:1], atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(outs[4], golden["heads_all_items"]["age"][1:], atol=ATOL, rtol=RTOL)


def test_preprocess_golden_tensor_to_logits(model, golden_pre):
    logits = model.segment_logits(golden_pre["input_tensor"][None])
    torch.testing.assert_close(logits[0], golden_pre["seg_logits"], atol=ATOL, rtol=RTOL)
    _assert_argmax_matches(logits, golden_pre["seg_logits"][None])


def test_wrong_input_shape_is_a_clear_error(model):
    with pytest.raises(ValueError, match=r"\[N, 3, 224, 224\]"):
        model.segment_logits(torch.zeros(1, 3, 256, 256))
    with pytest.raises(ValueError, match="float"):
        model.segment_logits(torch.zeros(1, 3, 224, 224, dtype=torch.uint8))


# -- loading --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def official_file(tmp_path_factory, recipe_sd):
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    torch.save({"state_dict_backbone": recipe_sd}, path)
    return path


def test_load_official_format(official_file, recipe_sd, caplog):
    with caplog.at_level(logging.WARNING, logger="segmentation.facexformer"):
        loaded = load_facexformer(official_file, device="cpu")
    assert isinstance(loaded, FaceXFormer) and not loaded.training
    sd = loaded.state_dict()
    assert list(sd) == list(recipe_sd)
    assert all(torch.equal(sd[k], v) for k, v in recipe_sd.items())
    assert any("bytes" in r.getMessage() for r in caplog.records)  # size differs from the real upload: warned


def test_the_demos_random_checkpoint_loads_without_the_official_size_warning(tmp_path, caplog):
    """Noticed on the demo: steps 5, 9 and the studio warned that the demo's own random FaceXFormer "is not
    the official upload's size" (it never is). Its file names its recipe; a real file still warns."""
    from segmentation.random_weights import save_random_facexformer_checkpoint

    path = save_random_facexformer_checkpoint(tmp_path / "demo.pt", seed=0)
    with caplog.at_level(logging.INFO, logger="segmentation.facexformer"):
        load_facexformer(path, device="cpu")
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [] and any("random weights" in r.getMessage() for r in caplog.records)


def test_load_bare_state_dict_gives_same_outputs(tmp_path, recipe_sd, golden_pre):
    path = tmp_path / "bare.pt"
    torch.save(recipe_sd, path)
    loaded = load_facexformer(path)
    logits = loaded.segment_logits(golden_pre["input_tensor"][None])
    torch.testing.assert_close(logits[0], golden_pre["seg_logits"], atol=ATOL, rtol=RTOL)


def test_missing_file_says_where_to_get_it(tmp_path):
    with pytest.raises(CheckpointError, match="not found") as info:
        load_facexformer(tmp_path / "nope.pt")
    assert "kartiknarayan/facexformer" in str(info.value)


def test_truncated_file(tmp_path, official_file):
    path = tmp_path / "truncated.pt"
    with open(official_file, "rb") as handle:
        path.write_bytes(handle.read(1_000_000))
    with pytest.raises(CheckpointError, match="truncated"):
        load_facexformer(path)


def test_text_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "model.pt"
    path.write_text("<html>404 not found</html>")
    with pytest.raises(CheckpointError, match="checkpoint"):
        load_facexformer(path)


def test_missing_key_is_named(tmp_path):
    sd = _cheap_state_dict()
    del sd["face_decoder.mask_tokens.weight"]
    path = tmp_path / "missing.pt"
    torch.save({"state_dict_backbone": sd}, path)
    with pytest.raises(CheckpointError, match="1 missing: face_decoder.mask_tokens.weight"):
        load_facexformer(path)


def test_unexpected_and_wrong_shape_keys_are_named(tmp_path):
    sd = _cheap_state_dict()
    sd["linear_fuse.weight"] = torch.zeros(1).expand(256, 512, 1, 1)
    sd["extra.weight"] = torch.zeros(3)
    path = tmp_path / "wrong.pt"
    torch.save({"state_dict_backbone": sd}, path)
    with pytest.raises(CheckpointError) as info:
        load_facexformer(path)
    message = str(info.value)
    assert ("1 wrong shape: linear_fuse.weight "
            "(file [256, 512, 1, 1], expected [256, 1024, 1, 1])") in message
    assert "1 unexpected: extra.weight" in message and "\n" not in message


@pytest.mark.parametrize("obj, pattern", [
    ([1, 2, 3], "holds a list, not a dict"),
    ({"epoch": 3, "note": "x"}, "neither 'state_dict_backbone'"),
])
def test_not_a_state_dict(tmp_path, obj, pattern):
    path = tmp_path / "odd.pt"
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match=pattern):
        load_facexformer(path)


def test_unsafe_file_needs_explicit_trust_then_is_cleaned(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"state_dict_backbone": _cheap_state_dict(), "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(CheckpointError, match="--trust-checkpoint"):
        load_facexformer(path)
    assert not clean_checkpoint_path(path).exists()  # nothing happened without the opt-in
    loaded = load_facexformer(path, trusted=True)
    assert not loaded.training
    clean = clean_checkpoint_path(path)
    sd = torch.load(clean, weights_only=True)  # the clean copy loads with the safe loader
    assert list(sd) == list(facexformer_key_shapes())
    assert torch.equal(load_facexformer(clean).linear_fuse.weight, torch.zeros(256, 1024, 1, 1))


def test_weights_only_copy_is_keyed_by_content_not_modification_time(tmp_path):
    """trust_stale_cache: 05 --trust-checkpoint on model.pt (A) wrote model.weights_only.pt; model.pt replaced by
    B with an older mtime (cp -p, rsync -a, tar) and 05 --trust-checkpoint --overwrite again: maps byte-identical
    to A's, because the copy was reused whenever its mtime was >= the checkpoint's."""
    import os

    path = tmp_path / "model.pt"
    extra = {"args": argparse.Namespace(lr=0.1)}  # needs --trust-checkpoint
    torch.save({"state_dict_backbone": _cheap_state_dict(), **extra}, path)
    load_facexformer(path, trusted=True)
    clean = clean_checkpoint_path(path)
    assert clean.is_file()
    other = _cheap_state_dict()
    other["linear_fuse.weight"] = torch.full_like(other["linear_fuse.weight"], 0.5)
    torch.save({"state_dict_backbone": other, **extra}, path)
    old = clean.stat().st_mtime - 3600
    os.utime(path, (old, old))  # B looks older than the copy made from A
    assert torch.equal(load_facexformer(path, trusted=True).linear_fuse.weight, other["linear_fuse.weight"])
    # the copy made from B is used next time (and B's bytes are its key)
    assert torch.equal(torch.load(clean, weights_only=True)["linear_fuse.weight"], other["linear_fuse.weight"])


def test_parse_with_heads_is_one_pass_of_segment_and_heads(model, golden):
    """Step 5 saves parsing, landmarks and head pose from one backbone pass: equal to the separate calls."""
    maps, heads = model.parse_with_heads(golden["input"])
    assert torch.equal(maps, model.segment(golden["input"]))
    expected = golden["heads_all_items"]
    points = ((expected["landmark"].reshape(2, 68, 2) + 1) * 224 - 1) / 2
    torch.testing.assert_close(heads["landmarks"], points, atol=ATOL * 224, rtol=RTOL)
    torch.testing.assert_close(heads["headpose"], torch.rad2deg(expected["headpose"]), atol=ATOL * 60, rtol=RTOL)
