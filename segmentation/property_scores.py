"""The five core property scores of step 6, from a 224x224 label map and its aligned face crop.

Every definition follows ``shared/docs/pipeline.md`` ("Step 6: property scores"); ranges are
inclusive, rows go down, and the *extent* of a set of pixels is (largest row) - (smallest row).
Colours are taken from the aligned crop the map was computed on: the original project read them
from the uncropped image, misaligned with the map, a bug we do not copy.

Speed: the maps are tiny, so the cost is in how the masks are reduced. Each part is one uint8
comparison followed by a row-wise ``any`` (a few microseconds each); hair pixels are gathered
with one ``flatnonzero``/``take`` and their median comes from a 766-bin histogram of R+G+B
instead of a sort; the nose correlation works on the nose's bounding rows only. A map scores in
about 0.2-0.3 ms on one core (``benchmarks/bench_scores.py``).
"""
from __future__ import annotations

import math

import numpy as np

from common.paths import PROPERTY_NAMES
from segmentation.labels import NUM_CLASSES, FaceLabel

MAP_SIZE = 224
"""Label maps and crops are MAP_SIZE x MAP_SIZE."""

BOTTOM_ROW = MAP_SIZE - 1
"""Hair reaching this row is extrapolated below the crop (hair_length)."""

EYE_ROWS: tuple[int, int] = (56, 139)
"""Inclusive rows where eye pixels count, for both eyes."""

LEFT_EYE_COLS: tuple[int, int] = (0, 167)
"""Inclusive columns where left-eye (id 4) pixels count."""

RIGHT_EYE_COLS: tuple[int, int] = (56, 223)
"""Inclusive columns where right-eye (id 5) pixels count (overlaps the left window in 56..167)."""

# Flag names written to the ``flags`` column of all_scores.csv, in this order.
FLAG_NO_HAIR = "no_hair"
FLAG_POSE_UNDEFINED = "pose_undefined"
FLAG_NO_LEFT_EYE = "no_left_eye"
FLAG_NO_RIGHT_EYE = "no_right_eye"
FLAG_NO_LIPS = "no_lips"
FLAG_NO_INNER_MOUTH = "no_inner_mouth"
SCORE_FLAGS: tuple[str, ...] = (
    FLAG_NO_HAIR, FLAG_POSE_UNDEFINED, FLAG_NO_LEFT_EYE, FLAG_NO_RIGHT_EYE, FLAG_NO_LIPS, FLAG_NO_INNER_MOUTH,
)
"""Every flag raw_scores_with_flags() can return; NaN scores come only with the first two."""

_Y0, _Y1 = EYE_ROWS
_LX0, _LX1 = LEFT_EYE_COLS
_RX0, _RX1 = RIGHT_EYE_COLS
_RGB_SUM_BINS = 3 * 255 + 1
# Plain ints: comparing an array with an IntEnum member is ~3x slower than with an int.
_LEFT_EYE, _RIGHT_EYE = int(FaceLabel.LEFT_EYE), int(FaceLabel.RIGHT_EYE)
_NOSE, _HAIR = int(FaceLabel.NOSE), int(FaceLabel.HAIR)
_UPPER_LIP, _LOWER_LIP = int(FaceLabel.UPPER_LIP), int(FaceLabel.LOWER_LIP)
_INNER_MOUTH, _BACKGROUND = int(FaceLabel.INNER_MOUTH), int(FaceLabel.BACKGROUND)


def _check_inputs(parsing: np.ndarray, face: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shape/dtype/label checks with expected-vs-actual messages; returns a uint8 map and the crop."""
    parsing = np.asarray(parsing)
    face = np.asarray(face)
    expected_map = (MAP_SIZE, MAP_SIZE)
    if parsing.shape != expected_map:
        raise ValueError(f"parsing: expected shape {expected_map}, got {parsing.shape}")
    if parsing.dtype.kind not in "iu":
        raise ValueError(f"parsing: expected an integer label map, got dtype {parsing.dtype}")
    expected_face = (MAP_SIZE, MAP_SIZE, 3)
    if face.shape != expected_face:
        raise ValueError(f"face: expected shape {expected_face} (RGB crop), got {face.shape}")
    if face.dtype != np.uint8:
        raise ValueError(f"face: expected dtype uint8, got {face.dtype}")
    if parsing.dtype != np.uint8:
        low, high = int(parsing.min()), int(parsing.max())
        if low < 0 or high >= NUM_CLASSES:
            raise ValueError(f"parsing: expected labels 0..{NUM_CLASSES - 1}, got {low}..{high}")
        parsing = parsing.astype(np.uint8)
    else:
        high = int(parsing.max())
        if high >= NUM_CLASSES:
            raise ValueError(f"parsing: expected labels 0..{NUM_CLASSES - 1}, got max {high}")
    return parsing, face


def _extent(rows_present: np.ndarray) -> float:
    """(last row) - (first row) of a boolean per-row presence vector; 0 when no row is present."""
    hits = np.flatnonzero(rows_present)
    return float(hits[-1] - hits[0]) if hits.size else 0.0


def _hair_color(face: np.ndarray, hair_flat: np.ndarray) -> float:
    """numpy.median of the per-pixel channel means (R+G+B)/3 over hair pixels, via a histogram.

    Each pixel mean is s/3 with s = R+G+B an integer in 0..765 (exact in float64), so the k-th
    smallest mean is found by counting s values. The even-count case reproduces numpy.median's
    arithmetic, (a + b) / 2 of the two middle float means, so the result is bitwise equal.
    """
    idx = np.flatnonzero(hair_flat)
    pixels = face.reshape(-1, 3).take(idx, axis=0)
    sums = pixels[:, 0].astype(np.uint16) + pixels[:, 1] + pixels[:, 2]  # <= 765: no overflow
    cumulative = np.cumsum(np.bincount(sums, minlength=_RGB_SUM_BINS))
    n = idx.size
    # value of the k-th smallest (0-based) = first bin whose cumulative count exceeds k
    hi = int(np.searchsorted(cumulative, n // 2, side="right"))
    if n % 2:
        return hi / 3.0
    lo = int(np.searchsorted(cumulative, n // 2 - 1, side="right"))
    return (lo / 3.0 + hi / 3.0) / 2.0


def _nose_pose(nose_rows: np.ndarray, parsing: np.ndarray) -> float:
    """-(Pearson r of nose column vs row), bitwise as numpy.corrcoef; NaN when r is undefined.

    r is undefined for fewer than 2 pixels or when all pixels share a row or a column (zero
    variance); numpy would warn and return NaN, we return NaN quietly and the caller flags it.
    """
    rows = np.flatnonzero(nose_rows)
    if rows.size < 2:  # no nose, or all of it in one row
        return math.nan
    r0, r1 = int(rows[0]), int(rows[-1])
    block = parsing[r0:r1 + 1] == _NOSE
    cols = np.flatnonzero(block.any(axis=0))
    c0, c1 = int(cols[0]), int(cols[-1])
    if c0 == c1:  # one column
        return math.nan
    ys, xs = np.nonzero(block[:, c0:c1 + 1])
    # Same operations as numpy.cov/corrcoef (mean-centre, X @ X^T, * 1/(n-1), divide by the
    # standard deviations one after the other, clip), so the value is identical, not just close.
    coords = np.empty((2, xs.size), dtype=np.float64)
    coords[0] = xs
    coords[0] += c0
    coords[1] = ys
    coords[1] += r0
    coords -= coords.mean(axis=1)[:, None]
    cov = coords @ coords.T.conj()
    cov *= 1.0 / (xs.size - 1)
    std = np.sqrt(np.diag(cov))
    r = float(cov[0, 1] / std[0] / std[1])
    r = min(1.0, max(-1.0, r))
    return -r + 0.0  # + 0.0 turns -0.0 into 0.0


def raw_scores_with_flags(parsing: np.ndarray, face: np.ndarray) -> tuple[dict[str, float], list[str]]:
    """Raw scores (keys = PROPERTY_NAMES, Python floats) and the flags of what was missing.

    parsing: (224, 224) integer label map (ids 0..10, segmentation.labels.FaceLabel);
    face: (224, 224, 3) uint8 RGB crop the map was computed on. Missing hair -> NaN hair_color and
    hair_length; an undefined nose correlation -> NaN face_pose; a missing eye, lip or inner mouth
    counts as height 0 (as the original did) and is only flagged.
    """
    parsing, face = _check_inputs(parsing, face)
    flags: list[str] = []

    left_rows = (parsing[_Y0:_Y1 + 1, _LX0:_LX1 + 1] == _LEFT_EYE).any(axis=1)
    right_rows = (parsing[_Y0:_Y1 + 1, _RX0:_RX1 + 1] == _RIGHT_EYE).any(axis=1)
    eyes = (_extent(left_rows) + _extent(right_rows)) / 2.0

    lips_rows = (parsing == _UPPER_LIP).any(axis=1) | (parsing == _LOWER_LIP).any(axis=1)
    inner_rows = (parsing == _INNER_MOUTH).any(axis=1)
    mouth = _extent(lips_rows) + _extent(inner_rows)

    hair = parsing == _HAIR
    hair_rows = hair.any(axis=1)
    if hair_rows.any():
        hair_color = _hair_color(face, hair.reshape(-1))
        last_row = int(np.flatnonzero(hair_rows)[-1])
        if last_row == BOTTOM_ROW:
            hair_length = BOTTOM_ROW + np.count_nonzero(hair[BOTTOM_ROW]) / 2.0
        else:
            hair_length = float(last_row)
    else:
        hair_color = hair_length = math.nan
        flags.append(FLAG_NO_HAIR)

    face_pose = _nose_pose((parsing == _NOSE).any(axis=1), parsing)
    if math.isnan(face_pose):
        flags.append(FLAG_POSE_UNDEFINED)
    if not left_rows.any():
        flags.append(FLAG_NO_LEFT_EYE)
    if not right_rows.any():
        flags.append(FLAG_NO_RIGHT_EYE)
    if not lips_rows.any():
        flags.append(FLAG_NO_LIPS)
    if not inner_rows.any():
        flags.append(FLAG_NO_INNER_MOUTH)

    values = (eyes, hair_color, hair_length, mouth, face_pose)  # PROPERTY_NAMES order
    scores = {name: float(value) for name, value in zip(PROPERTY_NAMES, values)}
    return scores, flags


def raw_scores(parsing: np.ndarray, face: np.ndarray) -> dict[str, float]:
    """The five raw scores as a dict {eyes, hair_color, hair_length, mouth, face_pose} of floats."""
    return raw_scores_with_flags(parsing, face)[0]


def score_flags(parsing: np.ndarray) -> list[str]:
    """Flags of a label map alone (the crop does not change what is missing)."""
    blank = np.zeros((MAP_SIZE, MAP_SIZE, 3), dtype=np.uint8)
    return raw_scores_with_flags(parsing, blank)[1]


def background_scores(parsing: np.ndarray, face: np.ndarray) -> dict[str, float]:
    """Optional extra scores from the original: mean and std (ddof=0) of the crop's intensity over
    background (id 0) pixels, intensity = (R+G+B)/3 per pixel. NaN when there is no background."""
    parsing, face = _check_inputs(parsing, face)
    idx = np.flatnonzero(parsing.reshape(-1) == _BACKGROUND)
    if idx.size == 0:
        return {"background_mean": math.nan, "background_std": math.nan}
    pixels = face.reshape(-1, 3).take(idx, axis=0)
    intensity = (pixels[:, 0].astype(np.float64) + pixels[:, 1] + pixels[:, 2]) / 3.0
    return {"background_mean": float(intensity.mean()), "background_std": float(intensity.std())}
