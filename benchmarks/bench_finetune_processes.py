"""Step 7 with 1 process x T threads vs N processes x T/N threads (torchrun, gloo), the same global batch.

The honest CPU comparison for data-parallel training: both runs do the same work (the 1-process run
uses ``--micro-batches N``, so it trains as the N processes do; the largest relative difference of
the logged losses is reported: another thread count rounds the convolutions otherwise, so it is
not 0). A third run, 1 process x T/N threads, tells processes from threads. Seconds per step are
the medians of ``train_log.csv``'s ``seconds`` after the first step. A random genforce generator at
``--resolution`` with made-up scores; asserts nothing. Writes the record
``benchmarks/results/bench_finetune_processes-<device>.json``. With ``--device cuda`` each process
takes ``cuda:LOCAL_RANK`` (one GPU against N GPUs).

    python benchmarks/bench_finetune_processes.py --processes 2 --threads 2 --resolution 32 --fmaps-max 64
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
import pandas as pd
import torch

from benchmarks.records import add_results_dir_argument, start_record
from common.io import atomic_save_image, atomic_write_csv, atomic_write_json
from common.paths import PROPERTY_NAMES, PipelinePaths
from stylegan import load_generator, postprocess_uint8, write_random_checkpoint

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "stylegan_and_segmentation" / "07_finetune_stylegan.py"


def make_root(root: pathlib.Path, resolution: int, num: int, fmaps_max: int) -> PipelinePaths:
    """Random checkpoint, ``num`` of its images as the filtered set, uniform scores, min-max normalisation."""
    paths = PipelinePaths(root)
    write_random_checkpoint(paths.stylegan_checkpoint, resolution=resolution, seed=0, fmaps_max=fmaps_max)
    generator = load_generator(paths.stylegan_checkpoint)
    rng = np.random.default_rng(0)
    with torch.no_grad():
        images = postprocess_uint8(generator(torch.from_numpy(
            rng.standard_normal((num, generator.z_space_dim)).astype(np.float32)))["image"])
    scores = rng.uniform(0, 1, size=(num, len(PROPERTY_NAMES)))
    scores[:, -1] = scores[:, -1] * 2 - 1
    names = [f"{i:06d}.png" for i in range(num)]
    for name, image in zip(names, images):
        atomic_save_image(paths.filtered_dir / name, image)
    frame = pd.DataFrame(np.round(scores, 4), columns=list(PROPERTY_NAMES))
    frame.insert(0, "img_name", names)
    atomic_write_csv(paths.all_scores_csv, frame)
    scales = {p: {"kind": "minmax", "count": num, "min": 0.0, "max": 1.0,
                  "target": [-1.0, 1.0] if p == "face_pose" else [0.0, 1.0]} for p in PROPERTY_NAMES}
    atomic_write_json(paths.normalization_json, {"format_version": 1, "method": "minmax", "properties":
                                                 list(PROPERTY_NAMES), "scales": scales})
    return paths


def run(paths: PipelinePaths, out: pathlib.Path, processes: int, threads: int, args: argparse.Namespace) -> dict:
    flags = ["--root", str(paths.root), "--out", str(out), "--device", args.device, "--steps", str(args.steps),
             "--batch-size", str(args.batch_size), "--micro-batches", str(args.processes), "--regressor-epochs", "1",
             "--sample-every", str(10 * args.steps), "--threads", str(threads), "-q"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = str(threads)
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                 str(SCRIPT), "--"] if processes > 1 else [sys.executable, str(SCRIPT)])
    subprocess.run([*launcher, *flags], check=True, env=env, capture_output=True, text=True)
    log = pd.read_csv(out / "train_log.csv")
    return {"processes": processes, "threads_per_process": threads,
            "seconds_per_step": round(float(log["seconds"].iloc[1:].median()), 4),
            "images_per_second": round(args.batch_size / float(log["seconds"].iloc[1:].median()), 2),
            "losses": log.drop(columns="seconds").to_numpy().tolist()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=2, help="N processes of the torchrun run")
    parser.add_argument("--threads", type=int, default=2, help="threads of the 1-process run (T/N per process)")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--fmaps-max", type=int, default=128, help="channel cap of G and D (genforce's is 512)")
    parser.add_argument("--batch-size", type=int, default=8, help="the global batch")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    add_results_dir_argument(parser)
    args = parser.parse_args(argv)
    record = start_record("bench_finetune_processes", args.device)
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_root(pathlib.Path(tmp) / "root", args.resolution, args.images, args.fmaps_max)
        single = run(paths, pathlib.Path(tmp) / "one", 1, args.threads, args)
        per_process = max(1, args.threads // args.processes)
        multi = run(paths, pathlib.Path(tmp) / "many", args.processes, per_process, args)
        narrow = run(paths, pathlib.Path(tmp) / "narrow", 1, per_process, args)  # is it the processes or the threads?
        narrow.pop("losses")
    a, b = np.asarray(single.pop("losses")), np.asarray(multi.pop("losses"))
    relative = float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-6)))  # other thread counts round otherwise
    layouts = [(f"1 process x {args.threads} threads", single),
               (f"{args.processes} torchrun processes x {per_process} thread(s)", multi),
               (f"1 process x {per_process} thread(s)", narrow)]
    record.tables["layouts"] = [{"layout": name, "s per step": r["seconds_per_step"], "images/s": r["images_per_second"]}
                                for name, r in layouts]
    record.figures.update({"one_process_seconds_per_step": single["seconds_per_step"],
                           "torchrun_seconds_per_step": multi["seconds_per_step"],
                           "one_process_narrow_seconds_per_step": narrow["seconds_per_step"],
                           "max_relative_loss_difference": round(relative, 6)})
    record.settings.update({"what": "step 7: 1 process vs torchrun (gloo on CPU, nccl on CUDA), same global batch",
                            "processes": args.processes, "threads": args.threads, "resolution": args.resolution,
                            "fmaps_max": args.fmaps_max, "global_batch": args.batch_size, "steps": args.steps})
    record.write(args.results_dir)
    print(json.dumps(record.tables["layouts"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
