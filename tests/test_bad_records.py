"""Corrupt step-5/6 records read by steps 5, 6 and 7 (issue 9): crops.csv, all_scores.csv,
normalization.json, no faces at all, and outputs overlapping inputs in steps 6-9.

Every case: exit code 2 and ONE line naming the file (and line or key) and the fix; nothing written.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from test_finetune_scripts import FAST, make_root
from tiny_models import TINY_G_16

from common.io import CsvSchemaError
from pipeline.runner import load_script_file
from segmentation.segment import SegmentConfig, run_segmentation

pytestmark = pytest.mark.usefixtures("single_thread")


def _one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


CROPS_HEADER = "img_name,face_found,x0,y0,x1,y1,prob,crop,error\n"


def _seg_dir(tmp_path: Path, rows: str) -> Path:
    seg = tmp_path / "seg"
    seg.mkdir()
    (seg / "crops.csv").write_text(CROPS_HEADER + rows)
    return seg


def _step6(seg: Path, out: Path, *extra: str) -> int:
    return load_script_file("06_compute_property_scores.py").main(
        ["--segmentation-dir", str(seg), "--out", str(out), "--images", str(seg.parent / "none"), "-q", *extra])


def test_step6_face_found_abc_names_the_line(tmp_path, capsys):
    seg = _seg_dir(tmp_path, "000000.png,1,0,0,9,9,0.9,full,\n000001.png,abc,,,,,,full,\n")
    assert _step6(seg, tmp_path / "scores") == 2
    line = _one_line(capsys.readouterr().err)
    assert "crops.csv line 3 (000001.png)" in line and "'abc'" in line and "fix:" in line
    assert not (tmp_path / "scores").exists()


def test_step6_crops_csv_cut_inside_the_last_fingerprint_names_the_line(tmp_path, capsys):
    """Replay case n_s6_crops_cut_row (issue 19): crops.csv cut inside its last row's input_fingerprint cell
    ("000031.jpg,1,0,0,256,256,,full,,35") was read by ``06_compute_property_scores.py`` without a word (exit 0)
    and "35" was written into all_scores.csv as that image's identity. Reproduction: ``python
    benchmarks/replay_cases.py --only n_s6_crops_cut_row``. Now the crops.csv reader (steps 5 and 6) refuses
    the row in one line, before anything is written."""
    whole = "1234:" + "ab" * 32
    seg = tmp_path / "seg"
    seg.mkdir()
    (seg / "crops.csv").write_text(CROPS_HEADER.strip() + ",input_fingerprint\n"
                                   f"000000.png,1,0,0,9,9,0.9,full,,{whole}\n000001.png,1,0,0,9,9,0.9,full,,35")
    assert _step6(seg, tmp_path / "scores") == 2
    line = _one_line(capsys.readouterr().err)
    assert "crops.csv line 3 (000001.png)" in line and "input_fingerprint" in line and "'35'" in line
    assert "fix:" in line and not (tmp_path / "scores").exists()


def test_step5_resume_with_face_found_abc_is_an_error_not_no_face(tmp_path):
    """A folder step 5 made (its recipe.json is there) whose crops.csv was damaged: resuming reads it and stops
    on the bad row, never taking 'abc' for "no face"."""
    images = tmp_path / "images"
    images.mkdir()
    seg = tmp_path / "seg"
    config = SegmentConfig(images=images, checkpoint=tmp_path / "x.pt", out=seg, device="cpu", crop="full")
    run_segmentation(config, model_loader=lambda: None)  # nothing to segment: the folder and its recipe
    assert (seg / "recipe.json").is_file()
    (seg / "crops.csv").write_text(CROPS_HEADER + "000000.png,abc,,,,,,full,\n")
    with pytest.raises(CsvSchemaError, match="face_found must be 0 or 1"):
        run_segmentation(config, model_loader=lambda: None)


def test_step6_without_any_face_refuses_and_writes_nothing(tmp_path, capsys):
    seg = _seg_dir(tmp_path, "000000.png,0,,,,,,mtcnn,\n000001.png,0,,,,,,mtcnn,\n")
    out = tmp_path / "scores"
    assert _step6(seg, out) == 2
    line = _one_line(capsys.readouterr().err)
    assert "no face to score" in line and "2 images without a face" in line and "fix:" in line
    assert not (out / "normalization.json").exists() and not (out / "all_scores.csv").exists()


def test_step6_out_equal_to_input_is_refused(tmp_path, capsys):
    seg = _seg_dir(tmp_path, "000000.png,0,,,,,,mtcnn,\n")
    assert _step6(seg, seg) == 2
    assert "--out" in _one_line(capsys.readouterr().err)


# --- step 7: all_scores.csv and normalization.json --------------------------------------------------

@pytest.fixture
def root(tmp_path):
    return make_root(tmp_path / "root", num=6, nan_rows=())


def _step7(paths, *extra: str) -> int:
    return load_script_file("07_finetune_stylegan.py").main(["--root", str(paths.root), "--steps", "2", *FAST,
                                                             *extra])


def _edit_scores(paths, line: int, column: str, value: str) -> None:
    frame = pd.read_csv(paths.all_scores_csv, dtype=str, keep_default_na=False)
    frame.loc[line - 2, column] = value
    frame.to_csv(paths.all_scores_csv, index=False)


@pytest.mark.parametrize("column,value,needle", [
    ("mouth", "abc", "line 4 (000002.png): mouth must be a finite number or empty, got 'abc'"),
    ("eyes", "inf", "eyes must be a finite number"),
    ("img_name", "/etc/passwd", "img_name '/etc/passwd' is not a plain file name"),
    ("img_name", "../outside.png", "img_name '../outside.png' is not a plain file name"),
    ("img_name", "sub/000002.png", "is not a plain file name"),
])
def test_step7_bad_all_scores_rows(root, capsys, column, value, needle):
    _edit_scores(root, 4, column, value)
    assert _step7(root) == 2
    line = _one_line(capsys.readouterr().err)
    assert str(root.all_scores_csv) in line and needle in line and "fix:" in line
    assert not (root.finetuned_dir / "checkpoints").exists()


def test_step7_never_trains_on_a_file_outside_the_image_folder(root, capsys):
    outside = root.root / "outside.png"
    (root.filtered_dir / "000002.png").rename(outside)  # a real, readable image one level up
    _edit_scores(root, 4, "img_name", "../outside.png")
    assert _step7(root) == 2
    assert "not a plain file name" in _one_line(capsys.readouterr().err)


def test_step7_header_only_scores(root, capsys):
    header = root.all_scores_csv.read_text().splitlines()[0]
    root.all_scores_csv.write_text(header + "\n")
    assert _step7(root) == 2
    assert "holds no rows (only a header)" in _one_line(capsys.readouterr().err)


@pytest.mark.parametrize("edit,needle", [
    (lambda text: text[: len(text) // 2], "not valid JSON"),
    (lambda text: "", "not valid JSON"),
    (lambda text: "[]", "not an object"),
    (lambda text: json.dumps({**json.loads(text), "format_version": 7}), "format_version 7"),
    (lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "scales"}), "lacks the keys"),
    (lambda text: json.dumps({**json.loads(text), "scales": {"eyes": {"kind": "minmax"}}}), "no fitted scale"),
])
def test_step7_corrupt_normalization(root, capsys, edit, needle):
    root.normalization_json.write_text(edit(root.normalization_json.read_text()))
    assert _step7(root) == 2
    line = _one_line(capsys.readouterr().err)
    assert str(root.normalization_json) in line and needle in line and "fix: re-run step 6" in line


def test_step7_accepts_null_for_nan_in_normalization(root):
    data = json.loads(root.normalization_json.read_text())
    data["scales"]["eyes"] = {"kind": "minmax", "count": 0, "min": None, "max": None, "target": [0.0, 1.0]}
    root.normalization_json.write_text(json.dumps(data))
    assert _step7(root, "--lambda-prop", "0") == 0


def test_step7_out_inside_the_image_folder_is_refused(root, capsys):
    assert _step7(root, "--out", str(root.filtered_dir / "run")) == 2
    line = _one_line(capsys.readouterr().err)
    assert "--out" in line and "--images" in line



def test_step8_out_holding_the_checkpoint_is_refused(tmp_path, capsys):
    from test_bad_checkpoints import _finetune_ckpt

    from stylegan import write_random_checkpoint

    base = write_random_checkpoint(tmp_path / "base.pth", seed=0, **TINY_G_16)
    (tmp_path / "run").mkdir()
    ckpt = _finetune_ckpt(base, tmp_path / "run" / "checkpoint_000002.pt")
    rc = load_script_file("08_generate_with_properties.py").main(
        ["--finetuned-checkpoint", str(ckpt), "--out", str(tmp_path / "run"), "--num", "1", "--device", "cpu", "-q"])
    assert rc == 2
    assert "--finetuned-checkpoint" in _one_line(capsys.readouterr().err)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoint_000002.pt"]


def test_step9_out_holding_the_checkpoint_is_refused(tmp_path, capsys):
    ckpt = tmp_path / "run" / "checkpoint_000002.pt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"not even read: the overlap is refused first")
    rc = load_script_file("09_evaluate_control.py").main(
        ["--finetuned-checkpoint", str(ckpt), "--out", str(tmp_path), "--device", "cpu", "-q"])
    assert rc == 2
    line = _one_line(capsys.readouterr().err)
    assert "--out" in line and "--finetuned-checkpoint" in line


@pytest.mark.parametrize("text,needle", [
    ("", "not valid JSON"), ("[]", "must hold an object"), ('{"format_version": 3}', "format_version 3"),
    ('{"format_version": 1}', "lacks the key"),
    ('{"format_version": 1, "method": "minmax", "pose_scaling": "minmax", "properties": ["eyes"], '
     '"scales": {"eyes": {"kind": "minmax", "count": null}}}', "wrong type"),
])
def test_normalizer_load_of_a_corrupt_file_is_a_value_error_naming_it(tmp_path, text, needle):
    from segmentation.normalize import PropertyNormalizer

    path = tmp_path / "normalization.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=needle) as info:
        PropertyNormalizer.load(path)
    assert str(path) in str(info.value)


def test_normalizer_load_of_a_cut_file_is_a_step_error_with_the_fix(tmp_path):
    """Replay case n_s9_norm_trunc (issue 19): ``09_evaluate_control.py`` with ``normalization.json`` cut to
    its first 200 bytes ended in a traceback ("ValueError: .../normalization.json: normalization JSON is not
    valid JSON: Unterminated string ...") from ``PropertyNormalizer.load`` in step 9's judge, while steps 7a
    and 7b refuse the same file in one line. Reproduction: ``python benchmarks/replay_cases.py --only
    n_s9_norm_trunc``. The loader's error is now the readers' RecordError, which every script prints as one
    line (exit 2); it stays a ValueError for callers that go on without the file (the studio's Measure)."""
    from common.steps import StepError
    from segmentation.normalize import PropertyNormalizer

    whole = PropertyNormalizer.fit(pd.DataFrame({p: [1.0, 2.0, 3.0] for p in
                                                 ("eyes", "hair_color", "hair_length", "mouth", "face_pose")}))
    path = tmp_path / "normalization.json"
    path.write_text(whole.to_json()[:200])
    with pytest.raises(StepError) as info:
        PropertyNormalizer.load(path)
    assert isinstance(info.value, ValueError)
    assert str(path) in str(info.value) and "fix: re-run step 6" in str(info.value)
    assert "\n" not in str(info.value)


def test_an_output_equal_to_an_input_is_said_in_a_sentence(tmp_path):
    """Replay case s7a_out_in_images (issue 19): the refusal read "output folder --out X the same path as step 1's
    folder X: ..." (no verb; fine in meaning, wrong as a sentence). Now "... is the same path as ..."."""
    from common.folders import FolderOverlapError, refuse_overlap

    with pytest.raises(FolderOverlapError, match=r"^output folder --out \S+ is the same path as --images \S+: "):
        refuse_overlap({"--out": tmp_path}, {"--images": tmp_path})


@pytest.mark.parametrize("text", [None, '{"method": "minmax", "properties": {"eyes": {"min": "a"}}}'])
def test_step9_a_normalization_given_by_the_flag_must_be_one(tmp_path, text):
    """Hostile tester, defect 9: ``09_evaluate_control.py ... --scorer brightness --normalization
    /tmp/nonexist.json --out /tmp/o9a`` completed on default sweep ranges (its recipe said normalization none),
    and so did a hollow file ``{"method":"minmax","properties":{"eyes":{"min":"a"}}}``. A file given by the flag
    is now read by the one reader (common.records.read_normalization): missing or hollow is one line naming it
    and the fix; only the default file may be absent (then the methods' ranges)."""
    from common.steps import StepError
    from pipeline.evaluate_control_step import EvaluateControlConfig, sweep_ranges
    from stylegan.conditional import property_ranges

    given = tmp_path / "given.json"
    if text is not None:
        given.write_text(text)
    with pytest.raises(StepError) as info:
        sweep_ranges(EvaluateControlConfig(root=tmp_path, normalization=given).resolved(), [])
    line = str(info.value)
    assert str(given) in line and "--normalization" in line and "\n" not in line
    assert sweep_ranges(EvaluateControlConfig(root=tmp_path).resolved(), []) == property_ranges({})
