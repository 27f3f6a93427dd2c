"""Flags every numbered script shares, so they behave alike."""
from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from common.paths import REPO_ROOT, PipelinePaths


def make_parser(description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def add_common_args(parser: argparse.ArgumentParser, batch_size: int | None = None) -> None:
    """--root --device --seed --limit --overwrite --threads -v/-q (and --batch-size when given)."""
    parser.add_argument("--root", type=Path, default=REPO_ROOT,
                        help="root that all default input/output paths are relative to (the demo uses its own)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    if batch_size is not None:
        parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="process at most N items (smoke runs)")
    parser.add_argument("--overwrite", action="store_true", help="ignore finished work and redo it")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's choice); 1 is often faster on a busy small CPU")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    parser.add_argument("-q", "--quiet", action="store_true")


@contextlib.contextmanager
def progress_bar(desc: str, quiet: bool = False) -> Iterator[Callable[[int, int], None]]:
    """A tqdm bar as the ``progress(done, total)`` callback that package step functions take."""
    from tqdm import tqdm

    with tqdm(unit="img", desc=desc, disable=quiet) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        yield progress


def paths_from_args(args: argparse.Namespace) -> PipelinePaths:
    return PipelinePaths(Path(args.root).resolve())


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
