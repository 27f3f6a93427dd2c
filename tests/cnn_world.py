"""A two-class image world for the CNN tests and benchmarks (steps 3-4 without a GAN).

``synthetic_image`` draws a bright disc ("woman") or a dark square ("man") in the lower part, and a
sharp ("good") or blurred ("bad") checkerboard in the quality model's top-centre region, where GAN
blur artefacts sit. Imported as ``from cnn_world import ...`` (tests/ is on the path under pytest;
benchmarks add it).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter

from common.io import atomic_save_image
from gender_cnn.data import QUALITY_REGION, REFERENCE_SIZE
from gender_cnn.label_csv import HAND_LABEL_COLUMNS


def synthetic_image(rng: np.random.Generator, positive: bool, good_quality: bool = True,
                    size: int = 256) -> np.ndarray:
    """A procedurally drawn two-class test image [size, size, 3] uint8.

    gender stand-in: a bright disc (positive) or a dark square (negative) of random colour, size and
    position in the lower part; quality stand-in: the top-centre region holds a sharp checkerboard (good) or a
    blurred one (bad), as GAN blur artefacts sit there. Background: random gradient plus noise.
    """
    yy, xx = np.mgrid[0:size, 0:size] / size
    c0, c1 = rng.uniform(40, 200, 3), rng.uniform(40, 200, 3)
    angle = rng.uniform(0, 2 * np.pi)
    t = (np.cos(angle) * xx + np.sin(angle) * yy + 1) / 2
    base = c0[None, None] * (1 - t[..., None]) + c1[None, None] * t[..., None]
    image = Image.fromarray(np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8))
    s = size / REFERENCE_SIZE
    # quality region: rows 0-63, cols 64-191 (scaled)
    r0, r1, c0_, c1_ = (round(v * s) for v in QUALITY_REGION)
    cell = max(2, round(rng.integers(4, 9) * s))
    yy_r, xx_r = np.mgrid[0:r1 - r0, 0:c1_ - c0_]
    checker = (((yy_r // cell) + (xx_r // cell)) % 2).astype(np.float64)
    lo, hi = rng.uniform(0, 90), rng.uniform(160, 255)
    patch = Image.fromarray(np.repeat((lo + (hi - lo) * checker)[..., None], 3, axis=2).astype(np.uint8))
    if not good_quality:
        patch = patch.filter(ImageFilter.GaussianBlur(radius=max(1.0, 2.5 * s)))
    image.paste(patch, (c0_, r0))
    draw = ImageDraw.Draw(image)
    radius = rng.uniform(28, 45) * s
    cy, cx = rng.uniform(110, 190) * s, rng.uniform(70, 186) * s
    colour = tuple(int(v) for v in (rng.integers(170, 256, 3) if positive else rng.integers(0, 86, 3)))
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    if positive:
        draw.ellipse(box, fill=colour)
    else:
        draw.rectangle(box, fill=colour)
    arr = np.asarray(image).astype(np.float64) + rng.normal(0, 6, (size, size, 3))
    return np.clip(arr, 0, 255).astype(np.uint8)


def write_synthetic_set(images_dir: Path | str, n: int, seed: int = 0, start: int = 0,
                        size: int = 256) -> pd.DataFrame:
    """Write ``n`` synthetic_image() JPEGs named {i:06d}.jpg (i from ``start``); returns their labels.

    The returned frame has the hand-label columns (img_name, gender, quality, labeller='demo'), so
    tests and benchmarks can train and filter without a GAN.
    """
    images_dir = Path(images_dir)
    rows = []
    for i in range(start, start + n):
        rng = np.random.default_rng([seed, i])
        gender, quality = int(rng.integers(2)), int(rng.integers(2))
        name = f"{i:06d}.jpg"
        atomic_save_image(images_dir / name, synthetic_image(rng, bool(gender), bool(quality), size=size))
        rows.append({"img_name": name, "gender": gender, "quality": quality, "labeller": "demo"})
    return pd.DataFrame(rows, columns=list(HAND_LABEL_COLUMNS))
