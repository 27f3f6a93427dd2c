"""The 11 FaceXFormer / LaPa class ids and the official overlay palette: the one place they are spelled out."""
from __future__ import annotations

from enum import IntEnum

import numpy as np


class FaceLabel(IntEnum):
    BACKGROUND = 0
    SKIN = 1
    LEFT_BROW = 2
    RIGHT_BROW = 3
    LEFT_EYE = 4
    RIGHT_EYE = 5
    NOSE = 6
    UPPER_LIP = 7
    INNER_MOUTH = 8
    LOWER_LIP = 9
    HAIR = 10


NUM_CLASSES = len(FaceLabel)

CLASS_NAMES: tuple[str, ...] = (
    "background", "skin", "left_brow", "right_brow", "left_eye", "right_eye",
    "nose", "upper_lip", "inner_mouth", "lower_lip", "hair",
)

# Official FaceXFormer overlay colours (RGB), index = class id.
PALETTE = np.array(
    [
        (0, 0, 0), (0, 153, 255), (102, 255, 153), (0, 204, 153), (255, 255, 102), (255, 255, 204),
        (255, 153, 0), (255, 102, 255), (102, 0, 51), (255, 204, 255), (255, 0, 102),
    ],
    dtype=np.uint8,
)


def colorize(parsing: np.ndarray) -> np.ndarray:
    """(H, W) integer label map -> (H, W, 3) uint8 RGB with the official palette."""
    return PALETTE[np.clip(parsing, 0, NUM_CLASSES - 1).astype(np.intp)]


def overlay(face_u8: np.ndarray, parsing: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """50/50 blend of the crop and its coloured label map, as the official demo saves it."""
    blended = (1.0 - alpha) * face_u8.astype(np.float32) + alpha * colorize(parsing).astype(np.float32)
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)
