"""Step-1 throughput and peak memory: full 256 architecture (recipe weights), batch 1/8/32, with and without writing.

Each configuration runs in its own subprocess so its peak RSS is its own; a last pair of runs writes
``--flat-nums`` images at batch 8 to show that memory does not grow with ``--num``. Writes the record
``benchmarks/results/bench_generate-<device>.json`` and prints a table. Asserts nothing.

    python benchmarks/bench_generate.py --device cpu --num 32
    python benchmarks/bench_generate.py --device cuda --num 512
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.records import add_results_dir_argument, start_record


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _single(args) -> dict:
    import torch

    from common.runtime import resolve_device
    from stylegan import write_random_checkpoint
    from stylegan.checkpoint import load_generator
    from stylegan.generate import GenerateConfig, latents_for, run_generate, synthesize_uint8

    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(args.checkpoint) if args.checkpoint else write_random_checkpoint(Path(tmp) / "g.pth", resolution=256)
        if args.write:
            run_generate(GenerateConfig(checkpoint=ckpt, out=Path(tmp) / "warm", num=args.batch_size,
                                        batch_size=args.batch_size, device=str(device)))
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            run_generate(GenerateConfig(checkpoint=ckpt, out=Path(tmp) / "out", num=args.num,
                                        batch_size=args.batch_size, image_format=args.format, device=str(device)))
        else:
            G = load_generator(ckpt, device=device)
            synthesize_uint8(G, latents_for(0, range(args.batch_size), 512))
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for first in range(0, args.num, args.batch_size):
                synthesize_uint8(G, latents_for(0, range(first, min(first + args.batch_size, args.num)), 512))
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return {
        "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else
        platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
        "batch_size": args.batch_size, "num": args.num, "write": args.write, "format": args.format,
        "seconds": round(seconds, 3), "images_per_s": round(args.num / seconds, 2),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "peak_cuda_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--num", type=int, default=32, help="images per configuration")
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--format", default="jpg")
    parser.add_argument("--checkpoint", default=None, help="a real checkpoint instead of recipe weights")
    parser.add_argument("--flat-nums", default="16,160", help="image counts of the memory-vs---num runs ('' = none)")
    add_results_dir_argument(parser)
    parser.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=8, help=argparse.SUPPRESS)
    parser.add_argument("--write", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.single:
        print(json.dumps(_single(args)))
        return 0
    from common.runtime import resolve_device

    record = start_record("bench_generate", resolve_device(args.device).type)

    def single(num: int, batch_size: int, write: bool) -> dict:
        cmd = [sys.executable, __file__, "--single", "--device", args.device, "--num", str(num),
               "--batch-size", str(batch_size), "--format", args.format]
        cmd += ["--write"] if write else []
        cmd += ["--checkpoint", args.checkpoint] if args.checkpoint else []
        row = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        print(f"{row['device']:>6} batch {row['batch_size']:>3} write={row['write']!s:5} num {num:>4} "
              f"{row['images_per_s']:8.2f} img/s  peak RSS {row['peak_rss_mb']:8.1f} MB"
              + (f"  peak CUDA {row['peak_cuda_mb']} MB" if row["peak_cuda_mb"] else ""), flush=True)
        return row

    table = []
    for batch_size in [int(b) for b in args.batch_sizes.split(",")]:
        num = max(args.num, batch_size)
        model, written = single(num, batch_size, False), single(num, batch_size, True)
        row = {"batch": batch_size, "model only, images/s": model["images_per_s"],
               f"writing {args.format.upper()}s, images/s": written["images_per_s"],
               "peak RSS writing, MB": written["peak_rss_mb"]}
        if written["peak_cuda_mb"]:
            row["peak CUDA writing, MB"] = written["peak_cuda_mb"]
        table.append(row)
        record.figures[f"batch{batch_size}_model_images_per_s"] = model["images_per_s"]
        record.figures[f"batch{batch_size}_write_images_per_s"] = written["images_per_s"]
        record.figures[f"batch{batch_size}_write_peak_rss_mb"] = written["peak_rss_mb"]
    record.tables["throughput"] = table
    flat = []
    for num in [int(n) for n in args.flat_nums.split(",") if n]:
        row = single(num, 8, True)
        flat.append({"--num": num, "batch": 8, "peak RSS, MB": row["peak_rss_mb"]})
        record.figures[f"num{num}_write_peak_rss_mb"] = row["peak_rss_mb"]
    if flat:
        record.tables["memory_vs_num"] = flat
    record.settings.update({"num": args.num, "format": args.format, "weights": args.checkpoint or "recipe (random)",
                            "resolution": 256, "threads": model["threads"], "device_name": model["device_name"]})
    record.write(args.results_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
