"""The one file identity every step records."""
from __future__ import annotations

import hashlib
import os

from common.fingerprint import file_fingerprint, same_file_content


def test_fingerprint_is_size_and_sha256(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"abc" * 1000)
    assert file_fingerprint(path) == f"3000:{hashlib.sha256(b'abc' * 1000).hexdigest()}"


def test_swapped_file_at_same_path_is_detected(tmp_path):
    path = tmp_path / "model.pth"
    path.write_bytes(b"first")
    recorded = file_fingerprint(path)
    assert same_file_content(recorded, path)
    path.write_bytes(b"other")  # same size, other bytes
    os.utime(path, ns=(1, 1))  # even a restored mtime does not hide it: the key includes mtime
    assert not same_file_content(recorded, path)
    assert not same_file_content(recorded, tmp_path / "missing.pth")
    assert not same_file_content(None, path)
