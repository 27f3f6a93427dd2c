"""The end of a run says in one line per kind how to include the tests it skipped (issue 23)."""
from __future__ import annotations

from skip_summary import skip_lines


def test_one_line_per_kind_with_counts_and_the_command():
    reasons = ["Skipped: optional landmark judge (requirements-judges.txt): dlib is not installed"] * 3 + [
        "Skipped: Chromium not installed at /usr/bin/chromium; install Debian's: `sudo apt-get install chromium`",
        "Skipped: needs a CUDA GPU", "Skipped: something else"]
    lines = skip_lines(reasons)
    assert len(lines) == 3
    assert lines[0].startswith("3 tests of the optional judge extra") and "pip install -r requirements-judges.txt" \
        in lines[0]
    assert lines[1].startswith("1 test in a real browser") and "apt-get install chromium" in lines[1]
    assert lines[2].startswith("1 test skipped: they need a CUDA GPU")


def test_nothing_skipped_says_nothing():
    assert skip_lines([]) == [] and skip_lines(["Skipped: something else"]) == []
