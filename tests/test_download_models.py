"""download_models.py fails fast and clearly when offline, and never touches an outside address."""
from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the with-block ends


def _run(tmp_path, env_extra):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HF_HOME": str(tmp_path / "hf"),
           "FID_INCEPTION_URL": f"http://127.0.0.1:{_closed_port()}/weights.pth", **env_extra}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(REPO / "download_models.py"), "--root", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=60)
    return proc, time.perf_counter() - start


def _startup_seconds(tmp_path) -> float:
    """How long this machine takes to start the script and import what it imports (torch among them): the
    part of a run that is not the network. On a loaded 2-core machine it alone took 20-30 s."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import download_models"], cwd=REPO, capture_output=True,
                   env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(REPO)}, timeout=120,
                   check=True)
    return time.perf_counter() - start


FAIL_FAST_S = 15.0
"""Beyond start-up, an offline run must end within this: the reachability check's 5 s connect timeout plus
margin (a download left to its own retries takes minutes)."""


def test_offline_env_fails_fast_with_instructions(tmp_path):
    proc, seconds = _run(tmp_path, {"HF_HUB_OFFLINE": "1", "HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}"})
    assert proc.returncode == 1
    assert "no internet" in proc.stderr and "segmentation_model.pt" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "StyleGAN missing" in proc.stdout and "by hand" in proc.stdout
    assert seconds < _startup_seconds(tmp_path) + FAIL_FAST_S
    assert not (tmp_path / "segmentation" / "models" / "segmentation_model.pt").exists()


def test_unreachable_endpoint_fails_fast(tmp_path):
    proc, seconds = _run(tmp_path, {"HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}"})
    assert proc.returncode == 1 and "cannot reach" in proc.stderr and "Traceback" not in proc.stderr
    assert seconds < _startup_seconds(tmp_path) + FAIL_FAST_S


def test_existing_file_is_reported_not_downloaded(tmp_path):
    target = tmp_path / "segmentation" / "models" / "segmentation_model.pt"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"x" * 10)
    proc, _ = _run(tmp_path, {"HF_HUB_OFFLINE": "1"})
    assert "already present" in proc.stdout and "10 bytes" in proc.stdout and "warning" in proc.stdout
    # the other file is still fetched (here: its address is closed)
    assert "cannot reach" in proc.stderr and "weights-inception-2015-12-05-6726825d.pth" in proc.stderr


def _serve_once(body: bytes):
    """A one-file HTTP server on 127.0.0.1 (a thread; stops with the test)."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_inception_with_the_wrong_sha256_is_refused_and_not_saved(tmp_path):
    server = _serve_once(b"not the inception weights")
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/weights-inception-2015-12-05-6726825d.pth"
        proc, _ = _run(tmp_path, {"HF_HUB_OFFLINE": "1", "FID_INCEPTION_URL": url})
    finally:
        server.shutdown()
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "25 bytes, sha256" in proc.stderr and "should start with 6726825d" in proc.stderr
    folder = tmp_path / "judges" / "models"
    assert not list(folder.glob("*")) if folder.exists() else True  # neither the file nor a temp file


@pytest.mark.parametrize("flag,value", [("--endpoint", "notaurl"), ("--inception-url", "file:///etc/passwd")])
def test_a_value_that_is_not_an_http_url_is_refused_at_parse_time(tmp_path, capsys, flag, value):
    """Replay case dl_endpoint_bogus (issue 19): ``download_models.py --endpoint notaurl --inception-url
    file:///etc/passwd`` said "no internet: cannot reach notaurl (Connection refused)", blaming the network
    for a typo. Reproduction: ``python benchmarks/replay_cases.py --only dl_endpoint_bogus``. Now the flag is
    refused when parsed (exit 2), naming the flag and the value, and nothing is written."""
    import download_models

    with pytest.raises(SystemExit) as info:
        download_models.main(["--root", str(tmp_path), flag, value])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert flag in err and value in err and "http" in err and "no internet" not in err
    assert not any(tmp_path.iterdir())
