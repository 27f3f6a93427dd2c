"""The README's main-job command: the whole demo, end to end, on CPU, under its own root."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from common.paths import DEFAULT_PATHS, PipelinePaths
from pipeline.runner import STEP_ORDER
from stylegan.comparison import COMPARISON_COLUMNS

REPO = Path(__file__).resolve().parents[1]


def _real_output_state() -> dict[str, bool]:
    p = DEFAULT_PATHS
    folders = [p.generated_dir, p.filtered_dir, p.segmentation_dir, p.property_scores_dir, p.finetuned_dir,
               p.cnn_models_dir, p.directions_dir]
    return {str(f): f.exists() for f in folders} | {str(p.hand_labels_csv): p.hand_labels_csv.exists()}


@pytest.mark.slow
def test_demo_runs_every_step_and_touches_no_real_output(tmp_path):
    before = _real_output_state()
    cmd = [sys.executable, str(REPO / "stylegan_and_segmentation" / "run_pipeline.py"), "--demo", "--root",
           str(tmp_path), "-q"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "NOT faces" in out
    for number in STEP_ORDER:
        assert f"\n{number:>4}  ran" in out, f"step {number} did not run:\n{out[-2000:]}"
    assert "total" in out

    paths = PipelinePaths(tmp_path)
    generated = pd.read_csv(paths.generated_dir / "generated.csv")
    assert len(generated) == 48 and len(list(paths.generated_dir.glob("*.jpg"))) == 48
    labels = pd.read_csv(paths.hand_labels_csv)
    assert set(labels["labeller"]) == {"demo"} and len(labels) == 32
    assert len(list(paths.cnn_models_dir.glob("gender_fold*.pt"))) == 2
    scores = pd.read_csv(paths.quality_gender_csv)
    assert set(scores["source"]) <= {"hand", "cnn"} and len(scores) == 48
    kept = list(paths.filtered_dir.glob("*.jpg"))
    assert len(kept) >= 4
    crops = pd.read_csv(paths.segmentation_dir / "crops.csv")
    assert set(crops["crop"]) == {"full"} and len(crops) == len(kept)
    all_scores = pd.read_csv(paths.all_scores_csv)
    assert list(all_scores.columns[:6]) == ["img_name", "eyes", "hair_color", "hair_length", "mouth", "face_pose"]
    assert paths.normalization_json.is_file()
    assert list((paths.finetuned_dir / "checkpoints").glob("checkpoint_*.pt"))
    assert (paths.finetuned_dir / "train_log.csv").is_file()
    # both step-7 routes (7a also writes SeFa's directions), step 8 with every method, and step 9's comparison
    # of all three against the unedited generator
    assert paths.directions_pt.is_file() and paths.sefa_pt.is_file()
    for folder in (paths.directions_dir / "generated", paths.sefa_generated_dir, paths.finetuned_dir / "generated"):
        assert len(pd.read_csv(folder / "properties.csv")) == 4 and (folder / "sweep_eyes.png").is_file()
    comparison = pd.read_csv(paths.comparison_csv)
    assert list(comparison.columns[:len(COMPARISON_COLUMNS)]) == list(COMPARISON_COLUMNS)
    quality = pd.read_csv(paths.evaluation_dir / "quality.csv")  # FID/KID with the tiny stand-in extractor
    assert set(quality["features"].str.startswith("tiny stand-in")) == {True} and quality["fid"].notna().all()
    assert comparison["method"].drop_duplicates().tolist() == ["baseline", "directions", "sefa", "finetuned"]
    assert len(comparison) == 4 * 5 and set(comparison["judge"]) == {"segmentation"}
    report = (paths.evaluation_dir / "report.md").read_text()
    assert "random-weight models" in report and "Which method controls which property better" in report
    for method in ("baseline", "directions", "sefa", "finetuned"):
        assert (paths.evaluation_dir / method / "control_metrics.csv").is_file()

    # a second run skips every finished step
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0
    assert again.stdout.count("finished earlier, skipped") == len(STEP_ORDER)
    assert _real_output_state() == before
