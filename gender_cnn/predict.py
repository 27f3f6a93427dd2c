"""Loading the fold models and batched ensemble prediction (calibrated mean of the folds).

Every model is put in ``eval()`` mode and run under ``torch.inference_mode()``: the original left
dropout on at inference, so the same image got a different score each time.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from common.checkpoints import CheckpointError, load_state_dict_checked, read_checkpoint
from gender_cnn.classifier import FORMAT_VERSION, build_classifier
from gender_cnn.data import InputSpec, iter_image_crops, normalize_batch

logger = logging.getLogger(__name__)

TASKS: tuple[str, ...] = ("gender", "quality")
_FOLD_FILE = re.compile(r"^(?P<task>[a-z]+)_fold(?P<fold>\d+)\.pt$")


def model_path(models_dir: Path, task: str, fold: int) -> Path:
    """Contract name: ``gender_cnn/models/{task}_fold{k}.pt`` (k counts from 0)."""
    return Path(models_dir) / f"{task}_fold{fold}.pt"


def fold_files(models_dir: Path, task: str) -> dict[int, Path]:
    """Existing fold files of ``task`` by fold index."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        return {}
    out = {}
    for path in models_dir.iterdir():
        match = _FOLD_FILE.match(path.name)
        if match and match["task"] == task:
            out[int(match["fold"])] = path
    return dict(sorted(out.items()))


CNN_FIX = "re-run step 3 with --overwrite"


def load_model_file(path: Path | str) -> dict:
    """Load a fold model file (plain dict) with the one safe reader and check its format."""
    path = Path(path)
    blob = read_checkpoint(path, CNN_FIX, kind="CNN model file")
    if not isinstance(blob, dict) or "state_dict" not in blob or "config" not in blob:
        raise CheckpointError(f"{path} is not a CNN model file written by step 3")
    version = blob.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {version}, expected {FORMAT_VERSION}; re-run step 3")
    return blob


def model_from_blob(blob: dict, device: torch.device | str = "cpu", source: Path | str = "CNN model file"
                    ) -> torch.nn.Module:
    """Rebuild the network (the one fit report: keys, shapes, dtypes; finite weights) in eval mode."""
    model = build_classifier(blob["config"])
    load_state_dict_checked(model, blob["state_dict"], source, CNN_FIX)
    return model.to(device).eval()


def model_logits(model: torch.nn.Module, images_u8: torch.Tensor, mean: Sequence[float], std: Sequence[float],
                 device: torch.device | str = "cpu", batch_size: int = 256) -> torch.Tensor:
    """Raw logits [N] (CPU float32) of a uint8 batch [N, 3, h, w], in eval mode."""
    model.eval()
    outs = []
    with torch.inference_mode():
        for start in range(0, len(images_u8), batch_size):
            x = normalize_batch(images_u8[start:start + batch_size].to(device), mean, std)
            outs.append(model(x).float().cpu())
    return torch.cat(outs) if outs else torch.empty(0)


@dataclass
class Ensemble:
    """The k fold models of one task, sharing input spec, normalisation per fold and a temperature."""

    task: str
    spec: InputSpec
    models: list[torch.nn.Module]
    means: list[list[float]]
    stds: list[list[float]]
    temperature: float
    threshold: float

    def predict_proba(self, images_u8: torch.Tensor, device: torch.device | str = "cpu") -> np.ndarray:
        """Mean over folds of sigmoid(logit / T): [N] float64 calibrated probabilities."""
        probs = []
        for model, mean, std in zip(self.models, self.means, self.stds):
            logits = model_logits(model, images_u8, mean, std, device, batch_size=max(1, len(images_u8)))
            probs.append(torch.sigmoid(logits.double() / self.temperature).numpy())
        return np.mean(probs, axis=0)


def load_ensemble(models_dir: Path | str, task: str, device: torch.device | str = "cpu") -> Ensemble:
    """Load all fold files of ``task``; they must come from one training run (same fingerprint)."""
    files = fold_files(Path(models_dir), task)
    if not files:
        raise CheckpointError(f"no {task} CNN models in {models_dir} ({task}_fold0.pt ...): run step 3 first "
                              f"(stylegan_and_segmentation/03_train_gender_cnn.py)")
    blobs = [load_model_file(p) for p in files.values()]
    configs = [b["config"] for b in blobs]
    first = configs[0]
    n_folds = int(first["n_folds"])
    problems = []
    if sorted(files) != list(range(n_folds)):
        problems.append(f"expected folds 0..{n_folds - 1}, found {sorted(files)}")
    for key in ("fingerprint", "temperature", "input", "task"):
        if any(c.get(key) != first.get(key) for c in configs):
            problems.append(f"fold files disagree on {key!r}")
    if first.get("task") != task:
        problems.append(f"files hold task {first.get('task')!r}")
    if first.get("temperature") is None:
        problems.append("training did not finish calibration")
    if problems:
        raise CheckpointError(f"{task} models in {models_dir} are inconsistent ({'; '.join(problems)}); "
                              f"re-run step 3 (with --overwrite)")
    return Ensemble(
        task=task,
        spec=InputSpec.from_dict(first["input"]),
        models=[model_from_blob(b, device, p) for b, p in zip(blobs, files.values())],
        means=[list(c["mean"]) for c in configs],
        stds=[list(c["std"]) for c in configs],
        temperature=float(first["temperature"]),
        threshold=float(first["threshold"]),
    )


@dataclass
class PredictionResult:
    names: list[str]
    scores: dict[str, np.ndarray]  # task -> [len(names)] calibrated probability
    failed: dict[str, str]  # img_name -> reason (unreadable image)


def predict_images(paths: Sequence[Path], ensembles: dict[str, Ensemble], device: torch.device | str = "cpu",
                   batch_size: int = 64, workers: int = 2,
                   on_items: Callable[[int], None] | None = None) -> PredictionResult:
    """Score images in batches while threads decode the next ones; unreadable images are skipped.

    ``on_items(n)`` is called as items finish (progress bars count images, not batches).
    """
    tasks = list(ensembles)
    specs = [ensembles[t].spec for t in tasks]
    names: list[str] = []
    failed: dict[str, str] = {}
    scores: dict[str, list[np.ndarray]] = {t: [] for t in tasks}
    batch_names: list[str] = []
    batch: list[list[np.ndarray]] = [[] for _ in tasks]

    def flush() -> None:
        if not batch_names:
            return
        for task, crops in zip(tasks, batch):
            x = torch.from_numpy(np.stack(crops))
            scores[task].append(ensembles[task].predict_proba(x, device))
            crops.clear()
        names.extend(batch_names)
        if on_items is not None:
            on_items(len(batch_names))
        batch_names.clear()

    for index, result in iter_image_crops(list(paths), specs, workers=workers, chunk=2 * batch_size):
        name = Path(paths[index]).name
        if isinstance(result, str):
            logger.warning("skipping unreadable image: %s", result)
            failed[name] = result
            if on_items is not None:
                on_items(1)
        else:
            batch_names.append(name)
            for store, crop in zip(batch, result):
                store.append(crop)
            if len(batch_names) >= batch_size:
                flush()
    flush()
    return PredictionResult(
        names=names,
        scores={t: (np.concatenate(v) if v else np.empty(0)) for t, v in scores.items()},
        failed=failed,
    )
