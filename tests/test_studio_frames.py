"""Exact and preview frames of single faces through the studio's content-keyed cache.

The contract (issue 22): an exact frame has the bits of a fresh render whatever is cached, so a
render resumed from a kept activation must run the same ops in the same order on the same shapes
as one that starts at layer 0. A 128 px world has a preview (its 64 px output) and every layer range.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from studio_world import make_world

from pipeline.studio.frames import EXACT, PREVIEW, FaceFrames, FrameCache, FramePlan
from pipeline.studio.params import ViewParams
from pipeline.studio.render import face_latent, load_studio_models, render_face, render_view
from stylegan.networks import postprocess_uint8


@pytest.fixture(scope="module")
def models128(tmp_path_factory):
    return load_studio_models(make_world(tmp_path_factory.mktemp("frames"), resolution=128))


def _plain(generator, wp, block=None) -> np.ndarray:
    """The frame the generator's own synthesis forward gives (block: an earlier to-RGB, via its lod)."""
    with torch.inference_mode():
        synthesis = generator.synthesis
        lod = 0 if block is None else synthesis.num_blocks - 1 - block
        image = synthesis(wp, lod, False)["image"]
        if block is not None:
            step = generator.resolution // (4 * 2 ** block)
            image = image[:, :, ::step, ::step]  # forward at an integer lod upsamples by repetition
    return postprocess_uint8(image)[0]


def test_plan_keeps_the_layer_range_starts_and_the_preview_end(models128, tmp_path):
    plan = FramePlan.of(models128.generator)
    assert plan.num_layers == 12 and plan.preview_block == 4 and plan.preview_stop == 10
    assert plan.keep == (4, 8, 10)          # middle starts at 16 px (layer 4), fine at 64 px (layer 8)
    small = FramePlan.of(load_studio_models(make_world(tmp_path, resolution=32)).generator)
    assert small.preview_block is None and small.keep == (4,)   # 32 px: no smaller preview than 64 px


@pytest.mark.parametrize("layers", ["all", "coarse", "middle", "fine"])
def test_an_edit_resumed_after_its_unedited_layers_has_the_bits_of_a_full_render(models128, layers, single_thread,
                                                                                 monkeypatch):
    frames = FaceFrames()
    params = ViewParams(method="directions", seed=4, values=(0.8, None, 0.3, None, None), layers=layers)
    base = face_latent(models128, "base", 4, params.targets)
    edit = face_latent(models128, "directions", 4, params.targets, layers=layers)
    assert np.array_equal(frames.frame(base.generator, base.wp), _plain(base.generator, base.wp))
    synthesis = edit.generator.synthesis
    ran, real = [], synthesis.run_layers

    def spy(wp, start, stop, x=None, randomize_noise=False):
        ran.append((start, stop))
        return real(wp, start, stop, x, randomize_noise)

    monkeypatch.setattr(synthesis, "run_layers", spy)
    edited = frames.frame(edit.generator, edit.wp)
    first = {"all": 0, "coarse": 0, "middle": 4, "fine": 8}[layers]   # the base's layers before it are reused
    assert ran[0][0] == first and ran[-1][1] == 12
    monkeypatch.undo()
    assert np.array_equal(edited, _plain(edit.generator, edit.wp))
    assert np.array_equal(edited, FaceFrames().frame(edit.generator, edit.wp))   # a fresh cache: same bits
    assert not np.array_equal(edited, frames.frame(base.generator, base.wp))


def test_a_preview_is_the_64px_output_and_the_exact_frame_after_it_is_exact(models128, single_thread):
    frames = FaceFrames()
    latent = face_latent(models128, "directions", 9, [0.2, None, None, 0.9, None])
    preview = frames.frame(latent.generator, latent.wp, PREVIEW)
    assert preview.shape == (64, 64, 3)
    assert np.array_equal(preview, _plain(latent.generator, latent.wp, block=4))
    assert frames.cached(latent.generator, latent.wp, EXACT) is None
    exact = frames.frame(latent.generator, latent.wp, EXACT)     # continues from the preview's layer 10
    assert exact.shape == (128, 128, 3) and np.array_equal(exact, _plain(latent.generator, latent.wp))
    other = face_latent(models128, "directions", 9, [0.6, None, None, 0.9, None])
    assert not np.array_equal(FaceFrames().frame(other.generator, other.wp, PREVIEW), preview)


def test_a_view_previews_only_what_is_not_cached_exactly(models128, single_thread):
    frames = FaceFrames()
    params = ViewParams(method="both", seed=2, values=(0.5, None, None, None, None), strip=2)
    preview = render_view(models128, params, frames, PREVIEW)
    assert preview.frame == PREVIEW and preview.sheet_u8.shape == (2 * 64, 3 * 64, 3)
    exact = render_view(models128, params, frames, EXACT)
    assert exact.frame == EXACT and exact.sheet_u8.shape == (2 * 128, 3 * 128, 3)
    assert exact.layout() == preview.layout()
    again = render_view(models128, params, frames, PREVIEW)      # every face cached exactly: exact, free
    assert again.frame == EXACT and np.array_equal(again.sheet_u8, exact.sheet_u8)
    fresh = render_view(models128, params, FaceFrames(), EXACT)
    assert np.array_equal(fresh.sheet_u8, exact.sheet_u8)
    assert np.array_equal(exact.sheet_u8[128:256, 128:256], render_face(models128, params, "directions", seed=3))


def test_the_cache_keeps_its_byte_budget_and_readers_never_write(models128, single_thread):
    cache = FrameCache(budget_bytes=300_000)
    frames = FaceFrames(cache)
    for seed in range(6):
        latent = face_latent(models128, "base", seed, [None] * 5)
        frames.frame(latent.generator, latent.wp)
        assert cache.stats()["bytes"] <= 300_000
    assert cache.stats()["entries"] < 6 * 4                     # the oldest were dropped
    reader = frames.reader()
    latent = face_latent(models128, "base", 99, [None] * 5)
    before = cache.stats()["entries"]
    reader.frame(latent.generator, latent.wp)
    assert cache.stats()["entries"] == before and reader.cached(latent.generator, latent.wp) is None
