"""Benchmark of steps 3-4: CNN training seconds per epoch and ensemble prediction images/s.

Training: one epoch (augmentation, forward, backward, AdamW) of the default gender (128x128) and
quality (64x128) models at the default batch size on synthetic uint8 images. On a CPU a subset
(--cpu-train-images) is timed and scaled linearly to 2,000 images (the JSON says so). Prediction:
the 5-fold ensembles of both tasks on in-memory images (model only), and end to end from JPEG files
(decoding in threads) through the same call step 4 uses. Writes the record
``benchmarks/results/bench_cnn-<device>.json``.
"""
import pathlib
import sys  # noqa: E401

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))  # the tests' synthetic world

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from cnn_world import write_synthetic_set

from benchmarks.records import add_results_dir_argument, start_record
from common.runtime import resolve_device
from gender_cnn.classifier import SmallCNN
from gender_cnn.predict import Ensemble, predict_images
from gender_cnn.train import TrainConfig, train_fold


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_train(task: str, config: TrainConfig, n_images: int, timed_images: int, device: torch.device) -> dict:
    spec = config.spec(task)
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (timed_images, 3, spec.height, spec.width), dtype=np.uint8))
    labels = rng.integers(0, 2, timed_images)
    if device.type == "cuda":
        images = images.to(device)
    val_idx = np.arange(min(32, timed_images // 8))
    train_idx = np.arange(len(val_idx), timed_images)
    one_epoch = TrainConfig(**{**config.__dict__, "epochs": 1})
    train_fold(images[:64], labels[:64], np.arange(8, 64), np.arange(8), one_epoch, 0, device)  # warm-up
    _sync(device)
    start = time.perf_counter()
    train_fold(images, labels, train_idx, val_idx, one_epoch, 0, device)
    _sync(device)
    seconds = time.perf_counter() - start
    per_image = seconds / len(train_idx)
    return {
        "task": task, "input_hw": [spec.height, spec.width], "batch_size": config.batch_size,
        "timed_train_images": int(len(train_idx)), "timed_seconds": round(seconds, 3),
        "extrapolated": bool(len(train_idx) < n_images),
        "seconds_per_epoch_2000_images": round(per_image * n_images, 2),
        # a fold of 5-fold CV trains on 4/5 of the labels minus the 15% inner validation split
        "seconds_per_fold_epoch": round(per_image * n_images * 0.8 * (1 - config.inner_val_fraction), 2),
    }


def bench_predict(config: TrainConfig, device: torch.device, n_images: int, n_files: int) -> dict:
    ensembles = {}
    for task in ("gender", "quality"):
        models = [SmallCNN(config.channels, config.dropout).to(device).eval() for _ in range(config.folds)]
        ensembles[task] = Ensemble(task, config.spec(task), models, [[0.5] * 3] * config.folds,
                                   [[0.25] * 3] * config.folds, 1.0, 0.5)
    rng = np.random.default_rng(1)
    out = {"folds": config.folds}
    batch = 64
    tensors = {t: torch.from_numpy(rng.integers(0, 256, (n_images, 3, e.spec.height, e.spec.width), dtype=np.uint8))
               for t, e in ensembles.items()}
    for t, e in ensembles.items():
        e.predict_proba(tensors[t][:batch], device)  # warm-up
    _sync(device)
    start = time.perf_counter()
    for i in range(0, n_images, batch):
        for t, e in ensembles.items():
            e.predict_proba(tensors[t][i:i + batch], device)
    _sync(device)
    out["model_only_images_per_s"] = round(n_images / (time.perf_counter() - start), 1)
    with tempfile.TemporaryDirectory() as tmp:
        write_synthetic_set(Path(tmp), n_files, seed=2)
        paths = sorted(Path(tmp).glob("*.jpg"))
        start = time.perf_counter()
        result = predict_images(paths, ensembles, device, batch_size=batch)
        _sync(device)
        out["end_to_end_images_per_s"] = round(len(result.names) / (time.perf_counter() - start), 1)
        out["end_to_end_files"] = n_files
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--n-images", type=int, default=2000, help="epoch size the figures are given for")
    parser.add_argument("--cpu-train-images", type=int, default=320, help="images actually timed on a CPU")
    parser.add_argument("--predict-images", type=int, default=512)
    parser.add_argument("--predict-files", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    add_results_dir_argument(parser)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    record = start_record("bench_cnn", device.type)
    config = TrainConfig()
    timed = args.n_images if device.type == "cuda" else min(args.n_images, args.cpu_train_images)
    torch.manual_seed(0)
    train = [bench_train(t, config, args.n_images, timed, device) for t in ("gender", "quality")]
    predict = bench_predict(config, device, args.predict_images, args.predict_files)
    for row in train:
        record.figures[f"{row['task']}_seconds_per_epoch_{args.n_images}_images"] = row["seconds_per_epoch_2000_images"]
    record.figures["predict_model_only_images_per_s"] = predict["model_only_images_per_s"]
    record.figures["predict_end_to_end_images_per_s"] = predict["end_to_end_images_per_s"]
    record.tables["training"] = [
        {"task": r["task"], "input": "x".join(map(str, r["input_hw"])), "batch": r["batch_size"],
         "images timed": r["timed_train_images"], f"s per epoch of {args.n_images}": r["seconds_per_epoch_2000_images"],
         "scaled from the timed images": r["extrapolated"]} for r in train]
    record.settings.update({
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
        or platform.machine(), "threads": torch.get_num_threads(), "channels": list(config.channels),
        "folds": config.folds, "predict_images": args.predict_images, "predict_files": args.predict_files})
    record.write(args.results_dir)
    print(json.dumps({"train": train, "predict": predict}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
