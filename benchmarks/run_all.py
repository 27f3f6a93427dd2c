"""Re-measure every figure this machine can measure, one benchmark after the other, then regenerate the docs.

Runs the command ``benchmarks/catalog.py`` gives for each benchmark that writes records of the device kind,
leaving out the ``manual`` ones (they need a reference checkout or a file this repository does not ship, or hours:
run those by hand), then ``python -m benchmarks.report``. Run it on a committed tree (records from a dirty tree
are refused) and, for figures users compare with, on a quiet machine.

    python -m benchmarks.run_all --device cpu --dry-run     # what would run
    python -m benchmarks.run_all --device cpu --skip bench_tests toy_margins cnn_margins
"""
from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence

from benchmarks.catalog import BENCHMARKS
from benchmarks.records import REPO_ROOT

LAST = ("bench_tests",)
"""Run after the others: the test suite takes longest and measures nothing the others need."""


def plan(device: str, only: Sequence[str] | None, skip: Sequence[str]) -> list[tuple[str, str]]:
    """(benchmark, command) for every catalog entry that records ``device`` and is not run by hand."""
    names = [n for n in BENCHMARKS if n not in LAST] + [n for n in LAST if n in BENCHMARKS]
    chosen = []
    for name in names:
        entry = BENCHMARKS[name]
        if only is not None and name in only and device in entry.devices:
            chosen.append((name, entry.command_for(device)))
            continue
        if only is not None or name in skip or entry.manual or device not in entry.devices:
            continue
        chosen.append((name, BENCHMARKS[name].command_for(device)))
    return chosen


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--only", nargs="+", default=None, help="benchmark names (catalog.py)")
    parser.add_argument("--skip", nargs="+", default=[], help="benchmark names to leave out")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = parser.parse_args(argv)
    unknown = [n for n in (args.only or []) + args.skip if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    failed = []
    for name, command in plan(args.device, args.only, args.skip):
        print(f"== {name}: {command}", flush=True)
        if args.dry_run:
            continue
        argv_ = shlex.split(command)
        argv_[0] = sys.executable if argv_[0] == "python" else argv_[0]
        start = time.perf_counter()
        done = subprocess.run(argv_, cwd=REPO_ROOT, check=False)
        print(f"== {name}: exit {done.returncode} after {time.perf_counter() - start:.0f} s", flush=True)
        if done.returncode != 0:
            failed.append(name)
    if args.dry_run:
        return 0
    report = subprocess.run([sys.executable, "-m", "benchmarks.report"], cwd=REPO_ROOT, check=False)
    if failed:
        print(f"failed: {', '.join(failed)} (their old records, if any, are unchanged)", file=sys.stderr)
    return 1 if failed or report.returncode else 0


if __name__ == "__main__":
    raise SystemExit(main())
