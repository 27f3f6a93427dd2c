"""The README's test command, measured: wall time and what passed, failed and skipped.

Runs ``python -m pytest`` from the repository root exactly as the README prints it (plus a JUnit XML
file in a temporary folder, read for the counts, so no printed text is parsed), and records the wall
time, the counts, and what this machine has that decides which tests can run (the optional judge
extra, Chromium, a GPU). Writes the record ``benchmarks/results/bench_tests-cpu.json``. The run
itself must pass: a failing suite is reported and nothing is recorded.

    python benchmarks/bench_tests.py [-- extra pytest arguments]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from benchmarks.records import REPO_ROOT, add_results_dir_argument, start_record

README_COMMAND = ["-m", "pytest"]
"""The README's test command after the interpreter (``.venv/bin/python -m pytest``)."""


def junit_counts(path: Path) -> dict[str, int | float]:
    """tests / failures / errors / skipped / seconds summed over the suites of a JUnit XML file."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {key: sum(int(s.get(key, 0)) for s in suites) for key in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return counts


def environment() -> dict[str, object]:
    """What decides which tests run here (the skip rules of tests/)."""
    import torch

    from judges import dlib_status

    return {"judge_extra_installed": dlib_status()[0], "chromium": Path("/usr/bin/chromium").exists(),
            "cuda_gpu": torch.cuda.is_available()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    add_results_dir_argument(parser)
    args = parser.parse_args(argv)
    record = start_record("bench_tests", "cpu")
    with tempfile.TemporaryDirectory(prefix="bench-tests-") as tmp:
        junit = Path(tmp) / "junit.xml"
        command = [sys.executable, *README_COMMAND, "-p", "no:cacheprovider", f"--junitxml={junit}",
                   *args.pytest_args]
        start = time.perf_counter()
        done = subprocess.run(command, cwd=REPO_ROOT, check=False)
        wall = time.perf_counter() - start
        if not junit.is_file():
            print(f"error: pytest wrote no results (exit {done.returncode}); nothing recorded", file=sys.stderr)
            return 1
        counts = junit_counts(junit)
    if done.returncode != 0:
        print(f"error: the suite did not pass (exit {done.returncode}: {counts['failures']} failed, "
              f"{counts['errors']} errors); nothing recorded", file=sys.stderr)
        return 1
    record.figures.update({"wall_s": round(wall), "wall_min": round(wall / 60, 1), **counts})
    record.settings.update({"command": " ".join(["python", *README_COMMAND, *args.pytest_args]), **environment()})
    record.write(args.results_dir)
    print({k: record.figures[k] for k in ("wall_s", "tests", "passed", "skipped")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
