"""Step 9's judge panel on real faces: the other judges see the same images; identity per latent."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from judge_support import require_dlib

from common.images import load_rgb
from common.paths import PROPERTY_NAMES, PipelinePaths
from pipeline.judging import (
    LANDMARKS,
    JudgePanel,
    agreement_table,
    drop_unmeasured,
    identity_table,
    judge_samples,
)
from segmentation.normalize import PropertyNormalizer
from stylegan.comparison import comparison_table
from stylegan.control_measures import BrightnessScorer, sweep_design


@pytest.fixture()
def paths(tmp_path):
    require_dlib()
    paths = PipelinePaths(tmp_path)
    raw = {"eyes": [0.15, 0.45], "mouth": [0.0, 0.4], "face_pose": [-30.0, 30.0]}
    paths.property_scores_dir.mkdir(parents=True)
    PropertyNormalizer.fit(raw, properties=("eyes", "mouth", "face_pose")).save(
        paths.landmark_normalization_json
    )
    return paths


def _run(panel, images_for_row, design):
    extreme = design["value_index"].isin([0, 1]).to_numpy()
    call, record = panel.wrap(BrightnessScorer(), extreme)
    measured = np.concatenate([call(images_for_row[i : i + 8]) for i in range(0, len(design), 8)])
    samples = design.copy()
    samples.insert(0, "judge", call.judge)
    for j, p in enumerate(PROPERTY_NAMES):
        samples[f"measured_{p}"] = measured[:, j]
    samples["valid"] = np.isfinite(measured).all(axis=1)
    return samples, record


def test_panel_records_landmarks_identity_and_extremes(paths, real_faces, single_thread):
    faces = [load_rgb(p) for p in real_faces[:3]]
    ranges = {p: ((-1.0, 1.0) if p == "face_pose" else (0.0, 1.0)) for p in PROPERTY_NAMES}
    design = sweep_design(ranges, np.full((2, 5), np.nan), 2)  # 2 latents x 2 values x 5 properties
    z = design["z_index"].to_numpy()
    base_images = np.stack([faces[k] for k in z])  # latent k: face k
    edited = np.stack(
        [faces[0][:, ::-1] if k == 0 else faces[2] for k in z]
    )  # same person (mirror) / another
    panel = JudgePanel(paths, "cpu")
    assert LANDMARKS in panel.normalizers and "landmarks, identity" not in panel.missing
    base_samples, base_record = _run(panel, base_images, design)
    edit_samples, edit_record = _run(panel, np.ascontiguousarray(edited), design)
    assert len(edit_record.extremes) == len(design)  # 2 values: every image is a sweep end

    identity = identity_table(
        {"baseline": base_samples, "edit": edit_samples},
        {"baseline": base_record, "edit": edit_record},
        "baseline",
    ).set_index(["method", "property"])
    assert (identity.xs("baseline")["identity_distance"] == 0).all()
    per_row = identity.xs("edit")
    assert (per_row["pairs"] == 4).all()
    # half the pairs are a mirrored same face (< 0.6), half another face: the share above 0.6 is at most 1/2
    assert (per_row["identity_changed_share"] <= 0.5).all() and (per_row["identity_distance"] > 0.1).all()

    frames = judge_samples(edit_samples, edit_record)
    assert [f["judge"].iloc[0] for f in frames] == [LANDMARKS]
    landmarks = frames[0]
    assert np.isfinite(landmarks[["measured_eyes", "measured_mouth", "measured_face_pose"]].to_numpy()).all()
    assert landmarks["measured_hair_color"].isna().all()
    table = drop_unmeasured(comparison_table({"edit": pd.concat([edit_samples, *frames])}))
    assert set(table[table["judge"] == LANDMARKS]["property"]) == {"eyes", "mouth", "face_pose"}
    agreement = agreement_table({"edit": pd.concat([edit_samples, *frames])})
    assert set(agreement["property"]) == {"eyes", "mouth", "face_pose"} and (agreement["n"] == 20).all()
