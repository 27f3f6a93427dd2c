"""gender_cnn.filter: hand-label precedence, inclusive thresholds, the kept folder and re-runs.

The CNN is replaced by a stand-in that returns fixed scores per image name, so the tests check
the filter's own decisions (the CNN itself is tested in test_cnn_train / test_cnn_scripts).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import gender_cnn.predict as predict_module
from common.checkpoints import CheckpointError
from gender_cnn.filter import (
    FilterConfig,
    FilterInputError,
    combine_scores,
    keep_mask,
    run_filter,
    sync_kept_images,
)
from gender_cnn.predict import PredictionResult
from gender_cnn.schema import QUALITY_GENDER_COLUMNS
from pipeline.runner import load_script_file

# name -> (gender, quality) as the stand-in CNN scores them
CNN_SCORES = {
    "a.png": (0.05, 0.05),  # hand-labelled woman/good: kept although the CNN disagrees
    "b.png": (0.99, 0.99),  # hand-labelled man: dropped although the CNN says woman
    "c.png": (0.7, 0.9),  # exactly at both thresholds: kept (>=)
    "d.png": (0.699999, 0.95),  # just below the gender threshold: dropped
    "e.png": (0.95, 0.899999),  # just below the quality threshold: dropped
    "f.png": (0.2, 0.95),  # hand gender woman, quality unsure -> CNN quality 0.95: kept, source cnn
    "g.png": (0.8, 0.95),
}
HAND = "img_name,gender,quality,labeller\na.png,1,1,hand\nb.png,0,1,hand\nf.png,1,,hand\n"


def _fake_predict(calls):
    def predict_images(paths, ensembles, device="cpu", batch_size=64, workers=2, on_items=None):
        names = [Path(p).name for p in paths]
        calls.append(names)
        ok = [n for n in names if n in CNN_SCORES]
        failed = {n: "cannot read image" for n in names if n not in CNN_SCORES}
        scores = {t: np.array([CNN_SCORES[n][("gender", "quality").index(t)] for n in ok]) for t in ensembles}
        if on_items:
            on_items(len(names))
        return PredictionResult(names=ok, scores=scores, failed=failed)

    return predict_images


@pytest.fixture
def setup(tmp_path, monkeypatch):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    from PIL import Image

    for name in CNN_SCORES:
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(images / name)
    (images / "corrupt.png").write_bytes(b"not an image")
    (tmp_path / "labels.csv").write_text(HAND)
    calls: list[list[str]] = []
    monkeypatch.setattr(predict_module, "load_ensemble", lambda d, t, device="cpu": f"ensemble-{t}")
    monkeypatch.setattr(predict_module, "predict_images", _fake_predict(calls))
    return tmp_path, calls


def _config(tmp_path, **kwargs) -> FilterConfig:
    return FilterConfig(**{"images": tmp_path / "images", "labels": tmp_path / "labels.csv",
                           "models": tmp_path / "models", "scores_csv": tmp_path / "scores.csv",
                           "filtered_dir": tmp_path / "kept", "logs_dir": tmp_path / "logs", "device": "cpu",
                           "sheet_images": 8, **kwargs})


def _run(tmp_path, **kwargs):
    return run_filter(_config(tmp_path, **kwargs))


def test_hand_labels_win_and_thresholds_are_inclusive(setup):
    tmp_path, calls = setup
    summary = _run(tmp_path)
    frame = pd.read_csv(tmp_path / "scores.csv")
    assert list(frame.columns) == [*QUALITY_GENDER_COLUMNS, "input_fingerprint"]  # + each image's identity
    rows = frame.set_index("img_name")[list(QUALITY_GENDER_COLUMNS[1:])]
    assert rows.loc["a.png"].tolist() == [1.0, 1.0, "hand"]
    assert rows.loc["b.png"].tolist() == [0.0, 1.0, "hand"]
    assert rows.loc["f.png"].tolist() == [1.0, 0.95, "cnn"]
    assert rows.loc["c.png"].tolist() == [0.7, 0.9, "cnn"]
    assert "corrupt.png" not in rows.index  # unreadable: reported, no row
    assert summary.failed == {"corrupt.png": "cannot read image"}
    # images with both hand labels are never sent to the CNN
    assert calls == [["c.png", "corrupt.png", "d.png", "e.png", "f.png", "g.png"]]
    assert sorted(os.listdir(tmp_path / "kept")) == ["a.png", "c.png", "f.png", "g.png"]
    assert summary.counts == {"hand": (1, 2), "cnn": (3, 5)}
    assert "hand 1/2" in summary.line() and "cnn 3/5" in summary.line()
    assert (tmp_path / "logs" / "kept_sheet.jpg").is_file()
    assert (tmp_path / "logs" / "near_threshold_rejected.jpg").is_file()
    # kept files are the same bytes as the sources
    assert (tmp_path / "kept" / "c.png").read_bytes() == (tmp_path / "images" / "c.png").read_bytes()


def test_rerun_is_idempotent_and_new_thresholds_remove_stale_files(setup):
    tmp_path, _ = setup
    _run(tmp_path)
    first_csv = (tmp_path / "scores.csv").read_bytes()
    again = _run(tmp_path)
    assert (tmp_path / "scores.csv").read_bytes() == first_csv
    assert again.sync.added == 0 and again.sync.removed == 0 and again.sync.unchanged == 4
    stricter = _run(tmp_path, gender_threshold=0.75, quality_threshold=0.9)
    assert sorted(os.listdir(tmp_path / "kept")) == ["a.png", "f.png", "g.png"]
    assert stricter.sync.removed == 1
    looser = _run(tmp_path, gender_threshold=0.0, quality_threshold=0.0, link=False)
    assert sorted(os.listdir(tmp_path / "kept")) == sorted(n for n in CNN_SCORES)
    assert looser.sync.added == 4  # the four newly kept; b.png (hand man) passes a 0.0 threshold too


def test_no_models_says_run_step_3_first(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image

    Image.new("RGB", (16, 16)).save(images / "x.png")
    with pytest.raises(CheckpointError, match="run step 3 first"):
        run_filter(FilterConfig(root=tmp_path, images=images, device="cpu"))
    with pytest.raises(FilterInputError, match="--labels .*none.csv: no such file"):  # given, so it must exist
        run_filter(FilterConfig(root=tmp_path, images=images, labels=tmp_path / "none.csv", device="cpu"))


def test_combine_scores_without_hand_labels_and_missing_cnn_scores():
    cnn = {"gender": {"x": 0.3, "y": 0.8}, "quality": {"x": 0.91, "y": 0.123456789}}
    frame = combine_scores(["x", "y", "z"], None, cnn)
    assert frame["img_name"].tolist() == ["x", "y"]  # z has no CNN score: no row
    assert frame["quality_score"].tolist() == [0.91, 0.123457]
    assert set(frame["source"]) == {"cnn"}
    assert keep_mask(frame, 0.3, 0.9).tolist() == [True, False]


def test_sync_kept_images_links_and_replaces_changed_files(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    for name in ("1.jpg", "2.jpg"):
        (src / name).write_bytes(name.encode())
    dst.mkdir()
    (dst / "2.jpg").write_bytes(b"old version")
    (dst / "9.jpg").write_bytes(b"stale")
    (dst / "notes.txt").write_text("not an image: left alone")
    result = sync_kept_images(src, dst, ["1.jpg", "2.jpg"], link=True)
    assert (result.added, result.unchanged, result.removed) == (2, 0, 1)
    assert sorted(os.listdir(dst)) == ["1.jpg", "2.jpg", "notes.txt"]
    assert (dst / "2.jpg").read_bytes() == b"2.jpg"
    assert os.path.samefile(src / "1.jpg", dst / "1.jpg")
    assert sync_kept_images(src, dst, ["1.jpg", "2.jpg"]).unchanged == 2



def test_progress_counts_every_image_and_the_summary_names_the_outputs(setup):
    tmp_path, _ = setup
    calls = []
    summary = run_filter(_config(tmp_path), progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (8, 8) and [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert summary.csv_path == tmp_path / "scores.csv" and summary.filtered_dir == tmp_path / "kept"
    assert summary.kept == 4 and summary.total == 7 and summary.device == "cpu"


def test_config_from_flags_and_validation(tmp_path):
    script = load_script_file("04_filter_images.py")
    parser = script.build_parser()
    assert script.config_from_args(parser.parse_args([])) == FilterConfig()
    config = script.config_from_args(parser.parse_args(
        ["--root", str(tmp_path), "--quality-gender-csv", "s.csv", "--limit", "5", "--copy", "--gender-threshold",
         "0.5"]))
    assert config == FilterConfig(root=tmp_path, scores_csv=Path("s.csv"), limit=5, link=False, gender_threshold=0.5)
    assert config.resolved().filtered_dir == tmp_path.resolve() / "stylegan" / "synthesize_results_filtered"
    for gone in (["--out", "x.csv"], ["--seed", "1"], ["--overwrite"]):  # renamed or never used
        with pytest.raises(SystemExit):
            parser.parse_args(gone)
    with pytest.raises(ValueError, match=r"gender_threshold must be in \[0, 1\]"):
        FilterConfig(gender_threshold=1.5)


def test_shards_then_merge_equal_one_process(setup):
    """--shard 0/2 and 1/2 (the stand-in CNN), then merge_shards.py 4: the one-process outputs, parts removed."""
    from gender_cnn.filter import merge_filter_shards

    tmp_path, _ = setup
    one = _run(tmp_path)
    reference = {name: (tmp_path / name).read_bytes() for name in ("scores.csv", "logs/filter_config.json")}
    kept = sorted(os.listdir(tmp_path / "kept"))
    for name in ("scores.csv", "logs/filter_config.json"):
        (tmp_path / name).unlink()
    for k in (0, 1):
        share = _run(tmp_path, shard=f"{k}/2")
        assert share.shard == f"{k}/2" and share.csv_path.name == f"scores.part-{k}-of-2.csv"
    assert not (tmp_path / "scores.csv").exists()
    (tmp_path / "scores.part-1-of-2.unreadable.json").unlink()  # as if shard 1 had been killed
    with pytest.raises(FilterInputError, match="shards 1/2 have not finished"):
        merge_filter_shards(_config(tmp_path))
    _run(tmp_path, shard="1/2")
    merged = merge_filter_shards(_config(tmp_path))
    assert (merged.counts, merged.failed, merged.total) == (one.counts, one.failed, one.total)
    for name, data in reference.items():
        assert (tmp_path / name).read_bytes() == data, name
    assert sorted(os.listdir(tmp_path / "kept")) == kept
    assert not list(tmp_path.glob("scores.part-*"))
    again = merge_filter_shards(_config(tmp_path))  # merged already: merging again changes nothing
    assert (again.counts, again.failed) == (one.counts, one.failed)
    for name, data in reference.items():
        assert (tmp_path / name).read_bytes() == data, name
    (tmp_path / "scores.csv").unlink()
    with pytest.raises(FilterInputError, match="none"):  # nothing to merge at all
        merge_filter_shards(_config(tmp_path))


def test_sheet_titles_name_thresholds_that_differ_from_the_defaults():
    from gender_cnn.filter import FilterConfig, thresholds_text

    assert thresholds_text(FilterConfig()) == "gender >= 0.7, quality >= 0.9"
    assert thresholds_text(FilterConfig(gender_threshold=0.5, quality_threshold=0.5)) == \
        "gender >= 0.5 (default 0.7), quality >= 0.5 (default 0.9)"


def test_sheet_scores_round_down_so_a_rejected_score_never_reads_as_passing():
    """Noticed on the demo: near_threshold_rejected.jpg captioned a rejected 0.4997 as "g0.50" under the
    title "gender >= 0.5" (two-decimal rounding)."""
    from gender_cnn.filter import score_text

    assert score_text(0.4997) == "0.499"
    assert score_text(0.5) == "0.500" and score_text(0.57) == "0.570" and score_text(0.29) == "0.290"
    assert score_text(0.0) == "0.000" and score_text(1.0) == "1.000"
