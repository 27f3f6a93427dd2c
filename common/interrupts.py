"""Ctrl-C before a script reaches its error boundary: one line, never a traceback.

``common.cli.run_guarded`` turns Ctrl-C during a step's work into "interrupted; N items finished are kept"
(exit 130). Before it runs, a script spends seconds (tens on a loaded machine) importing torch, and a
Ctrl-C there used to print a 15-line ``KeyboardInterrupt`` traceback from deep inside torch. Nothing has been
written by then. :func:`install` replaces ``sys.excepthook`` for an uncaught ``KeyboardInterrupt`` only, and
only when the program is one of the pipeline's scripts (``common/__init__`` calls it, so it is in place before
any heavy import); every other exception keeps its traceback, and Python still exits by SIGINT (130 in a shell).
"""
from __future__ import annotations

import sys
from pathlib import Path
from types import TracebackType

SCRIPT_DIRS = (Path(__file__).resolve().parents[1] / "stylegan_and_segmentation", Path(__file__).resolve().parents[1])
"""Where the pipeline's scripts live (the numbered steps, the runner, the servers; download_models.py)."""

INTERRUPTED_LINE = "interrupted (Ctrl-C) before any work; nothing was written; re-run to start"


def _quiet_keyboard_interrupt(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        print(INTERRUPTED_LINE, file=sys.stderr, flush=True)
        return
    sys.__excepthook__(kind, value, tb)


def is_pipeline_script(main_file: str | None) -> bool:
    """Whether ``main_file`` (``__main__.__file__``) is one of the pipeline's scripts."""
    return main_file is not None and main_file.endswith(".py") and Path(main_file).resolve().parent in SCRIPT_DIRS


def install() -> None:
    """Quiet Ctrl-C for the rest of the process, if the program is one of the pipeline's scripts."""
    main = sys.modules.get("__main__")
    if is_pipeline_script(getattr(main, "__file__", None)) and sys.excepthook is sys.__excepthook__:
        sys.excepthook = _quiet_keyboard_interrupt
