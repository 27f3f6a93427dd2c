"""Step 1's inputs and metadata (issue 9): checkpoint identity, corrupt manifests, a smaller --num,
w.npy, disk full. Each case is one line on stderr and exit code 2, or metadata that describe
every image in the folder."""
from __future__ import annotations

import errno
import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from tiny_models import TINY_G_16_W12

from common.fingerprint import file_fingerprint
from pipeline.runner import load_script_file
from stylegan import write_random_checkpoint
from stylegan.checkpoint import load_generator
from stylegan.generate import GenerateConfig, GenerateSummary, run_generate, z_for

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("ckpts")
    return (write_random_checkpoint(folder / "a.pth", seed=0, **TINY_G_16_W12),
            write_random_checkpoint(folder / "b.pth", seed=1, **TINY_G_16_W12))


def _main(*argv: str) -> int:
    return load_script_file("01_generate_images.py").main([*argv, "--device", "cpu", "-q", "--format", "png"])


def _gen(checkpoint: Path, out: Path, **settings) -> GenerateSummary:
    """Step 1 on the CPU: the package function with a config, as the script calls it."""
    return run_generate(GenerateConfig(checkpoint=checkpoint, out=out, device="cpu", **settings))


def _one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_other_checkpoint_into_the_same_folder_is_refused(ckpts, tmp_path, capsys):
    a, b = ckpts
    out = tmp_path / "out"
    assert _main("--checkpoint", str(a), "--out", str(out), "--num", "2") == 0
    manifest = json.loads((out / "generation.json").read_text())
    assert manifest["inputs"]["checkpoint"] == file_fingerprint(a)
    assert manifest["settings"]["checkpoint_key"] == "generator_smooth"
    capsys.readouterr()
    assert _main("--checkpoint", str(b), "--out", str(out), "--num", "3") == 2
    line = _one_line(capsys.readouterr().err)
    assert "checkpoint: another file" in line and str(out) in line
    assert sorted(p.name for p in out.glob("*.png")) == ["000000.png", "000001.png"]
    # the same bytes at another path are the same checkpoint
    copy = tmp_path / "copy.pth"
    shutil.copy(a, copy)
    assert _main("--checkpoint", str(copy), "--out", str(out), "--num", "3") == 0


@pytest.mark.parametrize("content,needle", [
    ('{"seed": 0, "trunc', "not valid JSON"),
    ("", "not valid JSON"),
    ("[]", "not an object"),
    ('{"format_version": 99}', "format_version 99"),
    ('{"format_version": 1}', "older version"),  # no recipe in it: an older version's manifest
])
def test_corrupt_manifest_is_one_line(ckpts, tmp_path, capsys, content, needle):
    out = tmp_path / "out"
    assert _main("--checkpoint", str(ckpts[0]), "--out", str(out), "--num", "1") == 0
    (out / "generation.json").write_text(content)
    capsys.readouterr()
    assert _main("--checkpoint", str(ckpts[0]), "--out", str(out), "--num", "2") == 2
    line = _one_line(capsys.readouterr().err)
    assert needle in line and ("generation.json" in line or str(out) in line)
    assert not (out / "000001.png").exists()
    # --overwrite is the documented way out
    assert _main("--checkpoint", str(ckpts[0]), "--out", str(out), "--num", "2", "--overwrite") == 0


def test_images_without_manifest_are_refused(ckpts, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "000000.png").write_bytes(b"someone else's image")
    assert _main("--checkpoint", str(ckpts[0]), "--out", str(out), "--num", "2") == 2
    assert "no generation.json" in _one_line(capsys.readouterr().err)


def test_smaller_num_keeps_metadata_for_every_image(ckpts, tmp_path):
    out = tmp_path / "out"
    _gen(ckpts[0], out, num=5, image_format="png")
    summary = _gen(ckpts[0], out, num=2, image_format="png")
    assert summary.kept_beyond == 3 and "3 more" in summary.line()
    images = sorted(p.name for p in out.glob("*.png"))
    frame = pd.read_csv(out / "generated.csv")
    assert frame["img_name"].tolist() == images and frame["index"].tolist() == list(range(5))
    assert np.load(out / "latents.npy").shape == (5, 16) and np.load(out / "w.npy").shape == (5, 12)
    # --overwrite: the folder holds exactly what the new settings make
    _gen(ckpts[0], out, num=2, image_format="png", overwrite=True)
    assert sorted(p.name for p in out.glob("*.png")) == ["000000.png", "000001.png"]
    assert len(pd.read_csv(out / "generated.csv")) == 2 and np.load(out / "w.npy").shape == (2, 12)


def test_w_npy_is_the_mapping_of_each_latent(ckpts, tmp_path):
    out = tmp_path / "out"
    _gen(ckpts[0], out, num=3, seed=7, image_format="png")
    w = np.load(out / "w.npy")
    assert w.dtype == np.float32 and w.shape == (3, 12)
    generator = load_generator(ckpts[0])
    with torch.no_grad():
        expected = generator.mapping(torch.from_numpy(z_for(7, 2, 16)[None]))["w"].numpy()[0]
    np.testing.assert_allclose(w[2], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.load(out / "latents.npy")[2], z_for(7, 2, 16))
    (out / "w.npy").unlink()  # resumable: a re-run restores it, identical
    _gen(ckpts[0], out, num=3, seed=7, image_format="png")
    np.testing.assert_array_equal(np.load(out / "w.npy"), w)


def test_disk_full_is_one_line_and_resume_finishes_exactly(ckpts, tmp_path, monkeypatch, capsys):
    reference = tmp_path / "reference"
    _gen(ckpts[0], reference, num=6, image_format="png", batch_size=2)
    out = tmp_path / "out"
    real_fsync, lock, calls = os.fsync, threading.Lock(), [0]

    def fsync(fd):  # the 4th durable write (3 images after generation.json) finds the disk full
        with lock:
            calls[0] += 1
            full = calls[0] >= 4
        if full:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    rc = _main("--checkpoint", str(ckpts[0]), "--out", str(out), "--num", "6", "--batch-size", "2")
    line = _one_line(capsys.readouterr().err)
    assert rc == 2
    assert line.startswith("error: disk full writing " + str(out)) and "free space and re-run" in line
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]  # no partial files
    for path in out.glob("*.png"):  # what exists is complete
        assert path.read_bytes() == (reference / path.name).read_bytes()
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert _main("--checkpoint", str(ckpts[0]), "--out", str(out), "--num", "6", "--batch-size", "2") == 0
    for path in reference.iterdir():
        if path.name != "generation.json":
            assert path.read_bytes() == (out / path.name).read_bytes(), path.name


def test_output_folder_containing_the_checkpoint_is_refused(ckpts, tmp_path, capsys):
    ckpt = tmp_path / "stylegan_model.pth"
    shutil.copy(ckpts[0], ckpt)
    assert _main("--checkpoint", str(ckpt), "--out", str(tmp_path), "--num", "1") == 2
    line = _one_line(capsys.readouterr().err)
    assert "--out" in line and "--stylegan-checkpoint" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stylegan_model.pth"]
