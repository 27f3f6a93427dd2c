"""Where dlib and its two model files are, without importing ``face_recognition_models``.

That package's ``__init__`` imports ``pkg_resources``, which current setuptools no longer ships,
so the files are located with ``importlib.util.find_spec`` (which reads the package's location
without running it). Both pieces are an optional extra (``requirements-judges.txt``): the 68-point
model's training data (iBUG 300-W) is licensed for non-commercial use only.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

SHAPE_PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
FACE_RECOGNITION_FILE = "dlib_face_recognition_resnet_model_v1.dat"
INSTALL_HINT = (
    "install the optional judge: pip install -r requirements-judges.txt (CPython 3.10-3.14, x86-64 Linux)"
)


class JudgeUnavailable(RuntimeError):
    """An optional judge is not installed; the message says which piece is missing and how to get it."""


@dataclass(frozen=True)
class DlibModelFiles:
    shape_predictor: Path
    face_recognition: Path


def _package_dir(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def find_dlib_model_files() -> DlibModelFiles:
    """The two ``.dat`` files shipped by ``face-recognition-models``; JudgeUnavailable if they, dlib or
    OpenCV (the judge's pose) are absent."""
    if importlib.util.find_spec("dlib") is None:
        raise JudgeUnavailable(f"dlib is not installed; {INSTALL_HINT}")
    if importlib.util.find_spec("cv2") is None:  # the judge's head pose (solvePnP); part of the same extra
        raise JudgeUnavailable(f"OpenCV (opencv-python-headless) is not installed; {INSTALL_HINT}")
    package = _package_dir("face_recognition_models")
    if package is None:
        raise JudgeUnavailable(
            f"face-recognition-models (dlib's model files) is not installed; {INSTALL_HINT}"
        )
    files = DlibModelFiles(
        package / "models" / SHAPE_PREDICTOR_FILE, package / "models" / FACE_RECOGNITION_FILE
    )
    for path in (files.shape_predictor, files.face_recognition):
        if not path.is_file():
            raise JudgeUnavailable(f"dlib model file missing: {path}; reinstall: {INSTALL_HINT}")
    return files


def dlib_status() -> tuple[bool, str]:
    """(available, reason): reason is empty when the landmark judge can run."""
    try:
        find_dlib_model_files()
    except JudgeUnavailable as exc:
        return False, str(exc)
    return True, ""
