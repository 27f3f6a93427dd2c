"""Side-by-side timing on a shared machine: alternated pairs, median of the per-pair ratios.

Two implementations timed back to back, in turns (A B, B A, A B, ...), so a slow patch of the
machine (another engineer's job) hits both sides of a pair; the median of the per-pair ratios
then cancels most of the noise that a best-of-N or a mean of separate runs would keep.
"""
from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

NOT_MEASURED = "not measured"


def paired_ratio(ours: Callable[[], object], reference: Callable[[], object], pairs: int = 9,
                 warmup: int = 1, ours_items: int = 1, reference_items: int = 1) -> dict:
    """Seconds per call of each side and the median/min/max of the per-item time ratio
    (reference_s / reference_items) / (ours_s / ours_items) over ``pairs`` pairs.

    ``*_items`` let a fast side do more work per call than a slow one (500 maps against 40), so
    neither side's call is too short to time.
    """
    for _ in range(warmup):
        ours()
        reference()
    ours_s, ref_s = [], []
    for i in range(pairs):
        order = (ours, reference) if i % 2 == 0 else (reference, ours)
        times = {}
        for fn in order:
            start = time.perf_counter()
            fn()
            times[fn is ours] = time.perf_counter() - start
        ours_s.append(times[True])
        ref_s.append(times[False])
    ratios = [(r / reference_items) / (o / ours_items) for r, o in zip(ref_s, ours_s)]
    return {
        "pairs": pairs,
        "ours_s_median": round(statistics.median(ours_s), 4),
        "reference_s_median": round(statistics.median(ref_s), 4),
        "speedup_median": round(statistics.median(ratios), 3),
        "speedup_min": round(min(ratios), 3),
        "speedup_max": round(max(ratios), 3),
    }


def reference_checkout(path: str | None, marker: str) -> Path | None:
    """The user's checkout of a reference repository, or None (the benchmark then prints "not measured").

    ``marker`` is a file that must exist inside it (so a wrong folder is a clear error, not an ImportError).
    """
    if not path:
        return None
    root = Path(path).expanduser().resolve()
    if not (root / marker).is_file():
        print(f"error: {root} is not the expected checkout: {marker} is missing there "
              f"(pass the folder that holds {marker})", file=sys.stderr)
        raise SystemExit(2)
    return root
