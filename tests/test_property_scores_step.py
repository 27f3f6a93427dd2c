"""Step 6 end to end on a tmp folder of synthetic maps and crops written as PNGs."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from segment_world import draw

from common.cli import parse_step_config
from common.paths import PROPERTY_NAMES, PipelinePaths
from pipeline.property_scores_step import PropertyScoresSummary, run_property_scores
from pipeline.runner import load_script
from segmentation.normalize import PropertyNormalizer
from segmentation.property_scores import raw_scores
from segmentation.scores_table import find_score_inputs, select_extremes
from segmentation.tables import SCORES_COLUMNS

EXPECTED_COLUMNS = ["img_name", "eyes", "hair_color", "hair_length", "mouth", "face_pose", "raw_eyes",
                    "raw_hair_color", "raw_hair_length", "raw_mouth", "raw_face_pose", "flags"]


@pytest.fixture()
def seg_dir(tmp_path):
    seg = tmp_path / "seg"
    seg.mkdir()
    rows = []
    for i in range(5):
        stem = f"{i:06d}"
        p, face = draw(i)
        Image.fromarray(p).save(seg / f"parsing_{stem}.png")
        Image.fromarray(face).save(seg / f"face_{stem}.png")
        Image.fromarray(face).save(seg / f"parsing_visualization_{stem}.png")
        rows.append({"img_name": f"{stem}.png", "face_found": 1, "x0": 0, "y0": 0, "x1": 256, "y1": 256,
                     "prob": 0.99, "crop": "mtcnn"})
    (seg / "parsing_000005.png").write_bytes(b"not a png at all")  # corrupt map
    Image.fromarray(draw(1)[1]).save(seg / "face_000005.png")
    rows.append({"img_name": "000005.png", "face_found": 1, "x0": 0, "y0": 0, "x1": 256, "y1": 256,
                 "prob": 0.99, "crop": "mtcnn"})
    rows.append({"img_name": "000006.png", "face_found": 0, "x0": "", "y0": "", "x1": "", "y1": "",
                 "prob": "", "crop": "mtcnn"})
    pd.DataFrame(rows).to_csv(seg / "crops.csv", index=False)
    return seg


def run(seg, out, *extra) -> PropertyScoresSummary:
    """Step 6 as the runner calls it: the config the script's flags give, then the package function."""
    script = load_script("6")
    argv = ["--segmentation-dir", str(seg), "--out", str(out), "--images", str(seg.parent / "no_images"), "-q",
            *extra]
    config, _ = parse_step_config(script.build_parser(), script.config_from_args, argv)
    return run_property_scores(config)


def test_scores_csv_json_pictures(seg_dir, tmp_path):
    out = tmp_path / "scores"
    summary = run(seg_dir, out)
    assert summary.scored == 6 and summary.flag_counts["unreadable"] == 1 and summary.no_face == 1
    assert (summary.method, summary.pose_scaling, summary.out_dir) == ("minmax", "minmax", out)
    assert summary.pictures == len(PROPERTY_NAMES) + 1  # a contact sheet per property, the histograms
    assert {p.name for p in summary.written} == {p.name for p in out.iterdir()} - {"recipe.json"}  # + its recipe
    assert summary.landmarks is None and "no image folder" in summary.landmark_note or "not installed" in \
        summary.landmark_note

    table = pd.read_csv(out / "all_scores.csv")
    table["flags"] = table["flags"].fillna("")
    assert list(table.columns) == [*EXPECTED_COLUMNS, "input_fingerprint"] and EXPECTED_COLUMNS == list(SCORES_COLUMNS)
    assert table["img_name"].tolist() == [f"{i:06d}.png" for i in range(6)]

    raws = [raw_scores(*draw(i)) for i in range(5)]
    for name in PROPERTY_NAMES:
        assert table[f"raw_{name}"].tolist()[:5] == [r[name] for r in raws], name
    expected = PropertyNormalizer.fit({n: [r[n] for r in raws] for n in PROPERTY_NAMES}).apply(
        {n: [r[n] for r in raws] for n in PROPERTY_NAMES})
    for name in PROPERTY_NAMES:
        assert table[name].tolist()[:5] == expected[name].tolist(), name
    assert table["eyes"].tolist()[:5] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert table["face_pose"].min() == -1.0 and table["face_pose"].max() == 1.0

    corrupt = table.iloc[5]
    assert corrupt["flags"] == "unreadable"
    assert all(math.isnan(corrupt[c]) for c in EXPECTED_COLUMNS[1:-1])
    assert table["flags"].iloc[0] == "no_inner_mouth"  # i = 0 draws a closed mouth
    assert (table["flags"].iloc[1:5] == "").all()

    norm = json.loads((out / "normalization.json").read_text())
    assert norm["method"] == "minmax" and norm["pose_scaling"] == "minmax"
    assert norm["scales"]["eyes"]["min"] == 3.0 and norm["scales"]["eyes"]["max"] == 7.0  # (2 + 2i + 4) / 2
    assert PropertyNormalizer.load(out / "normalization.json").apply(raws[2]) == {
        n: expected[n][2] for n in PROPERTY_NAMES}

    for name in PROPERTY_NAMES:
        sheet = Image.open(out / f"contact_{name}.png")
        assert sheet.width > 224 and sheet.height > 100
    assert Image.open(out / "histograms.png").size[0] > 300


def test_rerun_is_idempotent_and_options(seg_dir, tmp_path):
    out = tmp_path / "scores"
    run(seg_dir, out)
    first = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    run(seg_dir, out)
    second = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    assert first == second
    assert not [n for n in second if n.startswith(".tmp")]

    summary = run(seg_dir, out, "--method", "zscore", "--pose-scaling", "symmetric", "--no-pictures",
                  "--background-scores", "--limit", "3", "--landmark-judge", "off")
    assert summary.scored == 3 and summary.pictures == 0 and summary.landmark_note == ""
    table = pd.read_csv(out / "all_scores.csv")
    assert list(table.columns) == EXPECTED_COLUMNS + ["background_mean", "background_std", "input_fingerprint"]
    assert len(table) == 3
    assert table["eyes"].tolist() == [-1.0, 0.0, 1.0]  # raw 3, 4, 5: z-scores with ddof=1
    pose = table["raw_face_pose"].to_numpy()
    assert np.allclose(table["face_pose"], np.round(pose / np.abs(pose).max(), 4))
    assert json.loads((out / "normalization.json").read_text())["method"] == "zscore"


def test_img_name_fallbacks(tmp_path):
    seg = tmp_path / "seg"
    images = tmp_path / "filtered"
    seg.mkdir()
    images.mkdir()
    for stem in ("a", "b"):
        p, face = draw(1)
        Image.fromarray(p).save(seg / f"parsing_{stem}.png")
        Image.fromarray(face).save(seg / f"face_{stem}.png")
    Image.fromarray(draw(1)[1]).save(seg / "face_c.png")  # crop without a map
    Image.fromarray(draw(1)[1]).save(images / "a.jpeg")
    items, no_face = find_score_inputs(seg, images)
    assert [(it.stem, it.img_name) for it in items] == [("a", "a.jpeg"), ("b", "b.jpg"), ("c", "c.jpg")]
    assert no_face == 0
    out = tmp_path / "out"
    assert load_script("6").main(["--segmentation-dir", str(seg), "--out", str(out), "--images", str(images), "-q",
                                 "--landmark-judge", "off"]) == 0
    table = pd.read_csv(out / "all_scores.csv", keep_default_na=False)
    assert table["flags"].tolist()[2] == "missing_map"


def test_default_paths_follow_root(tmp_path, seg_dir):
    paths = PipelinePaths(tmp_path / "root")
    paths.segmentation_dir.parent.mkdir(parents=True)
    seg_dir.rename(paths.segmentation_dir)
    assert load_script("6").main(["--root", str(paths.root), "-q", "--no-pictures", "--landmark-judge", "off"]) == 0
    assert paths.all_scores_csv.is_file() and paths.normalization_json.is_file()


def test_missing_input_and_help(tmp_path, capsys):
    assert load_script("6").main(["--segmentation-dir", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "run step 5 first" in err and "--segmentation-dir" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as exc:
        load_script("6").main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "--segmentation-dir" in text and "--images" in text
    for gone in ("--input", "--seed", "--overwrite"):  # renamed (issue 10) / accepted and ignored before
        assert gone not in text


def test_select_extremes():
    values = [5.0, math.nan, 1.0, 3.0, 2.0, 4.0, 0.0, 6.0, 7.0]
    groups = select_extremes(values, 2)
    assert groups == {"lowest": [6, 2], "middle": [3, 5], "highest": [7, 8]}
    assert select_extremes([2.0, math.nan, 1.0], 2) == {"all": [2, 0]}
    assert select_extremes([math.nan], 2) == {}
