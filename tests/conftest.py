"""Shared fixtures: where the golden files and real test faces are, and test markers."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _shared_dir(env_var: str, name: str) -> Path:
    if os.environ.get(env_var):
        return Path(os.environ[env_var])
    return REPO_ROOT.parent / "shared" / name


def _require_dir(env_var: str, name: str) -> Path:
    path = _shared_dir(env_var, name)
    if not path.is_dir():
        pytest.skip(f"shared {name} data absent ({path}); set ${env_var} to run this test")
    return path


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """``../shared/reference`` or ``$REFERENCE_DIR`` (golden files); skips where absent."""
    return _require_dir("REFERENCE_DIR", "reference")


@pytest.fixture(scope="session")
def testdata_dir() -> Path:
    """``../shared/testdata`` or ``$TESTDATA_DIR``; skips where absent."""
    return _require_dir("TESTDATA_DIR", "testdata")


@pytest.fixture(scope="session")
def real_faces(testdata_dir: Path) -> list[Path]:
    """The 40 real images made by the pre-trained StyleGAN."""
    faces = sorted((testdata_dir / "real_faces").glob("*.jpg"))
    if not faces:
        pytest.skip(f"no real faces in {testdata_dir / 'real_faces'}")
    return faces


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_gpu = False
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(skip_gpu)


@pytest.fixture
def single_thread():
    """Tiny models on a small shared CPU: thread start-up costs more than the maths (up to 20x)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
