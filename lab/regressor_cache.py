"""The lab's learned property regressor, trained once per world and kept on disk.

Training it is the slowest part of a lab world (minutes on a CPU); the fine-tune and refine benchmarks both
need the same one. The weights are read back with ``weights_only=True``; a cache whose settings differ
from the world's is retrained, never used.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from common.io import atomic_write_text
from lab.control_lab import LabWorld, lab_regressor
from stylegan.property_regressor import PropertyRegressor, RegressorConfig

__all__ = ["cached_lab_regressor"]


def cached_lab_regressor(world: LabWorld, stem: Path) -> tuple[torch.nn.Module, dict[str, Any], float]:
    """:func:`lab.control_lab.lab_regressor`, cached as ``<stem>.pt`` + ``<stem>.json`` (its settings, metrics
    and training seconds)."""
    cfg = world.config
    config = RegressorConfig(input_size=cfg.resolution, width=cfg.regressor_width)
    key = {"world": {k: v for k, v in asdict(cfg).items() if not k.startswith(("finetune", "eval", "refine"))},
           "regressor": asdict(config)}
    weights, meta = Path(f"{stem}.pt"), Path(f"{stem}.json")
    if weights.is_file() and meta.is_file():
        saved = json.loads(meta.read_text())
        if json.loads(json.dumps(key, default=str)) == saved.get("key"):
            model = PropertyRegressor(config)
            model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
            return model.eval().requires_grad_(False), saved["metrics"], float(saved["seconds"])
    model, metrics, seconds = lab_regressor(world)
    weights.parent.mkdir(parents=True, exist_ok=True)
    tmp = weights.with_suffix(".pt.tmp")
    torch.save(model.state_dict(), tmp)
    tmp.replace(weights)
    atomic_write_text(meta, json.dumps({"key": key, "metrics": metrics, "seconds": seconds}, default=str))
    return model, metrics, seconds
