"""Step 4: score every image (hand label first, CNN ensemble otherwise) and keep good-quality women.

Precedence, per task: a decided hand label (1/0) becomes the score 1.0/0.0; an unsure or missing
hand label is replaced by the calibrated ensemble mean. ``source`` is ``hand`` only when both
scores come from hand labels, else ``cnn`` (the row then mixes a hand value with a CNN value when
one task was labelled and the other left unsure). An image is kept when gender_score >= the gender
threshold and quality_score >= the quality threshold (0.7 / 0.9 as the original). The kept folder
is made to hold exactly the kept images (hard links where possible, else atomic copies); images
kept by an earlier run but not now are removed, so re-running with other thresholds is exact.
An unreadable image (hand-labelled or not) is logged, counted and left out of the CSV and the folder.
"""
from __future__ import annotations

import contextlib
import filecmp
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from common.contact_sheet import make_contact_sheet
from common.distributed import init_distributed
from common.folders import image_folders, refuse_overlap
from common.images import ImageReadError, list_images, load_rgb
from common.io import (
    TMP_PREFIX,
    atomic_save_image,
    atomic_write_bytes,
    atomic_write_csv,
    atomic_write_json,
    clean_stale_temp_files,
)
from common.recipe import INPUT_COLUMN, FolderLock, Recipe, claim_output, item_identity, merging
from common.settings import (
    StepConfig,
    batch_size_setting,
    device_setting,
    flag_of,
    limit_setting,
    setting,
    shard_setting,
)
from common.runtime import resolve_device
from common.steps import Progress, StepError
from gender_cnn.hand_labels import journal_path_for, load_hand_labels
from gender_cnn.schema import QUALITY_GENDER_COLUMNS

logger = logging.getLogger(__name__)

SCORE_DECIMALS = 6
"""Scores are rounded before thresholding, so the CSV alone reproduces every keep decision."""


class FilterInputError(StepError, ValueError):
    """An input of step 4 is missing or unusable; the message names it and the fix."""


@dataclass(frozen=True)
class FilterConfig(StepConfig):
    """Step 4's settings; a path left None is the pipeline's default under ``root``."""

    images: Path | None = setting(None, path="generated_dir", help="image folder (step 1's output)")
    labels: Path | None = setting(None, concept="hand_labels_csv", help="hand labels CSV (step 2's "
                                                                        "gender_cnn/hand_labels.csv, used when present)")
    models: Path | None = setting(None, path="cnn_models_dir", help="CNN model folder (step 3's)")
    scores_csv: Path | None = setting(None, concept="quality_gender_csv", aliases=("--scores-csv",), output="file",
                                      help="scores CSV to write")
    filtered_dir: Path | None = setting(None, path="filtered_dir", output="dir",
                                        help="folder that will hold exactly the kept images")
    logs_dir: Path | None = setting(None, flag="", path="cnn_logs_dir", output="dir",
                                    help="contact sheets, filter_config.json")
    gender_threshold: float = setting(0.7, low=0.0, high=1.0, help="keep if gender_score >= this (1 = woman)")
    quality_threshold: float = setting(0.9, low=0.0, high=1.0, help="keep if quality_score >= this (1 = good)")
    batch_size: int = batch_size_setting(64)
    device: str = device_setting()
    limit: int | None = limit_setting("images (the first N by name)")
    link: bool = setting(True, flag="--copy", negate=True, help="copy kept images instead of hard-linking them")
    sheets: bool = setting(True, flag="--no-sheets", negate=True, help="skip the contact sheets")
    sheet_images: int = setting(48, flag="", low=1, help="images per contact sheet")
    workers: int = setting(2, flag="", low=1, help="image-decoding threads")
    shard: str | None = shard_setting()


PATH_FIELDS: tuple[str, ...] = ("images", "labels", "models", "scores_csv", "filtered_dir", "logs_dir")


def combine_scores(names: Sequence[str], hand: pd.DataFrame | None,
                   cnn: dict[str, dict[str, float]] | None) -> pd.DataFrame:
    """One row per image of ``names`` with QUALITY_GENDER_COLUMNS; hand labels win per task.

    ``hand``: load_hand_labels() frame (gender/quality 0/1/NaN); ``cnn``: task -> {img_name: prob}.
    An image whose needed CNN score is missing (unreadable image, no model) gets no row.
    """
    cnn = cnn or {}
    hand_by_name = {} if hand is None else hand.set_index("img_name")[["gender", "quality"]].to_dict("index")
    rows = []
    for name in names:
        labels = hand_by_name.get(name, {})
        scores, from_hand = {}, True
        for task in ("gender", "quality"):
            value = labels.get(task, float("nan"))
            if value == value:  # not NaN: a decided hand label
                scores[task] = float(value)
            else:
                from_hand = False
                score = cnn.get(task, {}).get(name)
                if score is None:
                    break
                scores[task] = round(float(score), SCORE_DECIMALS)
        else:
            rows.append({"img_name": name, "gender_score": scores["gender"],
                         "quality_score": scores["quality"], "source": "hand" if from_hand else "cnn"})
    return pd.DataFrame(rows, columns=list(QUALITY_GENDER_COLUMNS))


def thresholds_text(config: FilterConfig) -> str:
    """The thresholds a sheet was made with, and the defaults where they differ (the demo lowers both)."""
    defaults = FilterConfig()
    parts = []
    for name, value, default in (("gender", config.gender_threshold, defaults.gender_threshold),
                                 ("quality", config.quality_threshold, defaults.quality_threshold)):
        parts.append(f"{name} >= {value:g}" + ("" if value == default else f" (default {default:g})"))
    return ", ".join(parts)


def keep_mask(frame: pd.DataFrame, gender_threshold: float, quality_threshold: float) -> np.ndarray:
    """gender_score >= gender_threshold and quality_score >= quality_threshold (inclusive, as specified)."""
    return ((frame["gender_score"].to_numpy() >= gender_threshold)
            & (frame["quality_score"].to_numpy() >= quality_threshold))


@dataclass
class SyncResult:
    added: int
    unchanged: int
    removed: int


def _place(src: Path, dst: Path, link: bool) -> None:
    """Put ``src`` at ``dst`` atomically: a hard link renamed into place, else an atomic copy."""
    if link:
        tmp = dst.with_name(f"{TMP_PREFIX}{dst.name}.{os.getpid()}")
        try:
            if tmp.exists():
                tmp.unlink()
            os.link(src, tmp)
            os.replace(tmp, dst)
            return
        except OSError as exc:  # other file system, or links unsupported
            logger.debug("hard link %s -> %s failed (%s); copying", src, dst, exc)
            if tmp.exists():
                tmp.unlink()
    atomic_write_bytes(dst, src.read_bytes())


def sync_kept_images(src_dir: Path, dst_dir: Path, kept_names: Sequence[str], link: bool = True) -> SyncResult:
    """Make ``dst_dir`` hold exactly the kept images (same names); other image files there are removed."""
    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    dst_dir.mkdir(parents=True, exist_ok=True)
    clean_stale_temp_files(dst_dir)
    kept = set(kept_names)
    added = unchanged = removed = 0
    for name in sorted(kept):
        src, dst = src_dir / name, dst_dir / name
        if dst.exists() and (os.path.samefile(src, dst) or filecmp.cmp(src, dst, shallow=False)):
            unchanged += 1
            continue
        _place(src, dst, link)
        added += 1
    for path in list_images(dst_dir):
        if path.name not in kept:
            path.unlink()
            removed += 1
    return SyncResult(added, unchanged, removed)


def _sheet(paths: Sequence[Path], captions: Sequence[str], title: str, out: Path) -> None:
    images, caps = [], []
    for path, caption in zip(paths, captions):
        try:
            images.append(load_rgb(path))
            caps.append(caption)
        except ImageReadError as exc:
            logger.warning("contact sheet: %s", exc)
    if images:
        atomic_save_image(out, make_contact_sheet(images, caps, ncols=8, thumb=128, title=title), jpeg_quality=90)


def score_text(value: float) -> str:
    """A score on a contact sheet, rounded DOWN to 3 decimals: a rejected 0.4997 must not read "0.50"
    under the title "gender >= 0.5" (thresholds have at most 3 decimals)."""
    return f"{math.floor(value * 1000 + 1e-9) / 1000:.3f}"


def write_contact_sheets(frame: pd.DataFrame, kept: np.ndarray, images_dir: Path, logs_dir: Path,
                         config: FilterConfig) -> list[Path]:
    """kept_sheet.jpg (an even sample of kept images) and near_threshold_rejected.jpg (the rejected
    images that came closest to passing) in ``logs_dir``: the two pictures to check the thresholds."""
    written = []

    def caption(row) -> str:
        return (f"{Path(row.img_name).stem} g{score_text(row.gender_score)} q{score_text(row.quality_score)} "
                f"{row.source[0]}")

    kept_rows = frame[kept]
    if len(kept_rows):
        pick = np.unique(np.linspace(0, len(kept_rows) - 1, min(config.sheet_images, len(kept_rows))).astype(int))
        sample = kept_rows.iloc[pick]
        out = Path(logs_dir) / "kept_sheet.jpg"
        _sheet([images_dir / n for n in sample["img_name"]], [caption(r) for r in sample.itertuples()],
               f"kept: {len(kept_rows)} of {len(frame)} (sample; g=gender q=quality, h=hand c=cnn)", out)
        written.append(out)
    rejected = frame[~kept].copy()
    if len(rejected):
        rejected["shortfall"] = (np.maximum(0.0, config.gender_threshold - rejected["gender_score"])
                                 + np.maximum(0.0, config.quality_threshold - rejected["quality_score"]))
        near = rejected.sort_values(["shortfall", "img_name"], kind="mergesort").head(config.sheet_images)
        out = Path(logs_dir) / "near_threshold_rejected.jpg"
        _sheet([images_dir / n for n in near["img_name"]], [caption(r) for r in near.itertuples()],
               f"rejected nearest the thresholds ({thresholds_text(config)})", out)
        written.append(out)
    return written


@dataclass(frozen=True)
class FilterSummary:
    total: int
    counts: dict[str, tuple[int, int]]  # source -> (kept, total)
    failed: dict[str, str]
    sync: SyncResult
    csv_path: Path
    filtered_dir: Path
    seconds: float = 0.0
    device: str = "cpu"
    rank: int = 0              # under torchrun: this rank (the figures are all ranks' on rank 0)
    shard: str | None = None   # "K/N": this run scored one share (csv_path is its part file)

    @property
    def kept(self) -> int:
        return sum(k for k, _ in self.counts.values())

    @property
    def is_main(self) -> bool:
        """Whether this process reports (rank 0; every --shard run reports its own share)."""
        return self.rank == 0 or self.shard is not None

    def line(self) -> str:
        if not self.is_main:
            return f"step 4 rank {self.rank}: {self.total} images scored into its part file; rank 0 reports"
        if self.shard is not None:
            return (f"step 4 shard {self.shard}: {self.total} images scored into {self.csv_path}, "
                    f"{len(self.failed)} unreadable ({self.seconds:.1f}s on {self.device}); when every shard is "
                    "done: python stylegan_and_segmentation/merge_shards.py 4 (the same flags, without --shard)")
        by_source = ", ".join(f"{src} {k}/{n}" for src, (k, n) in self.counts.items())
        return (f"step 4: kept {self.kept}/{self.total} images ({by_source} kept/total by source); "
                f"{len(self.failed)} unreadable skipped; folder: {self.sync.added} added, "
                f"{self.sync.unchanged} unchanged, {self.sync.removed} stale removed; scores in {self.csv_path}, "
                f"kept images in {self.filtered_dir} ({self.seconds:.1f}s on {self.device})")


def unreadable_images(paths: Sequence[Path], on_item: Callable[[], None] | None = None) -> dict[str, str]:
    """name -> reason for each image that cannot be decoded (hand-labelled images skip the CNN, so
    nothing else would notice; a kept image must be one that later steps can read)."""
    failed = {}
    for path in paths:
        try:
            load_rgb(path)
        except ImageReadError as exc:
            failed[path.name] = str(exc)
        if on_item is not None:
            on_item()
    return failed


def _hand_labels(labels_csv: Path, explicit: bool, names: Sequence[str]) -> pd.DataFrame | None:
    """The hand labels as read (CSV + journal replay), or None when the default file is absent."""
    if labels_csv.is_file() or journal_path_for(labels_csv).is_file():
        return load_hand_labels(labels_csv, known_images=names)
    if explicit:
        raise FilterInputError(f"--labels {labels_csv}: no such file; fix: give the hand labels CSV of step 2, or "
                               "leave --labels out to score every image with the CNNs")
    logger.info("no hand labels at %s: every image is scored by the CNNs", labels_csv)
    return None


def run_filter(config: FilterConfig, progress: Progress | None = None) -> FilterSummary:
    """Step 4. Raises CheckpointError ("run step 3 first") when a needed model is missing, and
    CsvSchemaError for a labels CSV naming unknown images or holding invalid values.

    progress(done, total) over the images: CNN-scored ones as batches finish, then the
    hand-labelled ones as they are checked.

    Under torchrun rank r scores the images i (in name order) with i mod N == r and writes its
    rows to a part file; after a barrier rank 0 merges them (sorted by name, the one-process CSV)
    and fills the kept folder. With ``config.shard`` ("K/N") this process scores share K and stops
    there: :func:`merge_filter_shards` (``merge_shards.py 4``) finishes once every share is done.
    """
    start = time.perf_counter()
    ctx = init_distributed(config.shard)
    labels_given = config.labels is not None
    config = config.resolved()
    images_dir, labels_csv, out_csv = Path(config.images), Path(config.labels), Path(config.scores_csv)
    refuse_overlap({"--filtered-dir": config.filtered_dir, "logs folder": config.logs_dir},
                   {"--images": images_dir, "--labels": labels_csv, "--models": config.models},
                   {flag_of(config, "scores_csv"): out_csv},
                   reserved=image_folders(config.paths, own=Path(config.filtered_dir)))
    try:
        device = resolve_device(ctx.device(config.device))
    except RuntimeError as exc:
        raise FilterInputError(str(exc)) from exc
    shard = (ctx.rank, ctx.world_size) if ctx.sharded and not ctx.grouped else None
    with claim_output(out_csv.parent, filter_recipe(config, device), overwrite=False, owned=lambda _folder: [],
                      record_name=FILTER_RECIPE, shard=shard, writer=ctx.is_main or not ctx.grouped, recompute=True):
        return _filter_claimed(config, ctx, labels_given, device, progress, start)


FILTER_RECIPE = "filter_recipe.json"
"""Step 4's recipe, beside its scores CSV (``common.recipe``; step 4 recomputes every row, so it records)."""


def filter_recipe(config: FilterConfig, device) -> Recipe:
    """What step 4's scores and kept images come from: thresholds, device type, the fold models' files and
    the hand labels as read (CSV + journal); each row of the scores CSV keeps its image's identity."""
    from gender_cnn.hand_labels import hand_labels_digest

    config = config.resolved()
    models = sorted(Path(config.models).glob("*.pt")) if Path(config.models).is_dir() else []
    settings = {"gender_threshold": config.gender_threshold, "quality_threshold": config.quality_threshold,
                "device_type": getattr(device, "type", str(device)),
                "hand_labels": hand_labels_digest(Path(config.labels)) if Path(config.labels).is_file() else None}
    return Recipe.of("4", settings, {f"model {path.name}": path for path in models})


def _filter_claimed(config: FilterConfig, ctx, labels_given: bool, device, progress: Progress | None,
                    start: float) -> FilterSummary:
    images_dir, labels_csv, out_csv = Path(config.images), Path(config.labels), Path(config.scores_csv)
    paths = list_images(images_dir)
    all_names = [p.name for p in paths]
    if config.limit is not None:
        paths = paths[:config.limit]
    hand = _hand_labels(labels_csv, labels_given, all_names)
    share = [paths[i] for i in ctx.take(range(len(paths)))]
    rows, failed = _score(share, hand, Path(config.models), device, config, progress if ctx.is_main else None)
    if not ctx.sharded:
        return _finish(config, rows, failed, str(device), start)
    _write_part(ctx.part_path(out_csv), rows, failed)
    ctx.barrier()
    if ctx.grouped and ctx.is_main:
        return _merge_parts(config, None, ctx.world_size, str(device), start)
    return FilterSummary(total=len(rows), counts=_counts(rows, keep_mask(rows, config.gender_threshold,
                                                                         config.quality_threshold)),
                         failed=failed, sync=SyncResult(0, 0, 0), csv_path=ctx.part_path(out_csv),
                         filtered_dir=config.filtered_dir, seconds=time.perf_counter() - start, device=str(device),
                         rank=ctx.rank, shard=config.shard)


def merge_filter_shards(config: FilterConfig, progress: Progress | None = None) -> FilterSummary:
    """``merge_shards.py 4`` after ``--shard K/N`` runs: merge the shards' part files into the scores CSV,
    then fill the kept folder, the sheets and filter_config.json exactly as a one-process run; the parts
    are removed."""
    return _merge_parts(config.resolved(), progress, None, "cpu", time.perf_counter())


def _merge_parts(config: FilterConfig, progress: Progress | None, world_size: int | None, device: str,
                 start: float) -> FilterSummary:
    """The merge (torchrun's rank 0 passes its world size; None: found from the part files)."""
    out_csv, record = Path(config.scores_csv), Path(config.logs_dir) / "filter_config.json"
    if world_size is None and not _part_files(out_csv) and out_csv.is_file() and record.is_file():
        # merged before: merging again finishes from the merged CSV, the same way
        failed = json.loads(record.read_text(encoding="utf-8")).get("unreadable_images", {})
        rows = [_read_part(out_csv, failed_list=False)[0]]
    else:
        rows, failed = [], {}
        for path in _find_parts(out_csv, world_size):
            frame, part_failed = _read_part(path)
            rows.append(frame)
            failed.update(part_failed)
    merged = pd.concat(rows, ignore_index=True).astype({"gender_score": float, "quality_score": float})
    with contextlib.ExitStack() as stack:
        if world_size is None:  # merge_shards.py 4: parts made by another recipe are refused first
            stack.enter_context(FolderLock(out_csv.parent))
            stack.enter_context(merging(out_csv.parent, filter_recipe(config, resolve_device(config.device)),
                                        FILTER_RECIPE))
        summary = _finish(config, merged, failed, device, start)
        for path in _part_files(out_csv):
            _failed_path(path).unlink(missing_ok=True)
            path.unlink(missing_ok=True)
    if progress is not None:
        progress(summary.total, summary.total)
    return summary


def _score(paths: Sequence[Path], hand: pd.DataFrame | None, models_dir: Path, device, config: FilterConfig,
           progress: Progress | None) -> tuple[pd.DataFrame, dict[str, str]]:
    """Score ``paths`` (hand labels first, the CNN ensemble for the rest): rows and unreadable images."""
    from gender_cnn.predict import load_ensemble, predict_images  # torch; tests stand in for the ensemble

    names = [p.name for p in paths]
    hand_idx = (hand.set_index("img_name")[["gender", "quality"]] if hand is not None
                else pd.DataFrame(columns=["gender", "quality"], dtype=float))
    hand_aligned = hand_idx.reindex(names)
    needs = {t: hand_aligned[t].isna().to_numpy() for t in ("gender", "quality")}
    need_any = needs["gender"] | needs["quality"]
    tasks_needed = [t for t in ("gender", "quality") if needs[t].any()]
    ensembles = {t: load_ensemble(models_dir, t, device) for t in tasks_needed}
    to_predict = [p for p, need in zip(paths, need_any) if need]
    hand_only = [p for p, need in zip(paths, need_any) if not need]
    done = 0

    def advance(n: int = 1) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, len(paths))

    cnn: dict[str, dict[str, float]] = {t: {} for t in tasks_needed}
    failed: dict[str, str] = {}
    if to_predict:
        result = predict_images(to_predict, ensembles, device, batch_size=config.batch_size,
                                workers=config.workers, on_items=advance)
        for task in tasks_needed:
            cnn[task] = dict(zip(result.names, result.scores[task].tolist()))
        failed = result.failed
    failed.update(unreadable_images(hand_only, advance))
    return combine_scores([n for n in names if n not in failed], hand, cnn), failed


def _counts(frame: pd.DataFrame, kept: np.ndarray) -> dict[str, tuple[int, int]]:
    counts = {}
    for source in ("hand", "cnn"):
        sel = (frame["source"] == source).to_numpy()
        counts[source] = (int((kept & sel).sum()), int(sel.sum()))
    return counts


def _finish(config: FilterConfig, rows: pd.DataFrame, failed: dict[str, str], device: str,
            start: float) -> FilterSummary:
    """Everything after scoring: the CSV (sorted by name), the kept folder, the sheets, the record."""
    failed = dict(sorted(failed.items()))
    if failed:
        logger.warning("%d unreadable images left out (not scored, not kept): %s", len(failed),
                       ", ".join(list(failed)[:5]) + (" ..." if len(failed) > 5 else ""))
    frame = rows.sort_values("img_name", kind="mergesort").reset_index(drop=True)
    frame[INPUT_COLUMN] = [item_identity(Path(config.images) / name) for name in frame["img_name"]]
    atomic_write_csv(config.scores_csv, frame, QUALITY_GENDER_COLUMNS)
    kept = keep_mask(frame, config.gender_threshold, config.quality_threshold)
    sync = sync_kept_images(config.images, config.filtered_dir, frame["img_name"][kept].tolist(), link=config.link)
    if config.sheets:
        write_contact_sheets(frame, kept, config.images, Path(config.logs_dir), config)
    atomic_write_json(Path(config.logs_dir) / "filter_config.json", _record(config, device, failed))
    return FilterSummary(total=len(frame), counts=_counts(frame, kept), failed=failed, sync=sync,
                         csv_path=config.scores_csv, filtered_dir=config.filtered_dir,
                         seconds=time.perf_counter() - start, device=device)


def _failed_path(part_csv: Path) -> Path:
    """The unreadable-image list that goes with a part CSV: NAME.part-K-of-N.unreadable.json."""
    return part_csv.with_suffix(".unreadable.json")


def _write_part(path: Path, rows: pd.DataFrame, failed: dict[str, str]) -> None:
    """A share's rows, then its unreadable list: the JSON's presence marks a finished share."""
    atomic_write_csv(path, rows, QUALITY_GENDER_COLUMNS)
    atomic_write_json(_failed_path(path), failed)


def _part_files(out_csv: Path) -> list[Path]:
    return sorted(out_csv.parent.glob(f"{out_csv.stem}.part-*-of-*{out_csv.suffix}"))


def _read_part(path: Path, failed_list: bool = True) -> tuple[pd.DataFrame, dict[str, str]]:
    frame = pd.read_csv(path, dtype={"img_name": str, "source": str}, keep_default_na=False)
    frame = frame.drop(columns=[INPUT_COLUMN], errors="ignore")  # the merged CSV's; _finish writes it again
    if list(frame.columns) != list(QUALITY_GENDER_COLUMNS):
        raise FilterInputError(f"{path}: not a step-4 part file (columns {list(frame.columns)}); fix: re-run that "
                               "shard")
    return frame, json.loads(_failed_path(path).read_text(encoding="utf-8")) if failed_list else {}


_PART_RE = re.compile(r"\.part-(\d+)-of-(\d+)$")


def _find_parts(out_csv: Path, world_size: int | None) -> list[Path]:
    """The N part files of ``out_csv`` in rank order; a missing or unfinished share is named."""
    if world_size is None:
        splits = {int(m.group(2)) for p in _part_files(out_csv) if (m := _PART_RE.search(p.stem))}
        if len(splits) != 1:
            found = "none" if not splits else f"parts of {sorted(splits)} shards"
            raise FilterInputError(f"{out_csv.parent}: cannot merge step 4's shards ({found}); fix: run "
                                   "04_filter_images.py --shard K/N for every K of one N, copy their "
                                   f"{out_csv.stem}.part-K-of-N files here and remove parts of other splits")
        world_size = splits.pop()
    parts = [out_csv.with_name(f"{out_csv.stem}.part-{k}-of-{world_size}{out_csv.suffix}") for k in range(world_size)]
    missing = [k for k, path in enumerate(parts) if not _failed_path(path).is_file() or not path.is_file()]
    if missing:
        raise FilterInputError(f"step 4 shards {', '.join(f'{k}/{world_size}' for k in missing)} have not finished "
                               f"(no part file in {out_csv.parent}); fix: run 04_filter_images.py --shard K/N for "
                               "them, then merge again")
    return parts


def _record(config: FilterConfig, device: str, failed: dict[str, str]) -> dict:
    """filter_config.json: the settings and paths as used (for people and for a re-run)."""
    settings = {name: getattr(config, name) for name in (
        "gender_threshold", "quality_threshold", "batch_size", "link", "sheets", "sheet_images", "workers", "limit")}
    return {**settings, **{name: str(getattr(config, name)) for name in PATH_FIELDS}, "device": device,
            "unreadable_images": failed}
