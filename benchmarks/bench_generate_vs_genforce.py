"""Generation at 256 on this machine: this project's StyleGANGenerator against genforce's own code.

Same recipe weights in both, batch 8, ``torch.inference_mode``, each model's default forward
(eval mode: no style mixing), timed in alternated pairs (see ``_paired.py``). Also checks that
the two give the same images (max |diff| of the raw output, share of uint8 pixels that differ).
genforce is on no package registry and is not copied here: pass your checkout of
https://github.com/genforce/genforce with ``--genforce PATH``; without it the ratio is "not measured".

    python benchmarks/bench_generate_vs_genforce.py --genforce ~/src/genforce [--pairs 9] [--threads N]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import torch
from _paired import NOT_MEASURED, paired_ratio, reference_checkout

from stylegan.networks import StyleGANGenerator, postprocess_uint8
from stylegan.random_weights import recipe_state_dict

RESULTS = Path(__file__).resolve().parent / "results"


def genforce_generator(root: Path, resolution: int) -> torch.nn.Module:
    """genforce's StyleGANGenerator class, imported from the user's checkout."""
    sys.path.insert(0, str(root))
    try:
        from models.stylegan_generator import StyleGANGenerator as GenforceGenerator
    finally:
        sys.path.remove(str(root))
    return GenforceGenerator(resolution)


def compare(genforce: Path | None, batch: int = 8, pairs: int = 9, resolution: int = 256) -> dict:
    ours = StyleGANGenerator(resolution)
    state = recipe_state_dict(ours)
    ours.load_state_dict(state, strict=True)
    ours.eval()
    z = torch.randn(batch, ours.z_space_dim, generator=torch.Generator().manual_seed(0))
    row = {"benchmark": f"generation {resolution}px, batch {batch}, CPU, inference_mode", "batch": batch,
           "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
           "cpu_count": os.cpu_count(), "torch": torch.__version__}
    with torch.inference_mode():
        if genforce is None:
            ours(z)  # warm-up
            import time
            start = time.perf_counter()
            ours(z)
            row["ours_images_per_s"] = round(batch / (time.perf_counter() - start), 2)
            row["speedup_median"] = NOT_MEASURED
            return row
        ref = genforce_generator(genforce, resolution)
        ref.load_state_dict(state, strict=True)
        ref.eval()
        mine, theirs = ours(z)["image"], ref(z)["image"]
        diff = (postprocess_uint8(mine).astype("int16") - postprocess_uint8(theirs).astype("int16"))
        row["max_abs_diff_raw"] = float((mine - theirs).abs().max())
        row["uint8_max_diff"] = int(abs(diff).max())
        row["uint8_share_differing"] = float((diff != 0).mean())
        row.update(paired_ratio(lambda: ours(z), lambda: ref(z), pairs=pairs))
    row["ours_images_per_s"] = round(batch / row["ours_s_median"], 2)
    row["genforce_images_per_s"] = round(batch / row["reference_s_median"], 2)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--genforce", default=None, help="path to a genforce checkout (holds models/stylegan_generator.py)")
    parser.add_argument("--pairs", type=int, default=9, help="alternated pairs; the median ratio is reported")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_generate_vs_genforce.json")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    root = reference_checkout(args.genforce, "models/stylegan_generator.py")
    row = compare(root, batch=args.batch, pairs=args.pairs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(row, indent=2) + "\n")
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
