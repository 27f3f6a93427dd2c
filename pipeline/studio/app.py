"""The studio's routes as plain functions of (path, query) -> :class:`Response`; no HTTP here.

The HTTP mechanics (loopback bind, Host check, CSP, size limits, 4xx on malformed input,
bounded threads, static files) come from the shared local-server module; this class only says
what each route answers, so it is tested without sockets.

Routes (all GET; the view routes take the :class:`ViewParams` query)::

    /api/info      models loaded, slider ranges, defaults, demo flag, notes
    /api/render    the view as one PNG sheet (rows: seeds; columns: base, method(s));
                   409 when a newer view request superseded it while it waited. ``drag=0|1``:
                   1 while a slider moves, which may answer a 64 px preview. Every 200 says
                   ``X-Studio-Frame: exact|preview``; an exact frame has the bits a fresh server
                   sends for the same query, whatever is cached (``pipeline.studio.frames``)
    /api/save      one face (``face=base|directions|finetuned``, ``tile`` of the strip) as a PNG
                   with its recipe chunk; never a preview
    /api/measure   the independent scorers on the seed's faces: measured next to requested
                   (segmentation + step 6 scores, and the dlib landmark judge where installed);
                   runs beside rendering, one at a time (409 while one runs)
    /api/export    a sweep (``kind=sweep&property=P&count=N``) or an expression sheet (``kind=sheet``) of
                   the view's main face: ``format=json`` (frames, labels, identity distances), ``png``
                   (contact sheet) or ``webp`` (lossless animation), recipes by frame in both files;
                   rendered beside the views, one at a time
    /api/stats     the render gate's counters (renders run, dropped, most ever running at once)
"""
from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from typing import Any

import numpy as np
import torch

from common.io import encode_image
from common.paths import PROPERTY_NAMES
from judges import JudgeUnavailable
from pipeline.studio.exports import KINDS, MAX_SWEEP, Export, build_export
from pipeline.studio.frames import DEFAULT_CACHE_MB, EXACT, PREVIEW, PREVIEW_PX, FaceFrames, FrameCache
from pipeline.studio.gate import BackgroundJobs, Busy, NewestWinsGate, PinnedWorker, Superseded
from pipeline.studio.landmarks import JUDGE_NAME, LandmarkReading, no_face_note
from pipeline.studio.params import BOTH, MAX_SEED, MAX_STRIP, METHODS, ParamError, ViewParams, parse_query
from pipeline.studio.pngmeta import FACES, encode_png, make_recipe, saved_name
from pipeline.studio.render import StudioModels, face_latent, layer_choices, render_face, render_view

logger = logging.getLogger(__name__)

BACKGROUND_THREADS = 1
"""Measure and exports run on one thread beside the render worker (on two cores a view keeps one)."""
BACKGROUND_CACHE_MB = 64
MAX_EXPORTS = 4
"""Exports kept after rendering (the page fetches one as JSON, then its PNG and WebP)."""
EXPORT_KEYS = ("kind", "property", "count", "format")

Scorer = Callable[[np.ndarray], np.ndarray]
"""images_u8 [N, H, W, 3] -> normalised scores [N, P] (NaN where a face or a score is missing)."""
LandmarkMeter = Callable[[np.ndarray], LandmarkReading]
"""images_u8 [N, H, W, 3] -> the landmark judge's reading (``pipeline.studio.landmarks``)."""


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, obj: Any, status: int = HTTPStatus.OK) -> Response:
        return cls(status, json.dumps(obj, allow_nan=False).encode("utf-8"), "application/json",
                   {"Cache-Control": "no-store"})

    @classmethod
    def error(cls, status: int, message: str, key: str | None = None) -> Response:
        """``{"error": message}``, plus the query ``key`` at fault when one is."""
        return cls.json({"error": message} if key is None else {"error": message, "key": key}, status)


class StudioApp:
    """Routes of one studio session over loaded :class:`StudioModels`.

    scorer_factory: builds the independent scorer on the first Measure (loading FaceXFormer takes
    seconds and a GB of memory, so a session that never measures never pays); None = no scorer,
    and ``measure_off`` says why (the page then shows no Measure button).
    landmark_factory: builds the second judge (``pipeline.studio.landmarks.StudioLandmarkJudge``)
    on the first Measure; if it raises ``JudgeUnavailable`` Measure shows that reason as a note.
    render_threads: torch threads of the render worker (default: the process's count now).
    Views and saves render on that worker through the gate; Measure and exports on a one-thread
    background worker beside it, so they never hold a view back.
    """

    def __init__(self, models: StudioModels, scorer_factory: Callable[[], Scorer] | None = None,
                 scorer_name: str = "", seed: int = 0,
                 landmark_factory: Callable[[], LandmarkMeter] | None = None,
                 measure_off: str = "", render_threads: int | None = None,
                 cache_mb: int = DEFAULT_CACHE_MB, identity_factory: Callable[[], Any] | None = None) -> None:
        self.models = models
        self.render_worker = PinnedWorker("render", render_threads or torch.get_num_threads())
        self.background_worker = PinnedWorker("background", BACKGROUND_THREADS)
        self.gate = NewestWinsGate(self.render_worker)
        self.background = BackgroundJobs(self.background_worker)
        self.frames = FaceFrames(FrameCache(cache_mb << 20))
        self.background_frames = FaceFrames(FrameCache(BACKGROUND_CACHE_MB << 20))
        self.scorer_factory = scorer_factory
        self.scorer_name = scorer_name
        self.measure_off = measure_off or ("" if scorer_factory else "this studio was started without a scorer")
        self._scorer: Scorer | None = None
        self._scorer_lock = threading.Lock()
        self.landmark_factory = landmark_factory
        self._landmarks: LandmarkMeter | None = None
        self._landmarks_missing = "" if landmark_factory else "landmark judge: not offered by this studio"
        self.identity_factory = identity_factory
        self._identity: Any | None = None
        self._identity_missing = "" if identity_factory else "identity distance: not offered by this studio"
        self._exports: OrderedDict[str, Export] = OrderedDict()
        available = models.available
        both = all(m in available for m in BOTH)  # latent directions beside the fine-tune, where both load
        method = "both" if both else (available[0] if available else "directions")
        self.defaults = ViewParams(method=method, seed=seed)

    def close(self) -> None:
        """End the worker threads (after the jobs they hold)."""
        self.render_worker.close()
        self.background_worker.close()

    # ---- helpers ---------------------------------------------------------------------------------
    def _params(self, query: Mapping[str, Sequence[str]], extra_keys: Sequence[str] = ()) -> ViewParams:
        params = parse_query(query, extra_keys, self.defaults)
        params.check_against(self.models.ranges, self.models.num_layers, self.models.available)
        choices = layer_choices(self.models.num_layers)
        if params.layers not in choices:
            raise ParamError(f"layers={params.layers} does not exist in a {self.models.resolution} px "
                             f"generator; use one of {choices}", "layers")
        return params

    def info(self) -> dict[str, Any]:
        m = self.models
        return {
            "properties": list(PROPERTY_NAMES),
            "ranges": {k: list(v) for k, v in m.ranges.items()},
            "medians": [float(x) for x in m.medians],
            "methods": list(METHODS), "available": list(m.available),
            "layer_choices": list(layer_choices(m.num_layers)),
            "num_layers": m.num_layers, "resolution": m.resolution, "max_strip": MAX_STRIP,
            "max_seed": MAX_SEED,
            "preview_px": PREVIEW_PX if self.frames.can_preview(m.generator) else None,
            "defaults": self.defaults.to_json(), "demo": m.demo, "notes": list(m.notes),
            "models": m.identity, "device": str(m.device), "dtype": "float32",
            "threads": self.render_worker.threads,
            "scorer": self.scorer_name if self.scorer_factory is not None else None,
            "measure": {"offered": self.scorer_factory is not None, "why_not": self.measure_off},
            "max_sweep": MAX_SWEEP, "export_kinds": list(KINDS),
        }

    def stats(self) -> dict[str, Any]:
        return {**self.gate.stats(), "cache": self.frames.cache.stats(), "background": self.background.running()}

    # ---- routes ----------------------------------------------------------------------------------
    def get(self, path: str, query: Mapping[str, Sequence[str]]) -> Response:
        """Answer one API GET; a bad query is a 400 naming the key, an unknown path a 404."""
        try:
            if path == "/api/info":
                return Response.json(self.info())
            if path == "/api/stats":
                return Response.json(self.stats())
            if path == "/api/render":
                return self.render(query)
            if path == "/api/save":
                return self.save(query)
            if path == "/api/measure":
                return self.measure(query)
            if path == "/api/export":
                return self.export(query)
        except ParamError as exc:
            return Response.error(HTTPStatus.BAD_REQUEST, str(exc), exc.key)
        except Busy as exc:
            return Response.error(HTTPStatus.CONFLICT, str(exc))
        return Response.error(HTTPStatus.NOT_FOUND, "not found")

    def render(self, query: Mapping[str, Sequence[str]]) -> Response:
        """The view's sheet; ``drag=1`` (a slider is moving) may answer a preview (``X-Studio-Frame``)."""
        drag = _one_choice(query, "drag", ("0", "1"), "0") == "1"
        params = self._params(query, extra_keys=("drag",))
        received = time.perf_counter()
        kind = PREVIEW if drag else EXACT
        try:
            view = self.gate.run(lambda: render_view(self.models, params, self.frames, kind), droppable=True)
        except Superseded:
            return Response.error(HTTPStatus.CONFLICT, "superseded by a newer view request")
        encode_start = time.perf_counter()
        body = encode_image(view.sheet_u8, "png", png_compress_level=1)
        done = time.perf_counter()
        return Response(HTTPStatus.OK, body, "image/png", {
            "Cache-Control": "no-store",
            "X-Studio-Frame": view.frame,
            "X-Studio-Query": params.to_query(),
            "X-Studio-Layout": json.dumps(view.layout()),
            "X-Studio-Render-Ms": f"{view.render_seconds * 1000:.1f}",
            "X-Studio-Encode-Ms": f"{(done - encode_start) * 1000:.1f}",
            "X-Studio-Server-Ms": f"{(done - received) * 1000:.1f}",
        })

    def save(self, query: Mapping[str, Sequence[str]]) -> Response:
        """One face of the view, exactly as shown, as a PNG whose recipe regenerates it.

        ``face`` (base or a shown method) and ``tile`` (0..strip-1: the face of seed + tile; every
        tile is rendered as a batch of one, so the saved face is the tile's pixels).
        """
        params = self._params(query, extra_keys=("face", "tile", "drag"))
        face = _one_choice(query, "face", FACES, params.methods[0])
        if face != "base" and face not in params.methods:
            raise ParamError(f"face {face!r} is not shown in a {params.method!r} view", "face")
        tile = _one_int(query, "tile", 0, params.strip - 1, 0)
        single = replace(params if face == "base" or params.method == face else params.with_method(face),
                         seed=params.seed + tile, strip=1)
        image = self.gate.run(lambda: render_face(self.models, single, face, self.frames), droppable=False)
        recipe = make_recipe(single, face, self.models.identity, self.models.device, self.render_worker.threads)
        name = saved_name(recipe)
        return Response(HTTPStatus.OK, encode_png(image, recipe), "image/png", {
            "Cache-Control": "no-store", "Content-Disposition": f'attachment; filename="{name}"'})

    def scorer(self) -> Scorer | None:
        with self._scorer_lock:
            if self._scorer is None and self.scorer_factory is not None:
                self._scorer = self.scorer_factory()
            return self._scorer

    def landmark_meter(self) -> LandmarkMeter | None:
        """The landmark judge, built once; None (and the reason kept for the page) when not installed."""
        with self._scorer_lock:
            if self._landmarks is None and not self._landmarks_missing:
                try:
                    self._landmarks = self.landmark_factory()
                except (JudgeUnavailable, ImportError) as exc:
                    self._landmarks_missing = f"landmark judge not available: {exc}"
            return self._landmarks

    def identity_meter(self) -> Callable[[np.ndarray], tuple[np.ndarray, str]] | None:
        """The identity judge's ``identity`` (built once, on the background thread); None when absent."""
        with self._scorer_lock:
            if self._identity is None and not self._identity_missing:
                try:
                    self._identity = self.identity_factory()
                except (JudgeUnavailable, ImportError) as exc:
                    self._identity_missing = f"identity distance needs the optional dlib judge: {exc}"
            return None if self._identity is None else self._identity.identity

    def _measure_landmarks(self, faces: tuple[str, ...], images: np.ndarray) -> dict[str, Any]:
        meter = self.landmark_meter()
        if meter is None:
            return {"judge": JUDGE_NAME, "scale": None, "rows": [], "notes": [self._landmarks_missing]}
        try:
            reading = meter(images)
        except ImportError as exc:  # MTCNN (facenet-pytorch) is imported on first use
            return {"judge": JUDGE_NAME, "scale": None, "rows": [],
                    "notes": [f"landmark judge not available: {exc}"]}
        notes = list(reading.notes)
        missed = no_face_note(faces, reading.values, self.models.demo)
        if missed:
            notes.append(missed)
        return {"judge": JUDGE_NAME, "scale": reading.scale, "notes": notes,
                "rows": [{"face": face, "measured": _json_row(row)} for face, row in zip(faces, reading.values)]}

    def shown_face(self, params: ViewParams, face: str, seed: int | None = None) -> np.ndarray:
        """The exact face the page shows: from the render cache when it is there, else rendered here
        (on the background worker's thread count: a float rounding apart at most)."""
        latent = face_latent(self.models, face, params.seed if seed is None else seed, params.targets,
                             params.psi, params.trunc_layers, params.layers)
        shown = self.frames.cached(latent.generator, latent.wp)
        return shown if shown is not None else self.background_frames.frame(latent.generator, latent.wp)

    def measure(self, query: Mapping[str, Sequence[str]]) -> Response:
        """The independent scorers on the seed's faces, beside rendering (never in the view queue)."""
        params = self._params(query)
        if self.scorer_factory is None:
            return Response.error(HTTPStatus.CONFLICT, f"Measure is not offered: {self.measure_off}")
        start = time.perf_counter()
        faces = ("base",) + params.methods

        def job() -> tuple[np.ndarray, dict[str, Any]]:
            images = np.stack([self.shown_face(params, face) for face in faces])
            scorer = self.scorer()
            return np.asarray(scorer(images), dtype=np.float64), self._measure_landmarks(faces, images)

        measured, landmarks = self.background.run("measure", f"seed {params.seed}", job)
        requested = [None if math.isnan(t) else t for t in params.targets]
        rows = [{"face": face, "measured": _json_row(row)} for face, row in zip(faces, measured)]
        return Response.json({"properties": list(PROPERTY_NAMES), "requested": requested, "rows": rows,
                              "scorer": self.scorer_name, "demo": self.models.demo, "landmarks": landmarks,
                              "query": params.to_query(), "seed": params.seed,
                              "seconds": round(time.perf_counter() - start, 3)})

    def export(self, query: Mapping[str, Sequence[str]]) -> Response:
        """A sweep or expression sheet of the view's main face, as JSON, PNG or WebP (cached: the page asks
        for the JSON, then shows the PNG and links both files without rendering again)."""
        params = replace(self._params(query, extra_keys=EXPORT_KEYS), strip=1)
        kind = _one_choice(query, "kind", KINDS, "sweep")
        prop = _one_choice(query, "property", PROPERTY_NAMES, "eyes")
        count = _one_int(query, "count", 2, MAX_SWEEP, 5)
        fmt = _one_choice(query, "format", ("json", "png", "webp"), "json")
        key = json.dumps([params.to_query(), kind, prop if kind == "sweep" else "", count if kind == "sweep" else 0])
        made = self._exports.get(key)
        if made is None:
            def job() -> Export:
                meter = self.identity_meter()
                return build_export(self.models, params, kind, self.background_frames, self.background_worker.threads,
                                    prop, count, meter, self._identity_missing)

            made = self.background.run("export", f"{kind} of seed {params.seed}", job)
            self._exports[key] = made
            while len(self._exports) > MAX_EXPORTS:
                self._exports.popitem(last=False)
        if fmt == "json":
            return Response.json(made.summary())
        body = made.png() if fmt == "png" else made.webp()
        return Response(HTTPStatus.OK, body, f"image/{fmt}", {
            "Cache-Control": "no-store", "Content-Disposition": f'attachment; filename="{made.file_name("." + fmt)}"'})


def _one(query: Mapping[str, Sequence[str]], key: str) -> str | None:
    values = query.get(key, [])
    if len(values) > 1:
        raise ParamError(f"query key {key!r} given {len(values)} times; give it once", key)
    return values[0] if values else None


def _one_choice(query: Mapping[str, Sequence[str]], key: str, choices: Sequence[str], default: str) -> str:
    """An extra key with a fixed set of values (``drag``, ``face``); anything else is a 400 naming the key."""
    text = _one(query, key)
    if text is None:
        return default
    if text not in choices:
        raise ParamError(f"{key} must be one of {'|'.join(choices)}, got {text[:40]!r}", key)
    return text


def _one_int(query: Mapping[str, Sequence[str]], key: str, low: int, high: int, default: int) -> int:
    text = _one(query, key)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ParamError(f"{key} must be an integer in {low}..{high}, got {text[:40]!r}", key) from None
    if not low <= value <= high:
        raise ParamError(f"{key} must be in {low}..{high}, got {value}", key)
    return value


def _json_row(row: np.ndarray) -> list[float | None]:
    """Measured values for JSON: rounded to 4 places, None where not measured (NaN)."""
    return [round(float(v), 4) if math.isfinite(v) else None for v in row]
