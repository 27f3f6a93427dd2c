"""download_models.py fails fast and clearly when offline, and never touches an outside address."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the with-block ends


def _run(tmp_path, env_extra):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HF_HOME": str(tmp_path / "hf"), **env_extra}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(REPO / "download_models.py"), "--root", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=60)
    return proc, time.perf_counter() - start


def test_offline_env_fails_fast_with_instructions(tmp_path):
    proc, seconds = _run(tmp_path, {"HF_HUB_OFFLINE": "1", "HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}"})
    assert proc.returncode == 1
    assert "no internet" in proc.stderr and "segmentation_model.pt" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "StyleGAN missing" in proc.stdout and "by hand" in proc.stdout
    assert seconds < 20
    assert not (tmp_path / "segmentation" / "models" / "segmentation_model.pt").exists()


def test_unreachable_endpoint_fails_fast(tmp_path):
    proc, seconds = _run(tmp_path, {"HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}"})
    assert proc.returncode == 1 and "cannot reach" in proc.stderr and "Traceback" not in proc.stderr
    assert seconds < 20


def test_existing_file_is_reported_not_downloaded(tmp_path):
    target = tmp_path / "segmentation" / "models" / "segmentation_model.pt"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"x" * 10)
    proc, _ = _run(tmp_path, {"HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0
    assert "already present" in proc.stdout and "10 bytes" in proc.stdout and "warning" in proc.stdout
