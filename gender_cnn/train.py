"""k-fold training of the gender and quality CNNs, out-of-fold predictions, calibration and logs.

Per task: the hand-labelled images (unsure rows left out) are split into k stratified folds. Each
fold model trains on k-1 folds, with early stopping on a stratified inner validation split of its
training folds, so the held-out fold stays untouched and its out-of-fold (OOF) predictions are an
honest estimate. A temperature fitted on the pooled OOF logits calibrates the probabilities (the
filter's 0.7 / 0.9 thresholds are then real probabilities), and the threshold that maximises OOF
accuracy is reported. Each fold is saved as soon as it is trained, so a killed run resumes at the
next fold.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.optimize
import scipy.special
import sklearn.metrics
import torch
import torch.nn.functional as F

from common.distributed import init_distributed
from common.images import list_images
from common.io import atomic_torch_save, atomic_write_csv, atomic_write_json
from common.settings import (
    SettingError,
    StepConfig,
    device_setting,
    limit_setting,
    overwrite_setting,
    seed_setting,
    setting,
)
from common.runtime import resolve_device
from common.steps import Progress, ProgressCounter, StepError
from gender_cnn.classifier import DEFAULT_CHANNELS, FORMAT_VERSION, SmallCNN
from gender_cnn.data import (
    QUALITY_REGION,
    AugmentConfig,
    ImageCache,
    InputSpec,
    augment_batch,
    build_image_cache,
    channel_stats,
    default_input_spec,
    standardize,
    stratified_folds,
    stratified_holdout,
)
from gender_cnn.hand_labels import load_hand_labels
from gender_cnn.predict import TASKS, fold_files, load_model_file, model_logits, model_path
from gender_cnn.schema import OOF_COLUMNS, TRAIN_CONFIG_JSON

logger = logging.getLogger(__name__)

EPOCH_COLUMNS: tuple[str, ...] = ("fold", "epoch", "train_loss", "val_loss", "val_acc", "lr", "seconds")
FOLD_COLUMNS: tuple[str, ...] = ("fold", "accuracy", "f1", "auroc", "threshold", "n_train", "n_val",
                                 "best_epoch", "accuracy_at_0.5", "nll", "temperature")


class TrainInputError(StepError, ValueError):
    """Step 3 cannot train on what it was given (too few labels, an unknown task); the message says the fix."""


class TrainDivergedError(StepError, RuntimeError):
    """A fold's losses became NaN/inf in every epoch (a learning rate far too high): nothing to keep."""


_NO_AUGMENT = AugmentConfig(hflip=False, max_shift_frac=0.0, brightness=0.0, contrast=0.0)


@dataclass(frozen=True)
class TrainConfig(StepConfig):
    """Step 3's settings; a path left None is the pipeline's default under ``root``.

    Only the training fields (not paths, device, overwrite, limit, workers) decide whether a saved fold
    model is reused: see :data:`NOT_TRAINING_FIELDS`.
    """

    progress_unit = "fold"

    images: Path | None = setting(None, path="generated_dir", help="image folder (step 1's output)")
    labels: Path | None = setting(None, concept="hand_labels_csv")
    models_dir: Path | None = setting(None, flag="", path="cnn_models_dir", output="dir", help="fold models")
    logs_dir: Path | None = setting(None, flag="", path="cnn_logs_dir", output="dir",
                                    help="epochs/folds CSVs, train_config.json")
    oof_csv: Path | None = setting(None, flag="", path="oof_predictions_csv", output="file",
                                   help="out-of-fold predictions")
    tasks: tuple[str, ...] = setting(TASKS, choices=TASKS, metavar="TASK,...", help="comma-separated: gender,quality")
    folds: int = setting(5, low=2, help="k of the k-fold ensemble (at least 2)")
    epochs: int = setting(40, low=1, help="maximum epochs per fold")
    patience: int = setting(6, low=1, help="early-stopping patience (epochs)")
    min_epochs: int = setting(5, low=0, help="never stop early before this epoch (BatchNorm statistics settle "
                                            "first)")
    batch_size: int = setting(64, concept="batch_size", low=2)
    lr: float = setting(2e-3, low=0.0, high=1.0, low_open=True, help="AdamW learning rate (cosine schedule)")
    weight_decay: float = setting(1e-2, low=0.0, help="AdamW weight decay")
    input_size: int = setting(128, low=8, help="gender model input (square)")
    quality_region: tuple[int, int, int, int] = setting(QUALITY_REGION, low=0, metavar="R0,R1,C0,C1",
                                                        help="row0,row1,col0,col1 (end-exclusive, pixels of a 256 "
                                                             "image) the quality model sees")
    quality_size: tuple[int, int] | None = setting(None, low=1, sep="x,", metavar="HxW",
                                                   help="HxW the quality region is resized to (default: its own "
                                                        "size)")
    channels: tuple[int, ...] = setting(DEFAULT_CHANNELS, low=1, metavar="W,W,...", help="CNN stage widths")
    dropout: float = setting(0.3, low=0.0, high=1.0, high_open=True, help="dropout before the head (training only)")
    inner_val_fraction: float = setting(0.15, flag="", low=0.0, high=1.0, low_open=True, high_open=True,
                                        help="share of a fold's training images held out for early stopping")
    augment: AugmentConfig = setting(default_factory=AugmentConfig, flag="--no-augment", has_const=True,
                                     const=_NO_AUGMENT, help="no flip/shift/colour jitter")
    seed: int = seed_setting()
    device: str = device_setting()
    overwrite: bool = overwrite_setting("retrain every fold even when a matching model exists")
    limit: int | None = limit_setting("labelled images (the first N by name)")
    workers: int = setting(2, flag="", low=1, help="image-decoding threads")

    def check(self) -> None:
        if not self.tasks:
            raise SettingError("tasks must name at least one of gender, quality")
        for task in self.tasks:
            self.spec(task)  # ValueError for a bad input size or region

    def spec(self, task: str) -> InputSpec:
        return default_input_spec(task, self.input_size, self.quality_region, self.quality_size)


PATH_FIELDS: tuple[str, ...] = ("images", "labels", "models_dir", "logs_dir", "oof_csv")
NOT_TRAINING_FIELDS: tuple[str, ...] = ("root", "images", "labels", "models_dir", "logs_dir", "oof_csv", "tasks",
                                        "device", "overwrite", "limit", "workers")
"""Config fields that do not change a fold's model (left out of its fingerprint)."""


# ----------------------------------------------------------------------------------------------
# metrics and calibration (numpy, float64)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return scipy.special.expit(np.asarray(x, dtype=np.float64))


def binary_nll(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean binary cross-entropy of logits, computed stably (softplus form)."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    return float(np.mean(np.logaddexp(0.0, z) - y * z)) if len(z) else float("nan")


def fit_temperature(logits: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """Temperature T minimising the NLL of sigmoid(logit / T) (scipy's bounded Brent search on log T)."""
    z = np.asarray(logits, dtype=np.float64)
    if len(z) == 0 or len(np.unique(labels)) < 2:
        return 1.0
    result = scipy.optimize.minimize_scalar(lambda log_t: binary_nll(z / math.exp(log_t), labels), method="bounded",
                                            bounds=(math.log(bounds[0]), math.log(bounds[1])),
                                            options={"xatol": 1e-10})
    return float(math.exp(result.x))


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (scikit-learn; ties count one half); NaN with one class."""
    labels = np.asarray(labels).astype(bool)
    if labels.all() or not labels.any():
        return float("nan")
    return float(sklearn.metrics.roc_auc_score(labels, np.asarray(scores, dtype=np.float64)))


def accuracy_f1(probs: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float]:
    """Accuracy and F1 of the positive class (woman / good) for ``probs >= threshold``."""
    pred = np.asarray(probs) >= threshold
    truth = np.asarray(labels).astype(bool)
    if len(truth) == 0:
        return float("nan"), float("nan")
    tp = int((pred & truth).sum())
    fp = int((pred & ~truth).sum())
    fn = int((~pred & truth).sum())
    acc = float((pred == truth).mean())
    f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 0.0
    return acc, float(f1)


def best_threshold(probs: np.ndarray, labels: np.ndarray) -> float:
    """Threshold maximising accuracy (ties: the one nearest 0.5); candidates lie between scores."""
    probs = np.asarray(probs, dtype=np.float64)
    if len(probs) == 0:
        return 0.5
    values = np.unique(probs)
    candidates = np.concatenate([[0.5], values, [values[-1] + 1e-9]])
    accs = np.array([accuracy_f1(probs, labels, t)[0] for t in candidates])
    best = np.flatnonzero(accs >= accs.max() - 1e-12)
    return float(candidates[best[np.argmin(np.abs(candidates[best] - 0.5))]])


# ----------------------------------------------------------------------------------------------
# one fold


def _fold_seed(seed: int, task: str, fold: int) -> int:
    return int(np.random.default_rng([seed, TASKS.index(task) if task in TASKS else 9, fold]).integers(2**31))


def train_fold(images_u8: torch.Tensor, labels: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray,
               config: TrainConfig, seed: int, device: torch.device, fold: int = 0) -> dict:
    """Train one model on ``train_idx``, early-stopping on ``val_idx``; returns its best state.

    ``images_u8`` [N, 3, h, w] uint8 (on CPU or on ``device``), ``labels`` [N] of 0/1.
    Returns a dict with ``state_dict`` (CPU), ``mean``/``std`` (from the training rows),
    ``history`` (one dict per epoch) and ``best_epoch``.
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    mean, std = channel_stats(images_u8[torch.as_tensor(train_idx)])
    model = SmallCNN(config.channels, config.dropout).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, config.epochs))
    y_all = torch.as_tensor(labels, dtype=torch.float32)
    val_x = images_u8[torch.as_tensor(val_idx)]
    val_y = y_all[torch.as_tensor(val_idx)]
    history: list[dict] = []
    best_loss, best_epoch, best_state, bad_epochs = math.inf, 0, None, 0
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        model.train()
        order = torch.as_tensor(train_idx)[torch.randperm(len(train_idx), generator=generator)]
        total, count = 0.0, 0
        for start in range(0, len(order), config.batch_size):
            idx = order[start:start + config.batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples in train mode
                continue
            x = images_u8[idx].to(device).float().div_(255.0)
            x = augment_batch(x, config.augment, generator)
            x = standardize(x, mean, std)
            y = y_all[idx].to(device)
            loss = F.binary_cross_entropy_with_logits(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        val_logits = model_logits(model, val_x, mean, std, device).numpy()
        val_loss = binary_nll(val_logits, val_y.numpy())
        val_acc = accuracy_f1(_sigmoid(val_logits), val_y.numpy(), 0.5)[0]
        history.append({"fold": fold, "epoch": epoch, "train_loss": total / max(count, 1), "val_loss": val_loss,
                        "val_acc": val_acc, "lr": lr, "seconds": time.perf_counter() - started})
        logger.debug("fold %d epoch %d: val_loss %.3f val_acc %.3f", fold, epoch, val_loss, val_acc)
        if val_loss < best_loss - 1e-4:
            best_loss, best_epoch, bad_epochs = val_loss, epoch, 0
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        else:
            bad_epochs += 1
            if bad_epochs >= config.patience and epoch >= config.min_epochs:
                logger.debug("fold %d: early stop at epoch %d (best %d)", fold, epoch, best_epoch)
                break
    if best_state is None:  # every validation loss was NaN/inf: the weights blew up
        raise TrainDivergedError(f"fold {fold}: training diverged (no epoch had a finite validation loss, last "
                                 f"{val_loss}); fix: lower --lr (now {config.lr:g})")
    return {"state_dict": best_state, "mean": mean, "std": std, "history": history, "best_epoch": best_epoch}


# ----------------------------------------------------------------------------------------------
# one task, k folds


def _fingerprint(task: str, names: Sequence[str], labels: np.ndarray, config: TrainConfig, n_folds: int) -> str:
    """Hash of what decides a fold's model: labelled set, labels and settings (not the device)."""
    payload = {
        "task": task, "n_folds": n_folds,
        "labels": [[n, int(v)] for n, v in zip(names, labels)],
        "config": {k: v for k, v in asdict(config).items() if k not in NOT_TRAINING_FIELDS},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class TaskResult:
    task: str
    n_labelled: int
    n_unsure: int
    n_folds: int
    trained: int
    skipped: int
    temperature: float
    threshold: float
    accuracy: float
    f1: float
    auroc: float
    oof: pd.DataFrame  # OOF_COLUMNS
    fold_metrics: pd.DataFrame  # FOLD_COLUMNS
    epochs: pd.DataFrame  # EPOCH_COLUMNS


def train_task(task: str, images_u8: torch.Tensor, names: Sequence[str], labels: np.ndarray,
               config: TrainConfig, models_dir: Path, device: torch.device, overwrite: bool = False,
               n_unsure: int = 0, on_fold: Callable[[], None] | None = None) -> TaskResult:
    """Train (or resume) the k fold models of one task and calibrate them on the pooled OOF logits."""
    blobs, trained, skipped, n_folds = fit_folds(task, images_u8, names, labels, config, models_dir, device,
                                                 overwrite=overwrite, on_fold=on_fold)
    return _calibrate_and_report(task, blobs, Path(models_dir), n_unsure, trained, skipped, n_folds)


def fit_folds(task: str, images_u8: torch.Tensor, names: Sequence[str], labels: np.ndarray, config: TrainConfig,
              models_dir: Path, device: torch.device, overwrite: bool = False,
              on_fold: Callable[[], None] | None = None,
              owns: Callable[[int], bool] | None = None) -> tuple[dict[int, dict], int, int, int]:
    """Train (or resume) the folds of one task that ``owns(fold)`` (all by default): (blobs, trained,
    skipped, n_folds). A fold's model is saved as soon as it is trained."""
    labels = np.asarray(labels).astype(np.int64)
    counts = {c: int((labels == c).sum()) for c in (0, 1)}
    if min(counts.values()) < 2:
        raise TrainInputError(f"task {task}: need at least 2 hand labels of each class to train, have "
                         f"{counts[1]} positive and {counts[0]} negative (label more images in step 2)")
    n_folds = min(config.folds, min(counts.values()))
    if n_folds < config.folds:
        logger.warning("task %s: only %d examples of the rarer class, using %d folds instead of %d",
                       task, min(counts.values()), n_folds, config.folds)
    folds = stratified_folds(labels, n_folds, config.seed)
    fingerprint = _fingerprint(task, names, labels, config, n_folds)
    spec = config.spec(task)
    models_dir = Path(models_dir)
    for fold, path in fold_files(models_dir, task).items():
        if fold >= n_folds:  # a former run with more folds: would pollute the ensemble
            logger.info("removing stale model %s (now %d folds)", path, n_folds)
            path.unlink(missing_ok=True)  # ranks may race to remove it
    blobs: dict[int, dict] = {}
    trained = skipped = 0
    for fold in range(n_folds):
        if owns is not None and not owns(fold):
            continue
        path = model_path(models_dir, task, fold)
        if path.exists() and not overwrite:
            blob = load_model_file(path)
            if blob["config"].get("fingerprint") == fingerprint:
                blobs[fold] = blob
                skipped += 1
                logger.info("%s fold %d: model exists, skipped (--overwrite retrains)", task, fold)
                if on_fold is not None:
                    on_fold()
                continue
            logger.info("%s fold %d: labels or settings changed since it was trained; retraining", task, fold)
        held_out = folds == fold
        train_rows = np.flatnonzero(~held_out)
        inner_val = stratified_holdout(labels[train_rows], config.inner_val_fraction,
                                       _fold_seed(config.seed, task, fold))
        fit = train_fold(images_u8, labels, train_rows[~inner_val], train_rows[inner_val], config,
                         _fold_seed(config.seed, task, fold), device, fold=fold)
        model = SmallCNN(config.channels, config.dropout).to(device)
        model.load_state_dict(fit["state_dict"])
        oof_rows = np.flatnonzero(held_out)
        oof_logits = model_logits(model, images_u8[torch.as_tensor(oof_rows)], fit["mean"], fit["std"], device)
        blob = {
            "format_version": FORMAT_VERSION,
            "state_dict": fit["state_dict"],
            "config": {
                "task": task, "fold": fold, "n_folds": n_folds, "input": spec.to_dict(),
                "channels": list(config.channels), "dropout": config.dropout,
                "mean": fit["mean"], "std": fit["std"], "temperature": None, "threshold": None,
                "fingerprint": fingerprint, "seed": config.seed, "best_epoch": fit["best_epoch"],
                "n_train": int(len(train_rows)), "n_val": int(len(oof_rows)),
                "n_inner_val": int(inner_val.sum()),
            },
            "oof": {"names": [names[i] for i in oof_rows], "labels": torch.as_tensor(labels[oof_rows]),
                    "logits": oof_logits},
            "history": fit["history"],
        }
        atomic_torch_save(path, blob)
        blobs[fold] = blob
        trained += 1
        if on_fold is not None:
            on_fold()
    return blobs, trained, skipped, n_folds


def _calibrate_and_report(task: str, blobs: dict[int, dict], models_dir: Path, n_unsure: int,
                          trained: int, skipped: int, n_folds: int) -> TaskResult:
    oof_names, oof_labels, oof_logits, oof_fold = [], [], [], []
    for fold, blob in blobs.items():
        oof_names += list(blob["oof"]["names"])
        oof_labels.append(blob["oof"]["labels"].numpy())
        oof_logits.append(blob["oof"]["logits"].numpy())
        oof_fold += [fold] * len(blob["oof"]["names"])
    labels = np.concatenate(oof_labels)
    logits = np.concatenate(oof_logits).astype(np.float64)
    fold_arr = np.asarray(oof_fold)
    temperature = fit_temperature(logits, labels)
    probs = _sigmoid(logits / temperature)
    threshold = best_threshold(probs, labels)
    for fold, blob in blobs.items():
        cfg = blob["config"]
        if cfg.get("temperature") != temperature or cfg.get("threshold") != threshold:
            cfg["temperature"], cfg["threshold"] = temperature, threshold
            atomic_torch_save(model_path(models_dir, task, fold), blob)
    rows = []
    for fold, blob in blobs.items():
        sel = fold_arr == fold
        acc, f1 = accuracy_f1(probs[sel], labels[sel], threshold)
        cfg = blob["config"]
        rows.append({"fold": fold, "accuracy": acc, "f1": f1, "auroc": auroc(probs[sel], labels[sel]),
                     "threshold": threshold, "n_train": cfg["n_train"], "n_val": cfg["n_val"],
                     "best_epoch": cfg["best_epoch"], "accuracy_at_0.5": accuracy_f1(probs[sel], labels[sel], 0.5)[0],
                     "nll": binary_nll(logits[sel] / temperature, labels[sel]), "temperature": temperature})
    acc, f1 = accuracy_f1(probs, labels, threshold)
    pooled_auc = auroc(probs, labels)
    rows.append({"fold": "all", "accuracy": acc, "f1": f1, "auroc": pooled_auc, "threshold": threshold,
                 "n_train": "", "n_val": len(labels), "best_epoch": "",
                 "accuracy_at_0.5": accuracy_f1(probs, labels, 0.5)[0],
                 "nll": binary_nll(logits / temperature, labels), "temperature": temperature})
    oof = pd.DataFrame({"img_name": oof_names, "task": task, "label": labels.astype(int),
                        "oof_score": np.round(probs, 6), "fold": fold_arr})
    oof = oof.sort_values("img_name", kind="mergesort").reset_index(drop=True)
    epochs = pd.DataFrame([h for blob in blobs.values() for h in blob["history"]], columns=list(EPOCH_COLUMNS))
    logger.info("%s: OOF accuracy %.3f (threshold %.3f), F1 %.3f, AUROC %.3f, temperature %.2f",
                task, acc, threshold, f1, pooled_auc, temperature)
    return TaskResult(task=task, n_labelled=len(labels), n_unsure=n_unsure, n_folds=n_folds, trained=trained,
                      skipped=skipped, temperature=temperature, threshold=threshold, accuracy=acc, f1=f1,
                      auroc=pooled_auc, oof=oof, fold_metrics=pd.DataFrame(rows, columns=list(FOLD_COLUMNS)),
                      epochs=epochs)


# ----------------------------------------------------------------------------------------------
# the whole step


@dataclass(frozen=True)
class TrainSummary:
    results: dict[str, TaskResult]
    n_images: int
    failed: dict[str, str]  # unreadable images: img_name -> reason
    models_dir: Path
    logs_dir: Path
    seconds: float = 0.0
    device: str = "cpu"
    rank: int = 0         # under torchrun: this rank (rank 0 holds every task's results)
    world_size: int = 1
    folds_here: int = 0   # folds this process trained or resumed (all of them in one process)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def trained(self) -> int:
        return sum(r.trained for r in self.results.values())

    @property
    def skipped(self) -> int:
        return sum(r.skipped for r in self.results.values())

    def line(self) -> str:
        parts = []
        for task, r in self.results.items():
            parts.append(f"{task}: {r.n_labelled} labelled ({r.n_unsure} unsure left out), {r.n_folds} folds "
                         f"({r.trained} trained, {r.skipped} resumed), OOF acc {r.accuracy:.3f} "
                         f"F1 {r.f1:.3f} AUROC {r.auroc:.3f}")
        if not self.is_main:
            return f"step 3 rank {self.rank}: its folds are in {self.models_dir}; rank 0 reports"
        ranks = f" by {self.world_size} processes" if self.world_size > 1 else ""
        return (f"step 3: {'; '.join(parts)}; {len(self.failed)} unreadable images skipped; models in "
                f"{self.models_dir}, logs in {self.logs_dir} ({self.seconds:.1f}s on {self.device}{ranks})")


def _merge_oof(path: Path, new: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Replace the rows of the tasks trained now, keep the other task's rows from an earlier run."""
    frames = list(new.values())
    if path.is_file():
        try:
            old = pd.read_csv(path, dtype={"img_name": str, "task": str})
            if list(old.columns[:len(OOF_COLUMNS)]) == list(OOF_COLUMNS):
                frames.insert(0, old[~old["task"].isin(list(new))][list(OOF_COLUMNS)])
        except (pd.errors.ParserError, pd.errors.EmptyDataError):
            logger.warning("ignoring unreadable %s", path)
    merged = pd.concat(frames, ignore_index=True)
    return merged.sort_values(["task", "img_name"], kind="mergesort").reset_index(drop=True)


def run_training(config: TrainConfig, progress: Progress | None = None) -> TrainSummary:
    """Step 3: read labels (validated against the image folder), cache images, train every task.

    Raises ``CsvSchemaError`` for a labels CSV naming unknown images or holding invalid values and
    ``TrainInputError`` when there is too little to train on. progress(done, total) counts folds
    (trained or resumed).
    """
    start = time.perf_counter()
    ctx = init_distributed(None)
    config = config.resolved()
    try:
        device = resolve_device(ctx.device(config.device))
    except RuntimeError as exc:
        raise TrainInputError(str(exc)) from exc
    paths = list_images(config.images)
    by_name = {p.name: p for p in paths}
    labels = load_hand_labels(config.labels, known_images=by_name)  # CSV + journal replay
    labels = labels.sort_values("img_name", kind="mergesort").reset_index(drop=True)
    wanted = labels[labels[list(config.tasks)].notna().any(axis=1)]
    if config.limit is not None:
        wanted = wanted.iloc[:config.limit]
    if wanted.empty:
        raise TrainInputError(f"{config.labels} has no decided {'/'.join(config.tasks)} labels: label images in "
                              "step 2")
    specs = [config.spec(t) for t in config.tasks]
    cache: ImageCache = build_image_cache([by_name[n] for n in wanted["img_name"]], specs, workers=config.workers)
    row_of = {n: i for i, n in enumerate(cache.names)}
    tasks = {}
    for task, spec_tensor in zip(config.tasks, cache.tensors):
        decided = wanted[wanted[task].notna() & wanted["img_name"].isin(row_of)]
        n_unsure = int(wanted[task].isna().sum())
        logger.info("%s: %d labelled images, %d unsure left out", task, len(decided), n_unsure)
        images = spec_tensor[torch.as_tensor([row_of[n] for n in decided["img_name"]], dtype=torch.long)]
        if device.type == "cuda":
            images = images.to(device)  # the whole cache fits easily; no per-batch copies
        tasks[task] = (images, list(decided["img_name"]), decided[task].to_numpy(), n_unsure)
    total = sum(1 for j in range(len(tasks) * config.folds) if ctx.owns(j))
    on_fold = ProgressCounter(progress if ctx.is_main else None, total)
    if ctx.sharded:  # torchrun: rank r trains the folds j = task_index * folds + fold with j mod N == r
        counts = {}
        for t, (task, (images, names, task_labels, _)) in enumerate(tasks.items()):
            _, trained, skipped, _ = fit_folds(task, images, names, task_labels, config, config.models_dir, device,
                                               overwrite=config.overwrite, on_fold=on_fold,
                                               owns=lambda fold, t=t: ctx.owns(t * config.folds + fold))
            counts[task] = (trained, skipped)
        folds_here = sum(trained + skipped for trained, skipped in counts.values())
        gathered = ctx.gather(counts)
        ctx.barrier()
        if not ctx.is_main:
            return TrainSummary(results={}, n_images=len(cache.names), failed=cache.failed,
                                models_dir=config.models_dir, logs_dir=config.logs_dir,
                                seconds=time.perf_counter() - start, device=str(device), rank=ctx.rank,
                                world_size=ctx.world_size, folds_here=folds_here)
        totals = {task: tuple(sum(c[task][i] for c in gathered) for i in (0, 1)) for task in tasks}
        results = _train_and_report(tasks, config, device, overwrite=False, on_fold=None)  # every fold resumes
        results = {task: replace(r, trained=totals[task][0], skipped=totals[task][1]) for task, r in results.items()}
    else:
        results = _train_and_report(tasks, config, device, overwrite=config.overwrite, on_fold=on_fold)
        folds_here = sum(r.trained + r.skipped for r in results.values())
    record = {k: v for k, v in asdict(config).items() if k not in NOT_TRAINING_FIELDS or k in ("tasks", "limit")}
    record.update({name: str(getattr(config, name)) for name in PATH_FIELDS})
    record.update({"device": str(device), "unreadable_images": cache.failed})
    atomic_write_json(config.logs_dir / TRAIN_CONFIG_JSON, record)
    return TrainSummary(results=results, n_images=len(cache.names), failed=cache.failed, models_dir=config.models_dir,
                        logs_dir=config.logs_dir, seconds=time.perf_counter() - start, device=str(device),
                        world_size=ctx.world_size, folds_here=folds_here)


def _train_and_report(tasks: dict[str, tuple], config: TrainConfig, device: torch.device,
                      overwrite: bool, on_fold: Callable[[], None] | None) -> dict[str, TaskResult]:
    """Every task's folds (trained or resumed), calibrated; the epoch, fold and OOF CSVs written."""
    results: dict[str, TaskResult] = {}
    for task, (images, names, task_labels, n_unsure) in tasks.items():
        result = train_task(task, images, names, task_labels, config, config.models_dir, device, overwrite=overwrite,
                            n_unsure=n_unsure, on_fold=on_fold)
        results[task] = result
        atomic_write_csv(config.logs_dir / f"{task}_epochs.csv", result.epochs, EPOCH_COLUMNS)
        atomic_write_csv(config.logs_dir / f"{task}_folds.csv", result.fold_metrics, FOLD_COLUMNS)
    atomic_write_csv(config.oof_csv, _merge_oof(config.oof_csv, {t: r.oof for t, r in results.items()}), OOF_COLUMNS)
    return results
