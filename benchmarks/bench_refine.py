"""What the directions route's "refine" option (``--refine`` of steps 8 and 9) costs per image.

The real size: genforce's 256 px StyleGAN v1 generator (random weights: speed does not depend on
them) and the learned property regressor at its default size. Times, per image, the linear edit's
render (mapping + one synthesis) and the refined one (the same plus ``RefineConfig().steps``
synthesis + regressor forward/backward passes), at batch 1 and 4. Writes the record
``benchmarks/results/bench_refine-<device>.json``.

    python benchmarks/bench_refine.py [--threads 2] [--device cpu] [--batches 1 4]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from benchmarks.records import add_results_dir_argument, start_record
from stylegan.networks import StyleGANGenerator
from stylegan.property_regressor import PropertyRegressor
from stylegan.refine import EditRefiner, RefineConfig


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--resolution", type=int, default=256)
    add_results_dir_argument(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    record = start_record("bench_refine", device.type)
    torch.manual_seed(0)
    generator = StyleGANGenerator(resolution=args.resolution).to(device).eval()
    regressor = PropertyRegressor().to(device)
    refiner = EditRefiner(generator, regressor, np.ones(5, np.float32), RefineConfig())
    rows = []
    for batch in args.batches:
        z = torch.randn(batch, generator.z_space_dim, device=device)
        targets = np.full((batch, 5), np.nan, np.float32)
        targets[:, 0] = 0.9
        mask = torch.ones(batch, generator.num_layers, dtype=torch.bool, device=device)
        with torch.inference_mode():
            t0 = time.perf_counter()
            w = generator.mapping(z)["w"]
            generator.synthesis(w[:, None].expand(-1, generator.num_layers, -1), None, False)
            linear = time.perf_counter() - t0
        t0 = time.perf_counter()
        wp = refiner.refine(w, w + 0.1, targets, mask)
        with torch.inference_mode():
            generator.synthesis(wp, None, False)
        refined = time.perf_counter() - t0
        rows.append({"batch": batch, "linear, s per image": round(linear / batch, 3),
                     "refined, s per image": round(refined / batch, 2)})
        record.figures[f"batch{batch}_linear_seconds_per_image"] = round(linear / batch, 3)
        record.figures[f"batch{batch}_refine_seconds_per_image"] = round(refined / batch, 2)
        print(f"batch {batch}: linear {linear / batch:.2f} s/image, refine {refined / batch:.1f} s/image "
              f"({RefineConfig().steps} steps)")
    record.tables["per_image"] = rows
    record.settings.update({"resolution": args.resolution, "refine_steps": RefineConfig().steps,
                            "threads": args.threads, "weights": "random (speed does not depend on them)"})
    record.write(args.results_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
