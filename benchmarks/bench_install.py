"""The README's install, measured: a fresh virtual environment, the pinned requirements, its time and size.

Clones nothing: it makes a new venv in a temporary folder and runs the README's install command into
it against this checkout (``pip install -r requirements.txt -r requirements-dev.txt -e .`` by default: the
runtime and the tests' tools, docs/install.md; ``--pip`` replaces the
arguments after ``pip install``, e.g. the CPU-only torch wheels), then records the wall time and the
venv's size on disk, and removes the venv. Uses whatever package index pip is configured with (a
local wheel cache makes the time the install's own, not the network's). Writes the record
``benchmarks/results/bench_install-cpu.json`` (``--label L``: ``bench_install_L-cpu``).

    python benchmarks/bench_install.py
    python benchmarks/bench_install.py --label judges --pip "-r requirements.txt -r requirements-judges.txt -e ."
"""
from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.records import REPO_ROOT, add_results_dir_argument, folder_bytes, start_record

README_PIP = "-r requirements.txt -r requirements-dev.txt -e ."


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--pip", default=README_PIP, help="arguments after `pip install` (run in the checkout)")
    parser.add_argument("--label", default=None, help="a variant's name: the record becomes bench_install_LABEL")
    add_results_dir_argument(parser)
    args = parser.parse_args(argv)
    record = start_record("bench_install" + (f"_{args.label}" if args.label else ""), "cpu")
    with tempfile.TemporaryDirectory(prefix="bench-install-") as tmp:
        venv = Path(tmp) / ".venv"
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        done = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                               *shlex.split(args.pip)], cwd=REPO_ROOT, check=False)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            print(f"error: the install failed (exit {done.returncode}); nothing recorded", file=sys.stderr)
            return 1
        size = folder_bytes(venv) / 2**30
    record.figures.update({"install_s": round(wall), "venv_gib": round(size, 2)})
    record.settings.update({"pip_install": args.pip, "what": "python -m venv, then pip install into it"})
    record.write(args.results_dir)
    print(record.figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
