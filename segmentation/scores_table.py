"""Step 6's segmentation judge: score every label map of step 5, normalise, write the CSV, JSON and pictures.

Reads ``parsing_{stem}.png`` + ``face_{stem}.png`` pairs (and ``crops.csv`` for file names) from
step 5's folder and writes ``all_scores.csv``, ``normalization.json``, one contact sheet per
property (``contact_{property}.png``: lowest, middle and highest scored faces beside their parsing
overlays) and ``histograms.png`` (raw and normalised values of each property). The whole step
(this, then the optional landmark judge) is ``pipeline.property_scores_step.run_property_scores``.

Normalisation is fitted over all images, so every run recomputes the whole table (scoring is far
cheaper than reading the PNGs); all files are written atomically and a re-run with unchanged
inputs writes byte-identical files. A pair that cannot be read becomes a row of NaN with a flag
(``unreadable``, ``missing_map`` or ``missing_face``), never a crash.
"""
from __future__ import annotations

import dataclasses
import io
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from common.contact_sheet import make_contact_sheet
from common.distributed import init_distributed
from common.folders import image_folders, refuse_overlap
from common.images import ImageReadError, list_images, load_rgb, open_image
from common.io import (
    atomic_save_image,
    atomic_write_bytes,
    atomic_write_csv,
    atomic_write_json,
    clean_stale_temp_files,
    read_csv_checked,
)
from common.paths import PROPERTY_NAMES, PipelinePaths
from common.recipe import FolderLock, Recipe, claim_output, merging
from common.settings import StepConfig, device_setting, limit_setting, setting, shard_setting
from common.steps import Progress, StepError, Summary
from segmentation.labels import overlay
from segmentation.normalize import METHODS, POSE_SCALINGS, PropertyNormalizer
from segmentation.parts import complete_parts
from segmentation.property_scores import background_scores, raw_scores_with_flags
from segmentation.tables import (
    BACKGROUND_COLUMNS,
    FACE_PREFIX,
    FLAG_MISSING_FACE,
    FLAG_MISSING_MAP,
    FLAG_UNREADABLE,
    PARSING_PREFIX,
    INPUT_COLUMN,
    SCORES_COLUMNS,
    VISUALIZATION_PREFIX,
    check_crops_frame,
)

log = logging.getLogger(__name__)

FALLBACK_SUFFIX = ".jpg"
"""img_name suffix when neither crops.csv nor the image folder names the file (step 1's default)."""

HISTOGRAMS_NAME = "histograms.png"
RAW_PARTS_NAME = "raw_scores.json"
"""Base name of the per-rank raw-score parts (``raw_scores.part-K-of-N.json``) of a sharded run."""
SHEET_GROUPS: tuple[str, ...] = ("lowest", "middle", "highest")


class ScoreInputError(StepError, ValueError):
    """Step 6 has no step-5 folder, or nothing it can normalise (no face at all); nothing is written."""


@dataclass(frozen=True)
class ScoreItem:
    """One image of step 5: its stem, CSV name and the two files it is scored from."""

    stem: str
    img_name: str
    parsing_path: Path
    face_path: Path


@dataclass(frozen=True)
class PropertyScoresConfig(StepConfig):
    """Step 6's settings; every path None = the pipeline's default under ``root``."""

    segmentation_dir: Path | None = setting(None, path="segmentation_dir",
                                            help="step 5's results folder (parsing_*.png, face_*.png, crops.csv)")
    images: Path | None = setting(None, path="filtered_dir",
                                  help="the filtered images: names maps that crops.csv does not list, and what the "
                                       "landmark judge measures")
    out: Path | None = setting(None, path="property_scores_dir", output="dir", help="output folder")
    method: str = setting("minmax", choices=METHODS,
                          help="minmax: [0,1] ([-1,1] for face_pose), the spec; zscore: (x-mean)/std, ddof=1")
    pose_scaling: str = setting("minmax", choices=POSE_SCALINGS,
                                help="minmax: face_pose like the other properties; symmetric: raw / max|raw|, "
                                     "which keeps 0 = frontal")
    limit: int | None = limit_setting("label maps (the first N by image name)")
    background: bool = setting(False, flag="--background-scores",
                               help="add background_mean, background_std (raw) columns after flags, as the "
                                    "original had")
    per_group: int = setting(6, low=1, help="faces per row (lowest / middle / highest) in each contact sheet")
    pictures: bool = setting(True, flag="--no-pictures", negate=True, help="skip contact sheets and histograms")
    landmark_judge: bool = setting(True, words={"auto": True, "off": False}, metavar="{auto,off}",
                                   help="auto: also measure the filtered images with the optional dlib landmark "
                                        "judge (requirements-judges.txt) and write landmark_scores.csv + "
                                        "judge_agreement.csv; without it, a note says so")
    device: str = device_setting("cpu", help="the landmark judge's face detector (MTCNN): cpu (as step 5's default) "
                                             "| cuda | auto")
    shard: str | None = shard_setting()


@dataclass(frozen=True)
class PropertyScoresSummary:
    """What step 6 wrote; ``landmarks`` is the landmark judge's summary when it ran, else ``landmark_note`` says why."""

    scored: int
    no_face: int
    flag_counts: dict[str, int]
    method: str
    pose_scaling: str
    out_dir: Path
    written: tuple[Path, ...]
    seconds: float
    landmarks: Summary | None = None
    landmark_note: str = ""
    shard: str = ""         # "K/N" for one --shard of several: only its raw-score part was written
    merged_parts: int = 0   # raw-score parts a merge normalised together

    @property
    def pictures(self) -> int:
        return sum(1 for path in self.written if path.suffix == ".png")

    def line(self) -> str:
        flags = ", ".join(f"{name} {count}" for name, count in sorted(self.flag_counts.items())) or "none"
        if self.shard:
            return (f"step 6, shard {self.shard}: scored {self.scored} images (flags: {flags}) into {self.written[0]}; "
                    "when every shard is done, run python stylegan_and_segmentation/merge_shards.py 6")
        merged = f" (merged {self.merged_parts} shard parts)" if self.merged_parts else ""
        text = (f"step 6: scored {self.scored} images ({self.method}, pose {self.pose_scaling}); flags: {flags}; "
                f"{self.no_face} without a face in crops.csv; wrote all_scores.csv, normalization.json and "
                f"{self.pictures} pictures to {self.out_dir}{merged} in {self.seconds:.1f}s")
        if self.landmarks is not None:
            text += "; " + self.landmarks.line()
        elif self.landmark_note:
            text += f"; note: {self.landmark_note}"
        return text


# --- finding the inputs ------------------------------------------------------------------------

def _stems_with_prefix(folder: Path, prefix: str) -> set[str]:
    stems = set()
    for path in folder.glob(f"{prefix}*.png"):
        if path.name.startswith(VISUALIZATION_PREFIX) or path.name.startswith("."):
            continue
        stems.add(path.name[len(prefix):-len(".png")])
    return stems


def _names_from_crops(input_dir: Path) -> tuple[dict[str, str], set[str], int]:
    """stem -> img_name of crops.csv, stems it says have a face, and how many have none."""
    path = input_dir / PipelinePaths().crops_csv.name
    if not path.is_file():
        return {}, set(), 0
    frame = read_csv_checked(path, ["img_name", "face_found"], dtype=str, keep_default_na=False)
    check_crops_frame(frame, path)
    names = {Path(name).stem: name for name in frame["img_name"]}
    found = frame["face_found"].str.strip() == "1"
    with_face = {Path(name).stem for name in frame.loc[found, "img_name"]}
    return names, with_face, int((~found).sum())


def _input_fingerprints(input_dir: Path) -> dict[str, str]:
    """img_name -> the identity of the image step 5 parsed (crops.csv's ``input_fingerprint``, if any)."""
    path = input_dir / PipelinePaths().crops_csv.name
    if not path.is_file():
        return {}
    frame = read_csv_checked(path, ["img_name"], dtype=str, keep_default_na=False)
    return dict(zip(frame["img_name"], frame[INPUT_COLUMN])) if INPUT_COLUMN in frame.columns else {}


def find_score_inputs(input_dir: Path, images_dir: Path | None = None) -> tuple[list[ScoreItem], int]:
    """Every stem with a map, a crop or a crops.csv face, sorted; and the count of no-face images.

    img_name comes from crops.csv, else from a file of that stem in ``images_dir`` (the filtered
    folder), else stem + ``.jpg`` (step 1's default format) with a warning.
    """
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise ScoreInputError(f"segmentation folder not found: {input_dir} (run step 5 first, or pass "
                              "--segmentation-dir)")
    names, with_face, no_face = _names_from_crops(input_dir)
    stems = (_stems_with_prefix(input_dir, PARSING_PREFIX) | _stems_with_prefix(input_dir, FACE_PREFIX)
             | with_face)
    unnamed = [s for s in stems if s not in names]
    if unnamed and images_dir is not None and Path(images_dir).is_dir():
        for path in list_images(images_dir):
            names.setdefault(path.stem, path.name)
    guessed = [s for s in stems if s not in names]
    if guessed:
        log.warning("%d maps have no crops.csv row or source image; naming them {stem}%s",
                    len(guessed), FALLBACK_SUFFIX)
    items = [
        ScoreItem(stem, names.get(stem, stem + FALLBACK_SUFFIX),
                  input_dir / f"{PARSING_PREFIX}{stem}.png", input_dir / f"{FACE_PREFIX}{stem}.png")
        for stem in stems
    ]
    items.sort(key=lambda item: (item.img_name, item.stem))
    return items, no_face


# --- scoring one item ---------------------------------------------------------------------------

def load_pair(item: ScoreItem) -> tuple[np.ndarray, np.ndarray]:
    """(label map uint8 [224,224], crop uint8 [224,224,3]); ImageReadError for unreadable files."""
    with open_image(item.parsing_path) as image:  # the pixel limit and plain errors of every step
        image.load()
        mode = image.mode
        parsing = np.asarray(image)
    if mode not in ("L", "P", "I", "I;16"):
        raise ImageReadError(f"{item.parsing_path}: a label map must be single-channel, got mode {mode}")
    return parsing, load_rgb(item.face_path)


def score_item(item: ScoreItem, background: bool = False) -> tuple[dict[str, float], list[str]]:
    """Raw scores (plus background ones if asked) and flags; NaN + a flag when files are bad."""
    keys = list(PROPERTY_NAMES) + (list(BACKGROUND_COLUMNS) if background else [])
    expected = ((FLAG_MISSING_MAP, item.parsing_path), (FLAG_MISSING_FACE, item.face_path))
    missing = [flag for flag, path in expected if not path.is_file()]
    if missing:
        log.warning("%s: %s", item.img_name, ", ".join(missing))
        return {k: math.nan for k in keys}, missing
    try:
        parsing, face = load_pair(item)
        scores, flags = raw_scores_with_flags(parsing, face)
        if background:
            scores.update(background_scores(parsing, face))
    except (ImageReadError, ValueError) as exc:
        log.warning("%s: unreadable pair, scored NaN: %s", item.img_name, exc)
        return {k: math.nan for k in keys}, [FLAG_UNREADABLE]
    return scores, flags


# --- pictures -----------------------------------------------------------------------------------

def select_extremes(values: Sequence[float], per_group: int) -> dict[str, list[int]]:
    """Indices of the lowest, middle and highest non-NaN values, each group ordered by value.

    With too few values for three distinct groups, one group ``all`` holds every index in order.
    Ties keep the input order (stable sort), so the sheets are reproducible.
    """
    values = np.asarray(values, dtype=np.float64)
    valid = np.flatnonzero(~np.isnan(values))
    order = valid[np.argsort(values[valid], kind="stable")].tolist()
    n = len(order)
    if n <= 3 * per_group:
        return {"all": order} if order else {}
    start = (n - per_group) // 2
    return {"lowest": order[:per_group], "middle": order[start:start + per_group],
            "highest": order[-per_group:]}


def property_sheet(name: str, groups: dict[str, list[int]], items: Sequence[ScoreItem],
                   normalized: np.ndarray, raw: np.ndarray, per_group: int, thumb: int = 112) -> Image.Image:
    """Contact sheet for one property: for each chosen image its crop, then its parsing overlay."""
    tiles, captions = [], []
    for group, indices in groups.items():
        for rank, i in enumerate(indices):
            parsing, face = load_pair(items[i])
            tiles += [face, overlay(face, parsing)]
            label = group if rank == 0 else ""
            captions += [f"{label} {items[i].stem}".strip(), f"{normalized[i]:.3f} raw {raw[i]:.4g}"]
    title = f"{name}: " + " / ".join(groups) + " (rows; crop then overlay, caption = score)"
    ncols = 2 * (per_group if "all" not in groups else min(per_group, max(1, len(tiles) // 2)))
    return make_contact_sheet(tiles, captions, ncols=ncols, thumb=thumb, title=title)


def histogram_png(raw: Any, normalized: Any) -> bytes:
    """PNG bytes of a (properties x 2) grid of histograms: raw left, normalised right.

    Uses matplotlib's object API on the Agg canvas (no pyplot global state, no display needed);
    metadata without the version stamp keeps the bytes reproducible.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 2.2 * len(PROPERTY_NAMES)), dpi=80)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(PROPERTY_NAMES), 2, squeeze=False)
    for row, name in enumerate(PROPERTY_NAMES):
        for col, (label, values) in enumerate((("raw", raw[name]), ("normalised", normalized[name]))):
            data = np.asarray(values, dtype=np.float64)
            finite = data[~np.isnan(data)]
            ax = axes[row][col]
            if finite.size:
                ax.hist(finite, bins=30, color="#4477aa")
            ax.set_title(f"{name} ({label}), n={finite.size}, NaN={data.size - finite.size}", fontsize=9)
            ax.tick_params(labelsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


# --- the step -----------------------------------------------------------------------------------

Scored = tuple[list[dict[str, float]], list[list[str]]]
"""Raw scores and flags of some items, in item order."""


def _score(items: Sequence[ScoreItem], indices: Sequence[int], background: bool,
           progress: Progress | None) -> Scored:
    rows, flag_lists = [], []
    for done, i in enumerate(indices, 1):
        scores, flags = score_item(items[i], background=background)
        rows.append(scores)
        flag_lists.append(flags)
        if progress is not None:
            progress(done, len(indices))
    return rows, flag_lists


def _write_part(path: Path, items: Sequence[ScoreItem], indices: Sequence[int], scored: Scored) -> Path:
    """One rank's raw scores (JSON keeps every float64 exactly; NaN as null)."""
    rows, flag_lists = scored
    return atomic_write_json(path, {"rows": [
        {"index": i, "img_name": items[i].img_name, "scores": scores, "flags": flags}
        for i, scores, flags in zip(indices, rows, flag_lists)]})


def _read_parts(parts: Sequence[Path], items: Sequence[ScoreItem]) -> Scored:
    """Every rank's raw scores back in item order; a part that does not match the folder is an error."""
    by_index: dict[int, tuple[dict[str, float], list[str]]] = {}
    for part in parts:
        for row in json.loads(part.read_text(encoding="utf-8"))["rows"]:
            i = int(row["index"])
            if i >= len(items) or items[i].img_name != row["img_name"]:
                raise ScoreInputError(f"{part}: row {i} is {row['img_name']!r}, but the segmentation folder lists "
                                      f"{items[i].img_name if i < len(items) else 'fewer images'!r} there; the "
                                      "folder changed since the shards ran: fix: run step 6 again (every shard)")
            scores = {k: math.nan if v is None else float(v) for k, v in row["scores"].items()}
            by_index[i] = (scores, list(row["flags"]))
    missing = [i for i in range(len(items)) if i not in by_index]
    if missing:
        raise ScoreInputError(f"{len(missing)} images (first {items[missing[0]].img_name}) are in no part of "
                              f"{', '.join(p.name for p in parts)}; fix: run step 6 again (every shard, same flags)")
    return [by_index[i][0] for i in range(len(items))], [by_index[i][1] for i in range(len(items))]


def score_properties(config: PropertyScoresConfig, progress: Progress | None = None) -> PropertyScoresSummary:
    """Score, normalise and write what the segmentation judge promises (step 6 without the landmark judge).

    ``progress(done, total)`` counts scored images. Under torchrun (or with ``config.shard``) this
    process scores the maps whose index i satisfies i mod N == rank and writes them to its part
    of ``raw_scores.json``; rank 0 then normalises over all of them (the files one process writes);
    with ``--shard``, :func:`merge_score_shards` does that step later.
    """
    start = time.perf_counter()
    config = config.resolved()
    ctx = init_distributed(config.shard)
    out = Path(config.out)
    refuse_overlap({"--out": out}, {"--segmentation-dir": config.segmentation_dir, "--images": config.images},
                   reserved=image_folders(config.paths))
    inputs = find_score_inputs(config.segmentation_dir, config.images)  # a bad crops.csv: refused before any write
    shard = (ctx.rank, ctx.world_size) if ctx.sharded and not ctx.grouped else None
    with claim_output(out, scores_recipe(config), overwrite=False, owned=lambda _folder: [], shard=shard,
                      writer=ctx.is_main or not ctx.grouped, recompute=True):
        return _score_claimed(config, ctx, out, inputs, progress, start)


def scores_recipe(config: PropertyScoresConfig) -> Recipe:
    """What step 6's tables are made from (it recomputes every score, so this records, never gates):
    the normalisation and columns asked for, and step 5's crops.csv (each row also keeps its image's
    identity, ``input_fingerprint``)."""
    settings = {"method": config.method, "pose_scaling": config.pose_scaling, "background": config.background}
    return Recipe.of("6", settings, {"crops_csv": Path(config.segmentation_dir) / PipelinePaths().crops_csv.name})


def _score_claimed(config: PropertyScoresConfig, ctx, out: Path, inputs: tuple[list[ScoreItem], int],
                   progress: Progress | None, start: float) -> PropertyScoresSummary:
    items, no_face = inputs
    items = items[: config.limit]
    mine = ctx.take(range(len(items)))
    scored = _score(items, mine, config.background, progress if ctx.is_main else None)
    if not ctx.sharded:
        return _finish(config, items, no_face, scored, start)
    part = _write_part(ctx.part_path(out / RAW_PARTS_NAME), items, mine, scored)
    if not ctx.grouped:
        return PropertyScoresSummary(scored=len(mine), no_face=no_face, flag_counts=_flag_counts(scored[1]),
                                     method=config.method, pose_scaling=config.pose_scaling, out_dir=out,
                                     written=(part,), seconds=time.perf_counter() - start,
                                     shard=f"{ctx.rank}/{ctx.world_size}")
    ctx.gather(None)  # every part is written once all ranks got here
    try:
        if not ctx.is_main:
            return PropertyScoresSummary(scored=len(mine), no_face=no_face, flag_counts=_flag_counts(scored[1]),
                                         method=config.method, pose_scaling=config.pose_scaling, out_dir=out,
                                         written=(part,), seconds=time.perf_counter() - start)
        parts = ctx.parts_of(out / RAW_PARTS_NAME)
        summary = _finish(config, items, no_face, _read_parts(parts, items), start)
        for path in parts:
            path.unlink(missing_ok=True)
        return dataclasses.replace(summary, merged_parts=len(parts))
    finally:
        ctx.barrier()  # the other ranks return only once the merged files exist


def merge_score_shards(config: PropertyScoresConfig) -> PropertyScoresSummary:
    """After ``--shard K/N`` runs of step 6 (output folders copied into one): normalise over every
    shard's raw scores and write the files one process writes. Needs every shard's part."""
    start = time.perf_counter()
    config = config.resolved()
    out = Path(config.out)
    items, no_face = find_score_inputs(config.segmentation_dir, config.images)
    items = items[: config.limit]
    parts = complete_parts(out / RAW_PARTS_NAME, "run the missing shards (--shard K/N, same flags) or copy their "
                                                 "output folders in, then merge again")
    if not parts:
        scores_csv = out / config.paths.all_scores_csv.name
        if not scores_csv.is_file():
            raise ScoreInputError(f"no {RAW_PARTS_NAME} parts and no {scores_csv.name} in {out}: nothing to merge "
                                  "(run step 6 with --shard K/N first, or without it for one process)")
        table = read_csv_checked(scores_csv, SCORES_COLUMNS, dtype=str, keep_default_na=False)
        flags = Counter(f for text in table["flags"] for f in text.split(";") if f)
        return PropertyScoresSummary(scored=len(table), no_face=no_face, flag_counts=dict(sorted(flags.items())),
                                     method=config.method, pose_scaling=config.pose_scaling, out_dir=out, written=(),
                                     seconds=time.perf_counter() - start)  # merged before: nothing to do
    with FolderLock(out), merging(out, scores_recipe(config)):  # parts of another recipe: refused first
        summary = _finish(config, items, no_face, _read_parts(parts, items), start)
        for path in parts:
            path.unlink(missing_ok=True)
    return dataclasses.replace(summary, merged_parts=len(parts))


def _flag_counts(flag_lists: Sequence[Sequence[str]]) -> dict[str, int]:
    return dict(sorted(Counter(f for flags in flag_lists for f in flags).items()))


def _finish(config: PropertyScoresConfig, items: Sequence[ScoreItem], no_face: int, scored: Scored,
            start: float) -> PropertyScoresSummary:
    """Normalise over every item and write all_scores.csv, normalization.json and the pictures."""
    import pandas as pd

    rows, flag_lists = scored
    paths, out = config.paths, Path(config.out)
    raw_columns = list(PROPERTY_NAMES) + (list(BACKGROUND_COLUMNS) if config.background else [])
    raw = pd.DataFrame(rows, columns=raw_columns, dtype=np.float64)
    flag_counts = _flag_counts(flag_lists)
    if not raw[list(PROPERTY_NAMES)].notna().to_numpy().any():
        raise ScoreInputError(
            f"no face to score in {config.segmentation_dir}: {len(items)} label maps "
            f"({flag_counts or 'none'} flagged), {no_face} images without a face in crops.csv, and not one "
            "property score; an all-NaN normalization.json would be useless, so nothing was written; fix: check "
            "step 5's output (crops.csv, parsing_visualization_*.png), e.g. re-run step 5 with --crop full if faces "
            "are not detected")
    clean_stale_temp_files(out)
    normalizer = PropertyNormalizer.fit(raw, method=config.method, pose_scaling=config.pose_scaling)
    normalized = normalizer.apply(raw)
    table = pd.DataFrame({"img_name": [item.img_name for item in items]})
    for name in PROPERTY_NAMES:
        table[name] = normalized[name].to_numpy()
    for name in PROPERTY_NAMES:
        table[f"raw_{name}"] = raw[name].to_numpy()
    table["flags"] = [";".join(flags) for flags in flag_lists]
    if config.background:
        for name in BACKGROUND_COLUMNS:
            table[name] = raw[name].to_numpy()
    sources = _input_fingerprints(Path(config.segmentation_dir))
    table[INPUT_COLUMN] = [sources.get(item.img_name, "") for item in items]

    written = [atomic_write_csv(out / paths.all_scores_csv.name, table, columns=SCORES_COLUMNS),
               normalizer.save(out / paths.normalization_json.name)]
    if config.pictures and items:
        written += _write_pictures(config, items, table, raw, normalized)
    return PropertyScoresSummary(scored=len(table), no_face=no_face, flag_counts=flag_counts,
                                 method=config.method, pose_scaling=config.pose_scaling, out_dir=out,
                                 written=tuple(written), seconds=time.perf_counter() - start)


def _write_pictures(config: PropertyScoresConfig, items: Sequence[ScoreItem], table: Any, raw: Any,
                    normalized: Any) -> list[Path]:
    """One contact sheet per property and the histograms; a property with no score loses its old sheet."""
    out = Path(config.out)
    written = []
    for name in PROPERTY_NAMES:
        groups = select_extremes(table[f"raw_{name}"].to_numpy(), config.per_group)
        if not groups:
            log.warning("no %s scores to show: every value is NaN", name)
            (out / f"contact_{name}.png").unlink(missing_ok=True)  # no stale sheet from an older run
            continue
        sheet = property_sheet(name, groups, items, table[name].to_numpy(),
                               table[f"raw_{name}"].to_numpy(), config.per_group)
        written.append(atomic_save_image(out / f"contact_{name}.png", sheet))
    written.append(atomic_write_bytes(out / HISTOGRAMS_NAME, histogram_png(raw, normalized)))
    return written


__all__ = [
    "PropertyScoresConfig",
    "PropertyScoresSummary",
    "ScoreInputError",
    "ScoreItem",
    "find_score_inputs",
    "histogram_png",
    "load_pair",
    "merge_score_shards",
    "property_sheet",
    "score_item",
    "score_properties",
    "select_extremes",
]
