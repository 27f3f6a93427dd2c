"""The one markdown-table writer (``common.markdown``)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from common.markdown import markdown_rows, markdown_table


def test_floats_of_any_dtype_get_the_same_digits_and_other_cells_print_as_they_are():
    frame = pd.DataFrame({"method": ["a", "b"], "r": np.array([0.12345, 1.0], np.float32), "n": [3, 4],
                          "ok": [True, False]})
    assert markdown_table(frame).splitlines() == [
        "| method | r | n | ok |", "|---|---|---|---|", "| a | 0.123 | 3 | True |", "| b | 1.000 | 4 | False |"]
    assert markdown_table(frame.set_index("method"), index=True, digits=1).splitlines()[2] == "| a | 0.1 | 3 | True |"
    assert markdown_rows(("x",), [(float("nan"),)]) == "| x |\n|---|\n| nan |"
