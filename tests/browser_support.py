"""What every real-browser test shares: Debian's Chromium, its offline flags, the skip rule, a free port.

Imported as ``from browser_support import ...`` (torch-fidelity installs a top-level ``tests``
package, so ``tests.`` imports are ambiguous).
"""
from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
]
"""Quiet offline: without the resolver rule Chromium still looks up Google hosts."""

BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"Chromium not installed at {CHROMIUM}; install Debian's: "
                                                     "`sudo apt-get install chromium` (CI does), or set CHROMIUM"),
]


def free_port() -> int:
    """A loopback port that was free a moment ago (the server under test binds it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_server(proc: subprocess.Popen, url: str, log: Path, what: str, timeout: float = 90) -> None:
    """Return once ``url`` answers 200; if ``proc`` exits or ``timeout`` passes, kill it and raise with its log."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"{what} did not start:\n{log.read_text()}")
        time.sleep(0.1)
