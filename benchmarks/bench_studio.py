"""Studio latency: render request to image received (p50/p95) for one face and a strip of 8, at 256 px
with full-size random-weight models, and slider input to new image painted in a real Chromium.

The world: a full-size genforce-architecture StyleGAN at 256 px (random recipe weights), a
fine-tuned checkpoint of the same size in step 7's format, and latent directions fitted on
random scores. The studio's real server runs in-process on a free loopback port. Writes JSON to
benchmarks/results/ and prints a table. Asserts nothing; not collected by pytest.

    python benchmarks/bench_studio.py --device cpu --repeats 10
    python benchmarks/bench_studio.py --device cuda --repeats 30
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))


def build_world(root: Path, device) -> Path:
    """Full-size random generator, a step-7-format fine-tune and fitted directions under ``root``."""
    import torch

    from common.fingerprint import file_fingerprint
    from common.io import atomic_torch_save
    from common.paths import PROPERTY_NAMES, PipelinePaths
    from stylegan import load_generator, write_random_checkpoint
    from stylegan.conditional import FINETUNE_FORMAT_VERSION, build_conditional_generator, property_ranges
    from stylegan.directions import fit_directions

    paths = PipelinePaths(root)
    write_random_checkpoint(paths.stylegan_checkpoint, resolution=256, seed=0)
    base = load_generator(paths.stylegan_checkpoint)
    generator = build_conditional_generator(base, seed=0)
    low = {p: -1.0 if p == "face_pose" else 0.0 for p in PROPERTY_NAMES}
    stats = {p: {"median": (low[p] + 1.0) / 2, "min": low[p], "max": 1.0} for p in PROPERTY_NAMES}
    config = {"format_version": FINETUNE_FORMAT_VERSION, "property_names": list(PROPERTY_NAMES),
              "generator": generator.cond_config, "normalization": None, "condition_stats": stats}
    config["property_ranges"] = {k: list(v) for k, v in property_ranges(config).items()}
    state = generator.state_dict()
    atomic_torch_save(paths.finetuned_dir / "checkpoints" / "checkpoint_000001.pt",
                      {"format_version": FINETUNE_FORMAT_VERSION, "config": config, "generator": state,
                       "generator_ema": state, "step": 1})
    rng = np.random.default_rng(0)
    with torch.no_grad():
        z = rng.standard_normal((600, base.z_space_dim)).astype(np.float32)
        w = base.mapping(torch.from_numpy(z))["w"]
    scores = rng.uniform(0, 1, (600, len(PROPERTY_NAMES)))
    scores[:, -1] = scores[:, -1] * 2 - 1
    directions = fit_directions(w.numpy(), scores.astype(np.float32), method="ridge",
                                generator_fingerprint=file_fingerprint(paths.stylegan_checkpoint))
    directions.save(paths.directions_pt)
    return root


def _percentiles(values: list[float]) -> dict[str, float]:
    return {"p50_ms": round(float(np.percentile(values, 50)), 1),
            "p95_ms": round(float(np.percentile(values, 95)), 1), "n": len(values)}


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=600) as response:
        return response.read()


def http_latency(base_url: str, repeats: int, strip: int, method: str) -> dict:
    """Request -> PNG received and decoded, each request a new view (the eyes value changes)."""
    import io

    from PIL import Image

    times = []
    for i in range(repeats + 1):
        query = f"method={method}&seed=1&eyes={0.1 + 0.8 * i / max(repeats, 1):.3f}&strip={strip}"
        start = time.perf_counter()
        body = _get(f"{base_url}api/render?{query}")
        Image.open(io.BytesIO(body)).load()
        if i:  # the first request warms up
            times.append((time.perf_counter() - start) * 1000)
    return _percentiles(times)


def browser_latency(base_url: str, repeats: int) -> dict | None:
    """Real mouse clicks on the eyes slider; the page measures input event -> new image painted."""
    if not CHROMIUM.exists():
        return None
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        page = chromium.new_page(viewport={"width": 1150, "height": 760}, bypass_csp=True)
        page.set_default_timeout(600_000)
        page.goto(base_url + "?method=directions&seed=2")
        page.wait_for_function("document.body.dataset.ready === '1'")
        box = page.locator("#slider-eyes").bounding_box()
        y = box["y"] + box["height"] / 2
        times = []
        for i in range(repeats + 1):
            page.mouse.click(box["x"] + 6 + (box["width"] - 12) * ((i * 0.37) % 1.0), y)
            page.wait_for_function("window.studioIdle()")
            if i:
                times.append(page.evaluate("window.studioStats.paintMs.at(-1)"))
        chromium.close()
    return _percentiles(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--parts", default="http,browser", help="http (server latency), browser (Chromium)")
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_studio.json")
    args = parser.parse_args(argv)
    import torch

    from common.runtime import resolve_device
    from pipeline.studio.server import StudioConfig, build_app, make_server

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        root = build_world(Path(tmp), device)
        app = build_app(StudioConfig(root=root, device=str(device), port=0, measure=False))
        server = make_server(app, "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            results = {}
            if "http" in args.parts:
                results["one_face_directions"] = http_latency(server.url, args.repeats, 1, "directions")
                results["one_face_finetuned"] = http_latency(server.url, args.repeats, 1, "finetuned")
                results["strip_of_8_directions"] = http_latency(server.url, args.repeats, 8, "directions")
            if "browser" in args.parts:
                results["browser_input_to_paint_one_face"] = browser_latency(server.url, args.repeats)
        finally:
            server.shutdown()
            server.server_close()
    name = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else platform.processor() or platform.machine())
    report = {"device": str(device), "device_name": name, "cpu_count": os.cpu_count(),
              "torch_threads": torch.get_num_threads(), "load_avg": os.getloadavg(),
              "torch": torch.__version__, "resolution": 256, "results": results,
              "note": "one face = base + edited (2 images); strip of 8 = 16 images, one batch per column"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"studio latency on {report['device']} ({report['device_name']}, "
          f"{report['torch_threads']} threads, load {report['load_avg'][0]:.1f}):")
    for name, value in results.items():
        shown = "n/a (no Chromium)" if value is None else (
            f"p50 {value['p50_ms']:8.1f} ms   p95 {value['p95_ms']:8.1f} ms   (n={value['n']})")
        print(f"  {name:34s} {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
