"""run_pipeline: step selection, skipping finished steps, pausing for labels, importing labels."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from common.paths import PipelinePaths
from pipeline.runner import STEP_ORDER, PipelineOptions, load_script, load_script_file, run_pipeline, step_id, \
    steps_between
from stylegan import write_random_checkpoint

TINY = dict(resolution=32, z_space_dim=16, w_space_dim=16, mapping_fmaps=16, fmaps_base=256, fmaps_max=16)


@pytest.fixture
def root(tmp_path) -> Path:
    write_random_checkpoint(PipelinePaths(tmp_path).stylegan_checkpoint, **TINY)
    return tmp_path


def _options(root, **kwargs):
    return PipelineOptions(root=root, device="cpu", quiet=True, step_args={1: ["--num", "4", "--format", "png"]},
                           **kwargs)


def test_from_to_runs_only_selected_steps_and_skips_finished_ones(root, capsys):
    assert run_pipeline(_options(root, first=1, last=1)) == 0
    out = capsys.readouterr().out
    assert "step 1: 4 images" in out and "step 2" not in out
    assert len(list(PipelinePaths(root).generated_dir.glob("*.png"))) == 4
    assert run_pipeline(_options(root, first=1, last=1)) == 0
    assert "step 1: finished earlier, skipped" in capsys.readouterr().out
    # other arguments: the step runs again (and, being resumable, only adds the new images)
    options = PipelineOptions(root=root, device="cpu", quiet=True, first=1, last=1,
                              step_args={1: ["--num", "6", "--format", "png"]})
    assert run_pipeline(options) == 0
    assert "6 images in" in capsys.readouterr().out
    assert len(list(PipelinePaths(root).generated_dir.glob("*.png"))) == 6


def test_pauses_at_labelling_with_instructions(root, capsys):
    assert run_pipeline(_options(root, first=1, last=9)) == 0
    out = capsys.readouterr().out
    assert "Paused at step 2" in out and "02_label_images.py" in out and "--from 3" in out
    assert "== step 3" not in out


def test_labels_file_is_validated_and_imported(root, tmp_path_factory, capsys):
    run_pipeline(_options(root, first=1, last=1))
    original = tmp_path_factory.mktemp("labels") / "synthesize_results_quality_and_gender.csv"
    pd.DataFrame({"img_name": ["000000.png", "000001.png"], "quality": [1, 0], "gender": [1, 1]}).to_csv(
        original, index=False)
    assert run_pipeline(_options(root, first=2, last=2, labels=original)) == 0
    labels = pd.read_csv(PipelinePaths(root).hand_labels_csv)
    assert list(labels.columns) == ["img_name", "gender", "quality", "labeller"]
    assert labels["quality"].tolist() == [1, 0] and set(labels["labeller"]) == {"hand"}
    assert "2 labels imported" in capsys.readouterr().out


def test_failed_step_stops_with_exit_code_and_hint(tmp_path, capsys):
    assert run_pipeline(PipelineOptions(root=tmp_path, device="cpu", quiet=True, first=1, last=1)) == 1
    captured = capsys.readouterr()
    assert "checkpoint not found" in captured.err and "run it alone" in captured.err


def test_cli_rejects_bad_step_range():
    module = load_script_runner()
    with pytest.raises(SystemExit):
        module.main(["--from", "5", "--to", "3"])


def load_script_runner():
    return load_script_file("run_pipeline.py")


def test_step_ids_and_ranges():
    """Step 7 has two routes, both run, directions (7a) first; a bare 7 means both."""
    assert STEP_ORDER == ("1", "2", "3", "4", "5", "6", "7a", "7b", "8", "9")
    assert steps_between(7, 7) == ["7a", "7b"] and steps_between("7b", 9) == ["7b", "8", "9"]
    assert steps_between(6, "7a") == ["6", "7a"] and steps_between(9, 1) == []
    with pytest.raises(ValueError, match="unknown step"):
        step_id("7c")
    module = load_script_runner()
    with pytest.raises(SystemExit):
        module.main(["--from", "7c"])
    with pytest.raises(SystemExit):
        module.main(["--from", "8", "--to", "7b"])


def test_every_step_script_has_help():
    for number in STEP_ORDER:
        try:
            module = load_script(number)
        except FileNotFoundError:
            pytest.fail(f"step {number} script is missing")
        with pytest.raises(SystemExit) as info:
            module.main(["--help"])
        assert info.value.code == 0
