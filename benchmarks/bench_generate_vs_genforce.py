"""Generation at 256 on this machine: this project's StyleGANGenerator against genforce's own code.

Same recipe weights in both, batch 8, ``torch.inference_mode``, each model's default forward
(eval mode: no style mixing), timed in alternated pairs (see ``_paired.py``). Also checks that
the two give the same images (max |diff| of the raw output, share of uint8 pixels that differ).
genforce is on no package registry and is not copied here: pass your checkout of
https://github.com/genforce/genforce with ``--genforce PATH``; without it nothing is recorded (the
docs say "not measured" and this command). Writes ``benchmarks/results/bench_generate_vs_genforce-cpu.json``.

    python benchmarks/bench_generate_vs_genforce.py --genforce ~/src/genforce [--pairs 9] [--threads N]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from _paired import paired_ratio, reference_checkout

from benchmarks.records import add_results_dir_argument, start_record
from stylegan.networks import StyleGANGenerator, postprocess_uint8
from stylegan.random_weights import recipe_state_dict


def genforce_generator(root: Path, resolution: int) -> torch.nn.Module:
    """genforce's StyleGANGenerator class, imported from the user's checkout."""
    sys.path.insert(0, str(root))
    try:
        from models.stylegan_generator import StyleGANGenerator as GenforceGenerator
    finally:
        sys.path.remove(str(root))
    return GenforceGenerator(resolution)


def compare(genforce: Path, batch: int = 8, pairs: int = 9, resolution: int = 256) -> dict:
    ours = StyleGANGenerator(resolution)
    state = recipe_state_dict(ours)
    ours.load_state_dict(state, strict=True)
    ours.eval()
    z = torch.randn(batch, ours.z_space_dim, generator=torch.Generator().manual_seed(0))
    row = {}
    with torch.inference_mode():
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
    add_results_dir_argument(parser)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    root = reference_checkout(args.genforce, "models/stylegan_generator.py")
    if root is None:
        print("not measured: pass --genforce PATH (a checkout of https://github.com/genforce/genforce)",
              file=sys.stderr)
        return 2
    record = start_record("bench_generate_vs_genforce", "cpu")
    record.figures.update(compare(root, batch=args.batch, pairs=args.pairs))
    record.settings.update({"what": "generation 256 px, CPU, inference_mode, recipe weights, alternated pairs",
                            "batch": args.batch, "pairs": args.pairs, "threads": torch.get_num_threads()})
    record.write(args.results_dir)
    print(json.dumps(record.figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
