"""Bad images in steps 3, 4 and 5 (issue 9): a decompression bomb and unreadable hand-labelled files.

A 218 KB PNG that claims 15000x15000 pixels is an unreadable image (skipped, counted, listed,
the pixel limit stated), never a traceback, and step 5 gets past it on the next run.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import gender_cnn.predict as predict_module
from bad_inputs import write_png_bomb
from cnn_world import write_synthetic_set
from common.folders import FolderOverlapError
from common.images import MAX_IMAGE_PIXELS, ImageReadError, load_rgb
from common.paths import PipelinePaths
from gender_cnn.filter import FilterConfig, run_filter
from gender_cnn.predict import PredictionResult
from gender_cnn.train import TrainConfig, run_training
from pipeline.runner import load_script_file
from segmentation.segment import SegmentConfig, run_segmentation

pytestmark = pytest.mark.usefixtures("single_thread")
LIMIT_TEXT = f"{MAX_IMAGE_PIXELS:,} pixels"


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    return write_png_bomb(tmp_path_factory.mktemp("bomb") / "bomb.png")


def test_bomb_is_an_image_read_error_stating_the_limit(bomb, tmp_path):
    assert bomb.stat().st_size < 300_000
    with pytest.raises(ImageReadError) as info:
        load_rgb(bomb)
    assert LIMIT_TEXT in str(info.value) and str(bomb) in str(info.value)
    # just over our own limit but under PIL's: still refused before decoding
    side = int(MAX_IMAGE_PIXELS ** 0.5) + 1
    big = write_png_bomb(tmp_path / "big.png", side=side)
    with pytest.raises(ImageReadError, match=f"{side}x{side}"):
        load_rgb(big)


# --- step 4 -------------------------------------------------------------------------------------

def _stand_in_cnn(monkeypatch, calls: list[list[str]]) -> None:
    """Every image the CNN would score gets 0.9/0.95, read through the real image reader."""
    def predict_images(paths, ensembles, device="cpu", batch_size=64, workers=2, on_items=None):
        names, failed = [], {}
        for path in paths:
            try:
                load_rgb(path)
                names.append(Path(path).name)
            except ImageReadError as exc:
                failed[Path(path).name] = str(exc)
        calls.append([Path(p).name for p in paths])
        if on_items:
            on_items(len(paths))
        return PredictionResult(names=names, scores={t: np.full(len(names), 0.9) for t in ensembles}, failed=failed)

    monkeypatch.setattr(predict_module, "load_ensemble", lambda d, t, device="cpu": f"ensemble-{t}")
    monkeypatch.setattr(predict_module, "predict_images", predict_images)


def _images(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / name)


def test_step4_unreadable_hand_labelled_images_are_not_kept(tmp_path, monkeypatch, bomb):
    calls: list[list[str]] = []
    _stand_in_cnn(monkeypatch, calls)
    images = tmp_path / "images"
    _images(images, ["a.png", "b.png"])
    (images / "corrupt.png").write_bytes(b"\x89PNG not really")
    (images / "bomb.png").write_bytes(bomb.read_bytes())
    (tmp_path / "labels.csv").write_text("img_name,gender,quality,labeller\na.png,1,1,hand\n"
                                         "corrupt.png,1,1,hand\nbomb.png,1,1,hand\n")
    summary = run_filter(FilterConfig(images=images, labels=tmp_path / "labels.csv", models=tmp_path / "models",
                                      scores_csv=tmp_path / "scores.csv", filtered_dir=tmp_path / "kept",
                                      logs_dir=tmp_path / "logs", sheets=False, device="cpu"))
    kept = sorted(p.name for p in (tmp_path / "kept").iterdir())
    assert kept == ["a.png", "b.png"]
    assert sorted(summary.failed) == ["bomb.png", "corrupt.png"]
    assert "2 unreadable skipped" in summary.line()
    assert LIMIT_TEXT in summary.failed["bomb.png"]
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert sorted(scores["img_name"]) == ["a.png", "b.png"]
    listed = json.loads((tmp_path / "logs" / "filter_config.json").read_text())["unreadable_images"]
    assert sorted(listed) == ["bomb.png", "corrupt.png"]


@pytest.mark.parametrize("where", ["same", "inside", "contains"])
def test_step4_filtered_dir_overlapping_the_images_is_refused_and_nothing_is_deleted(tmp_path, capsys, where):
    paths = PipelinePaths(tmp_path)
    _images(paths.generated_dir, ["000000.png", "000001.png"])
    paths.hand_labels_csv.parent.mkdir(parents=True, exist_ok=True)
    paths.hand_labels_csv.write_text("img_name,gender,quality,labeller\n000000.png,0,0,hand\n000001.png,0,0,hand\n")
    filtered = {"same": paths.generated_dir, "inside": paths.generated_dir / "kept",
                "contains": paths.generated_dir.parent}[where]
    before = sorted(p.name for p in paths.generated_dir.iterdir())
    rc = load_script_file("04_filter_images.py").main(
        ["--root", str(tmp_path), "--filtered-dir", str(filtered), "--device", "cpu", "-q", "--no-sheets"])
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and "--filtered-dir" in err and "--images" in err and "fix:" in err
    assert sorted(p.name for p in paths.generated_dir.iterdir()) == before


def test_step4_scores_csv_never_overwrites_the_hand_labels(tmp_path):
    images = tmp_path / "images"
    _images(images, ["a.png"])
    labels = tmp_path / "labels.csv"
    labels.write_text("img_name,gender,quality,labeller\na.png,1,1,hand\n")
    with pytest.raises(FolderOverlapError, match="--quality-gender-csv"):
        run_filter(FilterConfig(images=images, labels=labels, models=tmp_path / "models", scores_csv=labels,
                                filtered_dir=tmp_path / "kept", logs_dir=tmp_path / "logs", sheets=False,
                                device="cpu"))
    assert labels.read_text().endswith("a.png,1,1,hand\n")


# --- step 3 -------------------------------------------------------------------------------------

def test_step3_bomb_among_labelled_images_is_skipped_and_listed(tmp_path, bomb):
    paths = PipelinePaths(tmp_path)
    labels = write_synthetic_set(paths.generated_dir, 12, seed=0, size=32)
    (paths.generated_dir / "000003.jpg").unlink()
    (paths.generated_dir / "000003.png").write_bytes(bomb.read_bytes())
    labels.loc[labels.img_name == "000003.jpg", "img_name"] = "000003.png"
    paths.hand_labels_csv.parent.mkdir(parents=True, exist_ok=True)
    labels.to_csv(paths.hand_labels_csv, index=False)
    summary = run_training(TrainConfig(root=tmp_path, tasks=("gender",), folds=2, epochs=1, patience=1, input_size=16,
                                       channels=(4, 8), batch_size=8, device="cpu"))
    assert list(summary.failed) == ["000003.png"]
    info = json.loads((paths.cnn_logs_dir / "train_config.json").read_text())
    assert list(info["unreadable_images"]) == ["000003.png"]
    assert LIMIT_TEXT in info["unreadable_images"]["000003.png"]


# --- step 5 -------------------------------------------------------------------------------------

class _ZeroParser(torch.nn.Module):
    """Stands in for FaceXFormer: every pixel background (the test is about reading, not parsing)."""

    def segment(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x.shape[0], 224, 224, dtype=torch.uint8)

    def parse_with_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        n = x.shape[0]
        return self.segment(x), {"landmarks": torch.zeros(n, 68, 2), "headpose": torch.zeros(n, 3)}


def test_step5_bomb_is_flagged_and_the_next_run_gets_past_it(tmp_path, bomb):
    images = tmp_path / "filtered"
    _images(images, ["000000.png", "000002.png"])
    (images / "000001.png").write_bytes(bomb.read_bytes())
    out = tmp_path / "seg"
    config = SegmentConfig(images=images, checkpoint=tmp_path / "unused.pt", out=out, device="cpu", crop="full",
                           batch_size=2)
    summary = run_segmentation(config, model_loader=_ZeroParser)
    assert (summary.parsed, summary.unreadable) == (2, 1)
    assert any("000001.png" in e and LIMIT_TEXT in e for e in summary.errors)
    rows = pd.read_csv(config.crops_csv, dtype=str, keep_default_na=False).set_index("img_name")
    assert LIMIT_TEXT in rows.loc["000001.png", "error"]
    again = run_segmentation(config, model_loader=_ZeroParser)
    assert again.skipped == 3 and again.unreadable == 0


def test_step5_output_overlapping_input_is_refused(tmp_path, capsys):
    images = tmp_path / "filtered"
    _images(images, ["000000.png"])
    rc = load_script_file("05_run_segmentation.py").main(
        ["--images", str(images), "--out", str(images), "--segmentation-checkpoint", str(tmp_path / "x.pt"), "--crop", "full",
         "--device", "cpu", "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and "--out" in err and "--images" in err and len(err.strip().splitlines()) == 1
