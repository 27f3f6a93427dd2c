"""The one control-method resolver of steps 8, 9 and the studio (``stylegan.control_resolver``).

Only files and names are resolved here, nothing is loaded: these tests need no model (a fine-tune
checkpoint is a stub that reads as one, since the pipeline's is its newest *valid* checkpoint).
"""
from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
from bad_inputs import write_finetune_stub

from common.folders import FolderOverlapError, refuse_overlap
from common.paths import PipelinePaths
from common.steps import StepError
from stylegan import control_resolver
from stylegan.control_resolver import (
    METHOD_SOURCES,
    ControlMethodError,
    MissingMethodError,
    choose_control,
    find_method_files,
    resolve_control_methods,
)


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


@pytest.fixture
def root(tmp_path) -> PipelinePaths:
    return PipelinePaths(tmp_path)


@pytest.fixture
def both(root) -> PipelinePaths:
    _touch(root.directions_pt)
    write_finetune_stub(root.finetuned_dir / "checkpoints" / "checkpoint_000004.pt")
    write_finetune_stub(root.finetuned_dir / "checkpoints" / "checkpoint_000002.pt")
    return root


def test_the_pipelines_files_are_found_and_a_flag_wins(both, tmp_path):
    found = find_method_files(both)
    assert found == {"directions": both.directions_pt, "sefa": None,
                     "finetuned": both.finetuned_dir / "checkpoints" / "checkpoint_000004.pt"}  # the newest
    given = tmp_path / "mine.pt"
    assert find_method_files(both, {"finetuned": given})["finetuned"] == given


def test_a_root_without_methods_is_one_line_naming_every_script_and_flag(root):
    for control in ("all", "auto"):
        with pytest.raises(MissingMethodError) as exc:
            resolve_control_methods(root, control)
        text = str(exc.value)
        assert text.startswith(f"no control method under {root.root}") and len(text.splitlines()) == 1
        for source in METHOD_SOURCES:
            assert source.made_by in text and source.flag in text
    assert issubclass(MissingMethodError, StepError) and issubclass(MissingMethodError, FileNotFoundError)


def test_a_named_method_must_exist_and_all_takes_what_exists_in_table_order(root):
    with pytest.raises(MissingMethodError, match=r"^no directions file .*07_fit_latent_directions.py or pass "
                                                 r"--directions$"):
        resolve_control_methods(root, "directions")
    with pytest.raises(MissingMethodError, match="no fine-tuned checkpoint in .*07_finetune_stylegan.py"):
        resolve_control_methods(root, "finetuned")
    _touch(root.directions_pt)
    assert resolve_control_methods(root, "all").names == ("directions",)
    write_finetune_stub(root.finetuned_dir / "checkpoints" / "checkpoint_000001.pt")
    assert resolve_control_methods(root, "all").names == ("directions", "finetuned")
    with pytest.raises(ControlMethodError, match="unknown control method 'stylespace'"):
        resolve_control_methods(root, "stylespace")
    with pytest.raises(MissingMethodError, match=r"^no SeFa directions file .*sefa.pt; run 07_fit_latent_directions.py "
                                                 r"or pass --sefa$"):
        resolve_control_methods(root, "sefa")
    _touch(root.sefa_pt)   # step 7a writes it beside directions.pt
    assert resolve_control_methods(root, "all").names == ("directions", "sefa", "finetuned")
    plan = resolve_control_methods(root, "sefa")
    assert plan.inputs("sefa") == {"--sefa": root.sefa_pt, "--stylegan-checkpoint": root.stylegan_checkpoint}
    assert plan.generated_dir("sefa") == root.sefa_generated_dir != root.directions_generated_dir


def test_auto_picks_what_exists_then_step_9s_better_route(root, tmp_path):
    ckpt, directions = tmp_path / "x.pt", tmp_path / "d.pt"
    assert choose_control(root, {"directions": None, "finetuned": ckpt}) == "finetuned"
    assert choose_control(root, {"directions": directions, "finetuned": None}) == "directions"
    both = {"directions": directions, "finetuned": ckpt}
    assert choose_control(root, both, tmp_path / "absent.csv") == "finetuned"
    table = pd.DataFrame({"method": ["directions", "finetuned", "directions", "finetuned"],
                          "judge": ["segmentation"] * 2 + ["brightness-stand-in"] * 2,
                          "pearson_r": [0.8, 0.3, 0.0, 0.9]})
    table.to_csv(tmp_path / "comparison.csv", index=False)
    assert choose_control(root, both, tmp_path / "comparison.csv") == "directions"
    table.loc[0, "pearson_r"] = 0.3  # a tie goes to the fine-tune
    table.to_csv(tmp_path / "comparison.csv", index=False)
    assert choose_control(root, both, tmp_path / "comparison.csv") == "finetuned"
    table.loc[0, ["judge", "pearson_r"]] = ["brightness-stand-in", 0.8]  # a stand-in judge never decides
    table.to_csv(tmp_path / "comparison.csv", index=False)
    assert choose_control(root, both, tmp_path / "comparison.csv") == "finetuned"
    (tmp_path / "comparison.csv").write_text("not,a\ncomparison")  # unreadable: the fine-tune, no error
    assert choose_control(root, both, tmp_path / "comparison.csv") == "finetuned"


def test_refine_without_the_directions_route_is_an_error_for_a_path_and_a_note_for_auto(both):
    ckpt = both.finetuned_dir / "checkpoints" / "checkpoint_000004.pt"
    with pytest.raises(ControlMethodError, match=f"^--refine {ckpt} refines the directions route"):
        resolve_control_methods(both, "finetuned", refine=str(ckpt))
    plan = resolve_control_methods(both, "finetuned", refine="auto")
    assert not plan.refine.on and plan.refine.note == "refine auto: not used (control finetuned)"
    with pytest.raises(MissingMethodError, match="--refine .*absent.pt: no such file"):
        resolve_control_methods(both, "directions", refine=str(both.root / "absent.pt"))


def test_the_plan_names_each_methods_inputs_and_output_folder(both):
    ckpt = write_finetune_stub(both.finetuned_dir / "checkpoints" / "checkpoint_000004.pt", regressor=True)
    plan = resolve_control_methods(both, "all", refine=str(ckpt))
    assert plan.refine.on and plan.refine.checkpoint == ckpt
    assert plan.inputs("finetuned") == {"--finetuned-checkpoint": ckpt}
    assert plan.inputs("directions") == {"--directions": both.directions_pt,
                                         "--stylegan-checkpoint": both.stylegan_checkpoint, "--refine": ckpt}
    assert set(plan.inputs()) == {"--finetuned-checkpoint", "--directions", "--stylegan-checkpoint", "--refine"}
    assert plan.generated_dir("directions") == both.directions_refined_generated_dir  # never the linear edits'
    assert plan.generated_dir("finetuned") == both.finetuned_generated_dir
    assert "refined with the regressor of" in plan.describe("directions", "ema")
    with pytest.raises(FolderOverlapError):  # the step-8 guard: an output folder holding a model file it reads
        refuse_overlap({"--out": both.finetuned_dir}, plan.inputs("finetuned"))


def test_a_new_method_is_one_row_of_the_table(root, monkeypatch, tmp_path):
    """What a new method needs from the resolver (as SeFa had): a row; steps 8, 9 and the studio follow."""
    extra = dataclasses.replace(METHOD_SOURCES[0], name="stylespace", flag="--stylespace", made_by="07_ss.py",
                                default=lambda paths: None, absent=lambda paths: "no stylespace file")
    monkeypatch.setattr(control_resolver, "METHOD_SOURCES", (*METHOD_SOURCES, extra))
    monkeypatch.setattr(control_resolver, "_SOURCES", {s.name: s for s in (*METHOD_SOURCES, extra)})
    with pytest.raises(MissingMethodError, match="no stylespace file; run 07_ss.py or pass --stylespace"):
        resolve_control_methods(root, "stylespace")
    plan = resolve_control_methods(root, "all", {"stylespace": tmp_path / "s.pt"})
    assert plan.names == ("stylespace",) and plan.inputs("stylespace") == {"--stylespace": tmp_path / "s.pt"}
