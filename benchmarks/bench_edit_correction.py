"""What step 7c costs at the real size: seconds per training step of the edit correction, and the whole default run.

Step 7c (``stylegan.refine_correction_step``) trains the refine option's learned correction through the
generator and the learned regressor. This times ``CorrectionTrainer.train_step`` on genforce's 256 px
StyleGAN v1 generator (random weights: speed does not depend on them) and the learned regressor at its
default size, at step 7c's default batch, and composes the default number of steps from it. Writes
``benchmarks/results/bench_edit_correction-<device kind>.json``.

    python benchmarks/bench_edit_correction.py --device cpu --threads 2 --timed-steps 2
    python benchmarks/bench_edit_correction.py --device cuda
"""
from __future__ import annotations

import argparse
import pathlib
import resource
import sys
import time

import numpy as np
import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks.records import add_results_dir_argument, device_kind_of, start_record
from stylegan.networks import StyleGANGenerator
from stylegan.property_regressor import PropertyRegressor
from stylegan.refine_correction import CorrectionConfig, CorrectionTrainer


def _directions(w_dim: int):
    from stylegan.directions import fit_directions
    rng = np.random.default_rng(0)
    w = rng.standard_normal((600, w_dim))
    scores = np.clip(0.5 + 0.1 * w[:, :5] + 0.02 * rng.standard_normal((600, 5)), 0, 1)
    return fit_directions(w, scores, seed=0, method="ridge")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--device", default="cpu", help="cpu | cuda")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch", type=int, default=CorrectionConfig.batch, help="codes per step (step 7c's --batch)")
    parser.add_argument("--timed-steps", type=int, default=3, help="steps timed after one warm-up step")
    add_results_dir_argument(parser)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    record = start_record("bench_edit_correction", device_kind_of(device))
    torch.manual_seed(0)
    generator = StyleGANGenerator(resolution=args.resolution).to(device).eval().requires_grad_(False)
    regressor = PropertyRegressor().to(device).eval().requires_grad_(False)
    config = CorrectionConfig(batch=args.batch)
    start = time.perf_counter()
    trainer = CorrectionTrainer(generator, regressor, _directions(generator.w_space_dim), config)
    setup_s = time.perf_counter() - start
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    trainer.train_step()    # warm-up: kernels chosen, memory allocated
    times = []
    for _ in range(args.timed_steps):
        sync()
        t0 = time.perf_counter()
        trainer.train_step()
        sync()
        times.append(time.perf_counter() - t0)
    per_step = float(np.median(times))
    record.figures.update({
        "seconds_per_step": round(per_step, 3),
        "default_run_hours": round((setup_s + config.steps * per_step) / 3600, 2),
        "setup_s": round(setup_s, 1),
        "peak_memory_mb": (round(torch.cuda.max_memory_allocated(device) / 2**20) if device.type == "cuda"
                           else round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)),
    })
    record.settings.update({"resolution": args.resolution, "batch": args.batch, "default_steps": config.steps,
                            "timed_steps": args.timed_steps, "threads": torch.get_num_threads(),
                            "memory": "CUDA max allocated" if device.type == "cuda" else "process peak RSS",
                            "what": "CorrectionTrainer.train_step (render the batch, the regressor, the correction "
                                    "through both, one Adam step), median of the timed steps after one warm-up"})
    record.write(args.results_dir)
    print(record.figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
