"""Listing and reading the pipeline's image folders, with clear errors for bad files.

Every step opens images through :func:`open_image` (or :func:`load_rgb`), so one pixel limit
guards them all: a 218 KB PNG can claim 15000x15000 pixels (a decompression bomb) and decoding it
would take 675 MB and seconds; such a file is an unreadable image (skipped, counted, listed), not
a crash. The pipeline's images are 256x256; the limit leaves room for any real photo.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from common.paths import IMAGE_SUFFIXES


MAX_IMAGE_PIXELS = 40_000_000
"""Largest width x height any step decodes (about 6300x6300); larger files are refused unread."""


class ImageReadError(OSError):
    """An image file is missing, truncated, too large or not an image."""


def _too_large(path: Path, width: int, height: int) -> ImageReadError:
    return ImageReadError(f"{path}: {width}x{height} = {width * height:,} pixels exceeds the limit of "
                          f"{MAX_IMAGE_PIXELS:,} pixels (common.images.MAX_IMAGE_PIXELS; a decompression bomb "
                          "or not a pipeline image): not decoded")


@contextlib.contextmanager
def open_image(path: Path | str) -> Iterator[Image.Image]:
    """``PIL.Image.open`` with the pixel limit checked before decoding; every failure is an ImageReadError."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise _too_large(path, width, height)
            yield image
    except ImageReadError:
        raise
    except FileNotFoundError as exc:
        raise ImageReadError(f"image not found: {path}") from exc
    except Image.DecompressionBombError as exc:  # PIL's own (higher) limit, hit inside open()
        pixels = str(exc).split(" exceeds")[0]  # "Image size (225000000 pixels)"
        raise ImageReadError(f"{path}: {pixels} exceeds the limit of {MAX_IMAGE_PIXELS:,} pixels "
                             "(common.images.MAX_IMAGE_PIXELS; a decompression bomb or not a pipeline image): "
                             "not decoded") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"cannot read image {path}: {exc}") from exc


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
    """Read an image as an HxWx3 uint8 RGB array (greyscale/RGBA converted); ImageReadError if unreadable."""
    path = Path(path)
    with open_image(path) as image:
        image.load()
        return np.asarray(image.convert("RGB"))
