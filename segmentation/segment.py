"""Step 5: face crop + FaceXFormer parsing for a folder of images, batched, resumable, overlapped.

The original reloaded the model for every image (~5 s/image). Here the model is loaded once,
crops are made on a background thread one batch ahead of the model, PNG encoding runs on a
small writer pool, and ``crops.csv`` only lists an image once its PNGs are complete, so a
killed run resumes where it stopped. It resumes only under the folder's recipe (``common.recipe``:
crop mode, devices, the FaceXFormer file's fingerprint), and an image only if its row was made from
the same file (``input_fingerprint``); two images sharing a stem are refused (their outputs collide).
"""
from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from common.distributed import init_distributed
from common.folders import image_folders, refuse_overlap
from common.images import ImageReadError, list_images, load_rgb
from common.io import (
    atomic_save_image,
    atomic_write_csv,
    atomic_write_json,
    clean_stale_temp_files,
    read_csv_checked,
)
from common.paths import CROPS_CSV
from common.recipe import FolderLock, Recipe, claim_output, item_identity, merging
from common.settings import (
    StepConfig,
    batch_size_setting,
    device_setting,
    flag_of,
    limit_setting,
    overwrite_setting,
    setting,
    shard_setting,
)
from common.runtime import resolve_device
from common.steps import Progress, StepError
from segmentation.crop import FaceCrop, detect_and_crop, full_image_crop, normalize_crops
from segmentation.facexformer import load_facexformer
from segmentation.labels import overlay
from segmentation.parts import complete_parts, found_parts
from segmentation.tables import (
    CROPS_COLUMNS,
    CROPS_EXTRA_COLUMNS,
    FACE_PREFIX,
    HEADS_PREFIX,
    INPUT_COLUMN,
    PARSING_PREFIX,
    VISUALIZATION_PREFIX,
    check_crops_frame,
)

log = logging.getLogger(__name__)

CROP_MODES: tuple[str, ...] = ("mtcnn", "full")
RUN_JSON = "segmentation_run.json"


class SegmentationError(StepError, RuntimeError):
    """A missing input folder or an unusable device (the script prints one line and exits 2)."""


@dataclass(frozen=True)
class SegmentConfig(StepConfig):
    """Step 5's settings; every path None = the pipeline's default under ``root``."""

    images: Path | None = setting(None, path="filtered_dir", help="folder of images (step 4's kept images)")
    checkpoint: Path | None = setting(None, concept="segmentation_checkpoint", aliases=("--checkpoint",))
    out: Path | None = setting(None, path="segmentation_dir", output="dir", help="output folder")
    device: str = device_setting(help="FaceXFormer's device: auto | cpu | cuda | cuda:N")
    crop: str = setting("mtcnn", choices=CROP_MODES,
                        help="mtcnn: official face crop (largest face, +50%% box, 224 bicubic); full: the whole "
                             "image resized to 224 (random-weight demos, or a fallback)")
    batch_size: int = batch_size_setting(8, help="images per FaceXFormer forward")
    limit: int | None = limit_setting("images (the first N of the folder, by name)")
    overwrite: bool = overwrite_setting("redo images that are already done")
    retry_unreadable: bool = setting(False, help="try again the images crops.csv lists as unreadable (skipped on "
                                                 "resume otherwise)")
    trust_checkpoint: bool = setting(False, concept="trust_checkpoint",
                                     help="for a FaceXFormer file the safe loader refuses because it also holds saved "
                                          "args or numpy values: load it allowing only those plain types (never "
                                          "code; docs/checkpoints.md) and save its weights next to it")
    mtcnn_device: str = device_setting("cpu", flag="--mtcnn-device",
                                       help="device for face detection (the official demo used the CPU; cuda is "
                                            "faster but boxes may move by float rounding)")
    writer_threads: int = setting(2, flag="", low=1, help="PNG encoders")
    csv_flush_seconds: float = setting(10.0, flag="", low=0.0, low_open=True,
                                       help="rewrite crops.csv at most this often while running")
    shard: str | None = shard_setting()

    @property
    def crops_csv(self) -> Path:
        return Path(self.resolved().out) / CROPS_CSV


@dataclass(frozen=True)
class SegmentSummary:
    """What step 5 did: counts of this run (``skipped`` = done earlier), where, with what."""

    total: int
    parsed: int
    no_face: int
    unreadable: int
    skipped: int
    seconds: float
    out_dir: Path
    crop: str
    device: str
    checkpoint: Path
    errors: tuple[str, ...] = ()
    shard: str = ""          # "K/N" when this was one --shard of several (crops.csv not merged yet)
    merged_parts: int = 0    # per-rank crops.csv parts folded into crops.csv

    def line(self) -> str:
        done = self.parsed + self.no_face + self.unreadable
        rate = f", {done / self.seconds:.2f} img/s" if done and self.seconds > 0 else ""
        found = "parsed" if self.crop == "full" else "face found"
        shard = (f" (shard {self.shard}: its rows are in a crops.csv part; when every shard is done, run "
                 "python stylegan_and_segmentation/merge_shards.py 5)" if self.shard else "")
        merged = f"; merged {self.merged_parts} parts into crops.csv" if self.merged_parts else ""
        return (f"segmentation: {self.total} images -> {self.out_dir}{shard}: {found} {self.parsed}, "
                f"no face {self.no_face}, unreadable {self.unreadable}, "
                f"skipped (already done) {self.skipped}; "
                f"crop={self.crop}, device={self.device}, checkpoint={self.checkpoint}{merged}; "
                f"{self.seconds:.1f}s{rate}")


def output_paths(out_dir: Path, stem: str) -> tuple[Path, Path, Path]:
    """(parsing_{stem}.png, face_{stem}.png, parsing_visualization_{stem}.png)."""
    return (out_dir / f"{PARSING_PREFIX}{stem}.png", out_dir / f"{FACE_PREFIX}{stem}.png",
            out_dir / f"{VISUALIZATION_PREFIX}{stem}.png")


def heads_path(out_dir: Path, stem: str) -> Path:
    """``heads_{stem}.json``: FaceXFormer's landmarks (68 points, crop pixels) and head pose (degrees)."""
    return out_dir / f"{HEADS_PREFIX}{stem}.json"


def read_heads(path: Path) -> dict:
    """One ``heads_{stem}.json``: {"pitch", "yaw", "roll": degrees, "landmarks": [[x, y] * 68]}."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_crops_csv(path: Path) -> dict[str, dict[str, str]]:
    """Existing crops.csv rows by img_name, as strings (so a rewrite keeps them byte-identical)."""
    if not path.is_file():
        return {}
    frame = read_csv_checked(path, CROPS_COLUMNS, dtype=str, keep_default_na=False)
    check_crops_frame(frame, path)
    columns = list(CROPS_COLUMNS) + list(CROPS_EXTRA_COLUMNS)
    return {row["img_name"]: {c: row.get(c, "") for c in columns} for row in frame.to_dict("records")}


def write_crops_csv(path: Path, rows: dict[str, dict[str, str]]) -> None:
    import pandas as pd

    columns = list(CROPS_COLUMNS) + list(CROPS_EXTRA_COLUMNS)
    frame = pd.DataFrame([rows[name] for name in sorted(rows)], columns=columns, dtype=str)
    atomic_write_csv(path, frame, columns=CROPS_COLUMNS)


def _is_done(path: Path, row: dict[str, str] | None, crop: str, out_dir: Path,
             retry_unreadable: bool) -> bool:
    """Finished earlier with the same crop mode from this very file (its row's input fingerprint): a row,
    and all three PNGs if the image was parsed.

    Unreadable images are done too (their row says why) unless ``retry_unreadable``: retrying them
    on every resume would reload the 1.1 GB model for nothing.
    """
    if row is None or row.get("crop") != crop or row.get(INPUT_COLUMN) != item_identity(path):
        return False  # not listed, or listed for another file of that name (an edited or replaced image)
    if row.get("error"):
        return not retry_unreadable
    if row.get("face_found") != "1":
        return True  # no face: listed, nothing to write
    return all(p.is_file() for p in (*output_paths(out_dir, path.stem), heads_path(out_dir, path.stem)))


def _row(path: Path, crop_mode: str, crop: FaceCrop | None, error: str = "") -> dict[str, str]:
    found = crop is not None and crop.found
    box = crop.box if found and crop.box is not None else ("", "", "", "")
    prob = "" if not found or crop.prob is None else repr(float(crop.prob))
    try:
        identity = item_identity(path)
    except OSError:  # gone or unreadable: the row says why, and a re-run tries it again
        identity = ""
    return {"img_name": path.name, "face_found": "1" if found else "0",
            "x0": str(box[0]), "y0": str(box[1]), "x1": str(box[2]), "y1": str(box[3]),
            "prob": prob, "crop": crop_mode, "error": error, INPUT_COLUMN: identity}


@dataclass
class _Batch:
    paths: list[Path]
    rows: list[dict[str, str]]
    faces: list[np.ndarray | None]  # 224x224x3 uint8 crop per item, None if nothing to parse


def _prepare_batch(paths: Sequence[Path], config: SegmentConfig) -> _Batch:
    """Read and crop one batch; unreadable files become flagged rows, never an exception."""
    images: list[np.ndarray | None] = []
    errors: list[str] = []
    for path in paths:
        try:
            images.append(load_rgb(path))
            errors.append("")
        except ImageReadError as exc:
            log.warning("%s", exc)
            images.append(None)
            errors.append(f"unreadable: {exc}".replace("\n", " "))
    readable = [i for i, image in enumerate(images) if image is not None]
    crops: dict[int, FaceCrop] = {}
    if config.crop == "full":
        crops = {i: full_image_crop(images[i]) for i in readable}
    elif readable:
        found = detect_and_crop([images[i] for i in readable], device=config.mtcnn_device)
        crops = dict(zip(readable, found))
    rows, faces = [], []
    for i, path in enumerate(paths):
        crop = crops.get(i)
        rows.append(_row(path, config.crop, crop, errors[i]))
        faces.append(crop.image if crop is not None and crop.found else None)
    return _Batch(list(paths), rows, faces)


def _prefetch(batches: Sequence[Sequence[Path]], config: SegmentConfig, depth: int = 2) -> Iterator[_Batch]:
    """Yield prepared batches while the next ones are read and cropped on a background thread."""
    if depth <= 0:
        for paths in batches:
            yield _prepare_batch(paths, config)
        return
    out: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work() -> None:
        try:
            for paths in batches:
                if stop.is_set():
                    return
                out.put(_prepare_batch(paths, config))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, re-raised there
            out.put(exc)
            return
        out.put(None)

    thread = threading.Thread(target=work, name="segmentation-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = out.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                out.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)


def _write_outputs(out_dir: Path, stem: str, face: np.ndarray, parsing: np.ndarray,
                   landmarks: np.ndarray, headpose: np.ndarray) -> None:
    parsing_path, face_path, vis_path = output_paths(out_dir, stem)
    # the map last: its presence (with the CSV row) marks the image as done
    pitch, yaw, roll = (round(float(v), 4) for v in headpose)
    atomic_write_json(heads_path(out_dir, stem), {
        "pitch": pitch, "yaw": yaw, "roll": roll,
        "landmarks": [[round(float(x), 3), round(float(y), 3)] for x, y in landmarks]})
    atomic_save_image(face_path, face)
    atomic_save_image(vis_path, overlay(face, parsing))
    atomic_save_image(parsing_path, parsing)


@dataclass
class _Counts:
    parsed: int = 0
    no_face: int = 0
    unreadable: int = 0
    errors: list[str] | None = None

    def add(self, row: dict[str, str]) -> None:
        if row["error"]:
            self.unreadable += 1
            self.errors = (self.errors or []) + [f"{row['img_name']}: {row['error']}"]
        elif row["face_found"] == "1":
            self.parsed += 1
        else:
            self.no_face += 1
            log.info("no face found in %s", row["img_name"])


def _devices(config: SegmentConfig) -> tuple[torch.device, str]:
    """(FaceXFormer's device, MTCNN's device); a CUDA request without a GPU is a SegmentationError."""
    try:
        return resolve_device(config.device), str(resolve_device(config.mtcnn_device))
    except RuntimeError as exc:
        raise SegmentationError(str(exc)) from exc


def _parse_batches(todo: Sequence[Path], model: torch.nn.Module, device: torch.device, config: SegmentConfig,
                   rows: dict[str, dict[str, str]], csv_path: Path,
                   on_batch: Callable[[int], None]) -> _Counts:
    """Crop (background thread), parse (model) and write (PNG pool) ``todo``; rows join ``rows`` when written.

    ``crops.csv`` is rewritten every ``csv_flush_seconds`` and at the end, also after an
    interruption, and only ever lists images whose files are complete.
    """
    out_dir = Path(config.out)
    counts = _Counts()
    batches = [todo[i: i + config.batch_size] for i in range(0, len(todo), config.batch_size)]
    pending: list[tuple[list[dict[str, str]], list[Future | None]]] = []
    last_flush = time.perf_counter()

    def commit(wait_all: bool) -> None:
        """Move rows whose PNGs are written into ``rows`` (the CSV never lists a half-written image)."""
        while pending and (wait_all or all(f.done() for f in pending[0][1] if f is not None)):
            batch_rows, futures = pending.pop(0)
            for future in futures:
                if future is not None:
                    future.result()  # a failed write raises here (disk full...): not a per-image issue
            for row in batch_rows:
                rows[row["img_name"]] = row

    try:
        with ThreadPoolExecutor(max_workers=config.writer_threads, thread_name_prefix="png-writer") as pool:
            for batch in _prefetch(batches, config):
                parse_idx = [i for i, face in enumerate(batch.faces) if face is not None]
                futures: list[Future | None] = [None] * len(batch.paths)
                if parse_idx:
                    x = normalize_crops([batch.faces[i] for i in parse_idx]).to(device)
                    maps, heads = model.parse_with_heads(x)  # parsing + pose heads: one backbone pass
                    maps = maps.cpu().numpy()
                    landmarks, headpose = heads["landmarks"].cpu().numpy(), heads["headpose"].cpu().numpy()
                    for j, i in enumerate(parse_idx):
                        futures[i] = pool.submit(_write_outputs, out_dir, batch.paths[i].stem,
                                                 batch.faces[i], maps[j], landmarks[j], headpose[j])
                for row in batch.rows:
                    counts.add(row)
                pending.append((batch.rows, futures))
                commit(wait_all=False)
                if time.perf_counter() - last_flush > config.csv_flush_seconds:
                    write_crops_csv(csv_path, rows)
                    last_flush = time.perf_counter()
                on_batch(len(batch.paths))
            commit(wait_all=True)
    finally:
        try:
            commit(wait_all=False)  # on an interruption, keep what is complete
        except Exception as exc:  # noqa: BLE001 - do not mask the error that stopped the run
            log.error("some outputs could not be written: %s", exc)
        write_crops_csv(csv_path, rows)
    return counts


def _write_record(config: SegmentConfig, summary: SegmentSummary) -> None:
    """``segmentation_run.json``: the settings and figures of the last run (for people; nothing reads it)."""
    def plain(value: object) -> object:
        return str(value) if isinstance(value, Path) else value

    record = {"config": {k: plain(v) for k, v in asdict(config).items()}, "input_dir": str(config.images),
              "checkpoint": str(config.checkpoint), "device": summary.device,
              "summary": {k: plain(v) for k, v in asdict(summary).items() if k != "errors"}}
    atomic_write_json(Path(config.out) / RUN_JSON, record)


def _known_rows(csv_path: Path) -> dict[str, dict[str, str]]:
    """crops.csv's rows, updated by every per-rank part (a killed sharded run's too), newest part last."""
    rows = read_crops_csv(csv_path)
    parts = sorted((part for _, _, part in found_parts(csv_path)), key=lambda p: (p.stat().st_mtime_ns, p.name))
    for part in parts:
        rows.update(read_crops_csv(part))
    return rows


def merge_crops_parts(csv_path: Path) -> int:
    """Fold every part into crops.csv (atomically), then remove the parts; returns how many were folded.

    Idempotent: a kill between the write and the removal leaves parts whose rows crops.csv
    already holds, and the next merge writes the same file.
    """
    parts = [part for _, _, part in found_parts(csv_path)]
    if not parts:
        return 0
    write_crops_csv(csv_path, _known_rows(csv_path))
    for part in parts:
        part.unlink(missing_ok=True)
    return len(parts)


def _summary(config: SegmentConfig, counts: _Counts, total: int, skipped: int, start: float, device: str,
             shard: str = "", merged_parts: int = 0) -> SegmentSummary:
    return SegmentSummary(total=total, parsed=counts.parsed, no_face=counts.no_face, unreadable=counts.unreadable,
                          skipped=skipped, seconds=time.perf_counter() - start, out_dir=Path(config.out),
                          crop=config.crop, device=device, checkpoint=Path(config.checkpoint),
                          errors=tuple(counts.errors or ()), shard=shard, merged_parts=merged_parts)


def _sum_counts(shares: Sequence[tuple[_Counts, int]]) -> tuple[_Counts, int]:
    """Every rank's (counts, skipped) added up, errors in rank order."""
    total = _Counts()
    for counts, _ in shares:
        total.parsed += counts.parsed
        total.no_face += counts.no_face
        total.unreadable += counts.unreadable
        total.errors = (total.errors or []) + (counts.errors or [])
    return total, sum(skipped for _, skipped in shares)


def run_segmentation(config: SegmentConfig, progress: Progress | None = None, *,
                     model_loader: Callable[[], torch.nn.Module] | None = None) -> SegmentSummary:
    """Parse every image of the input folder into the output folder (see pipeline.md, step 5).

    The model is loaded only if something is left to do (``model_loader`` overrides how, for
    tests and benchmarks; by default :func:`segmentation.facexformer.load_facexformer` on the
    checkpoint). ``progress(done, total)`` counts images, those done earlier included.

    Under torchrun (or with ``config.shard``) this process parses the images whose index i in
    the sorted folder satisfies i mod N == rank and lists them in its own part of crops.csv;
    under torchrun rank 0 folds the parts into crops.csv after all ranks finish (the file a
    single process writes), with ``--shard`` :func:`merge_segmentation_shards` does it later.
    """
    start = time.perf_counter()
    config = config.resolved()
    ctx = init_distributed(config.shard)
    input_dir, out_dir, checkpoint = Path(config.images), Path(config.out), Path(config.checkpoint)
    if not input_dir.is_dir():
        raise SegmentationError(f"input folder not found: {input_dir} (run step 4 first, or pass --images)")
    refuse_overlap({"--out": out_dir}, {"--images": input_dir, flag_of(config, "checkpoint"): checkpoint},
                   reserved=image_folders(config.paths, own=config.paths.segmentation_dir))
    device, mtcnn_device = _devices(replace(config, device=ctx.device(config.device),
                                            mtcnn_device=ctx.device(config.mtcnn_device)))
    config = replace(config, mtcnn_device=mtcnn_device)
    if not ctx.is_main:
        progress = None  # one bar: rank 0's share
    listed = list_images(input_dir)
    refuse_stem_collisions(listed, input_dir)
    paths = listed[: config.limit]
    mine = [paths[i] for i in ctx.take(range(len(paths)))]
    csv_path = config.crops_csv
    shard = (ctx.rank, ctx.world_size) if ctx.sharded and not ctx.grouped else None
    with claim_output(out_dir, segmentation_recipe(config, device), overwrite=config.overwrite,
                      owned=_owned(csv_path, mine if shard else None), shard=shard,
                      writer=ctx.is_main or not ctx.grouped, what="segmentation outputs"):
        ctx.barrier()  # rank 0 has claimed (and, with overwrite, emptied) the folder
        return _segment_claimed(config, ctx, device, mine, paths, csv_path, progress, start, model_loader)


def segmentation_recipe(config: SegmentConfig, device: torch.device) -> Recipe:
    """What step 5's maps are made from: the crop, the devices (FaceXFormer's bits differ between CPU and
    CUDA) and the FaceXFormer file; not --batch-size, --limit or --shard. Each image's own identity is
    its crops.csv row's ``input_fingerprint``."""
    settings = {"crop": config.crop, "device_type": device.type, "dtype": "float32"}
    if config.crop == "mtcnn":
        settings["mtcnn_device_type"] = torch.device(config.mtcnn_device).type
    return Recipe.of("5", settings, {"checkpoint": config.checkpoint})


def refuse_stem_collisions(images: Sequence[Path], folder: Path) -> None:
    """Two images with one stem (``000002.png`` beside ``000002.jpg``) would write the same parse files."""
    seen: dict[str, str] = {}
    for path in images:
        if path.stem in seen:
            raise SegmentationError(f"{folder}: {seen[path.stem]} and {path.name} share the stem {path.stem!r}, so "
                                    f"their outputs ({PARSING_PREFIX}{path.stem}.png ...) would overwrite each other; "
                                    "fix: rename or move one of them")
        seen[path.stem] = path.name


def _owned(csv_path: Path, share: Sequence[Path] | None) -> Callable[[Path], list[Path]]:
    """Step 5's files in its folder (``share``: only those of these images and this shard's list)."""
    def owned(folder: Path) -> list[Path]:
        if share is None:
            patterns = [f"{prefix}*" for prefix in (PARSING_PREFIX, FACE_PREFIX, HEADS_PREFIX)]
            found = {p for pattern in patterns for p in folder.glob(pattern) if p.is_file()}
            found |= {p for p in (csv_path, folder / RUN_JSON) if p.is_file()}
            found |= {part for _, _, part in found_parts(csv_path)}
            return sorted(found)
        files = [f for path in share for f in (*output_paths(folder, path.stem), heads_path(folder, path.stem))]
        return [f for f in files if f.is_file()]

    return owned


def _segment_claimed(config: SegmentConfig, ctx, device: torch.device, mine: list[Path], paths: list[Path],
                     csv_path: Path, progress: Progress | None, start: float,
                     model_loader: Callable[[], torch.nn.Module] | None) -> SegmentSummary:
    """Parse this process's share into a folder whose recipe is this run's."""
    out_dir, checkpoint = Path(config.out), Path(config.checkpoint)
    known = _known_rows(csv_path)
    list_path = ctx.part_path(csv_path) if ctx.sharded else csv_path
    rows = read_crops_csv(list_path) if ctx.sharded else known  # what this process's list holds
    todo = [p for p in mine if not _is_done(p, known.get(p.name), config.crop, out_dir, config.retry_unreadable)]
    skipped = len(mine) - len(todo)
    done = skipped
    if progress is not None:
        progress(done, len(mine))
    counts = _Counts()
    if not ctx.sharded:
        clean_stale_temp_files(out_dir)  # with several processes, only once all have finished (the merge)
    if todo:
        model = model_loader() if model_loader is not None else load_facexformer(
            checkpoint, device=device, trusted=config.trust_checkpoint)
        model.eval()

        def on_batch(n: int) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress(done, len(mine))

        counts = _parse_batches(todo, model, device, config, rows, list_path, on_batch)
    elif ctx.sharded:
        write_crops_csv(list_path, rows)  # every shard leaves its part, also with nothing to do
    if ctx.sharded and not ctx.grouped:  # --shard K/N: merge_segmentation_shards() finishes
        return _summary(config, counts, len(mine), skipped, start, str(device), shard=f"{ctx.rank}/{ctx.world_size}")
    shares = ctx.gather((counts, skipped))  # every rank's part is complete once all got here
    if not ctx.is_main:
        return _summary(config, counts, len(mine), skipped, start, str(device))
    merged = merge_crops_parts(csv_path)
    if ctx.sharded:
        clean_stale_temp_files(out_dir)
    counts, skipped = _sum_counts(shares)
    summary = _summary(config, counts, len(paths), skipped, start, str(device),
                       merged_parts=merged if ctx.sharded else 0)
    if counts.parsed + counts.no_face + counts.unreadable:
        _write_record(config, summary)
    return summary


def merge_segmentation_shards(config: SegmentConfig, progress: Progress | None = None) -> SegmentSummary:
    """After ``--shard K/N`` runs (their output folders copied into one): fold every part into crops.csv.

    The result is the crops.csv one process writes; a second merge finds no parts and changes nothing.
    """
    start = time.perf_counter()
    config = config.resolved()
    csv_path = config.crops_csv
    device, mtcnn_device = _devices(config)
    recipe = segmentation_recipe(replace(config, mtcnn_device=mtcnn_device), device)
    with FolderLock(Path(config.out)), merging(config.out, recipe):  # parts of another recipe: refused first
        parts = complete_parts(csv_path, "run the missing shards (--shard K/N, same flags) or copy their output "
                                         "folders in, then merge again")
        merge_crops_parts(csv_path)
        clean_stale_temp_files(Path(config.out))
    counts = _Counts()
    for row in read_crops_csv(csv_path).values():
        counts.add(row)
    return _summary(config, counts, counts.parsed + counts.no_face + counts.unreadable, 0, start, "-",
                    merged_parts=len(parts))
