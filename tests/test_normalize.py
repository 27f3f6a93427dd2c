"""Normalisation of raw property scores (pipeline.md, step 6)."""
from __future__ import annotations

import json
import logging
import math

import numpy as np
import pandas as pd
import pytest

from common.paths import PROPERTY_NAMES
from segmentation.normalize import FORMAT_VERSION, PropertyNormalizer

NAN = math.nan


def raw_table() -> dict[str, list[float]]:
    return {
        "eyes": [2.0, 6.0, 4.0, 10.0, 2.0],
        "hair_color": [100.0, 250.0, 120.0, 180.0, 210.0],
        "hair_length": [150.0, NAN, 223.0, 260.5, 190.0],
        "mouth": [0.0, 4.0, 8.0, 12.0, 16.0],
        "face_pose": [-0.2, 0.6, 0.1, NAN, -0.1],
    }


def as_list(values) -> list[float]:
    return [float(v) for v in values]


def assert_same(got, want):
    got = np.asarray(got, dtype=float)
    want = np.asarray(want, dtype=float)
    assert np.array_equal(got, want, equal_nan=True), (got.tolist(), want.tolist())


def test_spec_example_hair_color_exact():
    norm = PropertyNormalizer.fit(raw_table())
    out = norm.apply(raw_table())
    assert as_list(out["hair_color"]) == [0.0, 1.0, 0.1333, 0.5333, 0.7333]


def test_minmax_ranges_and_nan_passthrough():
    out = PropertyNormalizer.fit(raw_table()).apply(raw_table())
    assert_same(out["eyes"], [0.0, 0.5, 0.25, 1.0, 0.0])
    assert_same(out["mouth"], [0.0, 0.25, 0.5, 0.75, 1.0])
    # hair_length ignores the NaN when fitting and keeps it: (x - 150) / 110.5
    assert_same(out["hair_length"], [0.0, NAN, round(73 / 110.5, 4), 1.0, round(40 / 110.5, 4)])
    # face_pose to [-1, 1]: 2 (x - min) / (max - min) - 1 with min -0.2, max 0.6
    assert_same(out["face_pose"], [-1.0, 1.0, -0.25, NAN, -0.75])


def test_pose_symmetric_keeps_zero_frontal():
    raw = raw_table()
    raw["face_pose"] = [-0.2, 0.5, 0.0, NAN, -0.1]
    norm = PropertyNormalizer.fit(raw, pose_scaling="symmetric")
    out = norm.apply(raw)
    assert_same(out["face_pose"], [-0.4, 1.0, 0.0, NAN, -0.2])
    assert as_list(out["hair_color"]) == [0.0, 1.0, 0.1333, 0.5333, 0.7333]  # others unchanged
    minmax = PropertyNormalizer.fit(raw).apply(raw)
    assert minmax["face_pose"][2] != 0.0  # min-max moves raw 0 off 0: why symmetric exists


def test_zscore_uses_sample_std_and_rounds():
    raw = raw_table()
    out = PropertyNormalizer.fit(raw, method="zscore").apply(raw)
    x = np.array(raw["hair_color"])
    assert_same(out["hair_color"], np.round((x - x.mean()) / x.std(ddof=1), 4))
    y = np.array(raw["hair_length"])
    valid = y[~np.isnan(y)]
    want = np.round((y - valid.mean()) / valid.std(ddof=1), 4)
    assert_same(out["hair_length"], want)
    assert math.isnan(out["hair_length"][1])


def test_constant_property_goes_to_middle_with_warning(caplog):
    raw = raw_table()
    raw["eyes"] = [3.0, 3.0, NAN, 3.0, 3.0]
    raw["face_pose"] = [0.2] * 5
    with caplog.at_level(logging.WARNING):
        norm = PropertyNormalizer.fit(raw)
    out = norm.apply(raw)
    assert_same(out["eyes"], [0.5, 0.5, NAN, 0.5, 0.5])
    assert_same(out["face_pose"], [0.0] * 5)
    assert "eyes is constant" in caplog.text and "face_pose is constant" in caplog.text
    z = PropertyNormalizer.fit(raw, method="zscore").apply(raw)
    assert_same(z["eyes"], [0.0, 0.0, NAN, 0.0, 0.0])


def test_all_nan_property_stays_nan_with_warning(caplog):
    raw = raw_table()
    raw["hair_color"] = [NAN] * 5
    with caplog.at_level(logging.WARNING):
        norm = PropertyNormalizer.fit(raw)
    assert "hair_color is NaN for every image" in caplog.text
    out = norm.apply(raw)
    assert np.isnan(out["hair_color"]).all()
    assert_same(out["eyes"], [0.0, 0.5, 0.25, 1.0, 0.0])
    # and it survives a JSON round trip (null statistics)
    again = PropertyNormalizer.from_json(norm.to_json())
    assert np.isnan(again.apply({**raw, "hair_color": [120.0]})["hair_color"]).all()


def test_dataframe_in_dataframe_out_same_index():
    frame = pd.DataFrame(raw_table(), index=[f"{i:06d}.jpg" for i in range(5)])
    frame["extra"] = 1
    out = PropertyNormalizer.fit(frame).apply(frame)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == list(PROPERTY_NAMES)
    assert list(out.index) == list(frame.index)
    assert out["hair_color"].tolist() == [0.0, 1.0, 0.1333, 0.5333, 0.7333]


def test_apply_to_new_images_does_not_clip_unless_asked():
    norm = PropertyNormalizer.fit(raw_table())
    one = {"eyes": 12.0, "hair_color": 90.0, "hair_length": 150.0, "mouth": 8.0, "face_pose": NAN}
    out = norm.apply(one)
    assert isinstance(out["eyes"], float)
    assert out["eyes"] == 1.25 and out["hair_color"] == round(-10 / 150, 4) and out["mouth"] == 0.5
    assert math.isnan(out["face_pose"])
    clipped = norm.apply(one, clip=True)
    assert clipped["eyes"] == 1.0 and clipped["hair_color"] == 0.0


def test_json_round_trip_and_contents(tmp_path):
    for method, pose in [("minmax", "minmax"), ("minmax", "symmetric"), ("zscore", "minmax")]:
        norm = PropertyNormalizer.fit(raw_table(), method=method, pose_scaling=pose)
        path = norm.save(tmp_path / "normalization.json")
        data = json.loads(path.read_text())
        assert data["format_version"] == FORMAT_VERSION
        assert data["method"] == method and data["pose_scaling"] == pose
        assert data["properties"] == list(PROPERTY_NAMES)
        loaded = PropertyNormalizer.load(path)
        assert loaded == norm
        for name in PROPERTY_NAMES:
            assert_same(loaded.apply(raw_table())[name], norm.apply(raw_table())[name])
    data = json.loads(PropertyNormalizer.fit(raw_table()).to_json())
    assert data["scales"]["hair_color"] == {"kind": "minmax", "count": 5, "min": 100.0, "max": 250.0,
                                            "target": [0.0, 1.0]}
    assert data["scales"]["face_pose"]["target"] == [-1.0, 1.0]


def test_bad_arguments_and_files(tmp_path):
    with pytest.raises(ValueError, match="method 'robust'"):
        PropertyNormalizer.fit(raw_table(), method="robust")
    with pytest.raises(ValueError, match="pose_scaling"):
        PropertyNormalizer.fit(raw_table(), pose_scaling="abs")
    with pytest.raises(KeyError, match="mouth"):
        PropertyNormalizer.fit({k: v for k, v in raw_table().items() if k != "mouth"})
    with pytest.raises(ValueError, match="infinity"):
        PropertyNormalizer.fit({**raw_table(), "eyes": [1.0, math.inf, 2.0, 3.0, 4.0]})
    with pytest.raises(ValueError, match="not been fitted"):
        PropertyNormalizer().apply(raw_table())
    with pytest.raises(FileNotFoundError, match="run step 6"):
        PropertyNormalizer.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        PropertyNormalizer.load(bad)
    data = PropertyNormalizer.fit(raw_table()).to_dict()
    data["format_version"] = 99
    with pytest.raises(ValueError, match="format_version 99"):
        PropertyNormalizer.from_dict(data)


def test_no_negative_zero():
    raw = {name: [-1.0, -0.0, 1.0, -0.00001] for name in PROPERTY_NAMES}
    out = PropertyNormalizer.fit(raw, pose_scaling="symmetric").apply(raw)
    assert out["face_pose"].tolist() == [-1.0, 0.0, 1.0, 0.0]
    assert all(math.copysign(1, v) > 0 for v in out["face_pose"][1:])  # "0.0", never "-0.0"
