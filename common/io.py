"""Atomic writes and checked reads: a file that exists is always complete.

Every output of the pipeline is written to a temporary file in the same folder, flushed,
fsynced and then renamed over the target (``os.replace`` is atomic on POSIX), so a kill at any
moment leaves either the old file or the new one, never a half-written one. Resume logic can
therefore trust that an existing output is finished.
"""
from __future__ import annotations

import io
import json
import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from common.steps import StepError

TMP_PREFIX = ".tmp-"


class CsvSchemaError(StepError, ValueError):
    """A CSV lacks required columns or holds invalid rows; the message names them."""


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux: /proc).

    ``os.umask`` can only be read by setting it, which races with other threads creating files;
    the fallback does that briefly.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path | str, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, rename).

    ``mkstemp`` creates the file 0600; it gets the mode a plain ``open`` would give (0666 minus
    the umask), so outputs are shared the way the user's umask says.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent)
    except OSError as exc:
        raise _naming(exc, path) from exc
    try:
        try:
            os.fchmod(fd, 0o666 & ~current_umask())
        except OSError:  # a filesystem without modes (some network/FUSE mounts): keep mkstemp's
            pass
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise _naming(exc, path) from exc
        raise
    return path


def _naming(exc: OSError, path: Path) -> OSError:
    """The same error (same errno, so the same OSError subclass) naming the file the caller asked for, not
    the temp file or nothing: a full disk's one line then says which output could not be written."""
    return OSError(exc.errno, exc.strerror or str(exc), str(path)) if exc.errno else exc


def atomic_write_text(path: Path | str, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def json_safe(obj: Any) -> Any:
    """``obj`` with every NaN/infinite float replaced by None (standard JSON has no NaN).

    Browsers', Node's and strict parsers reject bare ``NaN``; readers of our JSON files map
    ``null`` back to "no value" (NaN where a number is expected).
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: json_safe(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(value) for value in obj]
    return obj


def atomic_write_json(path: Path | str, obj: Any) -> Path:
    """Write standard JSON (NaN/infinity as ``null``) atomically."""
    return atomic_write_text(path, json.dumps(json_safe(obj), indent=2, sort_keys=False, allow_nan=False) + "\n")


def encode_image(image_u8: np.ndarray | Image.Image, suffix: str, jpeg_quality: int = 95,
                 png_compress_level: int = 6) -> bytes:
    """Encode an HxWx3 (or HxW) uint8 array or PIL image as PNG or JPEG bytes.

    ``png_compress_level`` 0-9 (zlib; PIL's default 6): 1 is several times faster for a few percent
    more bytes, which a live local page prefers."""
    image = image_u8 if isinstance(image_u8, Image.Image) else Image.fromarray(np.asarray(image_u8))
    buffer = io.BytesIO()
    suffix = suffix.lower().lstrip(".")
    if suffix in ("jpg", "jpeg"):
        image.save(buffer, format="JPEG", quality=jpeg_quality)
    elif suffix == "png":
        image.save(buffer, format="PNG", compress_level=png_compress_level)
    else:
        raise ValueError(f"unsupported image format {suffix!r}; expected jpg or png")
    return buffer.getvalue()


def atomic_save_image(path: Path | str, image_u8: np.ndarray | Image.Image, jpeg_quality: int = 95) -> Path:
    """Save an image atomically; the format follows the file suffix (.jpg/.jpeg/.png)."""
    path = Path(path)
    return atomic_write_bytes(path, encode_image(image_u8, path.suffix, jpeg_quality))


def atomic_save_npy(path: Path | str, array: np.ndarray) -> Path:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return atomic_write_bytes(path, buffer.getvalue())


def atomic_torch_save(path: Path | str, obj: Any) -> Path:
    """``torch.save`` through a temp file; the object must be plain (weights_only-loadable)."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def atomic_write_csv(path: Path | str, frame: Any, columns: Sequence[str] | None = None) -> Path:
    """Write a pandas DataFrame as CSV atomically; ``columns`` fixes the leading column order."""
    if columns is not None:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise CsvSchemaError(f"cannot write {path}: missing columns {missing}")
        extra = [c for c in frame.columns if c not in columns]
        frame = frame[list(columns) + extra]
    return atomic_write_text(path, frame.to_csv(index=False))


def cut_rows(path: Path | str) -> list[tuple[int, int, int]]:
    """(line, cells, header cells) of every data row with fewer cells than the header.

    pandas fills missing cells with NaN, so a file cut in the middle of its last row (an interrupted
    copy, a full disk) reads as a row of empty values: for hand labels that is "unsure", and under
    replace semantics it removed the labels that followed. Readers that must not guess call this.
    """
    import csv

    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            return []
        return [(reader.line_num, len(row), len(header)) for row in reader if row and len(row) < len(header)]


def read_csv_checked(path: Path | str, required: Iterable[str], *, whole_rows: bool = False, **kwargs: Any):
    """Read a CSV with pandas and fail with a plain message if required columns are missing.

    ``whole_rows``: also refuse a row with fewer cells than the header (:func:`cut_rows`).
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CSV not found: {path}")
    if whole_rows:
        import csv

        try:
            cut = cut_rows(path)
        except (UnicodeDecodeError, csv.Error) as exc:
            raise CsvSchemaError(f"{path} is not a readable CSV: {exc}") from exc
        if cut:
            line, cells, header = cut[0]
            raise CsvSchemaError(f"{path} line {line} has {cells} cells where the header has {header} (a file cut "
                                 "short by an interrupted copy or a full disk?); fix: restore the whole file or "
                                 "complete that row, then retry")
    try:
        frame = pd.read_csv(path, **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise CsvSchemaError(f"{path} is not a readable CSV: {exc}") from exc
    required = list(required)
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise CsvSchemaError(
            f"{path} lacks columns {missing}; expected at least {required}, found {list(frame.columns)}"
        )
    return frame


def clean_stale_temp_files(folder: Path | str) -> int:
    """Remove temp files a killed run left behind; returns how many were removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    for tmp in folder.glob(TMP_PREFIX + "*"):
        try:
            tmp.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return removed
