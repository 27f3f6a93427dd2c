"""Step 5 with one process x T threads vs N torchrun processes x 1 thread (issue 14), on the same CPU.

Runs the real script (``05_run_segmentation.py``: read, MTCNN crop, FaceXFormer parse, write PNGs +
crops.csv) on copies of the real test faces with a random-weight FaceXFormer (recipe v2: the real
model's cost), once per layout, each into a fresh folder; the wall time includes starting Python
and loading the 368 MB model in every process (what a user waits for). Checks that both layouts
wrote the same files (equal bytes with the same threads per process; other thread counts move
floats in their last bits). Writes the record ``benchmarks/results/bench_segment_processes-<device>.json``;
asserts nothing. With ``--device cuda`` FaceXFormer runs on ``cuda:LOCAL_RANK`` in each process.

    python benchmarks/bench_segment_processes.py                    # 16 images, 1x2 threads vs 2x1
    python benchmarks/bench_segment_processes.py --images 32 --procs 2 --threads 2
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.records import add_results_dir_argument, start_record

REPO = Path(__file__).resolve().parents[1]
REAL_FACES = REPO / "tests" / "data" / "real_faces"
SCRIPT = REPO / "stylegan_and_segmentation" / "05_run_segmentation.py"


def _run(command: list[str], threads: int) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"failed ({result.returncode}): {' '.join(command)}\n{result.stderr[-2000:]}")
    return seconds


def _differences(a: Path, b: Path) -> dict:
    """Files only one layout wrote, files that differ, and label-map pixels that differ.

    One thread vs several can move FaceXFormer's logits by ~4e-6 (README, step 5), enough to flip
    near-tied pixels; the tests compare layouts with the same threads per process, where files are equal.
    """
    import numpy as np
    from PIL import Image

    names_a = {p.name for p in a.iterdir() if p.name != "segmentation_run.json"}
    names_b = {p.name for p in b.iterdir() if p.name != "segmentation_run.json"}
    differ = sorted(n for n in names_a & names_b if (a / n).read_bytes() != (b / n).read_bytes())
    pixels = sum(int((np.asarray(Image.open(a / n)) != np.asarray(Image.open(b / n))).sum())
                 for n in differ if n.startswith("parsing_") and not n.startswith("parsing_visualization_"))
    total = sum(224 * 224 for n in names_a if n.startswith("parsing_") and not n.startswith("parsing_visualization_"))
    return {"only_one_layout": sorted(names_a ^ names_b), "files_differ": differ, "map_pixels_differ": pixels,
            "map_pixels": total}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=16, help="images (the real test faces, repeated)")
    parser.add_argument("--procs", type=int, default=2, help="torchrun processes (1 thread each)")
    parser.add_argument("--threads", type=int, default=2, help="threads of the single process")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    add_results_dir_argument(parser)
    args = parser.parse_args(argv)
    record = start_record("bench_segment_processes", args.device)

    from segmentation.random_weights import save_random_facexformer_checkpoint

    faces = sorted(REAL_FACES.glob("*.jpg"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-step5-procs-") as tmp:
        tmp = Path(tmp)
        images = tmp / "images"
        images.mkdir()
        for i in range(args.images):
            shutil.copy(faces[i % len(faces)], images / f"{i:06d}.jpg")
        checkpoint = save_random_facexformer_checkpoint(tmp / "segmentation_model.pt")
        common = ["--images", str(images), "--segmentation-checkpoint", str(checkpoint), "--device", args.device,
                  "--batch-size", str(args.batch_size), "-q"]
        layouts = [
            (f"1 process x {args.threads} threads", args.threads,
             [sys.executable, str(SCRIPT), *common, "--threads", str(args.threads), "--out", str(tmp / "one")]),
            ("1 process x 1 thread", 1,
             [sys.executable, str(SCRIPT), *common, "--threads", "1", "--out", str(tmp / "one_thread")]),
            (f"{args.procs} torchrun processes x 1 thread", 1,
             [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.procs}",
              str(SCRIPT), "--", *common, "--threads", "1", "--out", str(tmp / "many")]),
        ]
        for name, threads, command in layouts:
            load_before = os.getloadavg()[0]
            seconds = _run(command, threads)
            rows.append({"layout": name, "images": args.images, "seconds": round(seconds, 2),
                         "images_per_s": round(args.images / seconds, 3), "load_1min_before": load_before,
                         "load_1min_after": os.getloadavg()[0]})
            print(f"{name:<34} {args.images} images  {seconds:7.1f} s  {args.images / seconds:6.2f} img/s  "
                  f"(1-min load before/after: {load_before:.1f}/{os.getloadavg()[0]:.1f})", flush=True)
        same = {"vs 1 process x 1 thread": _differences(tmp / "one_thread", tmp / "many"),
                f"vs 1 process x {args.threads} threads": _differences(tmp / "one", tmp / "many")}
    for what, found in same.items():
        print(f"{args.procs} processes {what}: files differ {found['files_differ'] or 'none'}; label-map pixels "
              f"differ {found['map_pixels_differ']} of {found['map_pixels']}")
    record.tables["layouts"] = [{"layout": r["layout"], "images": r["images"], "seconds": r["seconds"],
                                 "images/s": r["images_per_s"], "load before": r["load_1min_before"],
                                 "load after": r["load_1min_after"]} for r in rows]
    for key, row in zip(("one_process_threads", "one_process_one_thread", "torchrun"), rows):
        record.figures[f"{key}_seconds"] = row["seconds"]
        record.figures[f"{key}_images_per_s"] = row["images_per_s"]
    record.tables["same_files"] = [{"compared": f"{args.procs} processes {what}",
                                    "files that differ": len(found["files_differ"]),
                                    "map pixels that differ": found["map_pixels_differ"],
                                    "map pixels": found["map_pixels"]} for what, found in same.items()]
    record.settings.update({"what": "step 5 from launch to exit: real faces, MTCNN crop, random-weight FaceXFormer",
                            "images": args.images, "batch_size": args.batch_size, "threads": args.threads,
                            "processes": args.procs})
    record.write(args.results_dir)
    print(json.dumps(record.tables, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
