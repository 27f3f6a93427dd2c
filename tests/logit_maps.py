"""Parsing maps of another computation (batch size, kernel, the official code) compared only where it is clear.

A pixel whose two best logits lie within the tolerance may take either class under a rounding change,
so such pixels are left out; the rest must agree exactly, and they must be nearly all of the map.
Imported as ``from logit_maps import ...`` (like ``tolerances``).
"""
from __future__ import annotations

import torch
from tolerances import CLEAR_PIXEL_SHARE_MIN


def clear_pixels(logits: torch.Tensor, gap: float) -> torch.Tensor:
    """bool [N, H, W]: pixels of logits [N, C, H, W] whose top-two logits differ by more than ``gap``."""
    top2 = logits.topk(2, dim=1).values
    return (top2[:, 0] - top2[:, 1]) > gap


def assert_maps_equal_where_clear(maps: torch.Tensor, reference_logits: torch.Tensor, gap: float) -> None:
    """``maps`` [N, H, W] equal the reference's argmax on every clear pixel, and almost every pixel is clear."""
    clear = clear_pixels(reference_logits, gap)
    assert clear.float().mean() >= CLEAR_PIXEL_SHARE_MIN, f"only {clear.float().mean():.4f} of the pixels are clear"
    wrong = (torch.as_tensor(maps).long() != reference_logits.argmax(1)) & clear
    assert not wrong.any(), f"{int(wrong.sum())} clear pixels differ"
