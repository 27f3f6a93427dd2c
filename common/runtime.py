"""Devices, logging and the one-line summary every script ends with."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field


def resolve_device(name: str = "auto"):
    """``auto`` -> cuda if available else cpu; ``cuda`` without a GPU is a clear error."""
    import torch

    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"--device {name} was requested but no CUDA GPU is available; use --device cpu")
    return device


def setup_logging(verbosity: int = 0) -> None:
    """Scripts call this once: -q -> warnings only, default info, -v debug."""
    level = logging.INFO if verbosity == 0 else (logging.DEBUG if verbosity > 0 else logging.WARNING)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)


@dataclass
class Timer:
    """Wall-clock timer for summary lines."""

    start: float = field(default_factory=time.perf_counter)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start

    def __str__(self) -> str:
        secs = self.seconds
        return f"{secs:.1f}s" if secs < 120 else f"{secs / 60:.1f}min"
