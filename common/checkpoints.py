"""What each pre-trained checkpoint is, where it goes and where to get it.

Kept as data next to the path (the torchvision ``Weights`` habit), so every "file missing" or
"wrong file" message says the same true things.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class CheckpointError(RuntimeError):
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
