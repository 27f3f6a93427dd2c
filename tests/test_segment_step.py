"""Step 5 end to end: 05_run_segmentation.py on faces, a blank image and a corrupt file."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline.runner import load_script_file
from segmentation import (
    CROPS_COLUMNS,
    detect_and_crop,
    load_facexformer,
    normalize_crops,
    overlay,
    save_random_facexformer_checkpoint,
)

REPO = Path(__file__).resolve().parents[1]


def _load_script():
    return load_script_file("05_run_segmentation.py")


script = _load_script()


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
def first_run(folder, checkpoint, tmp_path_factory) -> tuple[Path, str]:
    """One full run of the script (the model is slow on CPU); tests copy its output to resume from it."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("first") / "seg"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = _run(folder, checkpoint, out)
    assert code == 0
    return out, stdout.getvalue()


def _copy_run(first_run, tmp_path: Path) -> Path:
    out = tmp_path / "seg"
    shutil.copytree(first_run[0], out)  # copy2: modification times kept
    return out


def _run(folder: Path, checkpoint: Path, out: Path, *extra: str) -> int:
    return script.main(["--input", str(folder), "--checkpoint", str(checkpoint), "--out", str(out),
                        "--device", "cpu", "--batch-size", "3", "-q", *extra])


def _csv(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "crops.csv", dtype=str, keep_default_na=False).set_index("img_name")


def test_mixed_folder_flags_rows_and_writes_maps(folder, model, first_run):
    out, summary = first_run
    assert "face found 2, no face 1, unreadable 1, skipped (already done) 0" in summary

    table = _csv(out)
    assert list(table.reset_index().columns[: len(CROPS_COLUMNS)]) == list(CROPS_COLUMNS)
    assert sorted(table.index) == ["blank.png", "corrupt.jpg", "face_000.jpg", "face_001.jpg"]
    assert table.loc["blank.png", "face_found"] == "0" and table.loc["blank.png", "error"] == ""
    assert table.loc["blank.png", "x0"] == "" and table.loc["blank.png", "prob"] == ""
    assert table.loc["corrupt.jpg", "face_found"] == "0" and "unreadable" in table.loc["corrupt.jpg", "error"]
    assert set(table["crop"]) == {"mtcnn"}

    names = ["face_000", "face_001"]
    crops = detect_and_crop([np.asarray(Image.open(folder / f"{n}.jpg").convert("RGB")) for n in names])
    maps = model.segment(normalize_crops([c.image for c in crops])).numpy()
    for name, expected, expected_map in zip(names, crops, maps):
        row = table.loc[f"{name}.jpg"]
        assert row["face_found"] == "1" and float(row["prob"]) > 0.9
        assert tuple(int(row[c]) for c in ("x0", "y0", "x1", "y1")) == expected.box

        parsing = Image.open(out / f"parsing_{name}.png")
        face = Image.open(out / f"face_{name}.png")
        assert parsing.mode == "L" and parsing.size == (224, 224)
        assert face.mode == "RGB" and face.size == (224, 224)
        np.testing.assert_array_equal(np.asarray(face), expected.image)
        np.testing.assert_array_equal(np.asarray(parsing), expected_map)
        vis = np.asarray(Image.open(out / f"parsing_visualization_{name}.png"))
        np.testing.assert_array_equal(vis, overlay(expected.image, expected_map))
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


def test_a_run_without_heads_files_is_redone(folder, checkpoint, first_run, tmp_path, capsys):
    out = _copy_run(first_run, tmp_path)
    (out / "heads_face_000.json").unlink()  # an output folder from before the heads were saved
    assert _run(folder, checkpoint, out) == 0
    assert "face found 1, no face 0, unreadable 0, skipped (already done) 3" in capsys.readouterr().out
    assert (out / "heads_face_000.json").is_file()


def test_rerun_redoes_nothing_and_resumes_a_missing_map(folder, checkpoint, first_run, tmp_path, capsys):
    out = _copy_run(first_run, tmp_path)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    csv_before = (out / "crops.csv").read_text()

    assert _run(folder, checkpoint, out) == 0
    assert "skipped (already done) 4" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")} == stamps
    assert (out / "crops.csv").read_text() == csv_before

    (out / "parsing_face_001.png").unlink()  # as if killed before the map was written
    assert _run(folder, checkpoint, out) == 0
    assert "face found 1, no face 0, unreadable 0, skipped (already done) 3" in capsys.readouterr().out
    assert (out / "parsing_face_001.png").is_file()
    assert (out / "face_face_000.png").stat().st_mtime_ns == stamps["face_face_000.png"]
    assert (out / "crops.csv").read_text() == csv_before


def test_crop_full_parses_every_readable_image(folder, checkpoint, tmp_path, capsys):
    out = tmp_path / "seg_full"
    assert _run(folder, checkpoint, out, "--crop", "full", "--limit", "3") == 0
    assert "parsed 2, no face 0, unreadable 1" in capsys.readouterr().out
    table = _csv(out)
    assert sorted(table.index) == ["blank.png", "corrupt.jpg", "face_000.jpg"]  # --limit: first 3 by name
    assert set(table["crop"]) == {"full"}
    assert list(table["face_found"]) == ["1", "0", "1"]
    assert tuple(table.loc["blank.png", ["x0", "y0", "x1", "y1"]]) == ("0", "0", "256", "256")
    face = np.asarray(Image.open(out / "face_face_000.png"))
    resized = Image.open(folder / "face_000.jpg").convert("RGB").resize((224, 224), Image.BICUBIC)
    np.testing.assert_array_equal(face, np.asarray(resized))
    assert (out / "parsing_blank.png").is_file()


def test_switching_crop_mode_redoes_the_images(folder, checkpoint, first_run, tmp_path, capsys):
    out = _copy_run(first_run, tmp_path)
    assert _run(folder, checkpoint, out, "--crop", "full", "--limit", "1") == 0  # blank.png: no face before
    assert "parsed 1, no face 0, unreadable 0, skipped (already done) 0" in capsys.readouterr().out
    table = _csv(out)
    assert table.loc["blank.png", "crop"] == "full" and table.loc["face_000.jpg", "crop"] == "mtcnn"


def test_missing_checkpoint_is_a_clear_error(folder, tmp_path, capsys):
    code = _run(folder, tmp_path / "absent.pt", tmp_path / "seg")
    err = capsys.readouterr().err
    assert code != 0
    assert "checkpoint not found" in err and "kartiknarayan/facexformer" in err
    assert "Traceback" not in err


def test_broken_crops_csv_is_a_clear_error(folder, checkpoint, tmp_path, capsys):
    out = tmp_path / "seg"
    out.mkdir()
    (out / "crops.csv").write_text("name,something\nx,1\n")
    assert _run(folder, checkpoint, out) != 0
    err = capsys.readouterr().err
    assert "lacks columns" in err and "Traceback" not in err


def test_help_exits_cleanly(capsys):
    with pytest.raises(SystemExit) as info:
        script.main(["--help"])
    assert info.value.code == 0
    assert "--trust-checkpoint" in capsys.readouterr().out


def test_missing_input_folder(tmp_path, checkpoint, capsys):
    assert _run(tmp_path / "nowhere", checkpoint, tmp_path / "seg") != 0
    assert "input folder not found" in capsys.readouterr().err


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


def test_overwrite_redoes_the_selected_images_and_keeps_other_rows(folder, checkpoint, first_run, tmp_path,
                                                                   capsys):
    out = _copy_run(first_run, tmp_path)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    assert _run(folder, checkpoint, out, "--limit", "3", "--overwrite") == 0  # blank, corrupt, face_000
    assert "face found 1, no face 1, unreadable 1, skipped (already done) 0" in capsys.readouterr().out
    assert len(_csv(out)) == 4
    assert (out / "parsing_face_000.png").stat().st_mtime_ns != stamps["parsing_face_000.png"]
    assert (out / "parsing_face_001.png").stat().st_mtime_ns == stamps["parsing_face_001.png"]
