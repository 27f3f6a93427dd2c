"""One flag per concept: every script's flags checked against the table in common/concepts.py.

Before, ``--checkpoint`` was the StyleGAN file in steps 1, 7a and 7b, FaceXFormer in step 5 and the
fine-tune in steps 8, 9 and the studio; ``--scores`` was step 4's CSV in step 2 and step 6's in 7a/7b.
"""
from __future__ import annotations

import argparse

import pytest

from common.concepts import CONCEPTS, OLD_SPELLINGS, concept_of_flag
from pipeline.runner import SCRIPTS_DIR, STEPS, load_script, load_script_file

SCRIPTS = [step.script for step in STEPS.values()] + ["run_pipeline.py", "studio.py"]

CHECKPOINT_ALIAS = {  # the old meaning --checkpoint keeps in each script (issue 20)
    "01_generate_images.py": "stylegan_checkpoint", "07_fit_latent_directions.py": "stylegan_checkpoint",
    "07_finetune_stylegan.py": "stylegan_checkpoint", "05_run_segmentation.py": "segmentation_checkpoint",
    "08_generate_with_properties.py": "finetuned_checkpoint", "09_evaluate_control.py": "finetuned_checkpoint",
    "studio.py": "finetuned_checkpoint",
}

OUTSIDE_FLAGS = {  # flags that checks outside the tests use: never removed, never changed in meaning
    "01_generate_images.py": {"--checkpoint", "--num", "--out", "--device", "--root"},
    "06_compute_property_scores.py": {"--root", "--out"},
    "08_generate_with_properties.py": {"--root", "--control", "--num", "--out", "--eyes", "--hair-color",
                                       "--hair-length", "--mouth", "--face-pose", "--batch-size", "--device"},
    "studio.py": {"--root", "--port", "--directions", "--no-measure"},
}


def _parser(script: str) -> argparse.ArgumentParser:
    return load_script_file(script).build_parser()


def _actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return dict(parser._option_string_actions)


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_concept_has_its_one_spelling(script):
    for option, action in _actions(_parser(script)).items():
        concept = getattr(action, "concept", None)
        if concept is not None:
            assert action.option_strings[0] == CONCEPTS[concept].flag, (script, option, concept)
        named = concept_of_flag(option)
        if named is not None:
            assert concept == named, f"{script}: {option} is the flag of {named}, but here it means {concept}"


@pytest.mark.parametrize("script", SCRIPTS)
def test_old_spellings_are_only_aliases_with_their_old_meaning(script):
    actions = _actions(_parser(script))
    for old in OLD_SPELLINGS:
        if old not in actions:
            continue
        action = actions[old]
        assert action.option_strings[0] != old, f"{script}: {old} is a main spelling"
        assert getattr(action, "concept", None) is not None, (script, old)
    expected = CHECKPOINT_ALIAS.get(script)
    if expected is None:
        assert "--checkpoint" not in actions, script
    else:
        assert actions["--checkpoint"].concept == expected, script


@pytest.mark.parametrize("script", sorted(OUTSIDE_FLAGS))
def test_flags_outside_checks_use_are_kept(script):
    assert OUTSIDE_FLAGS[script] <= set(_actions(_parser(script))), script


def test_merge_shards_offers_only_the_steps_flags():
    source = (SCRIPTS_DIR / "merge_shards.py").read_text(encoding="utf-8")
    assert "add_argument(" not in source


def test_an_old_spelling_says_so_on_stderr_once_and_still_works(tmp_path, capsys):
    """Step 5's --checkpoint (FaceXFormer) is now --segmentation-checkpoint: the alias works, with one note."""
    module = load_script("5")
    config = module.config_from_args(module.build_parser().parse_args(["--checkpoint", str(tmp_path / "f.pt")]))
    assert config.checkpoint == tmp_path / "f.pt"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--checkpoint is an old spelling of --segmentation-checkpoint" in err
    assert "0.4" in err


def test_step1_checkpoint_stays_without_a_note(tmp_path, capsys):
    """Outside checks call step 1 with --checkpoint: it is kept (not deprecated), so it prints nothing."""
    module = load_script("1")
    config = module.config_from_args(module.build_parser().parse_args(["--checkpoint", str(tmp_path / "g.pth")]))
    assert config.checkpoint == tmp_path / "g.pth" and capsys.readouterr().err == ""


def test_steps_4_and_6_csvs_have_distinct_names():
    assert CONCEPTS["quality_gender_csv"].flag != CONCEPTS["all_scores_csv"].flag
    flags2, flags7a = _actions(_parser("02_label_images.py")), _actions(_parser("07_fit_latent_directions.py"))
    assert flags2["--scores"].concept == "quality_gender_csv" and flags7a["--scores"].concept == "all_scores_csv"
    assert "--quality-gender-csv" in _actions(_parser("04_filter_images.py"))
