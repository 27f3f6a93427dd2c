"""Deterministic stand-in for hand labels, used only by the no-download demo (``labeller = demo``).

The demo's random-weight generator makes no faces, so nobody could label its images; this rule
gives labels that depend on the pixels (so the CNNs have something learnable): "woman" when the
image is redder than most, "good quality" when its top-centre region (where the quality CNN looks)
is brighter than the darkest quarter.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from common.images import load_rgb
from gender_cnn.hand_labels import Label
from gender_cnn.label_csv import HAND_LABEL_COLUMNS

DEMO_LABELLER = "demo"


def rule_labels(image_paths: Sequence[Path], woman_share: float = 0.6, good_share: float = 0.75) -> pd.DataFrame:
    """Labels for the given images by rule; columns of hand_labels.csv, labeller 'demo'."""
    redness, brightness = [], []
    for path in image_paths:
        image = load_rgb(path).astype(np.float64)
        redness.append(image[..., 0].mean() - image[..., 2].mean())
        h, w = image.shape[:2]
        brightness.append(image[: h // 4, w // 4: 3 * w // 4].mean())
    redness, brightness = np.asarray(redness), np.asarray(brightness)
    gender = (redness >= np.quantile(redness, 1.0 - woman_share)).astype(int) if len(redness) else redness
    quality = (brightness >= np.quantile(brightness, 1.0 - good_share)).astype(int) if len(brightness) else brightness
    return pd.DataFrame({
        "img_name": [Path(p).name for p in image_paths], "gender": gender, "quality": quality,
        "labeller": DEMO_LABELLER,
    })[list(HAND_LABEL_COLUMNS)]


def demo_rule_labels(image_paths: Sequence[Path]) -> dict[str, Label]:
    """:func:`rule_labels` as the labeller's store imports them (``--rule-labels``)."""
    frame = rule_labels(image_paths)
    return {row.img_name: Label(int(row.gender), int(row.quality), DEMO_LABELLER)
            for row in frame.itertuples(index=False)}
