"""Sweeps and expression sheets of the main face: one person, many expressions, every frame regenerable.

A *sweep* moves one property across N values of its trained range (the other requests as in the
view), one row per shown method, each row starting with the unedited base face. An *expression
sheet* is a small grid over eyes x mouth x pose for one method, with hair held (the view's hair
requests, else this face's own hair as the latent directions read it, else the fine-tune's
median), each row again starting with the base face. Both are written as a PNG contact sheet and
a lossless animated WebP whose metadata holds one recipe per frame (``pipeline.studio.pngmeta``),
so ``studio.py --regenerate`` renders any frame again bit for bit. Where the dlib identity judge
is installed each frame carries its embedding distance to the base face (below 0.6: the same
person by dlib's rule).
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from common.contact_sheet import contact_sheet_boxes, make_contact_sheet
from common.paths import PROPERTY_NAMES
from pipeline.studio.frames import FaceFrames
from pipeline.studio.params import ParamError, ViewParams
from pipeline.studio.pngmeta import encode_sheet_png, encode_sheet_webp, make_recipe, make_sheet
from pipeline.studio.render import StudioModels, face_latent

KINDS: tuple[str, ...] = ("sweep", "sheet")
MAX_SWEEP = 13
"""Values per sweep row at most (a row is base + N faces)."""
SHEET_LEVELS: dict[str, tuple[float, ...]] = {"eyes": (0.15, 0.85), "mouth": (0.15, 0.85),
                                              "face_pose": (0.15, 0.5, 0.85)}
"""Where in each trained range the expression sheet samples (fractions from the low end)."""
LABELS = {"base": "base", "directions": "directions", "sefa": "SeFa", "finetuned": "fine-tuned"}
MIN_THUMB_PX = 256
"""Contact-sheet tiles are at least this wide (small generators' frames enlarged by a whole factor)."""
IdentityFn = Callable[[np.ndarray], tuple[np.ndarray, str]]
"""images_u8 [N, H, W, 3] -> (distance of each to images[0], NaN where no face; a one-line note)."""


@dataclass(frozen=True)
class Frame:
    """One face of an export: the single-method view that makes it, which face, and its caption."""

    params: ViewParams
    face: str
    label: str


def _short(name: str, value: float) -> str:
    return f"{name.replace('_', ' ')} {value:.2f}"


def _with(params: ViewParams, method: str, values: Sequence[float | None]) -> ViewParams:
    return replace(params, method=method, values=tuple(values), strip=1)


def sweep_frames(params: ViewParams, ranges: dict[str, tuple[float, float]], prop: str, count: int) -> list[Frame]:
    """Per shown method: the base face, then ``prop`` at ``count`` values across its trained range."""
    if prop not in PROPERTY_NAMES:
        raise ParamError(f"property must be one of {PROPERTY_NAMES}, got {prop[:40]!r}", "property")
    if not 2 <= count <= MAX_SWEEP:
        raise ParamError(f"count must be in 2..{MAX_SWEEP}, got {count}", "count")
    low, high = ranges[prop]
    j = PROPERTY_NAMES.index(prop)
    frames = []
    for method in params.methods:
        frames.append(Frame(_with(params, method, params.values), "base", "base"))
        for value in np.linspace(low, high, count):
            values = list(params.values)
            values[j] = float(value)
            frames.append(Frame(_with(params, method, values), method, f"{LABELS[method]} {_short(prop, value)}"))
    return frames


def held_hair(models: StudioModels, params: ViewParams) -> tuple[float, float]:
    """Hair colour and length to hold across a sheet: the view's requests, else this face's own."""
    j_color, j_length = PROPERTY_NAMES.index("hair_color"), PROPERTY_NAMES.index("hair_length")
    own = None
    reader = models.directions if models.directions is not None else models.sefa
    if reader is not None:
        own = np.asarray(reader.predict(models.w(params.seed).double().cpu().numpy()), dtype=np.float64)[0]
    out = []
    for j in (j_color, j_length):
        low, high = models.ranges[PROPERTY_NAMES[j]]
        value = params.values[j]
        if value is None:
            value = float(own[j]) if own is not None and math.isfinite(own[j]) else float(models.medians[j])
        out.append(float(min(high, max(low, value))))
    return out[0], out[1]


def sheet_frames(models: StudioModels, params: ViewParams) -> list[Frame]:
    """Rows over eyes x mouth, columns the base face then pose; hair held; the view's first method."""
    method = params.methods[0]
    color, length = held_hair(models, params)

    def level(name: str, fraction: float) -> float:
        low, high = models.ranges[name]
        return round(low + fraction * (high - low), 4)

    frames = []
    for eyes in SHEET_LEVELS["eyes"]:
        for mouth in SHEET_LEVELS["mouth"]:
            e, m = level("eyes", eyes), level("mouth", mouth)
            frames.append(Frame(_with(params, method, params.values), "base", "base"))
            for pose in SHEET_LEVELS["face_pose"]:
                p = level("face_pose", pose)
                values = (e, color, length, m, p)
                frames.append(Frame(_with(params, method, values), method,
                                    f"eyes {e:.2f} mouth {m:.2f} pose {p:+.2f}"))
    return frames


@dataclass
class Export:
    """Rendered frames with their recipes, identity distances, and the two files made from them."""

    kind: str
    title: str
    frames: list[Frame]
    images: list[np.ndarray]
    recipes: list[dict[str, Any]]
    columns: int
    distances: list[float | None]
    identity_note: str

    @property
    def digest(self) -> str:
        text = json.dumps(self.recipes, sort_keys=True).encode("utf-8")
        return hashlib.sha256(text).hexdigest()[:8]

    def file_name(self, suffix: str) -> str:
        seed = self.recipes[0]["params"]["seed"]
        return f"studio_seed{seed}_{self.kind}_{self.digest}{suffix}"

    def png(self) -> bytes:
        """The contact sheet: each frame as it is, or enlarged by a whole factor (nearest) to at least
        256 px so its caption fits; the metadata gives each box and the factor, so a reader gets the
        frame's own pixels back."""
        size = self.images[0].shape[0]
        scale = max(1, math.ceil(MIN_THUMB_PX / size))
        tiles = [np.repeat(np.repeat(image, scale, axis=0), scale, axis=1) for image in self.images]
        captions = [f.label for f in self.frames]
        sheet = make_contact_sheet(tiles, captions, ncols=self.columns, thumb=size * scale, title=self.title)
        boxes = contact_sheet_boxes(len(tiles), self.columns, size * scale, captions=True, title=True)
        return encode_sheet_png(sheet, make_sheet(self.title, self.recipes, captions, boxes, scale))

    def webp(self) -> bytes:
        return encode_sheet_webp(self.images, make_sheet(self.title, self.recipes, [f.label for f in self.frames]))

    def summary(self) -> dict[str, Any]:
        return {"kind": self.kind, "title": self.title, "columns": self.columns, "identity_note": self.identity_note,
                "png_name": self.file_name(".png"), "webp_name": self.file_name(".webp"),
                "frames": [{"index": k, "label": f.label, "face": f.face, "seed": f.params.seed,
                            "identity_distance": d} for k, (f, d) in enumerate(zip(self.frames, self.distances))]}


def build_export(models: StudioModels, params: ViewParams, kind: str, frames_engine: FaceFrames, threads: int,
                 prop: str = "eyes", count: int = 5, identity: IdentityFn | None = None,
                 identity_missing: str = "") -> Export:
    """Render an export's frames (each a batch of one) and measure identity where the judge is installed."""
    if kind == "sweep":
        frames = sweep_frames(params, models.ranges, prop, count)
        title = f"seed {params.seed}: sweep of {prop.replace('_', ' ')} (rows: methods; base first)"
        columns = count + 1
    elif kind == "sheet":
        frames = sheet_frames(models, params)
        title = (f"seed {params.seed}: expression sheet, {LABELS[params.methods[0]]} (rows: eyes x mouth; "
                 "base, then pose left to right)")
        columns = 1 + len(SHEET_LEVELS["face_pose"])
    else:
        raise ParamError(f"kind must be one of {KINDS}, got {kind[:40]!r}", "kind")
    images = []
    for frame in frames:
        latent = face_latent(models, frame.face, frame.params.seed, frame.params.targets, frame.params.psi,
                             frame.params.trunc_layers, frame.params.layers)
        images.append(frames_engine.frame(latent.generator, latent.wp))
    recipes = [make_recipe(f.params, f.face, models.identity, models.device, threads) for f in frames]
    distances: list[float | None] = [None] * len(frames)
    note = identity_missing or "identity distance: not offered by this studio"
    if identity is not None:
        values, note = identity(np.stack(images))
        distances = [round(float(v), 4) if math.isfinite(v) else None for v in values]
    return Export(kind, title, frames, images, recipes, columns, distances, note)
