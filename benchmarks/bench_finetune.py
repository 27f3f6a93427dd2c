"""Seconds per fine-tuning step (D update + G update, as step 7 runs them) at 256x256, and peak memory.

Random genforce-architecture weights (the 256 config of celeba-partial-256), the real Finetuner
with R1 and the property regressor on; a few warm-up steps, then the mean of ``--steps`` timed
steps. Writes the record ``benchmarks/results/bench_finetune-<device>.json``. Asserts nothing.

    python benchmarks/bench_finetune.py --device cpu --batch-sizes 4 8 --steps 2
    python benchmarks/bench_finetune.py --device cuda --steps 20
"""
from __future__ import annotations

import argparse
import json
import pathlib
import resource
import tempfile
import time

import numpy as np
import torch

from benchmarks.records import add_results_dir_argument, start_record
from common.runtime import resolve_device
from stylegan import load_discriminator, load_generator, write_random_checkpoint
from stylegan.conditional import build_conditional_discriminator, build_conditional_generator
from stylegan.finetune_trainer import FinetuneConfig, Finetuner
from stylegan.property_regressor import PropertyRegressor


def bench(device: torch.device, batch: int, steps: int, warmup: int, resolution: int, amp: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = write_random_checkpoint(pathlib.Path(tmp) / "g.pth", resolution=resolution)
        base_g, base_d = load_generator(path), load_discriminator(path)
    images = np.random.default_rng(0).integers(0, 256, size=(32, resolution, resolution, 3), dtype=np.uint8)
    conditions = np.random.default_rng(1).uniform(0, 1, size=(32, 5)).astype(np.float32)
    config = FinetuneConfig(batch_size=batch, mixed_precision=amp)
    trainer = Finetuner(build_conditional_generator(base_g), build_conditional_discriminator(base_d), images,
                        conditions, config, PropertyRegressor(), device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(warmup):
        trainer.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - start) / steps
    result = {"device": str(device), "batch_size": batch, "resolution": resolution, "mixed_precision": trainer.amp,
              "timed_steps": steps, "warmup_steps": warmup, "seconds_per_step": round(seconds, 4),
              "images_per_second": round(batch / seconds, 2)}
    if device.type == "cuda":
        result["peak_gpu_memory_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
        result["gpu"] = torch.cuda.get_device_name(device)
    result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--no-amp", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    add_results_dir_argument(parser)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    record = start_record("bench_finetune", device.type)
    rows = []
    for batch in args.batch_sizes:
        run = bench(device, batch, args.steps, args.warmup, args.resolution, not args.no_amp)
        print(json.dumps(run), flush=True)
        rows.append({"batch": batch, "resolution": run["resolution"], "AMP": run["mixed_precision"],
                     "s per step": run["seconds_per_step"], "images/s": run["images_per_second"],
                     "peak RSS, MiB": run["peak_rss_mib"],
                     **({"peak GPU memory, MiB": run["peak_gpu_memory_mib"]} if "peak_gpu_memory_mib" in run else {})})
        record.figures[f"batch{batch}_seconds_per_step"] = run["seconds_per_step"]
        record.figures[f"batch{batch}_peak_rss_mib"] = run["peak_rss_mib"]
        if "peak_gpu_memory_mib" in run:
            record.figures[f"batch{batch}_peak_gpu_memory_mib"] = run["peak_gpu_memory_mib"]
    record.tables["steps"] = rows
    record.settings.update({"what": "fine-tune step (D + G update, R1, property loss), random 256 px weights",
                            "timed_steps": args.steps, "warmup_steps": args.warmup,
                            "threads": torch.get_num_threads()})
    record.write(args.results_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
