"""Step 5 end to end: 05_run_segmentation.py on faces, a blank image and a corrupt file."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from logit_maps import assert_maps_equal_where_clear
from PIL import Image
from tolerances import SEGMENT_BATCH_LOGIT_ATOL

from common.cli import parse_step_config
from pipeline.runner import load_script
from segmentation import (
    CROPS_COLUMNS,
    SegmentSummary,
    detect_and_crop,
    load_facexformer,
    normalize_crops,
    overlay,
    run_segmentation,
    save_random_facexformer_checkpoint,
)

REPO = Path(__file__).resolve().parents[1]


script = load_script("5")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A random-weight FaceXFormer in the official file layout (~368 MB), built once for the module."""
    return save_random_facexformer_checkpoint(tmp_path_factory.mktemp("ckpt") / "segmentation_model.pt")


@pytest.fixture(scope="module")
def model(checkpoint):
    return load_facexformer(checkpoint)


def _make_folder(images: Path, real_faces: list[Path]) -> Path:
    images.mkdir(parents=True)
    for face in real_faces[:2]:
        shutil.copy(face, images / face.name)
    Image.new("RGB", (256, 256), (128, 128, 128)).save(images / "blank.png")
    (images / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    return images


@pytest.fixture(scope="module")
def folder(tmp_path_factory, real_faces) -> Path:
    """Two real faces, a blank image and a corrupt file (read-only for the tests)."""
    return _make_folder(tmp_path_factory.mktemp("filtered") / "images", real_faces)


@pytest.fixture(scope="module")
def first_run(folder, checkpoint, tmp_path_factory) -> tuple[Path, SegmentSummary]:
    """One full run of the step (the model is slow on CPU); tests copy its output to resume from it."""
    out = tmp_path_factory.mktemp("first") / "seg"
    return out, _run(folder, checkpoint, out)


def _copy_run(first_run, tmp_path: Path) -> Path:
    out = tmp_path / "seg"
    shutil.copytree(first_run[0], out)  # copy2: modification times kept
    return out


def _argv(folder: Path, checkpoint: Path, out: Path, *extra: str) -> list[str]:
    return ["--images", str(folder), "--segmentation-checkpoint", str(checkpoint), "--out", str(out), "--device", "cpu",
            "--batch-size", "3", "-q", *extra]


def _run(folder: Path, checkpoint: Path, out: Path, *extra: str) -> SegmentSummary:
    """The step as the runner calls it: the config the script's flags give, then the package function."""
    config, _ = parse_step_config(script.build_parser(), script.config_from_args, _argv(folder, checkpoint, out, *extra))
    return run_segmentation(config)


def _counts(summary: SegmentSummary) -> tuple[int, int, int, int]:
    """(parsed or face found, no face, unreadable, skipped as already done)."""
    return summary.parsed, summary.no_face, summary.unreadable, summary.skipped


def _csv(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "crops.csv", dtype=str, keep_default_na=False).set_index("img_name")


def test_mixed_folder_flags_rows_and_writes_maps(folder, model, first_run):
    out, summary = first_run
    assert _counts(summary) == (2, 1, 1, 0) and summary.total == 4 and summary.out_dir == out
    assert len(summary.errors) == 1 and summary.errors[0].startswith("corrupt.jpg: unreadable")

    table = _csv(out)
    assert list(table.reset_index().columns[: len(CROPS_COLUMNS)]) == list(CROPS_COLUMNS)
    assert sorted(table.index) == ["blank.png", "corrupt.jpg", "face_000.jpg", "face_001.jpg"]
    assert table.loc["blank.png", "face_found"] == "0" and table.loc["blank.png", "error"] == ""
    assert table.loc["blank.png", "x0"] == "" and table.loc["blank.png", "prob"] == ""
    assert table.loc["corrupt.jpg", "face_found"] == "0" and "unreadable" in table.loc["corrupt.jpg", "error"]
    assert set(table["crop"]) == {"mtcnn"}

    # the reference parses both faces in one batch; the step (batch size 3, a blank and a corrupt file
    # beside them) parsed each alone: another shape, so the maps agree where the logits are clear
    # (reproduction, issue 20: one pixel of 50,176 was 10 here and 9 in the reference on an AVX2 EPYC)
    names = ["face_000", "face_001"]
    crops = detect_and_crop([np.asarray(Image.open(folder / f"{n}.jpg").convert("RGB")) for n in names])
    logits = model.segment_logits(normalize_crops([c.image for c in crops]))
    for name, expected, expected_logits in zip(names, crops, logits):
        row = table.loc[f"{name}.jpg"]
        assert row["face_found"] == "1" and float(row["prob"]) > 0.9
        assert tuple(int(row[c]) for c in ("x0", "y0", "x1", "y1")) == expected.box

        parsing = Image.open(out / f"parsing_{name}.png")
        face = Image.open(out / f"face_{name}.png")
        assert parsing.mode == "L" and parsing.size == (224, 224)
        assert face.mode == "RGB" and face.size == (224, 224)
        np.testing.assert_array_equal(np.asarray(face), expected.image)
        assert_maps_equal_where_clear(torch.from_numpy(np.array(parsing))[None], expected_logits[None],
                                      SEGMENT_BATCH_LOGIT_ATOL)
        vis = np.asarray(Image.open(out / f"parsing_visualization_{name}.png"))
        np.testing.assert_array_equal(vis, overlay(expected.image, np.asarray(parsing)))  # drawn from its map
    for name in ("blank", "corrupt"):
        assert not list(out.glob(f"*_{name}.png"))
        assert not (out / f"heads_{name}.json").exists()


def test_pose_heads_saved_from_the_same_pass(folder, model, first_run):
    """heads_{stem}.json holds FaceXFormer's 68 landmarks (crop pixels) and head pose, as parse_with_heads gives."""
    from segmentation import read_heads

    out, _ = first_run
    names = ["face_000", "face_001"]
    crops = detect_and_crop([np.asarray(Image.open(folder / f"{n}.jpg").convert("RGB")) for n in names])
    _, heads = model.parse_with_heads(normalize_crops([c.image for c in crops]))
    for j, name in enumerate(names):
        saved = read_heads(out / f"heads_{name}.json")
        np.testing.assert_allclose(saved["landmarks"], heads["landmarks"][j].numpy(), atol=1e-3)
        np.testing.assert_allclose([saved["pitch"], saved["yaw"], saved["roll"]], heads["headpose"][j].numpy(),
                                   atol=1e-4)


def test_a_run_without_heads_files_is_redone(folder, checkpoint, first_run, tmp_path):
    out = _copy_run(first_run, tmp_path)
    (out / "heads_face_000.json").unlink()  # an output folder from before the heads were saved
    assert _counts(_run(folder, checkpoint, out)) == (1, 0, 0, 3)
    assert (out / "heads_face_000.json").is_file()


def test_rerun_redoes_nothing_and_resumes_a_missing_map(folder, checkpoint, first_run, tmp_path):
    out = _copy_run(first_run, tmp_path)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    csv_before = (out / "crops.csv").read_text()

    assert _counts(_run(folder, checkpoint, out)) == (0, 0, 0, 4)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")} == stamps
    assert (out / "crops.csv").read_text() == csv_before

    (out / "parsing_face_001.png").unlink()  # as if killed before the map was written
    assert _counts(_run(folder, checkpoint, out)) == (1, 0, 0, 3)
    assert (out / "parsing_face_001.png").is_file()
    assert (out / "face_face_000.png").stat().st_mtime_ns == stamps["face_face_000.png"]
    assert (out / "crops.csv").read_text() == csv_before


def test_crop_full_parses_every_readable_image(folder, checkpoint, tmp_path):
    out = tmp_path / "seg_full"
    summary = _run(folder, checkpoint, out, "--crop", "full", "--limit", "3")
    assert _counts(summary) == (2, 0, 1, 0) and summary.total == 3 and summary.crop == "full"
    table = _csv(out)
    assert sorted(table.index) == ["blank.png", "corrupt.jpg", "face_000.jpg"]  # --limit: first 3 by name
    assert set(table["crop"]) == {"full"}
    assert list(table["face_found"]) == ["1", "0", "1"]
    assert tuple(table.loc["blank.png", ["x0", "y0", "x1", "y1"]]) == ("0", "0", "256", "256")
    face = np.asarray(Image.open(out / "face_face_000.png"))
    resized = Image.open(folder / "face_000.jpg").convert("RGB").resize((224, 224), Image.BICUBIC)
    np.testing.assert_array_equal(face, np.asarray(resized))
    assert (out / "parsing_blank.png").is_file()


def test_switching_crop_mode_is_refused_and_overwrite_starts_over(folder, checkpoint, first_run, tmp_path, capsys):
    """A folder holds one recipe: another crop mode never mixes its rows with the folder's (common.recipe)."""
    out = _copy_run(first_run, tmp_path)
    capsys.readouterr()
    assert script.main(_argv(folder, checkpoint, out, "--crop", "full", "--limit", "1")) == 2
    err = capsys.readouterr().err
    assert "crop: folder 'mtcnn', now 'full'" in err and "--overwrite" in err and "Traceback" not in err
    # blank.png: no face before
    assert _counts(_run(folder, checkpoint, out, "--crop", "full", "--limit", "1", "--overwrite")) == (1, 0, 0, 0)
    table = _csv(out)
    assert list(table.index) == ["blank.png"] and table.loc["blank.png", "crop"] == "full"


def test_missing_checkpoint_is_a_clear_error(folder, tmp_path, capsys):
    code = script.main(_argv(folder, tmp_path / "absent.pt", tmp_path / "seg"))
    err = capsys.readouterr().err
    assert code == 2
    assert "checkpoint not found" in err and "kartiknarayan/facexformer" in err
    assert "Traceback" not in err


def test_broken_crops_csv_is_a_clear_error(folder, checkpoint, first_run, tmp_path, capsys):
    out = _copy_run(first_run, tmp_path)
    (out / "crops.csv").write_text("name,something\nx,1\n")
    assert script.main(_argv(folder, checkpoint, out)) == 2
    err = capsys.readouterr().err
    assert "lacks columns" in err and "Traceback" not in err


def test_help_exits_cleanly(capsys):
    with pytest.raises(SystemExit) as info:
        script.main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "--trust-checkpoint" in text and "--images" in text
    assert "--input" not in text and "--seed" not in text  # renamed (issue 10) / never used


def test_missing_input_folder(tmp_path, checkpoint, capsys):
    assert script.main(_argv(tmp_path / "nowhere", checkpoint, tmp_path / "seg")) == 2
    err = capsys.readouterr().err
    assert "input folder not found" in err and "--images" in err and len(err.strip().splitlines()) == 1


def test_default_paths_follow_root(tmp_path, real_faces, checkpoint, capsys):
    """--root relocates input, checkpoint and output (the demo relies on it)."""
    filtered = tmp_path / "stylegan" / "synthesize_results_filtered"
    filtered.mkdir(parents=True)
    shutil.copy(real_faces[2], filtered / "000000.jpg")
    models = tmp_path / "segmentation" / "models"
    models.mkdir(parents=True)
    (models / "segmentation_model.pt").symlink_to(checkpoint)
    assert script.main(["--root", str(tmp_path), "--device", "cpu", "-q"]) == 0
    capsys.readouterr()
    out = tmp_path / "segmentation" / "segmentation_results"
    assert (out / "parsing_000000.png").is_file() and (out / "crops.csv").is_file()


def test_overwrite_starts_over(folder, checkpoint, first_run, tmp_path):
    """--overwrite removes the folder's step-5 outputs first (so nothing of the old recipe stays), then parses."""
    out = _copy_run(first_run, tmp_path)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    # blank, corrupt, face_000
    assert _counts(_run(folder, checkpoint, out, "--limit", "3", "--overwrite")) == (1, 1, 1, 0)
    assert len(_csv(out)) == 3
    assert (out / "parsing_face_000.png").stat().st_mtime_ns != stamps["parsing_face_000.png"]
    assert not (out / "parsing_face_001.png").exists()
