"""Listing and reading the pipeline's image folders, with clear errors for bad files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from common.paths import IMAGE_SUFFIXES


class ImageReadError(OSError):
    """An image file is missing, truncated or not an image."""


def list_images(folder: Path | str) -> list[Path]:
    """Image files of a folder (not recursive), sorted by name; temp files are ignored."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def load_rgb(path: Path | str) -> np.ndarray:
    """Read an image as an HxWx3 uint8 RGB array (greyscale/RGBA converted)."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            return np.asarray(image.convert("RGB"))
    except FileNotFoundError as exc:
        raise ImageReadError(f"image not found: {path}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"cannot read image {path}: {exc}") from exc
