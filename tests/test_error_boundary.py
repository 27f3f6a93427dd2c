"""The one error boundary (common.cli.run_guarded), used by every step script and by the runner.

Ctrl-C is one line and exit 130 ("interrupted; N items finished are kept; re-run to continue"); a full
disk or a read-only output is one line naming the file and the fix, exit 2; a read-only output is
refused before the work; anything else is a bug and keeps its traceback. Reproductions: the rows
int_*, df_* and ro_* of the reliability case table (../shared/reliability/cases-2026-12.md).
"""
from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_models import TINY_G_16

import common.cli as cli
from common.cli import StepStopped, run_guarded
from common.paths import PipelinePaths
from common.steps import interrupted_line, memory_failure, write_failure
from pipeline.runner import STEPS, PipelineOptions, load_script, run_steps
from stylegan import write_random_checkpoint


@pytest.fixture
def root(tmp_path) -> Path:
    write_random_checkpoint(PipelinePaths(tmp_path).stylegan_checkpoint, seed=0, **TINY_G_16)
    return tmp_path


def _one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@contextlib.contextmanager
def _ctrl_c_after(count: int):
    """The progress bar's callback raises KeyboardInterrupt once ``count`` items are done: Ctrl-C arriving in
    the main thread while the step works (what SIGINT's default handler does)."""
    @contextlib.contextmanager
    def bar(desc: str, quiet: bool = False, unit: str = "img"):
        def progress(done: int, total: int) -> None:
            if done >= count:
                raise KeyboardInterrupt

        yield progress

    import pipeline.runner as runner

    saved = cli.progress_bar, runner.progress_bar
    cli.progress_bar = runner.progress_bar = bar
    try:
        yield
    finally:
        cli.progress_bar, runner.progress_bar = saved


# ---- the mechanism ------------------------------------------------------------------------------------


def test_ctrl_c_becomes_one_line_with_the_finished_count():
    def run(config, progress):
        progress(3, 10)
        raise KeyboardInterrupt

    with pytest.raises(StepStopped) as info:
        run_guarded(run, object())
    assert info.value.exit_code == 130 and str(info.value) == interrupted_line(3)
    assert str(info.value) == "interrupted; 3 items finished are kept; re-run to continue"


@pytest.mark.parametrize("code,words,fix", [
    (errno.ENOSPC, "disk full", "free space and re-run"),
    (errno.EDQUOT, "disk quota exceeded", "free space and re-run"),
    (errno.EROFS, "read-only file system", "choose a writable output folder and re-run"),
])
def test_a_failed_write_is_one_line_naming_the_file_even_when_wrapped(code, words, fix, tmp_path):
    target = tmp_path / "out" / "all_scores.csv"

    def run(config, progress):
        try:
            raise OSError(code, os.strerror(code), str(target))
        except OSError as exc:
            raise RuntimeError("a step that wraps the write") from exc

    with pytest.raises(StepStopped) as info:
        run_guarded(run, object())
    assert info.value.exit_code == 2
    assert str(info.value) == f"cannot write {target}: {words}; {fix}; finished items are kept"


@pytest.mark.parametrize("failure", [
    MemoryError("Unable to allocate 74.5 PiB for an array with shape (100000000, 3, 96, 96)"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you tried "
                 "to allocate 40000000000000000 bytes. Error code 12 (Cannot allocate memory)"),
    RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB"),
])
def test_a_request_too_big_for_memory_is_one_line(failure):
    """Hostile tester, defect 5: ``08 --num 0 --sweep eyes --sweep-values 100000000`` ended in numpy's
    _ArrayMemoryError traceback, ``07_fit_edit_correction.py --hidden 100000000`` in torch's "DefaultCPUAllocator:
    can't allocate memory" traceback (rc 1). Those flags are bounded now; any size still too big for the
    machine is one line naming the fix, exit 2, even when a step wraps the error."""
    def run(config, progress):
        try:
            raise failure
        except (MemoryError, RuntimeError) as exc:
            raise ValueError("a step that wraps it") from exc

    with pytest.raises(StepStopped) as info:
        run_guarded(run, object())
    assert info.value.exit_code == 2
    line = str(info.value)
    assert line.startswith("out of memory:") and "smaller" in line and "\n" not in line
    assert memory_failure(RuntimeError("shape mismatch")) is None and memory_failure(ValueError("x")) is None


def test_a_bug_keeps_its_traceback():
    """Steps 8 and 9 once called every ValueError a user error: a bug then looked like bad input."""
    def run(config, progress):
        raise ValueError("a bug, not the user's input")

    with pytest.raises(ValueError, match="a bug"):
        run_guarded(run, object())
    assert write_failure(ValueError("x")) is None and write_failure(OSError(errno.EIO, "I/O error")) is None


def test_atomic_writes_name_the_target_not_the_temp_file(tmp_path, monkeypatch):
    from common.io import atomic_write_text

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as info:
        atomic_write_text(tmp_path / "a.csv", "x")
    assert info.value.filename == str(tmp_path / "a.csv") and info.value.errno == errno.ENOSPC
    assert write_failure(info.value).startswith(f"cannot write {tmp_path / 'a.csv'}: disk full")
    assert list(tmp_path.iterdir()) == []  # no temp file left


# ---- every script: a read-only output is refused before the work ---------------------------------------


@pytest.mark.parametrize("number", list(STEPS))
def test_a_read_only_output_is_refused_before_any_work(number, tmp_path, monkeypatch, capsys):
    """ro_step5: `05 --crop full --out /mnt/ro/out` parsed for 12 s, then an OSError traceback (EROFS);
    ro_step6, ro_step8: tracebacks. Simulated: the file system under tmp_path reports itself read-only."""
    real = os.statvfs

    class ReadOnly:
        def __init__(self, stat):
            self._stat = stat

        def __getattr__(self, name):
            return getattr(self._stat, name)

        @property
        def f_flag(self):
            return self._stat.f_flag | os.ST_RDONLY

    def statvfs(path):
        stat = real(path)
        return ReadOnly(stat) if Path(path).resolve().is_relative_to(tmp_path.resolve()) else stat

    monkeypatch.setattr(os, "statvfs", statvfs)
    before = sorted(tmp_path.rglob("*"))
    script = load_script(number)
    argv = ["--root", str(tmp_path / "run"), "-q"]
    if "--device" in script.build_parser()._option_string_actions:
        argv += ["--device", "cpu"]
    if number == "2":
        argv += ["--no-serve", "--rule-labels"]
    rc = script.main(argv)
    assert rc == 2, number
    line = _one_line(capsys.readouterr().err)
    assert "read-only file system" in line and "choose a writable output" in line, (number, line)
    assert sorted(tmp_path.rglob("*")) == before, number  # nothing read into, nothing made


# ---- real steps, real interrupts and full disks --------------------------------------------------------


def test_ctrl_c_in_step1_is_one_line_exit_130_and_resumes(root, tmp_path, capsys):
    """int_step1: Ctrl-C 4 s into `01_generate_images.py --num 2000` printed a KeyboardInterrupt traceback
    (files intact, resume identical). Now: one line, exit 130, finished images complete, re-run finishes."""
    out = tmp_path / "gen"
    argv = ["--root", str(root), "--out", str(out), "--num", "24", "--batch-size", "2", "--format", "png",
            "--device", "cpu", "--seed", "0", "-q"]
    with _ctrl_c_after(2):
        rc = load_script("1").main(argv)
    assert rc == 130
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("interrupted; ") and line.endswith("items finished are kept; re-run to continue")
    kept = sorted(out.glob("*.png"))
    assert 2 <= len(kept) < 24 and not list(out.glob(".tmp-*"))
    assert int(line.split()[1]) <= len(kept)  # the line never claims more than is on disk (writes count as they land)
    for path in kept:
        assert np.asarray(Image.open(path)).shape == (16, 16, 3)  # complete files only
    assert load_script("1").main(argv) == 0
    assert len(list(out.glob("*.png"))) == 24


def test_ctrl_c_under_the_runner_stops_with_130_and_no_marker(root, capsys):
    """int_runner: Ctrl-C 6 s into `run_pipeline.py --from 1 --to 1` printed a KeyboardInterrupt traceback."""
    options = PipelineOptions(root=root, device="cpu", first="1", last="1",
                              step_args={"1": ["--num", "6", "--batch-size", "2", "--format", "png"]})
    with _ctrl_c_after(2):
        report = run_steps(options)
    assert report.exit_code == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and "step 1 (01_generate_images.py): interrupted; " in err
    assert not (root / ".pipeline" / "step1.json").exists()


def test_a_full_disk_in_step6_is_one_line_naming_the_file(tmp_path, monkeypatch, capsys):
    """df_step6: `06 --out /mnt/full/s6` (1 MB tmpfs) ended in an OSError ENOSPC traceback. Simulated:
    every fsync reports a full disk."""
    from segment_world import draw

    seg = tmp_path / "seg"
    seg.mkdir()
    rows = ["img_name,face_found,x0,y0,x1,y1,prob,crop,error"]
    for i in range(3):
        p, face = draw(i)
        Image.fromarray(p).save(seg / f"parsing_{i:06d}.png")
        Image.fromarray(face).save(seg / f"face_{i:06d}.png")
        rows.append(f"{i:06d}.png,1,0,0,256,256,0.99,mtcnn,")
    (seg / "crops.csv").write_text("\n".join(rows) + "\n")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    out = tmp_path / "scores"
    rc = load_script("6").main(["--segmentation-dir", str(seg), "--out", str(out), "--images", str(tmp_path / "no"),
                                "--landmark-judge", "off", "-q"])
    assert rc == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"error: cannot write {out}") and "disk full; free space and re-run" in line
    assert not list(out.glob(".tmp-*"))


def test_a_full_disk_under_studio_regenerate_is_one_line(tmp_path, monkeypatch, capsys):
    """Replay case n_df_studio_save (issue 19): ``studio.py --regenerate FACE --out /mnt/full/face.png`` (a full
    16 KB tmpfs) ended in an "OSError: [Errno 28] No space left on device" traceback: the studio script kept an
    except list of its own instead of the one boundary. Reproduction: ``python benchmarks/replay_cases.py
    --only n_df_studio_save``. Simulated here: every fsync reports a full disk."""
    from urllib.parse import parse_qs

    from studio_world import make_world

    from pipeline.runner import load_script_file
    from pipeline.studio.app import StudioApp
    from pipeline.studio.render import load_studio_models

    world = make_world(tmp_path / "root")
    models = load_studio_models(world)
    saved = tmp_path / "base.png"
    saved.write_bytes(StudioApp(models).get("/api/save", parse_qs("face=base&seed=1")).body)

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    out = tmp_path / "again.png"
    rc = load_script_file("studio.py").main(["--root", str(world.root), "--regenerate", str(saved), "--out", str(out)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"cannot write {out}" in err and "disk full; free space and re-run" in err
    assert not out.exists() and not list(tmp_path.glob(".tmp-*"))


def test_ctrl_c_while_a_script_imports_torch_is_one_line(tmp_path):
    """Replay case n_int_step7a (issue 19): Ctrl-C 6 s into ``07_fit_latent_directions.py`` on a loaded machine
    landed while torch was still importing, before the script's error boundary runs: a 20-line
    ``KeyboardInterrupt`` traceback from torch/_ops.py. Reproduction: ``python benchmarks/replay_cases.py --only
    n_int_step7a``. Made deterministic here: a stand-in ``torch`` package first on the path raises
    KeyboardInterrupt when imported, exactly where the real Ctrl-C landed."""
    import signal
    import subprocess
    import sys

    fake = tmp_path / "fake" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise KeyboardInterrupt\n")
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(repo / "stylegan_and_segmentation" / "01_generate_images.py"), "--help"],
                          capture_output=True, text=True, timeout=120,
                          env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": f"{fake.parent}{os.pathsep}{repo}"})
    assert proc.returncode in (130, -signal.SIGINT)  # Python exits by the signal, as a shell expects
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == ["interrupted (Ctrl-C) before any work; nothing was written; re-run to start"]
