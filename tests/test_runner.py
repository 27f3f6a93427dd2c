"""run_pipeline: step selection, skipping finished steps, pausing for labels, importing labels."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from tiny_models import TINY_G_32

from common.cli import python_command
from common.paths import PipelinePaths
from pipeline.runner import (
    STEP_ORDER,
    STEPS,
    PipelineOptions,
    load_script,
    load_script_file,
    run_pipeline,
    run_steps,
    step_argv,
    step_function,
    step_id,
    steps_between,
)
from stylegan import write_random_checkpoint
from stylegan.generate import GenerateSummary


@pytest.fixture
def root(tmp_path) -> Path:
    write_random_checkpoint(PipelinePaths(tmp_path).stylegan_checkpoint, **TINY_G_32)
    return tmp_path


def _options(root, **kwargs):
    return PipelineOptions(root=root, device="cpu", quiet=True, step_args={"1": ["--num", "4", "--format", "png"]},
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
                              step_args={"1": ["--num", "6", "--format", "png"]})
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


def test_missing_input_stops_with_one_line_and_exit_2(tmp_path, capsys):
    assert run_pipeline(PipelineOptions(root=tmp_path, device="cpu", quiet=True, first=1, last=1)) == 2
    err = capsys.readouterr().err
    assert "checkpoint not found" in err and "Traceback" not in err


def test_a_step_that_crashes_names_the_command_to_rerun_it(root, monkeypatch, capsys):
    """A bug (not a user-fixable input) exits 1 and prints the command, with this interpreter, that reproduces it."""
    import pipeline.runner as runner

    def broken(config, progress):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(runner, "step_function", lambda number: broken)
    assert run_pipeline(_options(root, first=1, last=1)) == 1
    err = capsys.readouterr().err
    assert "ZeroDivisionError: boom" in err and "run it alone" in err
    assert f"{python_command()} stylegan_and_segmentation/01_generate_images.py" in err


def test_the_runner_reads_summary_objects_not_printed_text(root):
    """The runner keeps step 1's Summary object (its figures) and records its .line() in the marker."""
    report = run_steps(_options(root, first=1, last=1))
    assert report.exit_code == 0 and [r.status for r in report.results] == ["ran"]
    result = report.results[0].result
    assert isinstance(result, GenerateSummary) and result.written == 4 and result.num == 4
    assert report.results[0].summary == result.line()
    marker = json.loads((root / ".pipeline" / "step1.json").read_text())
    assert marker["summary"] == result.line()


def test_every_step_row_names_the_function_its_script_runs():
    """One table: the runner calls exactly the package function the step's script calls."""
    for number, step in STEPS.items():
        module = load_script(number)
        assert hasattr(module, "build_parser") and hasattr(module, "config_from_args"), number
        function = step_function(number)
        assert getattr(module, function.__name__) is function, number


def test_threads_and_limit_reach_only_the_steps_that_take_them(root):
    options = _options(root, threads=1, limit=3)
    argv1 = step_argv("1", options)
    assert argv1[argv1.index("--threads") + 1] == "1" and "--limit" not in argv1  # step 1 counts with --num
    assert argv1[-2:] == ["--num", "3"]  # after the step's own --num 4: argparse keeps the last, the cap wins
    argv9 = step_argv("9", options)
    assert argv9[argv9.index("--limit") + 1] == "3" and "--threads" in argv9
    for number in STEP_ORDER:  # --device only where a model runs (the script offers the flag)
        flags = load_script(number).build_parser()._option_string_actions
        assert ("--device" in step_argv(number, options)) == ("--device" in flags), number


def test_cli_rejects_bad_step_range():
    module = load_script_file("run_pipeline.py")
    with pytest.raises(SystemExit):
        module.main(["--from", "5", "--to", "3"])


def test_step_ids_and_ranges():
    """Step 7 has two routes, both run, directions (7a) first, then the refine's correction (7c, from both); a
    bare 7 means all three."""
    assert STEP_ORDER == ("1", "2", "3", "4", "5", "6", "7a", "7b", "7c", "8", "9")
    assert steps_between(7, 7) == ["7a", "7b", "7c"] and steps_between("7b", 9) == ["7b", "7c", "8", "9"]
    assert steps_between(6, "7a") == ["6", "7a"] and steps_between(9, 1) == []
    with pytest.raises(ValueError, match="unknown step"):
        step_id("7d")
    module = load_script_file("run_pipeline.py")
    with pytest.raises(SystemExit):
        module.main(["--from", "7d"])
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


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, expected", [
    ("", "not a readable CSV"),
    ("img_name,quality,gender\n", "holds no labels"),
    ("img_name,quality,gender\n000000.png,7,1\n", "row 1"),
    ("img_name,quality,gender\n000000.png,1,1\nghost.png,0,1\n", "row 2 (ghost.png)"),
    ("name;quality\nx;1\n", "lacks columns"),
])
def test_bad_labels_file_is_one_line_exit_2_and_changes_nothing(root, tmp_path_factory, capsys, text, expected):
    run_pipeline(_options(root, first=1, last=1))
    csv = PipelinePaths(root).hand_labels_csv
    csv.parent.mkdir(parents=True, exist_ok=True)
    csv.write_text("img_name,gender,quality,labeller\n000001.png,0,0,hand\n")
    before = sorted(p.name for p in csv.parent.iterdir())
    capsys.readouterr()
    bad = _write(tmp_path_factory.mktemp("bad") / "labels.csv", text)
    assert run_pipeline(_options(root, first=2, last=2, labels=bad)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert expected in err and str(bad) in err
    assert sorted(p.name for p in csv.parent.iterdir()) == before
    assert csv.read_text() == "img_name,gender,quality,labeller\n000001.png,0,0,hand\n"


def test_labels_import_folds_the_journal_first_and_backs_up(root, tmp_path_factory, capsys):
    """An old labelling session killed inside the compaction interval, then run_pipeline --labels."""
    import gc

    from gender_cnn.labeller.store import Label, LabelStore, read_label_state

    run_pipeline(_options(root, first=1, last=1))
    csv = PipelinePaths(root).hand_labels_csv
    store = LabelStore(csv)
    store.set_label("000000.png", 0, 0)
    store.compact()
    store.set_label("000002.png", 1, 1)  # acknowledged, only in the journal
    del store
    gc.collect()
    new = _write(tmp_path_factory.mktemp("new") / "labels.csv", "img_name,quality,gender\n000000.png,1,1\n")
    assert run_pipeline(_options(root, first=2, last=2, labels=new)) == 0
    assert "backed up to" in capsys.readouterr().out
    # the import is the whole truth now: no old journal line re-applies at the next labeller start
    assert read_label_state(csv) == {"000000.png": Label(1, 1)}
    reopened = LabelStore(csv, lock=True)
    assert reopened.labels() == {"000000.png": Label(1, 1)}
    reopened.close()
    backups = sorted(csv.parent.glob("hand_labels.csv.bak-*"))
    assert len(backups) == 1
    assert read_label_state(backups[0], journal_path=csv.parent / "none") == {
        "000000.png": Label(0, 0), "000002.png": Label(1, 1)}


def test_labels_import_refused_while_a_labeller_runs(root, tmp_path_factory, capsys):
    from gender_cnn.labeller.store import LabelStore

    run_pipeline(_options(root, first=1, last=1))
    new = _write(tmp_path_factory.mktemp("new") / "labels.csv", "img_name,quality,gender\n000000.png,1,1\n")
    with LabelStore(PipelinePaths(root).hand_labels_csv, lock=True):
        assert run_pipeline(_options(root, first=2, last=2, labels=new)) == 2
    assert "another labeller" in capsys.readouterr().err


def test_printed_python_command_runs_this_interpreter():
    """Hints and --help examples print a command that works as printed, with or without an active venv."""
    import shlex
    import subprocess
    import sys

    out = subprocess.run([*shlex.split(python_command()), "-c", "import sys; print(sys.executable)"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert Path(out).resolve() == Path(sys.executable).resolve()
    help_text = load_script("8").build_parser().format_help()
    assert f"  {python_command()} stylegan_and_segmentation/08_generate_with_properties.py" in help_text


def test_an_error_is_a_line_of_its_own_even_with_a_progress_bar(tmp_path, capsys):
    """Without -q the bar is open while the step runs; the error is printed after it closes, on its own line."""
    assert load_script("1").main(["--root", str(tmp_path), "--device", "cpu", "--num", "2"]) == 2
    lines = capsys.readouterr().err.splitlines()
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("error: ")  # not glued to the bar's last frame
    assert not any("img" in line for line in lines[lines.index(errors[0]):])  # and no bar frame after it


def test_step_args_are_keyed_by_step_id_and_another_key_is_refused():
    """An int key (``{1: [...]}``) was once looked up as a fallback; now it is an error, never ignored."""
    assert PipelineOptions(step_args={"7a": ["--num-values", "3"]}).step_args["7a"] == ["--num-values", "3"]
    with pytest.raises(ValueError, match="step_args keys are step ids"):
        PipelineOptions(step_args={1: ["--num", "4"]})
