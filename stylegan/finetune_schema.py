"""What step 7 writes, in one place: the run folder's file names, the log's columns, and the run's settings.

Steps 8-9, the studio and the control lab read a fine-tune through these names only, so a renamed file
or a new setting is changed here once. The settings travel inside every checkpoint as a plain dict
(``weights_only`` loading needs plain containers); :class:`FinetuneSettings` is its typed view, and
``from_dict`` accepts what older checkpoints stored (missing keys take their defaults).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common.paths import PROPERTY_NAMES

__all__ = [
    "FINETUNE_FORMAT_VERSION", "TRAIN_LOG_COLUMNS", "LOSS_COLUMNS", "FinetuneRunFiles", "find_latest_checkpoint", "checkpoints_in",
    "FinetuneSettings", "property_ranges", "DEFAULT_MEDIANS",
]

FINETUNE_FORMAT_VERSION = 1
"""The checkpoint format step 7 writes (``format_version`` of every checkpoint)."""

TRAIN_LOG_COLUMNS: tuple[str, ...] = (
    "step", "loss_d", "loss_d_real", "loss_d_fake", "r1", "loss_g", "loss_g_adv", "loss_prop",
    "d_real", "d_fake", "seconds",
)
"""train_log.csv, in this order; one row per training step."""
LOSS_COLUMNS: tuple[str, ...] = TRAIN_LOG_COLUMNS[1:-1]

DEFAULT_MEDIANS: dict[str, float] = {p: 0.0 if p == "face_pose" else 0.5 for p in PROPERTY_NAMES}
"""The hold value of an unrequested property when a run recorded no training statistics."""

_CHECKPOINT_RE = re.compile(r"checkpoint_(\d+)\.pt")


@dataclass(frozen=True)
class FinetuneRunFiles:
    """The files of one fine-tune run folder (``stylegan/finetuned`` by default, or ``--out``)."""

    folder: Path

    @property
    def checkpoints_dir(self) -> Path:
        return self.folder / "checkpoints"

    @property
    def samples_dir(self) -> Path:
        return self.folder / "samples"

    @property
    def train_log_csv(self) -> Path:
        return self.folder / "train_log.csv"

    @property
    def settings_json(self) -> Path:
        """The run's settings (the checkpoint's ``config``) as JSON, for people."""
        return self.folder / "finetune_config.json"

    @property
    def regressor_json(self) -> Path:
        return self.folder / "property_regressor_metrics.json"

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints_dir / f"checkpoint_{step:06d}.pt"

    def sample(self, step: int) -> Path:
        return self.samples_dir / f"step_{step:06d}.png"

    def checkpoints(self) -> list[Path]:
        """Every checkpoint_NNNNNN.pt of the run, oldest step first."""
        if not self.checkpoints_dir.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.checkpoints_dir.iterdir()
                 if (m := _CHECKPOINT_RE.fullmatch(p.name))]
        return [p for _, p in sorted(found)]


def checkpoints_in(folder: Path | str) -> list[Path]:
    """Every checkpoint_NNNNNN.pt in ``folder`` or its checkpoints/ subfolder, oldest step first."""
    folder = Path(folder)
    candidates = []
    for sub in (folder, FinetuneRunFiles(folder).checkpoints_dir):
        if sub.is_dir():
            candidates += [(int(m.group(1)), p) for p in sub.iterdir() if (m := _CHECKPOINT_RE.fullmatch(p.name))]
    return [p for _, p in sorted(candidates)]


def find_latest_checkpoint(folder: Path | str) -> Path | None:
    """The checkpoint_NNNNNN.pt with the highest step in ``folder`` or its checkpoints/ subfolder."""
    found = checkpoints_in(folder)
    return found[-1] if found else None


def property_ranges(config: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    """Sweep range per property: the normalised range from normalization.json (min-max target,
    [-1, 1] for symmetric pose), else the observed range of the training conditions (z-score).

    ``config`` holds any of ``normalization``, ``condition_stats``, ``property_names`` (a run's
    settings as a dict, or just ``{"normalization": ...}``).
    """
    scales = (config.get("normalization") or {}).get("scales", {})
    stats = config.get("condition_stats") or {}
    ranges: dict[str, tuple[float, float]] = {}
    for name in config.get("property_names") or PROPERTY_NAMES:
        scale = scales.get(name, {})
        if scale.get("kind") == "minmax" and scale.get("target"):
            low, high = scale["target"]
        elif scale.get("kind") == "symmetric":
            low, high = -1.0, 1.0
        elif name in stats:
            low, high = stats[name]["min"], stats[name]["max"]
        else:
            low, high = (-1.0, 1.0) if name == "face_pose" else (0.0, 1.0)
        ranges[name] = (float(low), float(high))
    return ranges


def _optional_dict(data: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    value = data.get(key)
    if value is not None and not isinstance(value, Mapping):
        raise ValueError(f"config[{key!r}] must be a dict, got {type(value).__name__}")
    return dict(value) if value is not None else None


@dataclass(frozen=True)
class FinetuneSettings:
    """A fine-tune run's settings, as stored in each of its checkpoints (``config``) and finetune_config.json.

    ``generator``/``discriminator``: the conditional modules' constructor settings; ``training``: the
    trainer's ``FinetuneConfig`` as a dict (``finetune`` in the file); ``condition_stats``: per property
    min/max/median/mean/std of the training conditions; ``normalization``: step 6's normalization.json.
    """

    generator: dict[str, Any] = field(default_factory=dict)
    discriminator: dict[str, Any] | None = None
    property_names: tuple[str, ...] = PROPERTY_NAMES
    normalization: dict[str, Any] | None = None
    condition_stats: dict[str, dict[str, float]] = field(default_factory=dict)
    training: dict[str, Any] | None = None
    embed_dim: int | None = None
    base_checkpoint: str | None = None
    base_entry: str | None = None
    num_train_images: int | None = None
    regressor: dict[str, Any] | None = None
    regressor_metrics: dict[str, Any] | None = None
    world_size: int = 1
    format_version: int = FINETUNE_FORMAT_VERSION
    recipe: dict[str, Any] | None = None  # the run folder's recipe (common.recipe) it was trained under
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FinetuneSettings:
        """The typed view of a checkpoint's ``config``; keys an older run did not write take their defaults.

        Raises ValueError for a value of the wrong kind (callers turn it into their one-line error).
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"config must be a dict, got {type(data).__name__}")
        names = data.get("property_names") or PROPERTY_NAMES
        if isinstance(names, (str, bytes)) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"config['property_names'] must be a list of names, got {names!r}")
        stats = _optional_dict(data, "condition_stats") or {}
        num = data.get("num_train_images")
        return cls(
            generator=_optional_dict(data, "generator") or {}, discriminator=_optional_dict(data, "discriminator"),
            property_names=tuple(names), normalization=_optional_dict(data, "normalization"),
            condition_stats={k: dict(v) for k, v in stats.items() if isinstance(v, Mapping)},
            training=_optional_dict(data, "finetune"), embed_dim=data.get("embed_dim"),
            base_checkpoint=data.get("base_checkpoint"), base_entry=data.get("base_entry"),
            num_train_images=int(num) if num is not None else None, regressor=_optional_dict(data, "regressor"),
            regressor_metrics=_optional_dict(data, "regressor_metrics"), world_size=int(data.get("world_size", 1)),
            format_version=int(data.get("format_version", FINETUNE_FORMAT_VERSION)),
            recipe=_optional_dict(data, "recipe"))

    def to_dict(self) -> dict[str, Any]:
        """Plain containers only (``torch.load(weights_only=True)`` and JSON read it back)."""
        out = {
            "format_version": self.format_version, "property_names": list(self.property_names),
            "generator": self.generator, "discriminator": self.discriminator, "embed_dim": self.embed_dim,
            "normalization": self.normalization, "condition_stats": self.condition_stats, "finetune": self.training,
            "base_checkpoint": self.base_checkpoint, "base_entry": self.base_entry,
            "num_train_images": self.num_train_images, "world_size": self.world_size,
            "property_ranges": {k: list(v) for k, v in self.ranges.items()},
            "regressor": self.regressor, "regressor_metrics": self.regressor_metrics,
        }
        if self.recipe is not None:  # an older checkpoint (no recipe) reads back as it was written
            out["recipe"] = self.recipe
        return out

    @property
    def ranges(self) -> dict[str, tuple[float, float]]:
        """Sweep range per property (see :func:`property_ranges`)."""
        return property_ranges({"normalization": self.normalization, "condition_stats": self.condition_stats,
                                "property_names": self.property_names})

    @property
    def medians(self) -> dict[str, float]:
        """Training median per property (where unrequested properties are held); DEFAULT_MEDIANS if unknown."""
        return {p: float(self.condition_stats.get(p, {}).get("median", DEFAULT_MEDIANS.get(p, 0.5)))
                for p in PROPERTY_NAMES}

    def median_vector(self) -> np.ndarray:
        """float32 [P] medians in PROPERTY_NAMES order (the condition vector's order)."""
        medians = self.medians
        return np.array([medians[p] for p in PROPERTY_NAMES], dtype=np.float32)

    @classmethod
    def of(cls, generator: Any) -> FinetuneSettings:
        """The settings a loaded conditional generator carries (``load_conditional_generator`` sets them)."""
        settings = getattr(generator, "finetune_settings", None)
        if isinstance(settings, FinetuneSettings):
            return settings
        legacy = getattr(generator, "finetune_config", None)  # a plain dict set by code written before this type
        if isinstance(legacy, Mapping):
            return cls.from_dict(legacy)
        raise ValueError("this generator carries no fine-tune settings (load it with load_conditional_generator)")
