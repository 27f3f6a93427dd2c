"""Shared fixtures: where the golden files and real test faces are, and test markers."""
from __future__ import annotations

import signal
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config) -> None:  # noqa: ARG001 - pytest's hook signature
    """Ctrl-C tests stop real subprocesses with SIGINT. A pytest started in the background of a non-interactive
    shell (``cmd &`` in a script) inherits SIGINT *ignored*, passes that on to every child, and Python keeps an
    ignored SIGINT ignored: the servers would never stop and those tests would time out for a reason that is
    not the code's. SIGINT is put back to Python's default here, once, for this process and its children."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


DATA_DIR = REPO_ROOT / "tests" / "data"
"""Golden outputs of the official code and real generated faces, committed with the code (see its README)."""


def _require(path: Path, what: str) -> Path:
    """A missing test file is a failure, never a skip: a skip would hide a file that was never committed."""
    if not path.exists():
        pytest.fail(f"{what} missing: {path} (copy it from ../shared/ as tests/data/README.md says)", pytrace=False)
    return path


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """``tests/data/reference``: golden files made by the official code from deterministic random weights."""
    return _require(DATA_DIR / "reference", "golden reference folder")


@pytest.fixture(scope="session")
def testdata_dir() -> Path:
    """``tests/data``: holds ``real_faces/``."""
    return _require(DATA_DIR / "real_faces", "real test faces folder").parent


@pytest.fixture(scope="session")
def real_faces(testdata_dir: Path) -> list[Path]:
    """The 40 real images made by the pre-trained StyleGAN."""
    faces = sorted((testdata_dir / "real_faces").glob("*.jpg"))
    if len(faces) != 40:
        pytest.fail(f"expected 40 real faces in {testdata_dir / 'real_faces'}, found {len(faces)}", pytrace=False)
    return faces


@pytest.fixture(scope="session")
def randn_bit_exact() -> bool:
    """Whether torch.randn here draws the golden recipes' exact bits.

    ATen's vectorised normal sampler (AVX2 / AVX-512 builds, what the golden files were made with)
    and its scalar fallback (``ATEN_CPU_CAPABILITY=default``, CPUs without AVX2) round the
    Box-Muller transform differently in the last bits. Where they differ, recipe weights are
    compared within a float tolerance instead of bit for bit; outputs keep their own tolerances.
    """
    import torch

    return torch.backends.cpu.get_cpu_capability() != "DEFAULT"


@pytest.fixture()
def browser():
    """Debian's Chromium driven by Playwright, offline flags on (never a browser download)."""
    from browser_support import CHROMIUM, CHROMIUM_ARGS

    try:  # Chromium is there (the marks skip otherwise): a missing driver is a broken install, not a skip
        from playwright import sync_api
    except ImportError:
        pytest.fail("playwright is not installed: `.venv/bin/python -m pip install -r requirements-dev.txt`", pytrace=False)
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """After pytest's own summary: one line per kind of skipped test saying how to include them."""
    from skip_summary import skip_lines, skip_reason

    result = yield
    for line in skip_lines(skip_reason(r) for r in terminalreporter.stats.get("skipped", [])):
        terminalreporter.write_line(line, yellow=True, bold=True)
    return result


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


@pytest.fixture(scope="session")
def benchmark_script():
    """Import a file of ``benchmarks/`` by name (they are scripts, not a package), e.g. ``device_check.py``."""
    import importlib.util

    def load(name: str):
        path = _require(REPO_ROOT / "benchmarks" / name, "benchmark script")
        spec = importlib.util.spec_from_file_location(Path(name).stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
