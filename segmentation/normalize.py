"""Normalisation of the raw property scores (pipeline.md, step 6), fitted once and reusable.

Default (the user's spec): min-max over all images per property, NaN ignored and kept, to [0, 1]
for eyes / hair_color / hair_length / mouth and to [-1, 1] for face_pose, rounded to 4 decimals.
A constant property maps to the middle of its range (0.5, or 0 for face_pose) and an all-NaN one
stays NaN, each with a warning. ``pose_scaling="symmetric"`` maps face_pose to raw / max|raw|,
which keeps 0 = frontal (min-max puts 0 at the middle of the *observed* range instead).
``method="zscore"`` is (x - mean) / std with the sample std (ddof=1), as the original's later code.

The fitted values are saved as ``normalization.json`` so images scored later (steps 8-9) land on
the same scale; ``apply`` does not clip values outside the fitted range unless asked.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common.io import atomic_write_text
from common.paths import PROPERTY_NAMES
from common.records import RecordError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
"""Bumped when normalization.json changes meaning; from_json refuses other versions."""

METHODS: tuple[str, ...] = ("minmax", "zscore")
POSE_SCALINGS: tuple[str, ...] = ("minmax", "symmetric")
DECIMALS = 4
POSE_PROPERTY = "face_pose"

_KINDS = ("minmax", "zscore", "symmetric")


def target_range(name: str) -> tuple[float, float]:
    """Output range of min-max scaling: [-1, 1] for face_pose, [0, 1] for the others."""
    return (-1.0, 1.0) if name == POSE_PROPERTY else (0.0, 1.0)


@dataclass(frozen=True)
class PropertyScale:
    """What was fitted for one property.

    kind: ``minmax`` (uses min/max and the target range), ``zscore`` (mean/std) or ``symmetric``
    (max_abs); count: how many non-NaN values were fitted (0 -> the property stays NaN).
    Statistics that could not be computed are None.
    """

    kind: str
    count: int
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    max_abs: float | None = None
    target: tuple[float, float] = (0.0, 1.0)

    @property
    def is_constant(self) -> bool:
        """True when the fitted values carry no spread (every value maps to the range's middle)."""
        if self.count == 0:
            return False
        if self.kind == "minmax":
            return self.max == self.min
        if self.kind == "zscore":
            return self.std is None or self.std == 0.0
        return self.max_abs == 0.0

    @property
    def middle(self) -> float:
        return 0.0 if self.kind != "minmax" else (self.target[0] + self.target[1]) / 2.0

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Scale float64 values (unrounded, unclipped); NaN stays NaN."""
        if self.count == 0:
            return np.full_like(values, np.nan)
        if self.is_constant:
            return np.where(np.isnan(values), np.nan, self.middle)
        if self.kind == "minmax":
            unit = (values - self.min) / (self.max - self.min)
            low, high = self.target
            # spec formula for [-1, 1]: 2 (x - min) / (max - min) - 1; [0, 1] stays as is
            return unit if (low, high) == (0.0, 1.0) else (high - low) * unit + low
        if self.kind == "zscore":
            return (values - self.mean) / self.std
        return values / self.max_abs

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "count": self.count}
        if self.kind == "minmax":
            out.update(min=self.min, max=self.max, target=list(self.target))
        elif self.kind == "zscore":
            out.update(mean=self.mean, std=self.std)
        else:
            out.update(max_abs=self.max_abs)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PropertyScale:
        kind = data.get("kind")
        if kind not in _KINDS:
            raise ValueError(f"unknown scale kind {kind!r}; expected one of {_KINDS}")
        target = tuple(float(v) for v in data.get("target", (0.0, 1.0)))
        if len(target) != 2:
            raise ValueError(f"target must hold [low, high], got {data.get('target')}")
        return cls(
            kind=kind, count=int(data["count"]), min=data.get("min"), max=data.get("max"),
            mean=data.get("mean"), std=data.get("std"), max_abs=data.get("max_abs"), target=target,
        )


def _fit_one(name: str, values: np.ndarray, kind: str) -> PropertyScale:
    finite = values[~np.isnan(values)]
    if np.isinf(finite).any():
        raise ValueError(f"{name}: raw scores must be finite or NaN, got infinity")
    count = int(finite.size)
    if count == 0:
        log.warning("%s is NaN for every image (%d): its normalised score stays NaN", name, values.size)
        return PropertyScale(kind=kind, count=0, target=target_range(name))
    if kind == "minmax":
        scale = PropertyScale(kind, count, min=float(finite.min()), max=float(finite.max()),
                              target=target_range(name))
    elif kind == "zscore":
        std = float(finite.std(ddof=1)) if count > 1 else None
        scale = PropertyScale(kind, count, mean=float(finite.mean()), std=std)
    else:
        scale = PropertyScale(kind, count, max_abs=float(np.abs(finite).max()))
    if scale.is_constant:
        log.warning("%s is constant over %d images (%s): every normalised value is set to %s",
                    name, count, finite[0], scale.middle)
    return scale


def _column(raw: Any, name: str) -> np.ndarray:
    try:
        column = raw[name]
    except (KeyError, IndexError) as exc:
        raise KeyError(f"raw scores lack property {name!r}; expected {list(PROPERTY_NAMES)}") from exc
    return np.asarray(column, dtype=np.float64)


@dataclass(frozen=True)
class PropertyNormalizer:
    """Fitted normalisation for all properties; build with ``PropertyNormalizer.fit``."""

    method: str = "minmax"
    pose_scaling: str = "minmax"
    scales: dict[str, PropertyScale] = field(default_factory=dict)
    properties: tuple[str, ...] = PROPERTY_NAMES
    decimals: int = DECIMALS

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method {self.method!r} is not one of {METHODS}")
        if self.pose_scaling not in POSE_SCALINGS:
            raise ValueError(f"pose_scaling {self.pose_scaling!r} is not one of {POSE_SCALINGS}")
        missing = [p for p in self.properties if p not in self.scales]
        if self.scales and missing:
            raise ValueError(f"no fitted scale for {missing}")

    @classmethod
    def fit(cls, raw: Any, method: str = "minmax", pose_scaling: str = "minmax",
            properties: tuple[str, ...] = PROPERTY_NAMES, decimals: int = DECIMALS) -> PropertyNormalizer:
        """Fit on raw scores: a DataFrame or a mapping property -> values (NaN ignored).

        pose_scaling ``symmetric`` replaces the method for face_pose only (raw / max|raw|).
        """
        if method not in METHODS:
            raise ValueError(f"method {method!r} is not one of {METHODS}")
        if pose_scaling not in POSE_SCALINGS:
            raise ValueError(f"pose_scaling {pose_scaling!r} is not one of {POSE_SCALINGS}")
        scales = {}
        for name in properties:
            kind = "symmetric" if (name == POSE_PROPERTY and pose_scaling == "symmetric") else method
            scales[name] = _fit_one(name, _column(raw, name).reshape(-1), kind)
        return cls(method=method, pose_scaling=pose_scaling, scales=scales,
                   properties=tuple(properties), decimals=decimals)

    def apply(self, raw: Any, clip: bool = False) -> Any:
        """Normalise raw scores with the fitted values, rounded to ``decimals``.

        raw: a DataFrame (-> DataFrame of the property columns, same index), a mapping of arrays
        (-> dict of float64 arrays) or a mapping of scalars, one image (-> dict of floats).
        clip: limit min-max and symmetric results to their target range (z-scores are never
        clipped); off by default so a generated image beyond the fitted range shows as such.
        """
        if not self.scales:
            raise ValueError("PropertyNormalizer has not been fitted; use PropertyNormalizer.fit(raw)")
        out = {}
        for name in self.properties:
            values = _column(raw, name)
            scale = self.scales[name]
            scaled = scale.transform(values)
            if clip and scale.kind != "zscore":
                low, high = scale.target if scale.kind == "minmax" else (-1.0, 1.0)
                scaled = np.clip(scaled, low, high)
            out[name] = np.round(scaled, self.decimals) + 0.0  # + 0.0: no "-0.0" in CSVs
        if hasattr(raw, "columns") and hasattr(raw, "index"):
            import pandas as pd

            return pd.DataFrame(out, index=raw.index)
        if all(np.ndim(raw[name]) == 0 for name in self.properties):
            return {name: float(value) for name, value in out.items()}
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "method": self.method,
            "pose_scaling": self.pose_scaling,
            "decimals": self.decimals,
            "properties": list(self.properties),
            "scales": {name: self.scales[name].to_dict() for name in self.properties},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PropertyNormalizer:
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(
                f"normalization format_version {version!r} is not supported; expected {FORMAT_VERSION}")
        properties = tuple(data["properties"])
        scales = data.get("scales", {})
        missing = [p for p in properties if p not in scales]
        if missing:
            raise ValueError(f"normalization data lacks scales for {missing}")
        return cls(method=data["method"], pose_scaling=data["pose_scaling"],
                   scales={p: PropertyScale.from_dict(scales[p]) for p in properties},
                   properties=properties, decimals=int(data.get("decimals", DECIMALS)))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> PropertyNormalizer:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"normalization JSON is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError("normalization JSON must hold an object")
        try:
            return cls.from_dict(data)
        except KeyError as exc:
            raise ValueError(f"normalization JSON lacks the key {exc}") from exc
        except TypeError as exc:  # e.g. "count": null or "properties": 3 in a hand-edited file
            raise ValueError(f"normalization JSON holds a value of the wrong type ({exc})") from exc

    def save(self, path: Path | str) -> Path:
        """Write normalization.json atomically."""
        return atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: Path | str) -> PropertyNormalizer:
        """A damaged file is the file readers' RecordError (a ValueError and a StepError): one line with the
        fix in every script that loads it (step 9's judge, the studio's Measure), never a traceback."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"normalization file not found: {path} (run step 6 first)")
        try:
            return cls.from_json(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise RecordError(f"{path}: {exc}; fix: re-run step 6, which writes it") from exc
