"""Device choice and logging set-up, shared by the scripts and the step packages."""
from __future__ import annotations

import logging

from common.steps import StepError


class DeviceError(StepError, RuntimeError):
    """A device that does not exist here (``--device cuda`` without a GPU, a misspelt name): one line, exit 2."""


def resolve_device(name: str = "auto"):
    """``auto`` -> cuda if available else cpu; ``cuda`` without a GPU is a clear error."""
    import torch  # here, not at the top: common/ stays torch-free (the labeller imports it)

    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):  # meta, mps...: not a device the steps run on
        raise DeviceError(f"--device {name}: not a device name; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"--device {name} was requested but no CUDA GPU is available; use --device cpu")
    return device


def setup_logging(verbosity: int = 0) -> None:
    """Scripts call this once: -q -> warnings only, default info, -v debug."""
    level = logging.INFO if verbosity == 0 else (logging.DEBUG if verbosity > 0 else logging.WARNING)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)
