"""The step contract's shared pieces (``common.steps``)."""
from __future__ import annotations

from common.steps import ProgressCounter


def test_the_progress_counter_reports_done_and_total_and_starts_at_resumed_items():
    calls = []
    tick = ProgressCounter(lambda done, total: calls.append((done, total)), total=5, done=2)
    tick()
    tick(2)
    tick(4)  # a callee that over-reports (a last partial batch) never passes the total
    assert calls == [(2, 5), (3, 5), (5, 5), (5, 5)]
    fresh = []
    ProgressCounter(lambda done, total: fresh.append((done, total)), total=3)(1)
    assert fresh == [(1, 3)]  # nothing to announce before the first item
    quiet = ProgressCounter(None, total=3)
    quiet(3)
    assert quiet.done == 3
