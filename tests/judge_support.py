"""The optional dlib judge in tests: CI installs it, so there a missing one fails; elsewhere its tests skip.

Imported as ``from judge_support import require_dlib`` (torch-fidelity installs a top-level ``tests``
package, so ``tests.`` imports are ambiguous).
"""
from __future__ import annotations

import os

import pytest

from judges import dlib_status


def require_dlib() -> None:
    """Return when the landmark judge can run; fail under CI (it installs the extra), skip elsewhere."""
    available, reason = dlib_status()
    if available:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI installs requirements-judges.txt, yet: {reason}", pytrace=False)
    pytest.skip(f"optional landmark judge (requirements-judges.txt): {reason}")
