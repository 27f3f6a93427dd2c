"""Files that are not checkpoints, and checkpoints with bad contents, in every loader and script (issue 9).

Each case must end in ONE line naming the file, what is wrong and the fix, exit code 2, never a
traceback, never a hint to use --trust-checkpoint for a file that is not a checkpoint at all, and
never an output written before the model was validated.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from bad_inputs import BAD_CHECKPOINT_KINDS, write_bad_checkpoint
from PIL import Image
from tiny_models import TINY_G_16

from common.checkpoints import CheckpointError, sniff_non_checkpoint
from pipeline.runner import load_script_file
from segmentation.facexformer import load_facexformer
from stylegan.checkpoint import load_generator, write_random_checkpoint
from stylegan.conditional import build_conditional_generator, load_conditional_generator

pytestmark = pytest.mark.usefixtures("single_thread")

BAD_KINDS = BAD_CHECKPOINT_KINDS
write_bad_file = write_bad_checkpoint


def assert_one_line_error(err: str, path: Path, *needles: str) -> None:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert str(path) in lines[0], err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, err)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "stylegan_model.pth"
    write_random_checkpoint(path, seed=0, **TINY_G_16)
    return path


@pytest.mark.parametrize("kind", sorted(BAD_KINDS))
def test_sniff_names_what_the_file_looks_like(kind, tmp_path):
    path = write_bad_file(kind, tmp_path / "x.pt")
    assert BAD_KINDS[kind] in sniff_non_checkpoint(path)


def test_sniff_accepts_real_checkpoints(tiny_ckpt, tmp_path):
    assert sniff_non_checkpoint(tiny_ckpt) is None
    legacy = tmp_path / "legacy.pt"
    torch.save({"a": torch.zeros(2)}, legacy, _use_new_zipfile_serialization=False)
    assert sniff_non_checkpoint(legacy) is None


@pytest.mark.parametrize("kind", sorted(BAD_KINDS))
def test_step1_not_a_checkpoint_is_one_line_exit_2(kind, tmp_path, capsys):
    bad = write_bad_file(kind, tmp_path / "stylegan_model.pth")
    out = tmp_path / "out"
    rc = load_script_file("01_generate_images.py").main(
        ["--checkpoint", str(bad), "--out", str(out), "--num", "1", "--device", "cpu", "-q"])
    err = capsys.readouterr().err
    assert rc == 2
    assert_one_line_error(err, bad, "not a PyTorch checkpoint", BAD_KINDS[kind], "fix:")
    assert "trust" not in err
    assert not out.exists()


@pytest.mark.parametrize("kind", sorted(BAD_KINDS))
def test_facexformer_not_a_checkpoint_never_suggests_trust(kind, tmp_path):
    bad = write_bad_file(kind, tmp_path / "segmentation_model.pt")
    with pytest.raises(CheckpointError) as info:
        load_facexformer(bad)
    message = str(info.value)
    assert "\n" not in message and BAD_KINDS[kind] in message and str(bad) in message
    assert "trust" not in message and "kartiknarayan/facexformer" in message


def test_step5_not_a_checkpoint_exit_2(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(images / "000000.png")
    bad = write_bad_file("html", tmp_path / "segmentation_model.pt")
    out = tmp_path / "seg"
    rc = load_script_file("05_run_segmentation.py").main(
        ["--images", str(images), "--segmentation-checkpoint", str(bad), "--out", str(out), "--crop", "full", "--device", "cpu",
         "-q"])
    err = capsys.readouterr().err
    assert rc == 2
    assert_one_line_error(err, bad, "HTML page")
    assert "trust" not in err


def test_one_dimensional_style_weight_is_named_not_an_index_error(tiny_ckpt, tmp_path):
    ckpt = torch.load(tiny_ckpt, weights_only=True)
    for entry in ("generator", "generator_smooth"):
        ckpt[entry]["synthesis.layer0.style.weight"] = torch.zeros(16)
    path = tmp_path / "flat.pth"
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError) as info:
        load_generator(path)
    message = str(info.value)
    assert str(path) in message and "wrong number of dimensions" in message and "\n" not in message


def test_nan_weights_refused_before_any_output(tiny_ckpt, tmp_path, capsys):
    ckpt = torch.load(tiny_ckpt, weights_only=True)
    for entry in ("generator", "generator_smooth"):
        ckpt[entry]["synthesis.lod"] = torch.tensor(float("nan"))
        ckpt[entry]["mapping.dense0.weight"][0, 0] = float("inf")
    path = tmp_path / "nan.pth"
    torch.save(ckpt, path)
    out = tmp_path / "out"
    rc = load_script_file("01_generate_images.py").main(
        ["--checkpoint", str(path), "--out", str(out), "--num", "1", "--device", "cpu", "-q"])
    err = capsys.readouterr().err
    assert rc == 2
    assert_one_line_error(err, path, "NaN or infinite", "synthesis.lod", "fix:")
    assert not (out / "generation.json").exists()


# --- step 7 / step 8 checkpoints ------------------------------------------------------------------

def _finetune_ckpt(tiny_ckpt: Path, path: Path, **changes) -> Path:
    """A minimal step-7 style checkpoint (format 1) of a conditional generator; ``changes`` edit it."""
    generator = build_conditional_generator(load_generator(tiny_ckpt))
    sd = {k: v.clone() for k, v in generator.state_dict().items()}
    ckpt = {"format_version": 1, "step": 0, "generator": sd, "generator_ema": sd,
            "config": {"generator": generator.cond_config, "property_names": ["eyes"]}}
    for key, value in changes.items():
        if key == "config_generator":
            ckpt["config"]["generator"] = value
        else:
            ckpt[key] = value
    torch.save(ckpt, path)
    return path


def test_finetuned_checkpoint_round_trip_is_fine(tiny_ckpt, tmp_path):
    generator = load_conditional_generator(_finetune_ckpt(tiny_ckpt, tmp_path / "ok.pt"))
    assert generator.num_properties == 5


@pytest.mark.parametrize("bad_config", [{"bogus": 1}, "not a dict", {"base_config": {"resolution": "x"}}])
def test_step8_bad_config_is_a_checkpoint_error_not_type_error(tiny_ckpt, tmp_path, capsys, bad_config):
    path = _finetune_ckpt(tiny_ckpt, tmp_path / "checkpoint_000004.pt", config_generator=bad_config)
    rc = load_script_file("08_generate_with_properties.py").main(
        ["--checkpoint", str(path), "--out", str(tmp_path / "gen"), "--num", "1", "--device", "cpu", "-q"])
    err = capsys.readouterr().err
    assert rc == 2
    assert_one_line_error(err, path, "config['generator']", "fix:")


def test_step8_nan_weights_and_not_a_checkpoint(tiny_ckpt, tmp_path):
    generator = build_conditional_generator(load_generator(tiny_ckpt))
    sd = {k: v.clone() for k, v in generator.state_dict().items()}
    sd["mapping.dense0.weight"][0, 0] = float("nan")
    path = _finetune_ckpt(tiny_ckpt, tmp_path / "nan.pt", generator_ema=sd)
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        load_conditional_generator(path)
    bad = write_bad_file("lfs", tmp_path / "lfs.pt")
    with pytest.raises(CheckpointError, match="Git LFS pointer"):
        load_conditional_generator(bad)


def test_step7_truncated_resume_checkpoint_names_its_path(tmp_path, capsys):
    from test_finetune_scripts import FAST, make_root  # tests/ is on sys.path (rootdir-relative import)

    paths = make_root(tmp_path / "root", num=6)
    ckpt_dir = paths.finetuned_dir / "checkpoints"
    bad = write_bad_file("truncated_zip", ckpt_dir / "checkpoint_000004.pt")
    rc = load_script_file("07_finetune_stylegan.py").main(["--root", str(paths.root), "--steps", "4", *FAST])
    err = capsys.readouterr().err
    assert rc == 2
    assert_one_line_error(err, bad, "truncated or corrupt zip", "fix:")
