"""Step 1 on one machine: 1 process x T threads vs N torchrun processes x T/N threads (issue 14).

The honest CPU comparison: the same cores either way. Each configuration runs the real script
(``01_generate_images.py``; under ``torchrun --standalone`` for N > 1) on the full 256-px
architecture with recipe weights, into a fresh folder, and is timed from launch to exit (torch
import, model load and the rank-0 lists included). Writes JSON to benchmarks/results/ and prints a
table. Asserts nothing; not collected by pytest.

    python benchmarks/bench_generate_processes.py --num 32 --threads 2
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.records import add_results_dir_argument, start_record

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "stylegan_and_segmentation" / "01_generate_images.py"


def run_once(checkpoint: Path, out: Path, num: int, batch_size: int, processes: int, threads: int,
             device: str = "cpu") -> float:
    """Wall seconds of one run of step 1 with ``processes`` x ``threads``."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = str(threads)
    flags = ["--checkpoint", str(checkpoint), "--out", str(out), "--num", str(num), "--batch-size", str(batch_size),
             "--device", device, "--threads", str(threads), "-q"]
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                 str(SCRIPT), "--"] if processes > 1 else [sys.executable, str(SCRIPT)])
    start = time.perf_counter()
    subprocess.run([*launcher, *flags], env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=32, help="images per run")
    parser.add_argument("--batch-size", type=int, default=8, help="images per forward pass (per process)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads in all (split across processes)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per configuration (the best is kept)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--processes", type=int, nargs="+", default=None,
                        help="process counts besides 1 (default: those that divide --threads: 2, 4)")
    add_results_dir_argument(parser)
    args = parser.parse_args(argv)

    from stylegan import write_random_checkpoint

    record = start_record("bench_generate_processes", args.device)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = write_random_checkpoint(Path(tmp) / "g.pth", resolution=256)
        counts = args.processes or [n for n in (2, 4) if args.threads // n >= 1 and args.threads % n == 0]
        configs = [(1, args.threads)] + [(n, max(1, args.threads // n)) for n in counts]
        for processes, threads in configs:
            times = [run_once(checkpoint, Path(tmp) / f"out-{processes}-{r}", args.num, args.batch_size, processes,
                              threads, args.device) for r in range(args.repeats)]
            best = min(times)
            rows.append({"layout": f"{processes} process(es) x {threads} thread(s)", "seconds (best)": round(best, 2),
                         "images/s": round(args.num / best, 2), "every run, s": [round(t, 2) for t in times]})
            record.figures[f"processes{processes}_seconds"] = round(best, 2)
            record.figures[f"processes{processes}_images_per_s"] = round(args.num / best, 2)
            print(f"{processes} process(es) x {threads} thread(s): {best:.1f} s for {args.num} images "
                  f"({args.num / best:.2f} img/s)", flush=True)
    record.tables["layouts"] = rows
    record.settings.update({"what": "step 1 from launch to exit, full 256 px generator, recipe weights",
                            "num": args.num, "batch_size": args.batch_size, "threads": args.threads,
                            "repeats": args.repeats})
    record.write(args.results_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
