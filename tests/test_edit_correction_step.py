"""Step 7c: the refine option's learned edit correction is trained, kept, resumed and used (issue 21 §4).

Before it, nothing trained and stored the correction: steps 8, 9 and the studio could only refine with the
gradient method (many times the forwards of ``learned:3``: ``bench_refine-cpu``)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from studio_world import make_world

from common.paths import PipelinePaths
from pipeline.runner import load_script
from stylegan.checkpoint import load_generator
from stylegan.control_resolver import resolve_control_methods
from stylegan.refine_correction_step import SHEET_PNG, STATE_PT, find_edit_correction, read_edit_correction

FAST = ["--device", "cpu", "--steps", "6", "--batch", "4", "--hidden", "16", "--save-every", "3", "-q"]


def _fit(paths: PipelinePaths, *extra: str) -> int:
    return load_script("7c").main(["--root", str(paths.root), *FAST, *extra])


@pytest.fixture()
def world(tmp_path, single_thread) -> PipelinePaths:
    return make_world(tmp_path / "root", regressor=True)


def test_step_7c_trains_a_correction_that_steps_8_9_and_the_studio_refine_with(world, capsys):
    """The file is written under the directions folder, a re-run keeps it, and --refine auto in steps 8 and 9 (the
    resolver) and the studio then run the learned refine with it; their recipes and saved images name it."""
    from pipeline.studio.render import load_studio_models

    before = resolve_control_methods(world, "directions", refine="auto")
    assert before.refine.on and before.refine.correction is None and "gradient method" in before.refine.note
    assert _fit(world) == 0
    out = capsys.readouterr().out
    assert "step 7c (edit correction): 6 steps" in out and "studio refine with it (--refine auto)" in out
    assert world.edit_correction_pt.is_file() and not (world.edit_correction_dir / STATE_PT).exists()
    sheet = Image.open(world.edit_correction_dir / SHEET_PNG)   # base + (linear, corrected) per property, 4 faces
    assert sheet.width == 128 * (1 + 2 * 5) and sheet.height > 4 * 128
    assert _fit(world) == 0 and "up to date" in capsys.readouterr().out

    plan = resolve_control_methods(world, "directions", refine="auto")
    assert plan.refine.correction == world.edit_correction_pt
    assert plan.inputs("directions")["edit-correction"] == world.edit_correction_pt   # steps 8 and 9's recipes
    refined = plan.load("cpu", 4, "auto")[-1]
    assert refined.name == "directions+refine" and refined.refiner.config.method == "learned"
    assert refined.refiner.config.steps == 3 and refined.refiner.correction is not None
    assert plan.describe("directions", "auto").endswith(f"step 7c's edit correction {world.edit_correction_pt}")

    models = load_studio_models(world)
    assert models.refiner.config.method == "learned"
    assert str(world.edit_correction_pt) in models.identity["refine"]["settings"]
    off = load_studio_models(world, refine="off")
    assert off.refiner is None


def test_a_killed_7c_resumes_where_it_was_and_ends_with_the_uninterrupted_correction(world, tmp_path, monkeypatch,
                                                                                      capsys):
    """A real Ctrl-C (SIGINT) during step 5 of 6 is held until that step ends, whose state is then saved: exit 130,
    "5 items finished are kept" (the bar counted them, and a re-run keeps them; before, the state of the last
    --save-every was all that survived). The re-run resumes at step 5 and its correction equals an uninterrupted
    run's on a copy of the same inputs (the same computation, so to 1e-6)."""
    import os
    import signal

    from stylegan.refine_correction import CorrectionTrainer

    straight = make_world(tmp_path / "straight", regressor=True)
    assert _fit(straight) == 0
    real_step = CorrectionTrainer.train_step

    def interrupted(self):
        if self.step == 4:
            os.kill(os.getpid(), signal.SIGINT)   # arrives in the middle of the step
        return real_step(self)

    monkeypatch.setattr(CorrectionTrainer, "train_step", interrupted)
    capsys.readouterr()
    assert _fit(world) == 130
    assert "interrupted; 5 items finished are kept" in capsys.readouterr().err
    assert (world.edit_correction_dir / STATE_PT).is_file() and not world.edit_correction_pt.exists()
    monkeypatch.setattr(CorrectionTrainer, "train_step", real_step)
    resumed_from = []
    real_load = CorrectionTrainer.load_state_dict
    monkeypatch.setattr(CorrectionTrainer, "load_state_dict",
                        lambda self, state: (real_load(self, state), resumed_from.append(self.step)))
    assert _fit(world) == 0 and resumed_from == [5]
    a = read_edit_correction(world.edit_correction_pt).state_dict()
    b = read_edit_correction(straight.edit_correction_pt).state_dict()
    assert all(torch.allclose(a[k], b[k], rtol=0, atol=1e-6) for k in a)


def test_a_damaged_or_foreign_finished_file_is_trained_again_not_kept(world, capsys):
    """"Up to date" used to trust whatever file lay at edit_correction.pt: a cut copy was "kept" (and the consumers
    then fell back to the slow method). Now it is checked, and retrained."""
    assert _fit(world) == 0
    good = world.edit_correction_pt.read_bytes()
    world.edit_correction_pt.write_bytes(good[:5000])
    capsys.readouterr()
    assert _fit(world) == 0
    out = capsys.readouterr().out
    assert "up to date" not in out and "6 steps" in out
    assert read_edit_correction(world.edit_correction_pt) is not None


def test_a_diverged_training_writes_nothing_and_says_so(world, capsys):
    """A learning rate that blows the loss up used to write a correction of NaN weights and report success (the
    studio then refused to start); now one line names the fix and no correction is written."""
    assert _fit(world, "--lr", "1e30") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "diverged" in err[0] and "--lr" in err[0]
    assert not world.edit_correction_pt.exists()


def test_step_7c_never_takes_another_steps_folder(world, capsys):
    """--out at step 8's folder used to replace its recipe.json (exit 0), and step 8 then refused its own images.
    Refused in one line, with or without --overwrite, and the folder is left as it was."""
    from common.io import atomic_write_json
    from common.recipe import Recipe

    folder = world.directions_generated_dir
    folder.mkdir(parents=True)
    atomic_write_json(folder / "recipe.json", Recipe.of("8", {"seed": 0}).record())
    before = (folder / "recipe.json").read_bytes()
    for extra in ((), ("--overwrite",)):
        assert _fit(world, "--out", str(folder), *extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "step 8's outputs" in err[0] and "--out" in err[0]
    assert (folder / "recipe.json").read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["recipe.json"]


def test_a_correction_is_used_only_with_the_directions_and_regressor_it_was_trained_for(world, capsys):
    """Refitted directions make the kept correction another recipe's: steps 8, 9 and the studio fall back to the
    gradient method and say why, step 7c refuses the folder in one line naming --overwrite, and --overwrite
    retrains it for the new directions."""
    from stylegan.directions import load_directions

    assert _fit(world) == 0
    capsys.readouterr()
    directions = load_directions(world.directions_pt)
    directions.intercepts = directions.intercepts + 0.01          # another fit
    directions.save(world.directions_pt)
    found, why = find_edit_correction(world.edit_correction_pt, world.stylegan_checkpoint, world.directions_pt,
                                      sorted((world.finetuned_dir / "checkpoints").glob("*.pt"))[-1])
    assert found is None and "another directions" in why
    plan = resolve_control_methods(world, "directions", refine="auto")
    assert plan.refine.on and plan.refine.correction is None and "another directions" in plan.refine.note
    assert plan.load("cpu", 4, "auto")[-1].refiner.config.method == "gradient"
    assert "slower gradient method" in capsys.readouterr().err   # said when the plan is made, not only at the end
    assert _fit(world) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--overwrite" in err[0] and "directions" in err[0]
    assert _fit(world, "--overwrite") == 0
    assert resolve_control_methods(world, "directions", refine="auto").refine.correction == world.edit_correction_pt


def _fitted_in_the_raw_entry(paths: PipelinePaths) -> None:
    """Make the checkpoint's raw and smoothed entries map z to different w codes, and say (as step 7a does for a run
    whose step 1 used ``--weights raw``) that the directions were fitted in the raw one."""
    from common.fingerprint import file_fingerprint
    from stylegan.directions import load_directions

    ckpt = torch.load(paths.stylegan_checkpoint, map_location="cpu", weights_only=True)
    first = next(k for k in ckpt["generator"] if k.startswith("mapping") and k.endswith("weight"))
    ckpt["generator"][first] = ckpt["generator"][first] * 1.5
    torch.save(ckpt, paths.stylegan_checkpoint)
    directions = load_directions(paths.directions_pt)
    directions.generator_fingerprint = file_fingerprint(paths.stylegan_checkpoint)
    directions.info["generator_entry"] = "generator"
    directions.save(paths.directions_pt)


def _sefa_in_the_smoothed_entry(root: Path) -> tuple[PipelinePaths, Any]:
    """A world whose directions.pt was fitted in the raw entry and whose sefa.pt in the smoothed one."""
    from common.fingerprint import file_fingerprint
    from stylegan.directions import load_directions

    paths = make_world(root, sefa=True)
    _fitted_in_the_raw_entry(paths)
    sefa = load_directions(paths.sefa_pt)
    sefa.generator_fingerprint = file_fingerprint(paths.stylegan_checkpoint)
    sefa.info["generator_entry"] = "generator_smooth"
    sefa.save(paths.sefa_pt)
    return paths, sefa


def test_directions_render_and_7c_trains_in_the_entry_the_directions_were_fitted_in(world, capsys):
    """Steps 8, 9 and the studio loaded the smoothed generator for the directions whatever entry step 7a had fitted
    them in, and step 7c trained on whatever --weights said: a run made with the raw weights got its edits moved in
    another w space, silently. Now the directions' entry renders them, 7c trains on it (another --weights is one
    line naming the fix), and its file says which."""
    from pipeline.studio.render import load_studio_models
    from stylegan.refine_correction_step import _read_checked

    _fitted_in_the_raw_entry(world)
    plan = resolve_control_methods(world, "directions", refine="auto")
    linear, refined = plan.load("cpu", 4, "auto")
    assert linear.generator.checkpoint_key == refined.generator.checkpoint_key == "generator"
    models = load_studio_models(world, refine="off")
    assert models.generator.checkpoint_key == "generator" and models.identity["stylegan"]["entry"] == "generator"
    # step 9's unedited faces come from the same entry (its identity measure compares each edit to them)
    assert plan.load("cpu", 4, "auto", baseline=True)[0].generator.checkpoint_key == "generator"
    z = torch.randn(2, linear.generator.z_space_dim, generator=torch.Generator().manual_seed(0))
    smooth = load_generator(world.stylegan_checkpoint, which="generator_smooth")
    with torch.no_grad():   # the test's premise: the two entries map z to other w codes
        assert not torch.allclose(linear.generator.mapping(z)["w"], smooth.mapping(z)["w"])

    # step 8's folder records the entry (only when not the default, so older default folders keep their recipe)
    out = world.root / "gen8"
    assert load_script("8").main(["--root", str(world.root), "--control", "directions", "--num", "1", "--device",
                                  "cpu", "--eyes", "0.5", "--out", str(out), "-q"]) == 0
    assert json.loads((out / "recipe.json").read_text())["settings"]["generator_entry"] == "generator"

    assert _fit(world, "--weights", "ema") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'generator' entry" in err[0] and "--weights raw or auto" in err[0]
    assert not world.edit_correction_pt.exists()
    assert _fit(world) == 0
    assert _read_checked(world.edit_correction_pt)[1]["generator_entry"] == "generator"
    assert resolve_control_methods(world, "directions", refine="auto").refine.correction == world.edit_correction_pt
    # naming the same entry is the same recipe (it recorded the spelling: "auto" vs "raw" refused a finished run)
    capsys.readouterr()
    assert _fit(world, "--weights", "raw") == 0 and "up to date" in capsys.readouterr().out
    # a refused run checks its inputs before it claims the folder: with --overwrite it deleted the finished file
    kept = {p.name: p.read_bytes() for p in world.edit_correction_dir.iterdir()}
    assert _fit(world, "--weights", "ema", "--overwrite") == 2
    assert "--weights raw or auto" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in world.edit_correction_dir.iterdir()} == kept


def test_a_correction_that_does_not_say_its_generator_entry_is_not_used_and_is_retrained(world, capsys):
    """A file from before step 7c recorded the entry it trained on may have used another one than the directions':
    the consumers fall back to the gradient method and say why, and a re-run of 7c trains it again."""
    assert _fit(world) == 0
    data = torch.load(world.edit_correction_pt, map_location="cpu", weights_only=True)
    del data["generator_entry"]
    torch.save(data, world.edit_correction_pt)
    found, why = find_edit_correction(world.edit_correction_pt, world.stylegan_checkpoint, world.directions_pt,
                                      sorted((world.finetuned_dir / "checkpoints").glob("*.pt"))[-1])
    assert found is None and "does not say what it was trained for" in why
    capsys.readouterr()
    assert _fit(world) == 0
    captured = capsys.readouterr()
    assert "up to date" not in captured.out and "does not say which generator entry" in captured.err
    assert resolve_control_methods(world, "directions", refine="auto").refine.correction == world.edit_correction_pt


def test_step_7c_without_a_regressor_or_with_a_damaged_file_says_one_line(tmp_path, single_thread, capsys):
    """No step-7b regressor: one line naming the fix. A damaged correction file: the consumers fall back with the
    reason (never a traceback), and reading it directly is a one-line CheckpointError."""
    from common.checkpoints import CheckpointError

    plain = make_world(tmp_path / "plain")
    assert _fit(plain) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "property regressor" in err[0] and "07_finetune_stylegan.py" in err[0]
    assert "off (" not in err[0]

    paths = make_world(tmp_path / "damaged", regressor=True)
    paths.edit_correction_dir.mkdir(parents=True)
    paths.edit_correction_pt.write_text("not a checkpoint")
    plan = resolve_control_methods(paths, "directions", refine="auto")
    assert plan.refine.on and plan.refine.correction is None and "edit_correction.pt" in plan.refine.note
    with pytest.raises(CheckpointError) as info:
        read_edit_correction(paths.edit_correction_pt)
    assert "\n" not in str(info.value) and "07_fit_edit_correction.py" in str(info.value)
    torch.save({"format": "edit_correction", "format_version": 1, "w_dim": 7}, paths.edit_correction_pt)
    with pytest.raises(CheckpointError, match="not a complete edit-correction file"):
        read_edit_correction(paths.edit_correction_pt)
    # a readable file of NaN weights: the same fallback (it stopped step 8 and the studio)
    assert _fit(paths, "--overwrite") == 0   # the hand-made file has no recipe: refused without it
    data = torch.load(paths.edit_correction_pt, weights_only=True)
    data["state_dict"] = {k: torch.full_like(v, float("nan")) for k, v in data["state_dict"].items()}
    torch.save(data, paths.edit_correction_pt)
    plan = resolve_control_methods(paths, "directions", refine="auto")
    assert plan.refine.on and plan.refine.correction is None and "NaN" in plan.refine.note
    assert plan.load("cpu", 4, "auto")[-1].refiner.config.method == "gradient"


def test_the_runner_runs_7c_after_7b_and_7_means_all_three():
    from pipeline.runner import STEP_ORDER, step_id, steps_between

    assert STEP_ORDER.index("7c") == STEP_ORDER.index("7b") + 1 and STEP_ORDER.index("8") == STEP_ORDER.index("7c") + 1
    assert step_id("7", "first") == "7a" and step_id("7", "last") == "7c"
    assert steps_between("7", "7") == ["7a", "7b", "7c"]
    assert len(steps_between(1, 9)) == 11


def test_a_bad_refine_file_is_one_line_with_no_word_about_the_correction_first(world, capsys):
    """With a step-7c correction present, step 8 ``--refine <not a step-7b checkpoint>`` printed a warning that the
    correction was "trained for another regressor checkpoint" and that the slow method would run, then the error.
    The file is checked when --refine is resolved: one line, the error."""
    assert _fit(world) == 0
    capsys.readouterr()
    rc = load_script("8").main(["--root", str(world.root), "--control", "directions", "--num", "1", "--device", "cpu",
                                "--refine", str(world.stylegan_checkpoint), "--eyes", "0.5", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "gradient method" not in err[0]
    assert str(world.stylegan_checkpoint) in err[0]


def test_the_studio_does_not_render_sefa_fitted_in_another_entry_than_the_directions(tmp_path, single_thread):
    """The studio renders every face with one generator, the latent directions' entry; a sefa.pt fitted in the other
    entry was rendered with it anyway (its edits moved in another w space). It is left out, with a note."""
    from pipeline.studio.render import load_studio_models

    paths, sefa = _sefa_in_the_smoothed_entry(tmp_path / "root")
    models = load_studio_models(paths, refine="off")
    assert models.generator.checkpoint_key == "generator" and models.sefa is None and "sefa" not in models.available
    assert any("SeFa directions not loaded" in n and "'generator_smooth' entry" in n for n in models.notes)
    sefa.info["generator_entry"] = "generator"           # fitted in the same entry: offered
    sefa.save(paths.sefa_pt)
    assert load_studio_models(paths, refine="off").sefa is not None
    del sefa.info["generator_entry"]                      # a file that does not say renders in the default entry
    sefa.save(paths.sefa_pt)
    assert load_studio_models(paths, refine="off").sefa is None


def test_7c_with_directions_that_do_not_say_their_entry_trains_where_they_render(world, capsys):
    """Directions from before step 7a recorded its entry render in the default (smoothed) entry; 7c --weights raw
    trained on the raw one anyway, and steps 8, 9 and the studio then used that correction with smoothed renders."""
    assert _fit(world, "--weights", "raw") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'generator_smooth' entry" in err[0] and "--weights ema or auto" in err[0]
    assert _fit(world, "--weights", "ema") == 0


def test_step_9_refuses_methods_that_render_in_different_entries(tmp_path, single_thread, capsys):
    """Step 9 judges every method's identity against one unedited face per latent, made in the directions' entry;
    a sefa.pt fitted in the other entry was compared against faces of another w space (silent garbage). Both
    together are refused in one line; each alone is judged against its own entry's faces."""
    paths, sefa = _sefa_in_the_smoothed_entry(tmp_path / "root")
    rc = load_script("9").main(["--root", str(paths.root), "--control", "all", "--device", "cpu",
                                "--num-z", "2", "--num-values", "3", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "directions: 'generator'" in err[0] and "sefa: 'generator_smooth'" in err[0] and "fix:" in err[0]
    alone = resolve_control_methods(paths, "sefa").load("cpu", 4, "auto", baseline=True)
    assert [m.generator.checkpoint_key for m in alone] == ["generator_smooth", "generator_smooth"]
    sefa.info["generator_entry"] = "generator"           # fitted in the same entry: compared together
    sefa.save(paths.sefa_pt)
    both = resolve_control_methods(paths, "all").load("cpu", 4, "auto", baseline=True)
    assert both[0].generator.checkpoint_key == "generator" and len(both) == 4    # baseline, finetuned, both edits
