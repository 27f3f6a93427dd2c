"""Measure how far step 1's images and step 5's logits move with the batch size: the margins of the
batch-invariance tests (``tests/test_generate.py``, ``tests/test_segment_batch_invariance.py``,
``tests/test_segment.py``).

Results computed with other shapes (batch sizes, thread counts, kernels) are not bit-equal on every
x86-64 CPU: which kernel a library picks for a shape depends on the processor. So the tests state a
tolerance, and it must hold on every setting here with a margin. This script runs one worker process
per setting (``ATEN_CPU_CAPABILITY`` default / avx2 / native through ``benchmarks/_isa.py``, 1 and 2
threads), one after the other, and writes ``benchmarks/results/batch_margins-cpu.json``::

    python benchmarks/batch_margins.py                        # every setting (a few minutes on 2 cores)
    python benchmarks/batch_margins.py --worker --threads 1   # one setting, this environment: JSON lines

Per setting, against a batch of one image at a time:

* step 1 (tiny 32 px generator of the tests, 15 latents): batch sizes 2, 5, 7, 15: max |diff| of the
  raw images, max |diff| of the uint8 images and the share of uint8 values that differ;
* step 4 (the CNN shape of the tests, random weights, 6 crops): batch of 3 and of 6: max |diff| of the
  logits and of the probabilities;
* step 5 (FaceXFormer with the recipe's random weights, 3 real faces, full-image crops, and 2
  MTCNN crops as in step 5's test): batch of all and of two: max |diff| of the logits, pixels whose
  argmax differs, and the largest top-two logit gap (of the batch-of-one logits) at such a pixel.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # not ``tests.``: torch-fidelity installs a ``tests`` package

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tiny_models import TINY_G_32  # noqa: E402

from benchmarks._isa import run_per_isa  # noqa: E402

THREADS = (1, 2)
GENERATE_BATCHES = (2, 5, 7, 15)


def _generator_rows() -> list[dict]:
    from stylegan import load_generator, write_random_checkpoint
    from stylegan.generate import latents_for
    from stylegan.networks import postprocess_uint8

    with tempfile.TemporaryDirectory() as tmp:
        path = write_random_checkpoint(pathlib.Path(tmp) / "g.pth", **TINY_G_32)
        generator = load_generator(path, device="cpu")
    z = torch.from_numpy(latents_for(0, range(15), generator.z_space_dim))

    def raw(batch: int) -> torch.Tensor:
        with torch.inference_mode():
            return torch.cat([generator(z[i:i + batch], randomize_noise=False)["image"]
                              for i in range(0, len(z), batch)])

    one = raw(1)
    one_u8 = postprocess_uint8(one).astype(np.int16)
    rows = []
    for batch in GENERATE_BATCHES:
        other = raw(batch)
        diff_u8 = np.abs(postprocess_uint8(other).astype(np.int16) - one_u8)
        rows.append({"what": f"step 1: batch {batch} vs 1", "max_abs_raw": float((other - one).abs().max()),
                     "max_abs_u8": int(diff_u8.max()), "share_u8_differ": float((diff_u8 > 0).mean())})
    return rows


def _cnn_rows() -> list[dict]:
    from gender_cnn.classifier import SmallCNN

    torch.manual_seed(0)
    model = SmallCNN(channels=(4, 8)).eval()
    x = torch.rand(6, 3, 32, 16, generator=torch.Generator().manual_seed(1)) * 4 - 2

    def logits(batch: int) -> torch.Tensor:
        with torch.inference_mode():
            return torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)]).double()

    one = logits(1)
    rows = []
    for batch in (3, 6):
        other = logits(batch)
        rows.append({"what": f"step 4 CNN: batch {batch} vs 1", "max_abs_logit": float((other - one).abs().max()),
                     "max_abs_prob": float((torch.sigmoid(other) - torch.sigmoid(one)).abs().max())})
    return rows


def _logit_row(what: str, reference: torch.Tensor, other: torch.Tensor) -> dict:
    top2 = reference.topk(2, dim=1).values
    gap = top2[:, 0] - top2[:, 1]
    differ = reference.argmax(1) != other.argmax(1)
    return {"what": what, "max_abs_logit": float((other - reference).abs().max()),
            "argmax_differ_pixels": int(differ.sum()),
            "max_top2_gap_where_argmax_differs": float(gap[differ].max()) if differ.any() else 0.0}


def _segment_rows() -> list[dict]:
    from PIL import Image

    from segmentation.crop import detect_and_crop, full_image_crop, normalize_crops
    from segmentation.facexformer import FaceXFormer
    from segmentation.random_weights import recipe_state_dict

    model = FaceXFormer()
    model.load_state_dict(recipe_state_dict(), strict=True)
    model.eval()
    faces = [np.asarray(Image.open(p).convert("RGB"))
             for p in sorted((ROOT / "tests" / "data" / "real_faces").glob("*.jpg"))[:3]]
    rows = []
    for name, crops in (("full-image crops", [full_image_crop(f).image for f in faces]),
                        ("MTCNN crops", [c.image for c in detect_and_crop(faces[:2])])):
        x = normalize_crops(crops)
        single = torch.cat([model.segment_logits(x[i:i + 1]) for i in range(len(x))])
        rows.append(_logit_row(f"step 5, {name}: batch {len(x)} vs 1", single, model.segment_logits(x)))
        if len(x) > 2:
            rows.append(_logit_row(f"step 5, {name}: batch 2 vs 1", single[:2], model.segment_logits(x[:2])))
    return rows


def worker(emit_json: bool) -> None:
    """This process's setting: one JSON line per row; with ``emit_json`` also all rows as the last line."""
    setting = {"aten": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads()}
    rows = [{**setting, **row} for row in _generator_rows() + _cnn_rows() + _segment_rows()]
    for row in rows:
        print(json.dumps(row), flush=True)
    if emit_json:
        print(json.dumps({"isa": setting["aten"], "rows": rows}), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help="measure this process's setting only")
    parser.add_argument("--threads", type=int, default=None, help="with --worker: torch threads")
    parser.add_argument("--emit-json", action="store_true", help=argparse.SUPPRESS)  # benchmarks/_isa.py
    args = parser.parse_args(argv)
    if args.worker:
        if args.threads:
            torch.set_num_threads(args.threads)
        worker(args.emit_json)
        return 0
    from benchmarks.records import start_record

    record = start_record("batch_margins", "cpu")
    rows = []
    for threads in THREADS:
        for run in run_per_isa(pathlib.Path(__file__), ["--worker", "--threads", str(threads)]):
            for row in run["rows"]:
                print(json.dumps(row), flush=True)
                rows.append(row)
    record.tables["margins"] = rows
    step1 = [r for r in rows if r["what"].startswith("step 1")]
    step4 = [r for r in rows if r["what"].startswith("step 4")]
    step5 = [r for r in rows if r["what"].startswith("step 5")]
    record.figures = {
        "step1_max_abs_raw": max(r["max_abs_raw"] for r in step1),
        "step1_max_abs_u8": max(r["max_abs_u8"] for r in step1),
        "step1_max_share_u8_differ": max(r["share_u8_differ"] for r in step1),
        "step4_max_abs_prob": max(r["max_abs_prob"] for r in step4),
        "step5_max_abs_logit": max(r["max_abs_logit"] for r in step5),
        "step5_max_argmax_differ_pixels": max(r["argmax_differ_pixels"] for r in step5),
        "step5_max_top2_gap_where_argmax_differs": max(r["max_top2_gap_where_argmax_differs"] for r in step5),
    }
    print(json.dumps(record.figures))
    print(f"wrote {record.write()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
