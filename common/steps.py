"""The step contract: one shape for every numbered step, so a reader finds the same pieces everywhere.

A step is

* a frozen, validated config dataclass (paths included; ``None`` = the pipeline default under
  ``root``, resolved by ``PipelinePaths``), whose field defaults are the scripts' flag defaults;
* one package function ``run_<step>(config, progress=None) -> Summary`` that never prints;
  ``progress(done, total)`` is called as work finishes (a tqdm bar in the scripts, nothing in tests);
* a ``Summary`` dataclass with the figures a caller needs and ``.line()``, the one-line report;
* a thin script ``stylegan_and_segmentation/NN_*.py`` with ``build_parser()``,
  ``config_from_args(args) -> config`` and ``main(argv)`` (see ``common.cli.run_step_script``).

Problems the user can fix (a missing or wrong input, a conflicting output folder) raise a
:class:`StepError` subclass whose message names the file and the fix; scripts print it as one line
and exit 2, the runner reports it the same way. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Protocol

Progress = Callable[[int, int], None]
"""progress(done, total): called by a step function as work finishes."""


class ProgressCounter:
    """The one adapter from a step's ``progress(done, total)`` to code that reports items as they
    finish: call it with how many just finished (default 1). ``done`` starts at the items already
    there (resume), reported at once so a bar shows them; ``done`` never passes ``total``."""

    def __init__(self, progress: Progress | None, total: int, done: int = 0) -> None:
        self.progress, self.total, self.done = progress, total, done
        if progress is not None and done:
            progress(min(done, total), total)

    def __call__(self, count: int = 1) -> None:
        self.done += count
        if self.progress is not None:
            self.progress(min(self.done, self.total), self.total)


class Summary(Protocol):
    """What every step function returns: its figures as fields, and one line for people."""

    def line(self) -> str: ...


class StepError(Exception):
    """A problem the user can fix: the message is one line naming the file (row, key) and the fix."""


USER_ERRORS: tuple[type[BaseException], ...] = (StepError, FileNotFoundError, NotADirectoryError,
                                                IsADirectoryError, PermissionError)
"""Errors a script prints as one line (exit 2) instead of a traceback."""


WRITE_FAILURES: dict[int, str] = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded",
                                  errno.EFBIG: "file too large for the file system",
                                  errno.EROFS: "read-only file system"}
"""errno -> words, for the OSErrors that mean "an output could not be written" rather than a bug."""


def write_failure(exc: BaseException) -> str | None:
    """The one line for an output that could not be written (disk full, read-only), found anywhere in the
    exception's chain (a step may wrap the OSError); None when ``exc`` is not such a failure."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in WRITE_FAILURES:
            where = f"cannot write {current.filename}" if current.filename else "cannot write an output file"
            fix = ("choose a writable output folder and re-run" if current.errno == errno.EROFS
                   else "free space and re-run")
            return f"{where}: {WRITE_FAILURES[current.errno]}; {fix}; finished items are kept"
        current = current.__cause__ or current.__context__
    return None


MEMORY_WORDS = ("can't allocate memory", "out of memory")
"""torch's words for an allocation that failed (CPU ``DefaultCPUAllocator``, CUDA), raised as RuntimeError."""


def memory_failure(exc: BaseException) -> str | None:
    """The one line for a request too big for this machine's memory (a huge size flag, a big batch): a
    MemoryError or torch's allocation RuntimeError anywhere in the chain; None when ``exc`` is not one."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, MemoryError) or (
                isinstance(current, RuntimeError) and any(w in str(current).lower() for w in MEMORY_WORDS)):
            return ("out of memory: the request is too big for this machine; re-run with smaller sizes "
                    "(fewer images or values, a smaller --batch-size or model); finished items are kept")
        current = current.__cause__ or current.__context__
    return None


def interrupted_line(finished: int) -> str:
    """What Ctrl-C prints (exit 130): every finished item is complete on disk, so a re-run continues."""
    return f"interrupted; {finished} items finished are kept; re-run to continue"


def announce(line: str) -> None:
    """A line a person must act on while a step runs (a server's URL): stdout, even under -q.

    Steps report results through their Summary and log everything else; only a server, which runs
    until stopped, has something to tell the user before it returns.
    """
    print(line, flush=True)
