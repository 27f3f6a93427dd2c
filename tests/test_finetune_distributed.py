"""Step 7 under torchrun (2 gloo processes on the CPU) against one process running the same micro-batches."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from test_finetune_scripts import make_root

from common.paths import REPO_ROOT
from pipeline.runner import load_script_file
from stylegan.finetune_schema import FinetuneRunFiles, FinetuneSettings
from stylegan.finetune_trainer import FinetuneConfig, batch_split

SCRIPT = REPO_ROOT / "stylegan_and_segmentation" / "07_finetune_stylegan.py"
FLAGS = ["--device", "cpu", "--batch-size", "8", "--regressor-epochs", "1", "--sample-every", "100",
         "--checkpoint-every", "2", "--keep-checkpoints", "0", "--threads", "1", "-q"]
# Two processes add the same two partial gradients as one process does (a + b either way); the tolerance
# allows for an all-reduce that sums in another order on other hardware or gloo versions.
RTOL, ATOL = 1e-4, 1e-6


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")}
    env["OMP_NUM_THREADS"] = "1"
    return env


def _run(args: list[str], processes: int = 1) -> subprocess.CompletedProcess:
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                 str(SCRIPT), "--"] if processes > 1 else [sys.executable, str(SCRIPT)])
    result = subprocess.run([*launcher, *args], capture_output=True, text=True, timeout=300, env=_env(), check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _losses(files: FinetuneRunFiles) -> pd.DataFrame:
    return pd.read_csv(files.train_log_csv).drop(columns="seconds")


def _assert_same_weights(a_path, b_path) -> None:
    a, b = torch.load(a_path, weights_only=True), torch.load(b_path, weights_only=True)
    assert a["step"] == b["step"]
    for entry in ("generator", "generator_ema", "discriminator"):
        for key, value in a[entry].items():
            torch.testing.assert_close(value, b[entry][key], rtol=RTOL, atol=ATOL, msg=f"{entry}.{key}")


@pytest.mark.slow
def test_two_processes_train_as_one_process_with_two_micro_batches_and_resume_in_one(tmp_path):
    paths = make_root(tmp_path / "root")
    two, one = FinetuneRunFiles(tmp_path / "two"), FinetuneRunFiles(tmp_path / "one")
    root = ["--root", str(paths.root)]
    out = _run([*root, "--out", str(two.folder), "--steps", "2", *FLAGS], processes=2)
    assert "on 2 processes" in out.stdout
    _run([*root, "--out", str(one.folder), "--steps", "4", "--micro-batches", "2", *FLAGS])

    assert FinetuneSettings.from_dict(torch.load(two.checkpoint(2), weights_only=True)["config"]).world_size == 2
    pd.testing.assert_frame_equal(_losses(two), _losses(one).iloc[:2], check_exact=False, rtol=RTOL, atol=ATOL)
    _assert_same_weights(two.checkpoint(2), one.checkpoint(2))

    # the 2-process checkpoint resumed by one process (the same two parts per step) continues the same run
    _run([*root, "--out", str(two.folder), "--steps", "4", "--micro-batches", "2", *FLAGS])
    pd.testing.assert_frame_equal(_losses(two), _losses(one), check_exact=False, rtol=RTOL, atol=ATOL)
    _assert_same_weights(two.checkpoint(4), one.checkpoint(4))
    assert np.isfinite(_losses(two).to_numpy()).all()


def test_the_global_batch_splits_into_parts_that_fit_the_minibatch_std_group():
    assert batch_split(FinetuneConfig(batch_size=8)) == (1, 8)
    assert batch_split(FinetuneConfig(batch_size=8), world_size=2) == (2, 4)
    assert batch_split(FinetuneConfig(batch_size=16, micro_batches=4), world_size=2) == (4, 4)
    with pytest.raises(ValueError, match="multiple of the number of processes"):
        batch_split(FinetuneConfig(batch_size=12, micro_batches=3), world_size=2)
    with pytest.raises(ValueError, match="positive multiple"):
        batch_split(FinetuneConfig(batch_size=8), world_size=3)
    with pytest.raises(ValueError, match="minibatch-std"):
        FinetuneConfig(batch_size=24, micro_batches=4)  # 6 images per part


def test_a_batch_that_does_not_split_is_refused_before_any_work(tmp_path, capsys):
    paths = make_root(tmp_path / "root", num=4)
    with pytest.raises(SystemExit) as exc:
        load_script_file(SCRIPT.name).main(["--root", str(paths.root), "--steps", "1", "--micro-batches", "3", *FLAGS])
    assert exc.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "batch_size (the global batch, 8) must be a positive multiple of the number of micro-batches" in last
    assert not (paths.finetuned_dir / "checkpoints").exists()
