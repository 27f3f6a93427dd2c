"""Step-5 throughput: FaceXFormer parsing at batch 1/8/32, MTCNN face crop, and the whole step.

Recipe-v2 weights (same cost as the real checkpoint). ``--device auto`` runs the CPU, and also CUDA
when one is present (TF32 off, so numbers match the golden tolerance). Writes the record
``benchmarks/results/bench_segment-<device>.json`` (the last device measured) and prints a table.
Asserts nothing; not collected by pytest.

    python benchmarks/bench_segment.py                       # batch 1,8,32, 2 timed batches each
    python benchmarks/bench_segment.py --sizes 1,8 --batches 3 --step-images 16
"""
from __future__ import annotations

import argparse
import platform
import resource
import tempfile
import time
from pathlib import Path

from benchmarks.records import add_results_dir_argument, start_record

REAL_FACES = Path(__file__).resolve().parents[1] / "tests" / "data" / "real_faces"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def bench_model(device, sizes: list[int], batches: int) -> list[dict]:
    import torch

    from segmentation import FaceXFormer, recipe_state_dict

    with torch.device("meta"):
        model = FaceXFormer()
    model.load_state_dict(recipe_state_dict(), strict=True, assign=True)
    model = model.to(device).eval()
    rows = []
    for size in sizes:
        x = torch.randn(size, 3, 224, 224, generator=torch.Generator().manual_seed(0)).to(device)
        model.segment(x)  # warm-up (allocations, cuDNN autotune)
        _sync(device)
        start = time.perf_counter()
        for _ in range(batches):
            model.segment(x)
        _sync(device)
        seconds = time.perf_counter() - start
        rows.append({
            "what": "facexformer segment (logits+softmax+argmax)", "device": str(device),
            "device_name": _device_name(device), "batch_size": size, "images": size * batches,
            "seconds": round(seconds, 3), "images_per_s": round(size * batches / seconds, 3),
            "peak_rss_mb": round(_peak_rss_mb(), 1),
            "peak_cuda_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
            if device.type == "cuda" else None,
        })
        print(_fmt(rows[-1]), flush=True)
    return rows


def bench_mtcnn(faces: list[Path], device: str) -> list[dict]:
    import torch
    from PIL import Image

    from segmentation import detect_and_crop

    images = [Image.open(p).convert("RGB") for p in faces]
    detect_and_crop(images[:2], device=device)  # warm-up
    rows = []
    for batch in (False, True):
        start = time.perf_counter()
        crops = detect_and_crop(images, device=device, batch=batch)
        seconds = time.perf_counter() - start
        rows.append({
            "what": f"mtcnn detect+crop ({'batched' if batch else 'one image per call'})", "device": device,
            "device_name": _device_name(torch.device(device)), "batch_size": len(images) if batch else 1,
            "images": len(images), "found": sum(c.found for c in crops), "seconds": round(seconds, 3),
            "images_per_s": round(len(images) / seconds, 2), "peak_rss_mb": round(_peak_rss_mb(), 1),
            "peak_cuda_mb": None,
        })
        print(_fmt(rows[-1]), flush=True)
    return rows


def bench_step(faces: list[Path], device, n: int, batch_size: int) -> dict:
    """The whole step 5 (read, MTCNN, parse, write PNGs + CSV) on real faces, model load included."""
    import shutil

    from segmentation import SegmentConfig, run_segmentation, save_random_facexformer_checkpoint

    chosen = (faces * (n // len(faces) + 1))[:n]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "in").mkdir()
        for i, face in enumerate(chosen):
            shutil.copy(face, tmp / "in" / f"{i:06d}.jpg")
        ckpt = save_random_facexformer_checkpoint(tmp / "model.pt")
        start = time.perf_counter()
        summary = run_segmentation(SegmentConfig(images=tmp / "in", checkpoint=ckpt, out=tmp / "out", device=str(device),
                                                 batch_size=batch_size))
        seconds = time.perf_counter() - start
    row = {"what": "step 5 end to end (load model, read, mtcnn, parse, write)", "device": str(device),
           "device_name": _device_name(device), "batch_size": batch_size, "images": n,
           "found": summary.parsed, "seconds": round(seconds, 3), "images_per_s": round(n / seconds, 3),
           "peak_rss_mb": round(_peak_rss_mb(), 1), "peak_cuda_mb": None}
    print(_fmt(row), flush=True)
    return row


def _fmt(row: dict) -> str:
    extra = f"  peak CUDA {row['peak_cuda_mb']} MB" if row.get("peak_cuda_mb") else ""
    return (f"{row['device']:>6}  {row['what']:<58} batch {row['batch_size']:>3}  {row['images']:>4} img  "
            f"{row['images_per_s']:8.2f} img/s  peak RSS {row['peak_rss_mb']:7.0f} MB{extra}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto = cpu, plus cuda when present; or cpu / cuda")
    parser.add_argument("--sizes", default="1,8,32", help="batch sizes for the model")
    parser.add_argument("--batches", type=int, default=2,
                        help="timed batches per batch size (after a warm-up)")
    parser.add_argument("--step-images", type=int, default=16,
                        help="images for the end-to-end step (0: skip)")
    parser.add_argument("--step-batch-size", type=int, default=8)
    parser.add_argument("--faces", type=Path, default=REAL_FACES, help="folder of real face images")
    add_results_dir_argument(parser)
    args = parser.parse_args(argv)

    import torch

    if args.device == "auto":
        devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    else:
        devices = [torch.device(args.device)]
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    sizes = [int(s) for s in args.sizes.split(",") if s]
    faces = sorted(args.faces.glob("*.jpg")) if args.faces.is_dir() else []

    record = start_record("bench_segment", devices[-1].type)
    rows: list[dict] = []
    for device in devices:
        rows += bench_model(device, sizes, args.batches)
    if faces:
        rows += bench_mtcnn(faces, "cpu")
        if args.step_images:
            rows.append(bench_step(faces, devices[-1], args.step_images, batch_size=args.step_batch_size))
    else:
        print(f"no real faces in {args.faces}: MTCNN and end-to-end rows skipped")
    record.tables["throughput"] = [
        {"what": r["what"], "device": r["device"], "batch": r["batch_size"], "images": r["images"],
         "images/s": r["images_per_s"], "peak RSS, MB": r["peak_rss_mb"],
         **({"peak CUDA, MB": r["peak_cuda_mb"]} if r["peak_cuda_mb"] else {})} for r in rows]
    for r in rows:
        key = ("facexformer" if r["what"].startswith("facexformer") else "mtcnn" if r["what"].startswith("mtcnn")
               else "step5")
        batched = "" if key != "mtcnn" else ("_batched" if "batched" in r["what"] else "_one_per_call")
        prefix = f"{key}{batched}_{r['device'].split(':')[0]}" + (f"_batch{r['batch_size']}" if key != "mtcnn" else "")
        record.figures[f"{prefix}_images_per_s"] = r["images_per_s"]
        record.figures[f"{prefix}_peak_rss_mb"] = r["peak_rss_mb"]
    record.settings.update({"timed_batches": args.batches, "step_images": args.step_images,
                            "step_batch_size": args.step_batch_size, "weights": "recipe v2 (random)",
                            "device_name": rows[0]["device_name"] if rows else None})
    record.write(args.results_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
