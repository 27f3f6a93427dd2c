"""The one line at the end of a test run that says how to include the tests it skipped.

The README's test command runs every test its install allows; a test that needs more (the optional
judge extra, Debian's Chromium, a CUDA GPU) skips with a reason, and the run ends by naming what
would include those tests, once per kind, so nobody has to read the skip reasons to find out.
Imported by ``conftest.py`` (``pytest_terminal_summary``) and tested in ``test_skip_summary.py``.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

JUDGE_EXTRA = "requirements-judges.txt"
"""Words every skip of the optional dlib judge carries (``judge_support.require_dlib``)."""
NO_CHROMIUM = "Chromium not installed"
"""Words every browser skip carries (``browser_support.BROWSER_MARKS``)."""
NO_GPU = "needs a CUDA GPU"

HOW_TO_INCLUDE = {
    JUDGE_EXTRA: "of the optional judge extra skipped; include them with "
                 "`.venv/bin/python -m pip install -r requirements-judges.txt` (its landmark model is licensed for "
                 "non-commercial use only: docs/judges.md)",
    NO_CHROMIUM: "in a real browser skipped; include them with Debian's Chromium: `sudo apt-get install chromium` "
                 "(or set CHROMIUM=/path/to/chromium)",
    NO_GPU: "skipped: they need a CUDA GPU (they run where torch.cuda.is_available())",
}


def skip_lines(reasons: Iterable[str]) -> list[str]:
    """One line per kind of skip among ``reasons``: how many, and how to include them."""
    counts: Counter[str] = Counter()
    for reason in reasons:
        for words in HOW_TO_INCLUDE:
            if words in reason:
                counts[words] += 1
                break
    return [f"{counts[w]} test{'' if counts[w] == 1 else 's'} {HOW_TO_INCLUDE[w]}" for w in HOW_TO_INCLUDE if counts[w]]


def skip_reason(report) -> str:
    """The reason text of a pytest skip report (``longrepr`` is (file, line, reason) for skips)."""
    longrepr = getattr(report, "longrepr", None)
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr or "")
