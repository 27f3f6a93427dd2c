"""Step 1: batch-size invariance, exact resume after a kill, idempotence, CSV/latents contract."""
from __future__ import annotations

import filecmp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import stylegan.generate as generate_module
from stylegan import write_random_checkpoint
from stylegan.generate import GENERATED_CSV_COLUMNS, GenerateConfig, GenerationConflictError, run_generate, z_for
from pipeline.runner import load_script_file

REPO = Path(__file__).resolve().parents[1]
TINY = dict(resolution=32, z_space_dim=16, w_space_dim=16, mapping_fmaps=16, fmaps_base=256, fmaps_max=16)


def load_script(name: str):
    return load_script_file(name)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "stylegan_model.pth"
    write_random_checkpoint(path, **TINY)
    return path


def _pixels(folder: Path, fmt: str = "png") -> np.ndarray:
    return np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob(f"*.{fmt}"))]).astype(np.int16)


def test_same_images_whatever_the_batch_size(tiny_ckpt, tmp_path):
    for bs in (1, 7):
        run_generate(tiny_ckpt, tmp_path / f"bs{bs}", GenerateConfig(num=15, batch_size=bs, image_format="png"),
                     progress=False)
    a, b = _pixels(tmp_path / "bs1"), _pixels(tmp_path / "bs7")
    assert a.shape == (15, 32, 32, 3)
    diff = np.abs(a - b)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    assert len({img.tobytes() for img in a}) == 15  # every image differs: z really varies


def test_latents_csv_and_regenerating_one_image(tiny_ckpt, tmp_path):
    out = tmp_path / "gen"
    summary = run_generate(tiny_ckpt, out, GenerateConfig(num=5, batch_size=2, seed=3, image_format="png",
                                                           trunc_psi=0.7, trunc_layers=2), progress=False)
    assert summary.written == 5 and summary.checkpoint_key == "generator_smooth"
    latents = np.load(out / "latents.npy")
    assert latents.dtype == np.float32 and latents.shape == (5, 16)
    np.testing.assert_array_equal(latents[4], z_for(3, 4, 16))
    frame = pd.read_csv(out / "generated.csv")
    assert tuple(frame.columns) == GENERATED_CSV_COLUMNS
    assert frame["img_name"].tolist() == [f"{i:06d}.png" for i in range(5)]
    assert set(frame["seed"]) == {3} and set(frame["truncation_psi"]) == {0.7} and set(frame["truncation_layers"]) == {2}
    assert set(frame["checkpoint_key"]) == {"generator_smooth"}
    # any single image can be regenerated from (seed, index) alone
    again = run_generate(tiny_ckpt, tmp_path / "one", GenerateConfig(num=5, batch_size=5, seed=3, image_format="png",
                                                                     trunc_psi=0.7, trunc_layers=2), progress=False)
    assert again.written == 5
    assert filecmp.cmp(out / "000004.png", tmp_path / "one" / "000004.png", shallow=False)


def test_rerun_of_finished_run_does_nothing(tiny_ckpt, tmp_path):
    config = GenerateConfig(num=6, batch_size=4)
    run_generate(tiny_ckpt, tmp_path, config, progress=False)
    mtimes = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.jpg")}
    summary = run_generate(tiny_ckpt, tmp_path, config, progress=False)
    assert summary.written == 0 and summary.skipped == 6
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.jpg")} == mtimes


def test_interrupted_then_resumed_run_is_byte_identical(tiny_ckpt, tmp_path, monkeypatch):
    config = GenerateConfig(num=12, batch_size=4)
    run_generate(tiny_ckpt, tmp_path / "full", config, progress=False)

    real_save = generate_module.atomic_save_image
    calls = {"n": 0}

    def dying_save(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt("simulated kill")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(generate_module, "atomic_save_image", dying_save)
    with pytest.raises(KeyboardInterrupt):
        run_generate(tiny_ckpt, tmp_path / "resumed", config, progress=False, writer_threads=1)
    assert not (tmp_path / "resumed" / "generated.csv").exists()
    monkeypatch.setattr(generate_module, "atomic_save_image", real_save)
    (tmp_path / "resumed" / ".tmp-000011.jpg.abc").write_bytes(b"half a file")  # left by a kill
    summary = run_generate(tiny_ckpt, tmp_path / "resumed", config, progress=False)
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
    deadline = time.time() + 60
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
    run_generate(tiny_ckpt, tmp_path, GenerateConfig(num=2, seed=0), progress=False)
    with pytest.raises(GenerationConflictError, match="seed: folder has 0, now 1"):
        run_generate(tiny_ckpt, tmp_path, GenerateConfig(num=2, seed=1), progress=False)
    summary = run_generate(tiny_ckpt, tmp_path, GenerateConfig(num=2, seed=1), progress=False, overwrite=True)
    assert summary.written == 2


def test_script_main_and_clear_errors(tiny_ckpt, tmp_path, capsys):
    script = load_script("01_generate_images.py")
    with pytest.raises(SystemExit) as info:
        script.main(["--help"])
    assert info.value.code == 0
    rc = script.main(["--checkpoint", str(tiny_ckpt), "--out", str(tmp_path / "o"), "--num", "3", "--device", "cpu",
                      "--format", "png", "-q"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "3 images" in out and "generator_smooth" in out
    assert len(list((tmp_path / "o").glob("*.png"))) == 3
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
