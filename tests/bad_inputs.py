"""Bad input files for the reliability tests (issue 9): made on the fly, small, deterministic."""
from __future__ import annotations

import os
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

# kind -> what the "not a checkpoint" message must say the file looks like
BAD_CHECKPOINT_KINDS = {
    "random": "random bytes",
    "lfs": "Git LFS pointer",
    "html": "HTML page",
    "truncated_zip": "truncated or corrupt zip",
    "text": "plain text",
}


def write_bad_checkpoint(kind: str, path: Path) -> Path:
    """A file of ``kind`` that a user might have at a checkpoint path by mistake."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "random":
        path.write_bytes(b"\x13" + np.random.default_rng(0).bytes(4999))
    elif kind == "lfs":
        path.write_text("version https://git-lfs.github.com/spec/v1\n"
                        "oid sha256:" + "ab" * 32 + "\nsize 302438400\n")
    elif kind == "html":
        path.write_text("<!DOCTYPE html>\n<html><head><title>Google Drive - Virus scan warning</title></head>"
                        "<body>Download anyway</body></html>\n")
    elif kind == "truncated_zip":
        full = path.with_suffix(".full")
        torch.save({"generator": {"w": torch.zeros(1000)}}, full)
        data = full.read_bytes()
        full.unlink()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "text":
        path.write_text("embedding weights, see the README\n")  # torch.load: KeyError: 101 before the fix
    else:  # pragma: no cover
        raise ValueError(kind)
    return path


CODE_GLOBAL = f"{os.system.__module__}.system"
"""How a pickle names ``os.system`` on this OS (``posix.system``; ``nt.system`` on Windows)."""


class _Payload:
    """Unpickling this runs ``os.system`` (it touches ``marker``): a file holding it must never load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def write_payload_checkpoint(path: Path, fmt: str = "zip") -> Path:
    """A "checkpoint" whose pickle asks for ``os.system`` (touching ``<path>.PWNED`` if ever run).

    fmt: ``zip`` (torch.save), ``legacy`` (torch's pre-1.6 format), ``pickle0`` / ``pickle1`` /
    ``pickle2`` / ``pickle4`` (a plain pickle of that protocol: 0 is text, 1 starts with no protocol
    byte, 4 names its globals with STACK_GLOBAL)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    obj = {"generator": {"w": torch.zeros(2)}, "payload": _Payload(payload_marker(path))}
    if fmt == "zip":
        torch.save(obj, path)
    elif fmt == "legacy":
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    elif fmt in ("pickle0", "pickle1", "pickle2", "pickle4"):
        path.write_bytes(pickle.dumps({"payload": _Payload(payload_marker(path))}, protocol=int(fmt[-1])))
    else:  # pragma: no cover
        raise ValueError(fmt)
    return path


def payload_marker(path: Path) -> Path:
    """The file a payload checkpoint's code would create: it must never exist."""
    return path.with_name(path.name + ".PWNED")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png_bomb(path: Path, side: int = 15000) -> Path:
    """A valid greyscale PNG of side x side black pixels (15000: 225 Mpx in ~220 KB), streamed: little memory."""
    compressor = zlib.compressobj(9)
    block = b"\x00" * ((side + 1) * 500)  # 500 rows of (filter byte + pixels)
    parts = [compressor.compress(block[: (side + 1) * min(500, side - first)]) for first in range(0, side, 500)]
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", b"".join(parts))
                     + _chunk(b"IEND", b""))
    return path


def write_finetune_stub(path: Path, regressor: bool = False) -> Path:
    """A file that reads as a step-7 checkpoint (format version and config, no networks): enough for code
    that only finds the newest valid checkpoint of a folder; loading a generator from it is refused.
    ``regressor``: it says it carries a property regressor (empty), as ``--refine`` asks when it plans."""
    from stylegan.finetune_schema import FINETUNE_FORMAT_VERSION

    path.parent.mkdir(parents=True, exist_ok=True)
    extra = {"regressor": {}} if regressor else {}
    torch.save({"format_version": FINETUNE_FORMAT_VERSION, "step": 0, "config": {**extra}, **extra}, path)
    return path


def cheap_facexformer_state_dict() -> dict[str, torch.Tensor]:
    """FaceXFormer's keys, shapes and dtypes, stored as stride-0 views of one element: a tiny file that
    loads (every weight 0)."""
    from segmentation.facexformer import facexformer_key_shapes

    return {k: torch.zeros(1, dtype=torch.int64 if k.endswith("_index") else torch.float32).expand(shape)
            for k, shape in facexformer_key_shapes().items()}
