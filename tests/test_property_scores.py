"""Property scores on hand-drawn label maps with known geometry (pipeline.md, step 6)."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from common.paths import PROPERTY_NAMES
from segmentation.labels import FaceLabel as L
from segmentation.property_scores import (
    EYE_ROWS,
    LEFT_EYE_COLS,
    RIGHT_EYE_COLS,
    SCORE_FLAGS,
    background_scores,
    raw_scores,
    raw_scores_with_flags,
    score_flags,
)

S = 224


def blank_map() -> np.ndarray:
    return np.zeros((S, S), dtype=np.uint8)


def gray_face(value: int = 0) -> np.ndarray:
    return np.full((S, S, 3), value, dtype=np.uint8)


def full_map() -> np.ndarray:
    """A map with every part present (so no NaN): hair rows 10..30, tilted nose, eyes, lips, mouth."""
    p = blank_map()
    p[10:31, 60:160] = L.HAIR
    p[100:111, 40:60] = L.LEFT_EYE      # rows 100..110 -> height 10
    p[100:105, 150:170] = L.RIGHT_EYE   # rows 100..104 -> height 4
    for i in range(10):                 # diagonal nose: x grows with y
        p[120 + i, 100 + i] = L.NOSE
    p[160:163, 90:130] = L.UPPER_LIP
    p[163:166, 95:125] = L.INNER_MOUTH
    p[166:170, 90:130] = L.LOWER_LIP
    return p


def reference_scores(parsing: np.ndarray, face: np.ndarray) -> dict[str, float]:
    """Direct transcription of the spec with np.nonzero / np.median / np.corrcoef (slow, obvious)."""
    def extent(mask):
        ys = np.nonzero(mask)[0]
        return float(ys.max() - ys.min()) if ys.size else 0.0

    y0, y1 = EYE_ROWS
    left = np.zeros_like(parsing, dtype=bool)
    left[y0:y1 + 1, LEFT_EYE_COLS[0]:LEFT_EYE_COLS[1] + 1] = True
    right = np.zeros_like(parsing, dtype=bool)
    right[y0:y1 + 1, RIGHT_EYE_COLS[0]:RIGHT_EYE_COLS[1] + 1] = True
    eyes = (extent((parsing == 4) & left) + extent((parsing == 5) & right)) / 2
    mouth = extent((parsing == 7) | (parsing == 9)) + extent(parsing == 8)
    hair = parsing == 10
    if hair.any():
        hair_color = float(np.median(face[hair].astype(np.float64).mean(axis=1)))
        m = np.nonzero(hair)[0].max()
        hair_length = 223 + hair[223].sum() / 2 if m == 223 else float(m)
    else:
        hair_color = hair_length = math.nan
    ys, xs = np.nonzero(parsing == 6)
    if xs.size < 2 or np.ptp(xs) == 0 or np.ptp(ys) == 0:
        pose = math.nan
    else:
        pose = -float(np.corrcoef(xs, ys)[0, 1])
    return {"eyes": eyes, "hair_color": hair_color, "hair_length": float(hair_length), "mouth": mouth,
            "face_pose": pose}


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


# --- keys and types ------------------------------------------------------------------------

def test_keys_are_exactly_the_properties_as_python_floats():
    scores = raw_scores(full_map(), gray_face(90))
    assert tuple(scores) == PROPERTY_NAMES
    assert all(type(v) is float for v in scores.values())


def test_full_map_values_and_no_flags():
    scores, flags = raw_scores_with_flags(full_map(), gray_face(90))
    pose = scores.pop("face_pose")
    assert scores == {"eyes": 7.0, "hair_color": 90.0, "hair_length": 30.0, "mouth": 9.0 + 2.0}
    assert pose == pytest.approx(-1.0, abs=1e-12)  # a perfect diagonal: r = 1 up to rounding
    assert flags == []


# --- eyes ----------------------------------------------------------------------------------

def test_eye_heights_are_row_extents_averaged():
    p = blank_map()
    p[70:81, 20:30] = L.LEFT_EYE    # 70..80 -> 10
    p[90:97, 200:210] = L.RIGHT_EYE  # 90..96 -> 6
    assert raw_scores(p, gray_face())["eyes"] == 8.0


def test_single_row_eye_has_height_zero():
    p = blank_map()
    p[100, 20:40] = L.LEFT_EYE
    p[100:105, 200] = L.RIGHT_EYE  # one column, 5 rows -> 4
    assert raw_scores(p, gray_face())["eyes"] == 2.0


def test_eye_pixels_outside_their_window_are_ignored():
    p = blank_map()
    p[60:66, 10:20] = L.LEFT_EYE     # inside: 60..65 -> 5
    p[20:30, 10:20] = L.LEFT_EYE     # above row 56: ignored
    p[150:160, 10:20] = L.LEFT_EYE   # below row 139: ignored
    p[60:100, 170:180] = L.LEFT_EYE  # right of column 167: ignored
    p[80:83, 60:70] = L.RIGHT_EYE    # inside (overlap zone): 80..82 -> 2
    p[40:120, 10:50] = np.where(p[40:120, 10:50] == 0, L.RIGHT_EYE, p[40:120, 10:50])  # left of col 56
    scores, flags = raw_scores_with_flags(p, gray_face())
    assert scores["eyes"] == (5 + 2) / 2
    assert "no_left_eye" not in flags and "no_right_eye" not in flags


def test_window_edges_are_inclusive():
    p = blank_map()
    p[56, 0] = L.LEFT_EYE
    p[139, 167] = L.LEFT_EYE
    p[56, 56] = L.RIGHT_EYE
    p[139, 223] = L.RIGHT_EYE
    assert raw_scores(p, gray_face())["eyes"] == (83 + 83) / 2
    p[55, 0] = p[140, 167] = L.LEFT_EYE  # just outside: no change
    p[55, 56] = p[139, 55] = L.RIGHT_EYE
    assert raw_scores(p, gray_face())["eyes"] == 83.0


def test_missing_eye_counts_zero_and_is_still_divided_by_two():
    p = blank_map()
    p[70:81, 20:30] = L.LEFT_EYE  # height 10, no right eye
    scores, flags = raw_scores_with_flags(p, gray_face())
    assert scores["eyes"] == 5.0
    assert "no_right_eye" in flags and "no_left_eye" not in flags
    scores, flags = raw_scores_with_flags(blank_map(), gray_face())
    assert scores["eyes"] == 0.0
    assert {"no_left_eye", "no_right_eye"} <= set(flags)


def test_right_eye_only_outside_window_is_missing():
    p = blank_map()
    p[70:81, 20:30] = L.RIGHT_EYE  # cols 20..29 < 56: outside the right window
    scores, flags = raw_scores_with_flags(p, gray_face())
    assert scores["eyes"] == 0.0
    assert "no_right_eye" in flags


# --- hair ----------------------------------------------------------------------------------

def test_hair_color_is_median_of_channel_means_even_count():
    p = blank_map()
    face = gray_face()
    pixels = [(0, 0, 0), (30, 30, 30), (10, 20, 60), (255, 255, 255)]  # means 0, 30, 30, 255
    for i, rgb in enumerate(pixels):
        p[5, 10 + i] = L.HAIR
        face[5, 10 + i] = rgb
    face[6, 10] = (255, 0, 0)  # not hair: ignored
    assert raw_scores(p, face)["hair_color"] == 30.0
    face[5, 11] = (31, 30, 30)  # means 0, 30.333.., 30, 255 -> median (30 + 30.333..)/2
    expected = (30.0 + 91 / 3) / 2
    assert raw_scores(p, face)["hair_color"] == expected


def test_hair_color_odd_count_and_numpy_median_equality():
    rng = np.random.default_rng(3)
    for n in (1, 2, 3, 7, 50, 51, 1000, 1001):
        p = blank_map()
        flat = rng.choice(S * S, size=n, replace=False)
        p.reshape(-1)[flat] = L.HAIR
        face = rng.integers(0, 256, size=(S, S, 3), dtype=np.uint8)
        expected = float(np.median(face[p == L.HAIR].astype(np.float64).mean(axis=1)))
        assert raw_scores(p, face)["hair_color"] == expected, n


def test_hair_color_reads_the_aligned_crop_channels_in_any_order():
    p = blank_map()
    p[0:3, 0:3] = L.HAIR
    face = gray_face()
    face[0:3, 0:3] = (200, 100, 0)
    assert raw_scores(p, face)["hair_color"] == 100.0
    assert raw_scores(p, face[..., ::-1].copy())["hair_color"] == 100.0


def test_hair_length_not_reaching_bottom_is_last_row():
    p = blank_map()
    p[0:151, 50:60] = L.HAIR
    assert raw_scores(p, gray_face())["hair_length"] == 150.0
    p[222, 0:30] = L.HAIR  # row 222 is not the bottom row: no extrapolation
    assert raw_scores(p, gray_face())["hair_length"] == 222.0


def test_hair_reaching_bottom_row_adds_half_its_count():
    p = blank_map()
    p[0:224, 0:20] = L.HAIR     # 20 pixels in row 223
    p[200:224, 190:217] = L.HAIR  # 27 more, across the column-112 split
    p[223, 100:125] = L.HAIR    # 25 more spanning columns 111|112
    assert raw_scores(p, gray_face())["hair_length"] == 223 + (20 + 27 + 25) / 2


def test_no_hair_gives_nan_and_flag():
    scores, flags = raw_scores_with_flags(blank_map(), gray_face())
    assert math.isnan(scores["hair_color"]) and math.isnan(scores["hair_length"])
    assert "no_hair" in flags


# --- mouth ---------------------------------------------------------------------------------

def test_mouth_is_lips_extent_plus_inner_extent():
    p = blank_map()
    p[150:153, 90:130] = L.UPPER_LIP   # 150..152
    p[153:159, 95:125] = L.INNER_MOUTH  # 153..158 -> 5
    p[159:165, 90:130] = L.LOWER_LIP   # ..164 -> lips 150..164 = 14
    assert raw_scores(p, gray_face())["mouth"] == 19.0


def test_mouth_closed_and_single_lip_and_anywhere_in_map():
    p = blank_map()
    p[150:153, 90:130] = L.UPPER_LIP
    scores, flags = raw_scores_with_flags(p, gray_face())
    assert scores["mouth"] == 2.0
    assert "no_inner_mouth" in flags and "no_lips" not in flags
    p[5, 5] = L.LOWER_LIP  # lips count anywhere in the map: 5..152
    assert raw_scores(p, gray_face())["mouth"] == 147.0


def test_missing_mouth_is_zero_not_nan():
    scores, flags = raw_scores_with_flags(blank_map(), gray_face())
    assert scores["mouth"] == 0.0 and scores["eyes"] == 0.0
    assert {"no_lips", "no_inner_mouth"} <= set(flags)


# --- face pose -----------------------------------------------------------------------------

def _nose_line(slope: float) -> np.ndarray:
    p = blank_map()
    for i in range(20):
        p[110 + i, int(round(112 + slope * i))] = L.NOSE
    return p


def test_nose_tilt_sign_both_directions():
    down_right = raw_scores(_nose_line(0.5), gray_face())["face_pose"]   # x grows with y: r > 0
    down_left = raw_scores(_nose_line(-0.5), gray_face())["face_pose"]   # r < 0
    assert down_right < -0.9 and down_left > 0.9
    assert raw_scores(_nose_line(1.0), gray_face())["face_pose"] == pytest.approx(-1.0, abs=1e-12)
    assert raw_scores(_nose_line(-1.0), gray_face())["face_pose"] == pytest.approx(1.0, abs=1e-12)


def test_upright_symmetric_nose_is_frontal_zero():
    p = blank_map()
    p[110:130, 105:120] = L.NOSE  # a rectangle: x and y uncorrelated
    assert raw_scores(p, gray_face())["face_pose"] == 0.0


def test_face_pose_equals_numpy_corrcoef_on_blobs():
    rng = np.random.default_rng(7)
    for _ in range(30):
        p = blank_map()
        yy, xx = np.mgrid[0:S, 0:S]
        cy, cx = rng.uniform(60, 160, 2)
        a, b, t = rng.uniform(3, 25), rng.uniform(2, 12), rng.uniform(0, np.pi)
        u = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)
        v = -(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
        p[(u / a) ** 2 + (v / b) ** 2 <= 1] = L.NOSE
        p.reshape(-1)[rng.choice(S * S, 20)] = L.NOSE  # stray pixels anywhere count too
        ys, xs = np.nonzero(p == L.NOSE)
        assert raw_scores(p, gray_face())["face_pose"] == -np.corrcoef(xs, ys)[0, 1]


@pytest.mark.parametrize("case", ["none", "one_pixel", "one_row", "one_column"])
def test_undefined_nose_correlation_is_nan_and_flagged(case):
    p = blank_map()
    if case == "one_pixel":
        p[120, 112] = L.NOSE
    elif case == "one_row":
        p[120, 100:120] = L.NOSE
    elif case == "one_column":
        p[110:130, 112] = L.NOSE
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy RuntimeWarning either
        scores, flags = raw_scores_with_flags(p, gray_face())
    assert math.isnan(scores["face_pose"])
    assert "pose_undefined" in flags


def test_two_nose_pixels_on_a_diagonal_are_defined():
    p = blank_map()
    p[120, 112] = p[121, 111] = L.NOSE
    pose = raw_scores(p, gray_face())["face_pose"]
    assert pose == -np.corrcoef([112, 111], [120, 121])[0, 1]
    assert pose == pytest.approx(1.0, abs=1e-12)


# --- against the reference transcription on realistic maps -----------------------------------

def _random_face(rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:S, 0:S]
    p = rng.choice([0, 1], size=(S, S), p=[0.7, 0.3]).astype(np.uint8)
    parts = [L.HAIR, L.LEFT_EYE, L.RIGHT_EYE, L.NOSE, L.UPPER_LIP, L.INNER_MOUTH, L.LOWER_LIP, L.LEFT_BROW]
    for label in parts:
        if rng.random() < 0.15:
            continue  # part missing
        cy, cx = rng.uniform(0, S, 2)
        ry, rx = rng.uniform(1, 60, 2)
        p[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = label
    return p


def test_matches_reference_transcription_on_random_maps():
    rng = np.random.default_rng(11)
    for _ in range(60):
        p = _random_face(rng)
        face = rng.integers(0, 256, size=(S, S, 3), dtype=np.uint8)
        got = raw_scores(p, face)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = reference_scores(p, face)
        assert all(same(got[k], want[k]) for k in PROPERTY_NAMES), (got, want)


def test_integer_dtypes_accepted_and_give_same_scores():
    p = full_map()
    face = gray_face(40)
    base = raw_scores(p, face)
    for dtype in (np.int32, np.int64, np.uint16):
        assert raw_scores(p.astype(dtype), face) == base


# --- errors and flags ------------------------------------------------------------------------

@pytest.mark.parametrize(
    "parsing, face, message",
    [
        (np.zeros((224, 223), np.uint8), np.zeros((224, 224, 3), np.uint8), "expected shape (224, 224)"),
        (np.zeros((1, 224, 224), np.uint8), np.zeros((224, 224, 3), np.uint8), "got (1, 224, 224)"),
        (np.zeros((224, 224), np.float32), np.zeros((224, 224, 3), np.uint8), "integer label map"),
        (np.zeros((224, 224), np.uint8), np.zeros((224, 224), np.uint8), "expected shape (224, 224, 3)"),
        (np.zeros((224, 224), np.uint8), np.zeros((224, 224, 3), np.float64), "expected dtype uint8"),
        (np.full((224, 224), 11, np.uint8), np.zeros((224, 224, 3), np.uint8), "labels 0..10"),
        (np.full((224, 224), -1, np.int64), np.zeros((224, 224, 3), np.uint8), "labels 0..10"),
    ],
)
def test_bad_inputs_raise_value_error_with_expected_and_actual(parsing, face, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        raw_scores(parsing, face)


def test_score_flags_names_and_order():
    assert score_flags(full_map()) == []
    assert score_flags(blank_map()) == list(SCORE_FLAGS)
    p = full_map()
    p[p == L.HAIR] = 0
    p[p == L.INNER_MOUTH] = 0
    assert score_flags(p) == ["no_hair", "no_inner_mouth"]


def test_background_scores():
    p = full_map()
    face = gray_face(10)
    face[0, 0] = (40, 40, 40)  # background
    scores = background_scores(p, face)
    intensity = face[p == 0].astype(np.float64).mean(axis=1)
    assert scores == {"background_mean": float(intensity.mean()), "background_std": float(intensity.std())}
    assert all(math.isnan(v) for v in background_scores(np.full((S, S), 1, np.uint8), face).values())
