"""Step 1 split over processes (issue 14): torchrun ranks and --shard K/N give a one-process run's files.

The lists (generated.csv, latents.npy, w.npy, generation.json) must be byte-identical; the images
equal within the tolerance a change of batch size already has (test_generate), since each rank
batches its own share.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from dist_support import run_step, step_env
from PIL import Image
from tiny_models import TINY_G_16_W12

from pipeline.runner import load_script_file
from stylegan import write_random_checkpoint
from stylegan.generate import GenerateConfig, GenerationError, merge_generate_shards, run_generate

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "stylegan_and_segmentation" / "01_generate_images.py"
LISTS = ("generated.csv", "latents.npy", "w.npy", "generation.json")
pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return write_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "g.pth", **TINY_G_16_W12)


def _config(ckpt: Path, out: Path, **settings) -> GenerateConfig:
    return GenerateConfig(checkpoint=ckpt, out=out, num=9, batch_size=2, image_format="png", device="cpu",
                          **settings)


def assert_same_run(reference: Path, other: Path) -> None:
    """The same set of files, the lists byte for byte, the pixels within the batch-size tolerance."""
    names = sorted(p.name for p in reference.iterdir())
    assert sorted(p.name for p in other.iterdir()) == names
    for name in LISTS:
        assert (reference / name).read_bytes() == (other / name).read_bytes(), name
    for name in names:
        if name.endswith(".png"):
            a = np.asarray(Image.open(reference / name), dtype=np.int16)
            b = np.asarray(Image.open(other / name), dtype=np.int16)
            assert np.abs(a - b).max() <= 1, name


def test_shards_then_merge_equal_one_process_and_a_lost_share_is_named(ckpt, tmp_path):
    reference = tmp_path / "one"
    run_generate(_config(ckpt, reference))
    out = tmp_path / "shards"
    first = run_generate(_config(ckpt, out, shard="0/2"))
    assert (first.written, first.shard) == (5, "0/2") and "merge_shards.py 1" in first.line()
    assert not (out / "generated.csv").exists()  # a shard writes no lists
    run_generate(_config(ckpt, out, shard="1/2"))
    (out / "000003.png").unlink()  # shard 1 was killed before this image: the merge refuses, naming it
    with pytest.raises(GenerationError, match="lacks 1 of the 9 images .*000003.png"):
        merge_generate_shards(_config(ckpt, out))
    again = run_generate(_config(ckpt, out, shard="1/2"))  # the re-run resumes that share
    assert (again.written, again.skipped) == (1, 3)
    merged = merge_generate_shards(_config(ckpt, out))
    assert merged.merged and merged.num == 9
    assert_same_run(reference, out)
    merge_generate_shards(_config(ckpt, out))  # idempotent
    assert_same_run(reference, out)


def test_merge_shards_script_and_bad_shard_flags(ckpt, tmp_path, capsys):
    out = tmp_path / "out"
    flags = ["--checkpoint", str(ckpt), "--out", str(out), "--num", "4", "--format", "png", "--device", "cpu", "-q"]
    script = load_script_file("01_generate_images.py")
    for k in (0, 1):
        assert script.main([*flags, "--shard", f"{k}/2"]) == 0
    assert load_script_file("merge_shards.py").main(["1", *flags]) == 0
    assert (out / "generated.csv").is_file() and len(np.load(out / "latents.npy")) == 4
    with pytest.raises(SystemExit) as info:
        script.main([*flags, "--shard", "2/2"])
    assert info.value.code == 2 and "--shard" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_two_ranks_equal_one_process_and_a_killed_rank_resumes(ckpt, tmp_path):
    """Two gloo processes under torchrun vs one process; then rank 1's share partly lost and the job re-run."""
    flags = ["--checkpoint", str(ckpt), "--num", "9", "--batch-size", "2", "--format", "png", "--device", "cpu",
             "--threads", "1", "-q"]
    step = ("01_generate_images.py", "stylegan.generate:run_generate")
    subprocess.run([sys.executable, str(SCRIPT), *flags, "--out", str(tmp_path / "one")], check=True,
                   env=step_env(), capture_output=True, timeout=300)
    out = tmp_path / "two"
    ranks = run_step(*step, [*flags, "--out", str(out)], tmp_path / "run1")
    assert [(r["rank"], r["written"]) for r in ranks] == [(0, 9), (1, 4)]  # rank 1 made i = 1, 3, 5, 7
    assert_same_run(tmp_path / "one", out)
    for name in ("000001.png", "000005.png", "generated.csv", "w.npy"):  # rank 1 killed: images and lists lost
        (out / name).unlink()
    ranks = run_step(*step, [*flags, "--out", str(out)], tmp_path / "run2")
    assert [(r["written"], r["skipped"]) for r in ranks] == [(2, 7), (2, 2)]
    assert_same_run(tmp_path / "one", out)
