"""What each pre-trained checkpoint is, where it goes and where to get it.

Kept as data next to the path (the torchvision ``Weights`` habit), so every "file missing" or
"wrong file" message says the same true things.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

from common.steps import StepError


class CheckpointError(StepError, RuntimeError):
    """A checkpoint is missing, unreadable or not the expected model; the message says what to do."""


@dataclass(frozen=True)
class CheckpointInfo:
    name: str
    contract_path: str  # relative to the repository root
    what: str
    how_to_get: str
    approx_size: str
    sha256: str | None = None
    size_bytes: int | None = None

    def describe(self) -> str:
        text = (f"{self.name}: {self.what}\n  expected at: {self.contract_path} (about {self.approx_size})\n"
                f"  how to get it: {self.how_to_get}")
        if self.sha256:
            text += f"\n  sha256: {self.sha256}"
        return text


STYLEGAN_CELEBA_PARTIAL_256 = CheckpointInfo(
    name="genforce StyleGAN celeba-partial-256x256",
    contract_path="stylegan/stylegan_model.pth",
    what=("genforce's StyleGAN (v1) checkpoint 'stylegan_celeba_partial256.pth': a dict with "
          "'generator', 'discriminator' and usually 'generator_smooth' state_dicts (possibly nested "
          "under 'models'), resolution 256, all genforce defaults"),
    how_to_get=("genforce's official download links are dead; copy your own copy of "
                "stylegan_celeba_partial256.pth to this path by hand (python download_models.py explains)"),
    approx_size="300 MB",
)

FACEXFORMER = CheckpointInfo(
    name="FaceXFormer",
    contract_path="segmentation/models/segmentation_model.pt",
    what="the official FaceXFormer checkpoint ckpts/model.pt (dict with 'state_dict_backbone', 505 keys)",
    how_to_get=("python download_models.py (Hugging Face repo kartiknarayan/facexformer, file ckpts/model.pt), "
                "or download that file by hand and save it under this name"),
    approx_size="1.1 GB (1,104,869,851 bytes)",
    sha256="327a755849ba64d336fb96589ff87b27e84a12be1ecf8bcfaa503d66f803286d",
    size_bytes=1_104_869_851,
)


def require_file(path: Path | str, info: CheckpointInfo) -> Path:
    """Return ``path`` if it is a non-empty file, else raise a CheckpointError explaining what to do."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}\n{info.describe()}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint is empty (0 bytes): {path}\n{info.describe()}")
    return path


# --- "is this file a checkpoint at all?" --------------------------------------------------------

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTOCOL_BYTE = 0x80  # torch's legacy (non-zip) format starts with a pickle


def sniff_non_checkpoint(path: Path | str) -> str | None:
    """What a file looks like when it is clearly not a PyTorch checkpoint, else None.

    Reads the first 4 KB (and, for a zip, its central directory). Checked before ``torch.load``
    because torch's own errors for these files (``KeyError: 101``, "weights only load failed")
    blame the wrong thing, and would send a user to an unsafe ``--trust-checkpoint``.
    """
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(4096)
    if head.startswith(_ZIP_MAGIC):
        return None if zipfile.is_zipfile(path) else "a truncated or corrupt zip (an interrupted download or copy)"
    if head[:1] and head[0] == _PICKLE_PROTOCOL_BYTE:
        return None
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer (the real file was never fetched: run `git lfs pull` or download it)"
    lowered = head.lstrip().lower()
    if lowered.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head")) or b"<html" in lowered[:512]:
        return "an HTML page (the download link answered with a web page, not the file)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(ch.isprintable() or ch in "\r\n\t" for ch in text):
        return "plain text"
    return "random bytes (neither a zip nor a pickle)"


def not_a_checkpoint_error(path: Path | str, looks_like: str, fix: str) -> CheckpointError:
    """The one-line error for a file that is not a checkpoint: file, what it looks like, the fix."""
    size = Path(path).stat().st_size
    return CheckpointError(f"{path} ({size:,} bytes) is not a PyTorch checkpoint: it looks like {looks_like}; "
                           f"fix: {fix}")


def check_finite_tensors(tensors: dict, path: Path | str, fix: str, entry: str = "") -> None:
    """Refuse NaN/inf weights at load time, before any output is written (one line, names the file)."""
    import torch

    bad = [k for k, v in tensors.items()
           if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        where = f" [{entry}]" if entry else ""
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise CheckpointError(f"{path}{where} holds NaN or infinite weights in {len(bad)} tensors ({shown}): "
                              f"the file is corrupt or came from a diverged run; fix: {fix}")
