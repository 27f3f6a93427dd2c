"""The one markdown-table writer (step reports, step 9's comparison, the device check, the docs' figures).

By default floats (Python or numpy) are printed with a fixed number of digits so a report reads the
same whichever dtype a column has, everything else with ``str``; a caller with its own rule for a cell
(the docs' thousands separators) passes ``cell``.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np


def _cell(value: Any, digits: int) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (float, np.floating)) else str(value)


def markdown_rows(columns: Sequence[Any], rows: Iterable[Sequence[Any]], digits: int = 3,
                  cell: Callable[[Any], str] | None = None) -> str:
    """A GitHub markdown table: a header of ``columns``, then one line per row (``cell`` formats a value)."""
    fmt = cell or (lambda value: _cell(value, digits))
    lines = ["| " + " | ".join(str(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown_table(frame: Any, index: bool = False, digits: int = 3) -> str:
    """A pandas DataFrame as a markdown table (``index``: its index as the first column(s))."""
    frame = frame.reset_index() if index else frame
    return markdown_rows(list(frame.columns), frame.itertuples(index=False), digits)
