"""The one file identity every step records."""
from __future__ import annotations

import hashlib
import os

from common.fingerprint import file_fingerprint


def test_fingerprint_is_size_and_sha256(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"abc" * 1000)
    assert file_fingerprint(path) == f"3000:{hashlib.sha256(b'abc' * 1000).hexdigest()}"


def test_swapped_file_at_same_path_is_detected(tmp_path):
    path = tmp_path / "model.pth"
    path.write_bytes(b"first")
    recorded = file_fingerprint(path)
    assert file_fingerprint(path) == recorded
    path.write_bytes(b"other")  # same size, other bytes
    os.utime(path, ns=(1, 1))  # an old date does not hide it: the memo's key includes mtime
    assert file_fingerprint(path) != recorded
