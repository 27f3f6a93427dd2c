"""The landmark judge on a filtered folder: normalised like step 6, resumable, with judge agreement."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from judge_support import require_dlib

from common.paths import PipelinePaths
from pipeline.landmark_scores import LANDMARK_COLUMNS, LandmarkScoresConfig, run_landmark_scores
from segmentation.normalize import PropertyNormalizer


@pytest.fixture()
def root(tmp_path, real_faces):
    require_dlib()
    paths = PipelinePaths(tmp_path)
    paths.filtered_dir.mkdir(parents=True)
    for face in real_faces[:8]:
        shutil.copy(face, paths.filtered_dir / face.name)
    (paths.filtered_dir / "broken.jpg").write_bytes(b"not a jpeg")
    paths.segmentation_dir.mkdir(parents=True)
    for i, face in enumerate(real_faces[:8]):
        (paths.segmentation_dir / f"heads_{face.stem}.json").write_text(
            json.dumps({"yaw": float(i), "pitch": 0, "roll": 0})
        )
    paths.property_scores_dir.mkdir(parents=True)
    pd.DataFrame(
        {
            "img_name": [f.name for f in real_faces[:8]],
            "eyes": np.linspace(0, 1, 8),
            "mouth": np.linspace(1, 0, 8),
            "face_pose": np.linspace(-1, 1, 8),
        }
    ).to_csv(paths.all_scores_csv, index=False)
    return paths


def test_measures_normalises_and_resumes(root, single_thread):
    config = LandmarkScoresConfig(root=root.root, chunk=4)
    summary = run_landmark_scores(config)
    assert (summary.measured, summary.no_face, summary.unreadable, summary.reused) == (8, 0, 1, 0)
    table = pd.read_csv(root.landmark_scores_csv)
    assert list(table.columns) == list(LANDMARK_COLUMNS)
    good = table[table["img_name"] != "broken.jpg"]
    assert good[["eyes", "mouth"]].min().min() == 0.0 and good[["eyes", "mouth"]].max().max() == 1.0
    assert good["face_pose"].between(-1, 1).all() and good["face_pose"].min() == -1.0
    assert table.set_index("img_name").loc["broken.jpg", "flags"] == "unreadable"
    assert good["facexformer_yaw"].tolist() == [float(i) for i in range(8)]
    normalizer = PropertyNormalizer.load(root.landmark_normalization_json)
    assert normalizer.properties == ("eyes", "mouth", "face_pose")
    again = normalizer.apply({p: good[f"raw_{p}"].to_numpy() for p in normalizer.properties})
    np.testing.assert_allclose(again["eyes"], good["eyes"])
    assert root.heads_normalization_json.is_file()

    agreement = pd.read_csv(root.judge_agreement_csv)
    pairs = set(zip(agreement["property"], agreement["judge_a"], agreement["judge_b"]))
    assert ("eyes", "segmentation", "landmarks") in pairs and (
        "face_pose",
        "landmarks",
        "mtcnn_points",
    ) in pairs
    assert ("face_pose", "segmentation", "facexformer_heads") in pairs
    assert (agreement["n"] == 8).all() and agreement["pearson_r"].between(-1, 1).all()
    assert "pose agreement with segmentation" in summary.line()

    before = root.landmark_scores_csv.read_bytes()
    second = run_landmark_scores(config)
    assert (second.reused, second.measured, second.unreadable) == (
        9,
        8,
        1,
    )  # nothing measured again; the table is identical
    assert root.landmark_scores_csv.read_bytes() == before


def test_an_out_folder_elsewhere_reads_step_6s_files_from_there(root, tmp_path, single_thread):
    """With --out away from <root>, the agreement uses that folder's all_scores.csv (it read <root>'s before)."""
    out = tmp_path / "elsewhere"
    out.mkdir()
    root.all_scores_csv.rename(out / root.all_scores_csv.name)
    PropertyNormalizer.fit({"eyes": [0.0, 1.0], "mouth": [0.0, 1.0], "face_pose": [-1.0, 1.0]}, method="zscore",
                           properties=("eyes", "mouth", "face_pose")).save(out / root.normalization_json.name)
    run_landmark_scores(LandmarkScoresConfig(root=root.root, out=out, limit=4, chunk=4))
    agreement = pd.read_csv(out / root.judge_agreement_csv.name)
    assert "segmentation" in set(agreement["judge_a"])
    assert PropertyNormalizer.load(out / root.landmark_normalization_json.name).method == "zscore"
