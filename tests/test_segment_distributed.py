"""Steps 5 and 6 with several processes (issue 14): torchrun ranks and --shard K/N runs write the files one
process writes, byte for byte, and a restarted job resumes what a killed rank left."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from segment_world import TinyParser, folder_bytes, write_image_folder, write_segmentation_folder

from pipeline.runner import load_script_file
from segmentation.segment import SegmentConfig, merge_segmentation_shards, run_segmentation

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("single_thread")


def _torchrun(script: Path, *args: str) -> subprocess.CompletedProcess:
    """Two gloo ranks on this CPU, one thread each; ``--`` keeps torchrun from taking the script's flags."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             str(script), "--", *args], capture_output=True, text=True, timeout=300, env=env,
                             check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


# --- step 5 -------------------------------------------------------------------------------------

STEP5_WRAPPER = """
import sys
sys.path[:0] = [{repo!r}, {tests!r}]
from common.cli import parse_step_config
from pipeline.runner import load_script_file
from segmentation.segment import run_segmentation
from segment_world import TinyParser

script = load_script_file("05_run_segmentation.py")
config, _ = parse_step_config(script.build_parser(), script.config_from_args, sys.argv[1:])
print(run_segmentation(config, model_loader=TinyParser).line())
"""


def _step5_config(images: Path, out: Path, **kwargs) -> SegmentConfig:
    return SegmentConfig(images=images, out=out, checkpoint=images.parent / "unused.pt", device="cpu", crop="full",
                         batch_size=2, **kwargs)


@pytest.fixture()
def images(tmp_path) -> Path:
    return write_image_folder(tmp_path / "images")


@pytest.fixture()
def one_process(images, tmp_path) -> dict[str, bytes]:
    out = tmp_path / "one"
    summary = run_segmentation(_step5_config(images, out), model_loader=TinyParser)
    assert (summary.parsed, summary.unreadable, summary.merged_parts) == (6, 1, 0)
    files = folder_bytes(out)
    assert "parsing_000006.png" in files and "crops.csv" in files
    return files


@pytest.mark.slow
def test_step5_two_torchrun_ranks_write_what_one_process_writes(images, one_process, tmp_path):
    wrapper = tmp_path / "step5_tiny.py"
    wrapper.write_text(textwrap.dedent(STEP5_WRAPPER.format(repo=str(REPO), tests=str(REPO / "tests"))))
    out = tmp_path / "two"
    result = _torchrun(wrapper, "--images", str(images), "--out", str(out), "--segmentation-checkpoint",
                       str(images.parent / "unused.pt"), "--device", "cpu", "--crop", "full", "--batch-size", "2",
                       "-q")
    assert folder_bytes(out) == one_process  # maps, crops, heads and crops.csv; no part left behind
    lines = [line for line in result.stdout.splitlines() if line.startswith("segmentation:")]
    assert any("7 images" in line and "parsed 6" in line and "merged 2 parts" in line for line in lines), lines


def test_step5_shards_merge_into_the_one_process_files(images, one_process, tmp_path, capsys):
    out = tmp_path / "shards"
    first = run_segmentation(_step5_config(images, out, shard="0/2"), model_loader=TinyParser)
    assert (first.total, first.shard) == (4, "0/2") and "merge_shards.py 5" in first.line()
    merge = load_script_file("merge_shards.py").main
    flags = ["--images", str(images), "--out", str(out), "--crop", "full", "-q"]
    assert merge(["5", *flags]) == 2  # shard 1 has not run: named, nothing merged
    assert "crops.part-1-of-2.csv missing" in capsys.readouterr().err and not (out / "crops.csv").exists()

    run_segmentation(_step5_config(images, out, shard="1/2"), model_loader=TinyParser)
    assert merge(["5", *flags]) == 0
    assert folder_bytes(out) == one_process
    assert merge(["5", *flags]) == 0  # a second merge changes nothing
    assert folder_bytes(out) == one_process
    summary = merge_segmentation_shards(_step5_config(images, out))
    assert (summary.parsed, summary.unreadable, summary.merged_parts) == (6, 1, 0)


def test_step5_a_restarted_job_resumes_what_a_killed_rank_left(images, one_process, tmp_path):
    """Rank 0 finished its share, rank 1 died before writing anything, and one of rank 0's images lost its
    last file: the restarted job (one process here) keeps rank 0's part, redoes only what is missing."""
    out = tmp_path / "killed"
    run_segmentation(_step5_config(images, out, shard="0/2"), model_loader=TinyParser)
    (out / "heads_000002.json").unlink()
    again = run_segmentation(_step5_config(images, out), model_loader=TinyParser)
    # rank 0 had 000000, 000002, 000004, 000006: three stay done; 000002 and rank 1's share (000003 unreadable) are redone
    assert (again.skipped, again.parsed, again.unreadable) == (3, 3, 1)
    assert folder_bytes(out) == one_process


# --- step 6 -------------------------------------------------------------------------------------

@pytest.fixture()
def seg_dir(tmp_path) -> Path:
    return write_segmentation_folder(tmp_path / "seg")


def _step6_flags(seg: Path, out: Path) -> list[str]:
    return ["--segmentation-dir", str(seg), "--out", str(out), "--images", str(seg.parent / "none"),
            "--landmark-judge", "off", "--per-group", "1", "-q"]


@pytest.fixture()
def step6_one_process(seg_dir, tmp_path) -> dict[str, bytes]:
    out = tmp_path / "scores_one"
    assert load_script_file("06_compute_property_scores.py").main(_step6_flags(seg_dir, out)) == 0
    return folder_bytes(out)


@pytest.mark.slow
def test_step6_two_torchrun_ranks_write_what_one_process_writes(seg_dir, step6_one_process, tmp_path):
    out = tmp_path / "scores_two"
    result = _torchrun(REPO / "stylegan_and_segmentation" / "06_compute_property_scores.py",
                       *_step6_flags(seg_dir, out))
    assert folder_bytes(out) == step6_one_process  # all_scores.csv, normalization.json, pictures; no parts
    assert "scored 5 images" in result.stdout and "(merged 2 shard parts)" in result.stdout  # rank 0 merged


def test_step6_shards_merge_into_the_one_process_files(seg_dir, step6_one_process, tmp_path, capsys):
    out = tmp_path / "scores_shards"
    script = load_script_file("06_compute_property_scores.py")
    merge = load_script_file("merge_shards.py").main
    assert script.main([*_step6_flags(seg_dir, out), "--shard", "1/2"]) == 0
    assert "merge_shards.py 6" in capsys.readouterr().out
    assert merge(["6", *_step6_flags(seg_dir, out)]) == 2
    assert "raw_scores.part-0-of-2.json missing" in capsys.readouterr().err
    assert script.main([*_step6_flags(seg_dir, out), "--shard", "0/2"]) == 0
    assert merge(["6", *_step6_flags(seg_dir, out)]) == 0
    assert folder_bytes(out) == step6_one_process
    assert merge(["6", *_step6_flags(seg_dir, out)]) == 0  # merged before: nothing to do, nothing changes
    assert folder_bytes(out) == step6_one_process
