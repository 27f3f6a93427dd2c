"""One command for every device figure of the speed issue: generation, FaceXFormer, fine-tuning.

Full-size random-weight models (recipe weights; nothing is downloaded), one table printed, the
same rows written as the record ``benchmarks/results/device_check-<device>.json`` (``--quick``:
``device_check_quick-<device>``, never the real one). Meant for a GPU and sized to finish in under five minutes on one card
(not yet run on a GPU: none was available when it was written):

    python benchmarks/device_check.py --device cuda

``--quick`` runs every code path with tiny settings (generator at 32 px, FaceXFormer batch 1,
fine-tune at 16 px) so a CPU-only CI can run it in well under a minute: its figures only prove
the script works. Rows that need CUDA (fp16 on the GPU, AMP fine-tuning) say "not measured"
on a CPU.

Rows:
* generation 256: images/s of the model alone and writing JPEGs (4 encoder threads), fp32
  channels_last (the default), fp32 NCHW, fp16 and bf16 autocast with their max |diff| against
  fp32 and the share of uint8 pixel values that change;
* FaceXFormer: parsing images/s fp32 and fp16 autocast, share of parsing-map pixels that change;
* fine-tune (D + G step with R1 and the property loss): seconds per step and peak memory at
  batch 8 and 16, AMP on and off.
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from benchmarks.records import NOT_MEASURED, add_results_dir_argument, start_record


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device, repeats: int, warmup: bool = True):
    """(seconds per call, the last call's result): one warm-up call unless ``warmup`` is False,
    then the mean of ``repeats`` calls."""
    if warmup:
        fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        result = fn()
    _sync(device)
    return (time.perf_counter() - start) / repeats, result


def _figure(value: float) -> float:
    """Three significant digits: a slow path (bf16 emulated on a CPU without AVX-512 BF16: 0.04 images/s
    here) must not round to 0, which reads as "did not run"."""
    return float(f"{value:.3g}")


def _peak_mib(device: torch.device) -> float | str:
    if device.type != "cuda":
        return NOT_MEASURED
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device_type=device.type, dtype=dtype) if dtype is not None else nullcontext()


def _row(group: str, what: str, value, unit: str, note: str = "") -> dict:
    return {"group": group, "what": what, "value": value, "unit": unit, "note": note}


def _half_dtypes(device: torch.device) -> list[tuple[str, torch.dtype]]:
    """fp16 and bf16 on CUDA; on a CPU only bf16 (CPU autocast has no fp16 convolutions)."""
    if device.type == "cuda":
        return [("fp16", torch.float16), ("bf16", torch.bfloat16)]
    return [("bf16", torch.bfloat16)]


# ------------------------------------------------------------------------------------------------
def check_generation(device: torch.device, quick: bool) -> list[dict]:
    from common.io import atomic_save_image
    from stylegan.networks import StyleGANGenerator, postprocess_uint8
    from stylegan.random_weights import recipe_state_dict

    resolution, batch, repeats = (32, 2, 1) if quick else (256, 64, 5)
    group = f"generation {resolution}px, batch {batch}"
    G = StyleGANGenerator(resolution)
    G.load_state_dict(recipe_state_dict(G), strict=True)
    G = G.eval().to(device)
    z = torch.randn(batch, G.z_space_dim, generator=torch.Generator().manual_seed(0)).to(device)
    rows = []

    def run(dtype=None):
        with torch.inference_mode(), _autocast(device, dtype):
            return G(z)["image"].float()

    seconds, reference = _timed(run, device, repeats, not quick)
    rows.append(_row(group, "fp32 channels_last (default), model only", _figure(batch / seconds), "images/s"))

    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(max_workers=4) as pool:
        counter = iter(range(10**9))

        def run_and_write():
            images = postprocess_uint8(run())
            futures = [pool.submit(atomic_save_image, Path(tmp) / f"{next(counter):06d}.jpg", image)
                       for image in images]
            for future in futures:
                future.result()

        seconds, _ = _timed(run_and_write, device, repeats, not quick)
    rows.append(_row(group, "fp32, writing JPEGs (q95, 4 threads)", _figure(batch / seconds), "images/s"))

    layers = [m for m in G.modules() if hasattr(m, "memory_format")]
    for layer in layers:
        layer.memory_format = torch.contiguous_format
    seconds, _ = _timed(run, device, repeats, not quick)
    for layer in layers:
        layer.memory_format = torch.channels_last
    rows.append(_row(group, "fp32 NCHW (for comparison)", _figure(batch / seconds), "images/s"))

    ref_u8 = postprocess_uint8(reference).astype(np.int16)
    for name, dtype in _half_dtypes(device):
        seconds, out = _timed(lambda: run(dtype), device, repeats, not quick)
        diff_u8 = postprocess_uint8(out).astype(np.int16) - ref_u8
        note = (f"max |diff| vs fp32 {float((out - reference).abs().max()):.3g} (raw), "
                f"{float((diff_u8 != 0).mean()) * 100:.2f}% of uint8 values differ (max {int(abs(diff_u8).max())})")
        rows.append(_row(group, f"{name} autocast, model only", _figure(batch / seconds), "images/s", note))
    if device.type != "cuda":
        rows.append(_row(group, "fp16 autocast", NOT_MEASURED, "images/s", "needs CUDA"))
    return rows


# ------------------------------------------------------------------------------------------------
def check_facexformer(device: torch.device, quick: bool) -> list[dict]:
    from segmentation.facexformer import FaceXFormer

    batch, repeats = (1, 1) if quick else (32, 5)
    group = f"FaceXFormer parsing, batch {batch}"
    model = FaceXFormer().eval().to(device)  # random init: speed and fp16 agreement, not quality
    x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0)).to(device)

    def run(dtype=None):
        with torch.inference_mode(), _autocast(device, dtype):
            return model.segment(x)

    seconds, reference = _timed(run, device, repeats, not quick)
    rows = [_row(group, "fp32", _figure(batch / seconds), "images/s")]
    for name, dtype in _half_dtypes(device)[:1]:
        seconds, maps = _timed(lambda: run(dtype), device, repeats, not quick)
        changed = float((maps != reference).float().mean()) * 100
        rows.append(_row(group, f"{name} autocast", _figure(batch / seconds), "images/s",
                         f"{changed:.3f}% of parsing-map pixels differ from fp32"))
    if device.type != "cuda":
        rows.append(_row(group, "fp16 autocast", NOT_MEASURED, "images/s", "needs CUDA"))
    return rows


# ------------------------------------------------------------------------------------------------
def check_finetune(device: torch.device, quick: bool) -> list[dict]:
    from stylegan import load_discriminator, load_generator, write_random_checkpoint
    from stylegan.conditional import build_conditional_discriminator, build_conditional_generator
    from stylegan.finetune_trainer import FinetuneConfig, Finetuner
    from stylegan.property_regressor import PropertyRegressor

    resolution, batches, steps = (16, (4,), 1) if quick else (256, (8, 16), 3)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_random_checkpoint(Path(tmp) / "g.pth", resolution=resolution)
        base_g, base_d = load_generator(path), load_discriminator(path)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(64, resolution, resolution, 3), dtype=np.uint8)
    conditions = rng.uniform(0, 1, size=(64, 5)).astype(np.float32)
    rows = []
    for batch in batches:
        for amp in (False, True):
            group = f"fine-tune {resolution}px, batch {batch}"
            what = f"AMP {'on' if amp else 'off'}"
            if amp and device.type != "cuda":
                rows.append(_row(group, what, NOT_MEASURED, "s/step", "AMP needs CUDA"))
                continue
            _reset_peak(device)
            trainer = Finetuner(build_conditional_generator(base_g), build_conditional_discriminator(base_d),
                                images, conditions, FinetuneConfig(batch_size=batch, mixed_precision=amp),
                                PropertyRegressor(), device)
            seconds, _ = _timed(trainer.step, device, steps, not quick)
            rows.append(_row(group, what, _figure(seconds), "s/step", f"peak GPU memory {_peak_mib(device)} MiB"))
            del trainer
    return rows


CHECKS = {"generation": check_generation, "facexformer": check_facexformer, "finetune": check_finetune}


def run_checks(device: torch.device, quick: bool, only: list[str] | None = None) -> dict:
    rows: list[dict] = []
    for name, check in CHECKS.items():
        if only and name not in only:
            continue
        start = time.perf_counter()
        rows += check(device, quick)
        print(f"[{name}: {time.perf_counter() - start:.1f}s]", file=sys.stderr, flush=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    return {"device": str(device), "device_name": name, "quick": quick, "torch": torch.__version__,
            "cuda": torch.version.cuda, "threads": torch.get_num_threads(),
            "gpu": NOT_MEASURED if device.type != "cuda" else name, "rows": rows}


def format_table(report: dict) -> str:
    head = f"device check on {report['device']} ({report['device_name']}), torch {report['torch']}"
    if report["quick"]:
        head += " -- QUICK MODE: tiny settings, figures only prove the script runs"
    from common.markdown import markdown_rows

    columns = ("group", "what", "value", "unit", "note")
    return head + "\n" + markdown_rows(columns, ([str(r[c]) for c in columns] for r in report["rows"]))


def main(argv=None) -> int:
    from common.runtime import resolve_device

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cuda, cuda:1, cpu")
    parser.add_argument("--quick", action="store_true", help="tiny settings (CI on a CPU)")
    parser.add_argument("--only", nargs="+", choices=sorted(CHECKS), default=None)
    add_results_dir_argument(parser)
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    record = start_record("device_check_quick" if args.quick else "device_check", device.type)
    torch.manual_seed(0)
    report = run_checks(device, args.quick, args.only)
    print(format_table(report))
    record.tables["rows"] = report["rows"]
    for row in report["rows"]:
        key = f"{row['group']} | {row['what']} | {row['unit']}"
        record.figures[key] = row["value"]
    record.settings.update({k: report[k] for k in ("device", "device_name", "quick", "cuda", "threads")})
    record.write(args.results_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
