"""The README's first command, measured: ``run_pipeline.py --demo`` in a fresh root, wall time and peak memory.

Runs the demo exactly as a newcomer does after the install (every step on CPU with tiny random-weight
models, no downloads) in a new temporary root, as its own process; records the wall time from launch
to exit, the peak resident memory of that process (``getrusage`` of the children: the steps run inside
it), the size of what it wrote, and each step's seconds from the runner's markers. Writes the record
``benchmarks/results/bench_demo-cpu.json``. Asserts nothing.

    python benchmarks/bench_demo.py [--threads N]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.records import REPO_ROOT, add_results_dir_argument, folder_bytes, start_record
from pipeline.runner import MARKER_DIR, STEP_ORDER, STEP_SCRIPTS

RUN_PIPELINE = REPO_ROOT / "stylegan_and_segmentation" / "run_pipeline.py"



def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--threads", type=int, default=None, help="passed to run_pipeline.py (default: its own)")
    add_results_dir_argument(parser)
    args = parser.parse_args(argv)
    record = start_record("bench_demo", "cpu")
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        root = Path(tmp) / "demo_run"
        command = [sys.executable, str(RUN_PIPELINE), "--demo", "--root", str(root), "-q"]
        command += ["--threads", str(args.threads)] if args.threads else []
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            print(done.stdout[-3000:] + done.stderr[-3000:], file=sys.stderr)
            print(f"error: the demo failed (exit {done.returncode}); nothing recorded", file=sys.stderr)
            return 1
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        steps = []
        for number in STEP_ORDER:
            marker = root / MARKER_DIR / f"step{number}.json"
            seconds = json.loads(marker.read_text())["seconds"] if marker.is_file() else None
            steps.append({"step": number, "what": STEP_SCRIPTS[number][1], "seconds": seconds})
            record.figures[f"step{number}_seconds"] = seconds
        record.figures.update({"wall_s": round(wall, 1), "steps_s": round(sum(s["seconds"] or 0 for s in steps), 1),
                               "peak_rss_mb": round(peak_mb), "outputs_mb": round(folder_bytes(root) / 1e6, 1)})
    record.tables["steps"] = steps
    record.settings.update({"what": "run_pipeline.py --demo in a fresh root, launch to exit, one process",
                            "threads": args.threads or "run_pipeline's default"})
    record.write(args.results_dir)
    print(json.dumps(record.figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
