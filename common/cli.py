"""What every script shares: its parser (one-line errors), the run flags, the progress bar and the one
error boundary (:func:`run_guarded`) that scripts and the runner both use."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import re
import sys
import typing
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from common.distributed import torchrun_env
from common.settings import add_settings, check_outputs_writable
from common.steps import USER_ERRORS, Progress, Summary, interrupted_line, memory_failure, write_failure

ConfigT = TypeVar("ConfigT")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Description and examples keep their line breaks; a flag's default is printed once.

    argparse's ArgumentDefaultsHelpFormatter re-wraps the examples and appends "(default: None)"
    even where the help already says what the default is.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (action.default in (None, False, argparse.SUPPRESS) or "default" in text
                or not action.option_strings or action.nargs == 0):
            return text
        return f"{text} (default: %(default)s)"


def python_command() -> str:
    """How to call this interpreter in a printed command that works as printed: ``python`` when that is it
    (an active venv or the system's), else its path (relative to the current folder when inside it)."""
    import os
    import shutil

    exe = Path(sys.executable)
    on_path = shutil.which("python")
    if on_path and Path(on_path).resolve() == exe.resolve():
        return "python"
    try:
        return os.path.relpath(exe) if exe.is_relative_to(Path.cwd()) else str(exe)
    except ValueError:
        return str(exe)


class StepArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``error: --seed -1: must be >= 0 (see --help)``, exit 2.

    argparse prints the whole usage block before its message (15 lines for step 7b), which hides
    the one line that says what to fix.
    """

    def error(self, message: str) -> typing.NoReturn:
        match = re.match(r"argument ([^:]+): (.*)", message, re.DOTALL)
        if match:
            flags, rest = match.group(1), match.group(2)
            first = flags.split("/")[0]
            message = rest if rest.startswith(first + " ") or rest.startswith(first + ":") else f"{first}: {rest}"
        self.exit(2, f"error: {message} (see --help)\n")


def make_parser(description: str, examples: str = "") -> argparse.ArgumentParser:
    """The parser every script starts from; ``examples`` is shown after the flags, line breaks kept, with
    ``python`` replaced by this interpreter where plain ``python`` would be another one (no active venv)."""
    if examples:
        examples = examples.replace("  python ", f"  {python_command()} ")
    return StepArgumentParser(description=description, epilog=examples or None, formatter_class=HelpFormatter)


def add_run_args(parser: argparse.ArgumentParser) -> None:
    """How a script runs, not what it computes (so not config fields): --threads, -v, -q."""
    parser.add_argument("--threads", type=_threads, default=None, metavar="N",
                        help="CPU threads for torch (default: torch's choice); 1 is often faster on a busy small CPU")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info logs")


def _threads(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--threads {text}: not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"--threads {text}: must be >= 1")
    return value


def step_parser(config_cls: type, description: str, examples: str = "") -> argparse.ArgumentParser:
    """A step script's whole parser: the flags its config declares, then the run flags."""
    parser = make_parser(description, examples)
    add_settings(parser, config_cls)
    add_run_args(parser)
    return parser


@contextlib.contextmanager
def progress_bar(desc: str, quiet: bool = False, unit: str = "img") -> Iterator[Callable[[int, int], None]]:
    """A tqdm bar as the ``progress(done, total)`` callback that package step functions take.

    The bar appears at the first report (a step that reports nothing prints no empty bar); ``unit`` is
    what ``done`` counts (a config's ``progress_unit``: images, folds, training steps, labels)."""
    from tqdm import tqdm

    bars: list[Any] = []

    def progress(done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(unit=unit, desc=desc, disable=quiet, total=total))
        bar = bars[0]
        bar.total = total
        bar.update(done - bar.n)

    try:
        yield progress
    finally:
        for bar in bars:
            bar.close()


def verbosity(args: argparse.Namespace) -> int:
    return -1 if getattr(args, "quiet", False) else getattr(args, "verbose", 0)


def apply_common_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Once per script, after parsing: logging level and torch's CPU thread count."""
    from common.runtime import setup_logging

    setup_logging(verbosity(args))
    threads = getattr(args, "threads", None)
    if threads is not None:
        if threads < 1:
            parser.error(f"--threads must be >= 1, got {threads}")
        import torch

        torch.set_num_threads(threads)


def parse_step_config(parser: argparse.ArgumentParser, config_from_args: Callable[[argparse.Namespace], ConfigT],
                      argv: Sequence[str] | None = None) -> tuple[ConfigT, argparse.Namespace]:
    """Flags -> (the step's config, the parsed flags); an invalid value is one line (exit 2).

    Each flag's range is checked by its type function while parsing; what is left here are the
    config's rules between fields. The runner calls this too, so a step run by ``run_pipeline``
    gets exactly the config that the same flags give on the command line.
    """
    args = parser.parse_args(argv)
    apply_common_args(args, parser)
    try:
        config = config_from_args(args)
    except ValueError as exc:  # the config's own validation (SettingError, or a library's ValueError)
        parser.error(str(exc))
    return config, args


class StepStopped(Exception):
    """A step stopped for a reason the user can act on: ``str()`` is the one line, ``exit_code`` 2 or 130."""

    def __init__(self, line: str, exit_code: int) -> None:
        super().__init__(line)
        self.exit_code = exit_code


def run_guarded(run: Callable[[ConfigT, Progress | None], Summary], config: ConfigT,
                progress: Progress | None = None) -> Summary:
    """The one error boundary around a step function (scripts and the runner both call it).

    Before the work: every declared output can be written. Then a user-fixable problem
    (``USER_ERRORS``), an output that could not be written (disk full, read-only), a request too big for
    memory (MemoryError, torch's allocator error) or Ctrl-C becomes
    :class:`StepStopped` with its one line; anything else is a bug and keeps its traceback.
    """
    finished = 0

    def counting(done: int, total: int) -> None:
        nonlocal finished
        finished = done
        if progress is not None:
            progress(done, total)

    try:
        if dataclasses.is_dataclass(config):
            check_outputs_writable(config.resolved() if hasattr(config, "resolved") else config)
        return run(config, counting)
    except KeyboardInterrupt:
        raise StepStopped(interrupted_line(finished), 130) from None
    except USER_ERRORS as exc:
        raise StepStopped(str(exc), 2) from exc
    except Exception as exc:
        line = write_failure(exc) or memory_failure(exc)
        if line is None:
            raise
        raise StepStopped(line, 2) from exc


def run_step_script(parser: argparse.ArgumentParser, config_from_args: Callable[[argparse.Namespace], ConfigT],
                    run: Callable[[ConfigT, Progress | None], Summary], argv: Sequence[str] | None = None, *,
                    desc: str = "", bar: bool = True) -> int:
    """The body of every step script's ``main``: config from flags, run with a progress bar, print one line.

    A stop the user can act on (see :func:`run_guarded`) is printed as ``error: ...`` (or the
    interrupted line) on stderr with exit code 2 (130 for Ctrl-C); the summary line goes to stdout.
    ``bar=False``: no progress bar (a server, whose URL shares the terminal).
    """
    config, args = parse_step_config(parser, config_from_args, argv)
    env = torchrun_env()
    other_rank = env is not None and env[0] != 0  # under torchrun only rank 0 shows progress
    failure: StepStopped | None = None
    quiet = getattr(args, "quiet", False) or other_rank or not bar
    with progress_bar(desc or parser.prog, quiet, getattr(config, "progress_unit", "img")) as progress:
        try:
            summary = run_guarded(run, config, progress)
        except StepStopped as exc:
            failure = exc
    if failure is not None:  # after the bar is closed, so the error is a line of its own
        prefix = "" if failure.exit_code == 130 else "error: "
        print(f"{prefix}{failure}", file=sys.stderr)
        return failure.exit_code
    print(summary.line())
    return 0
