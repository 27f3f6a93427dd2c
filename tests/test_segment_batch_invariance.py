"""Step 5's maps must not depend on --batch-size (issue 9).

Cause found: the decoder's ``transpose(1, 2).view(b, c, h, w)`` is a channels_last view; oneDNN's
transposed conv kept that layout for batches of several images but not for one, so the channel
LayerNorm after it summed in another order and near-tied pixels changed class. On one thread the
model is now bitwise batch-invariant. With several threads the GEMM libraries split the work by
problem size, so logits can move by ~1e-5 with the batch size (tolerance stated in the README).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from segmentation.crop import full_image_crop, normalize_crops
from segmentation.facexformer import FaceXFormer
from segmentation.random_weights import recipe_state_dict


@pytest.fixture(scope="module")
def model():
    net = FaceXFormer()
    net.load_state_dict(recipe_state_dict(), strict=True)
    return net.eval()


@pytest.fixture(scope="module")
def crops(real_faces):
    faces = [np.asarray(Image.open(p).convert("RGB")) for p in real_faces[:3]]
    return normalize_crops([full_image_crop(face).image for face in faces])


def test_logits_and_maps_do_not_depend_on_batch_size(model, crops, single_thread):
    batched = model.segment_logits(crops)
    single = torch.cat([model.segment_logits(crops[i:i + 1]) for i in range(len(crops))])
    assert torch.equal(batched, single), f"max |diff| {(batched - single).abs().max().item():.3g}"
    assert torch.equal(batched.softmax(1).argmax(1), single.softmax(1).argmax(1))
    pair = model.segment_logits(crops[:2])
    assert torch.equal(pair, single[:2])


def test_upscaling_input_layout_is_fixed(model, crops, single_thread):
    """The layer that caused it sees the same (NCHW) layout for one image and for a batch."""
    seen = []
    hook = model.face_decoder.output_upscaling[1].register_forward_pre_hook(
        lambda _m, args: seen.append(args[0].is_contiguous()))
    try:
        model.segment_logits(crops[:1])
        model.segment_logits(crops)
    finally:
        hook.remove()
    assert seen == [True, True]
