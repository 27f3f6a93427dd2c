"""Step 1: batch-size invariance, exact resume after a kill, idempotence, CSV/latents contract."""
from __future__ import annotations

import filecmp
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from tiny_models import TINY_G_32
from tolerances import BATCH_U8_DIFFER_SHARE, BATCH_U8_MAX_DIFF

import stylegan.generate as generate_module
from common.checkpoints import CheckpointError
from pipeline.runner import load_script
from stylegan import write_random_checkpoint
from common.recipe import RecipeMismatchError
from stylegan.generate import (
    GENERATED_CSV_COLUMNS,
    GenerateConfig,
    GenerateSummary,
    run_generate,
    z_for,
)

REPO = Path(__file__).resolve().parents[1]


def _gen(checkpoint: Path, out: Path, **settings) -> GenerateSummary:
    """Step 1 on the CPU: the package function with a config, as the script calls it."""
    return run_generate(GenerateConfig(checkpoint=checkpoint, out=out, device="cpu", **settings))


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "stylegan_model.pth"
    write_random_checkpoint(path, **TINY_G_32)
    return path


def _pixels(folder: Path, fmt: str = "png") -> np.ndarray:
    return np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob(f"*.{fmt}"))]).astype(np.int16)


def _assert_same_but_rounding(a: np.ndarray, b: np.ndarray) -> None:
    """uint8 images of another batch size: equal but for +-1 at rounding boundaries, in few values
    (margins measured by benchmarks/batch_margins.py: max 1, share <= 9e-5 against 1e-3 allowed)."""
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    assert diff.max() <= BATCH_U8_MAX_DIFF and (diff > 0).mean() <= BATCH_U8_DIFFER_SHARE


def test_same_images_whatever_the_batch_size(tiny_ckpt, tmp_path):
    for bs in (1, 7):
        _gen(tiny_ckpt, tmp_path / f"bs{bs}", num=15, batch_size=bs, image_format="png")
    a, b = _pixels(tmp_path / "bs1"), _pixels(tmp_path / "bs7")
    assert a.shape == (15, 32, 32, 3)
    _assert_same_but_rounding(a, b)
    assert len({img.tobytes() for img in a}) == 15  # every image differs: z really varies


def test_latents_csv_and_regenerating_one_image(tiny_ckpt, tmp_path):
    out = tmp_path / "gen"
    summary = _gen(tiny_ckpt, out, num=5, batch_size=2, seed=3, image_format="png",
                   trunc_psi=0.7, trunc_layers=2)
    assert summary.written == 5 and summary.checkpoint_key == "generator_smooth"
    latents = np.load(out / "latents.npy")
    assert latents.dtype == np.float32 and latents.shape == (5, 16)
    np.testing.assert_array_equal(latents[4], z_for(3, 4, 16))
    frame = pd.read_csv(out / "generated.csv")
    assert tuple(frame.columns) == GENERATED_CSV_COLUMNS
    assert frame["img_name"].tolist() == [f"{i:06d}.png" for i in range(5)]
    assert set(frame["seed"]) == {3} and set(frame["truncation_psi"]) == {0.7} and set(frame["truncation_layers"]) == {2}
    assert set(frame["checkpoint_key"]) == {"generator_smooth"}
    # any single image can be regenerated from (seed, index) alone: with the same batches bit for bit, in
    # another batch (here 5 instead of 1) but for rounding (reproduction, issue 20: this compared bytes)
    for batch_size, same_batches in ((2, True), (5, False)):
        again = _gen(tiny_ckpt, tmp_path / f"bs{batch_size}", num=5, batch_size=batch_size, seed=3,
                     image_format="png", trunc_psi=0.7, trunc_layers=2)
        assert again.written == 5
        if same_batches:
            assert filecmp.cmp(out / "000004.png", tmp_path / f"bs{batch_size}" / "000004.png", shallow=False)
        else:
            _assert_same_but_rounding(_pixels(out), _pixels(tmp_path / f"bs{batch_size}"))


def test_a_resumed_run_repeats_the_batches_of_an_uninterrupted_one(tiny_ckpt, tmp_path, monkeypatch):
    """The same computation, so the same bits on any CPU: a batch of another size may round a pixel the other
    way. Reproduction (issue 20): after images 0-4 of 12 (batch 4), the resumed run made [5..8] and [9..11];
    the uninterrupted run makes [4..7] and [8..11]. It now recomputes whole batches and writes what is missing."""
    seen: list[int] = []
    real = generate_module.synthesize_uint8

    def recording(generator, z, *args, **kwargs):
        seen.append(len(z))
        return real(generator, z, *args, **kwargs)

    _gen(tiny_ckpt, tmp_path / "full", num=12, batch_size=4, image_format="png")
    shutil.copytree(tmp_path / "full", tmp_path / "part")
    for index in range(5, 12):  # as a kill after image 4 leaves it
        (tmp_path / "part" / f"{index:06d}.png").unlink()
    monkeypatch.setattr(generate_module, "synthesize_uint8", recording)
    summary = _gen(tiny_ckpt, tmp_path / "part", num=12, batch_size=4, image_format="png")
    assert seen == [4, 4] and (summary.written, summary.skipped) == (7, 5)  # [4..7] whole, then [8..11]
    for name in sorted(p.name for p in (tmp_path / "full").glob("*.png")):
        assert filecmp.cmp(tmp_path / "full" / name, tmp_path / "part" / name, shallow=False), name


def test_rerun_of_finished_run_does_nothing(tiny_ckpt, tmp_path):
    config = GenerateConfig(checkpoint=tiny_ckpt, out=tmp_path, num=6, batch_size=4, device="cpu")
    run_generate(config)
    mtimes = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.jpg")}
    summary = run_generate(config)
    assert summary.written == 0 and summary.skipped == 6
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.jpg")} == mtimes


def test_interrupted_then_resumed_run_is_byte_identical(tiny_ckpt, tmp_path, monkeypatch):
    settings = dict(num=12, batch_size=4)
    _gen(tiny_ckpt, tmp_path / "full", **settings)

    real_save = generate_module.atomic_save_image
    calls = {"n": 0}

    def dying_save(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt("simulated kill")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(generate_module, "atomic_save_image", dying_save)
    with pytest.raises(KeyboardInterrupt):
        _gen(tiny_ckpt, tmp_path / "resumed", writer_threads=1, **settings)
    assert not (tmp_path / "resumed" / "generated.csv").exists()
    monkeypatch.setattr(generate_module, "atomic_save_image", real_save)
    (tmp_path / "resumed" / ".tmp-000011.jpg.abc").write_bytes(b"half a file")  # left by a kill
    summary = _gen(tiny_ckpt, tmp_path / "resumed", **settings)
    assert 0 < summary.skipped < 12
    full = sorted(p.name for p in (tmp_path / "full").iterdir())
    assert sorted(p.name for p in (tmp_path / "resumed").iterdir()) == full
    for name in full:
        assert filecmp.cmp(tmp_path / "full" / name, tmp_path / "resumed" / name, shallow=False), name


@pytest.mark.slow
def test_sigkill_mid_run_then_resume(tiny_ckpt, tmp_path):
    """A real kill -9 of the script leaves only complete files; the re-run finishes the job exactly."""
    script = REPO / "stylegan_and_segmentation" / "01_generate_images.py"
    args = [sys.executable, str(script), "--checkpoint", str(tiny_ckpt), "--num", "120", "--batch-size", "2",
            "--device", "cpu", "-q"]
    proc = subprocess.Popen(args + ["--out", str(tmp_path / "killed")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300  # start-up (import torch) took over 60 s on a loaded 2-core machine; exits at 10
    while time.time() < deadline and len(list((tmp_path / "killed").glob("*.jpg"))) < 10:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list((tmp_path / "killed").glob("*.jpg")))
    assert 10 <= done_before < 120
    subprocess.run(args + ["--out", str(tmp_path / "killed")], check=True, capture_output=True)
    subprocess.run(args + ["--out", str(tmp_path / "clean")], check=True, capture_output=True)
    names = sorted(p.name for p in (tmp_path / "clean").iterdir())
    assert sorted(p.name for p in (tmp_path / "killed").iterdir()) == names
    for name in names:
        assert filecmp.cmp(tmp_path / "clean" / name, tmp_path / "killed" / name, shallow=False), name


def test_folder_made_with_other_settings_is_refused(tiny_ckpt, tmp_path):
    _gen(tiny_ckpt, tmp_path, num=2, seed=0)
    with pytest.raises(RecipeMismatchError, match="seed: folder 0, now 1"):
        _gen(tiny_ckpt, tmp_path, num=2, seed=1)
    summary = _gen(tiny_ckpt, tmp_path, num=2, seed=1, overwrite=True)
    assert summary.written == 2


def test_script_main_and_clear_errors(tiny_ckpt, tmp_path, capsys):
    script = load_script("1")
    with pytest.raises(SystemExit) as info:
        script.main(["--help"])
    assert info.value.code == 0
    rc = script.main(["--checkpoint", str(tiny_ckpt), "--out", str(tmp_path / "o"), "--num", "3", "--device", "cpu",
                      "--format", "png", "--weights", "raw", "-q"])
    assert rc == 0
    assert len(list((tmp_path / "o").glob("*.png"))) == 3
    assert set(pd.read_csv(tmp_path / "o" / "generated.csv")["checkpoint_key"]) == {"generator"}
    # --root relocates the default paths (the demo relies on it)
    rc = script.main(["--root", str(tmp_path / "root"), "--num", "1", "--device", "cpu", "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and "checkpoint not found" in err and str(tmp_path / "root") in err
    bad = tmp_path / "bad.pth"
    bad.write_bytes(tiny_ckpt.read_bytes()[:1000])
    rc = script.main(["--checkpoint", str(bad), "--out", str(tmp_path / "b"), "--num", "1", "--device", "cpu", "-q"])
    assert rc == 2 and "truncated or corrupt" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        script.main(["--checkpoint", str(tiny_ckpt), "--trunc-psi", "1.5"])


def test_config_from_flags_and_weights_vocabulary(tiny_ckpt, tmp_path):
    """Flag defaults are the config's; --weights ema/raw/auto pick genforce's entries."""
    script = load_script("1")
    assert script.config_from_args(script.build_parser().parse_args([])) == GenerateConfig()
    config = script.config_from_args(script.build_parser().parse_args(
        ["--root", str(tmp_path), "--num", "4", "--weights", "ema", "--format", "png", "--overwrite"]))
    assert config == GenerateConfig(root=tmp_path, num=4, weights="ema", image_format="png", overwrite=True)
    assert config.resolved().checkpoint == tmp_path.resolve() / "stylegan" / "stylegan_model.pth"
    assert config.resolved().out == tmp_path.resolve() / "stylegan" / "synthesize_results"
    keys = {weights: _gen(tiny_ckpt, tmp_path / weights, num=1, weights=weights).checkpoint_key
            for weights in ("auto", "ema", "raw")}
    assert keys == {"auto": "generator_smooth", "ema": "generator_smooth", "raw": "generator"}
    with pytest.raises(ValueError, match="weights"):
        GenerateConfig(weights="generator_smooth")


def test_ema_weights_without_a_smoothed_copy_is_a_clear_error(tmp_path):
    ckpt = write_random_checkpoint(tmp_path / "raw_only.pth", with_smooth=False, **TINY_G_32)
    assert _gen(ckpt, tmp_path / "auto", num=1).checkpoint_key == "generator"
    with pytest.raises(CheckpointError, match="no 'generator_smooth' entry"):
        _gen(ckpt, tmp_path / "ema", num=1, weights="ema")
    assert not (tmp_path / "ema").exists()  # refused before anything was written


def test_progress_counts_every_image_including_those_already_there(tiny_ckpt, tmp_path):
    _gen(tiny_ckpt, tmp_path, num=2)
    calls = []
    summary = run_generate(GenerateConfig(checkpoint=tiny_ckpt, out=tmp_path, num=5, batch_size=2, device="cpu"),
                           progress=lambda done, total: calls.append((done, total)))
    assert (summary.written, summary.skipped, summary.device) == (3, 2, "cpu")
    assert calls[0] == (2, 5) and calls[-1] == (5, 5)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
