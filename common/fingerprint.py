"""One identity for an input file (a checkpoint, a CSV): size + sha256, memoised per process.

Every step that records "which file did I use" (step 1's ``generation.json``, the latent
directions, the runner's skip check) calls :func:`file_fingerprint`, so two records of the same
file always compare equal and a swapped file at the same path never does. Hashing streams the
file (a 1.1 GB FaceXFormer file takes about a second); the memo is keyed by path, size and
modification time, so a file that changes is hashed again.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

_CHUNK = 1 << 22
_MEMO: dict[tuple[str, int, int], str] = {}


def sha256_of_file(path: Path | str) -> str:
    """The hex sha256 of a file's bytes, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def file_fingerprint(path: Path | str) -> str:
    """``"<size>:<sha256>"`` of a file: equal strings mean the same bytes."""
    path = Path(path)
    stat = os.stat(path)
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _MEMO:
        _MEMO[key] = f"{stat.st_size}:{sha256_of_file(path)}"
    return _MEMO[key]


_FINGERPRINT = re.compile(r"\d+:[0-9a-f]{64}")


def is_file_fingerprint(text: str) -> bool:
    """Whether ``text`` has the shape :func:`file_fingerprint` writes (a cut or hand-edited cell does not)."""
    return _FINGERPRINT.fullmatch(text) is not None

