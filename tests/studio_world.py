"""A tiny studio world for tests: a pipeline root with a 32-px random generator, a fine-tuned
checkpoint in step 7's format whose condition visibly changes the image, and latent directions
fitted (``stylegan.directions.fit_directions``) on synthetic scores that are linear in w; with
``sefa=True`` also step 7a's SeFa directions (``fit_sefa_directions``) named by the same scores.

Not a test module (no ``test_`` prefix); imported by the studio's unit and browser tests.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tiny_models import TINY_G_32

from common.fingerprint import file_fingerprint
from common.io import atomic_torch_save
from common.paths import PROPERTY_NAMES, PipelinePaths
from stylegan import write_random_checkpoint
from stylegan.checkpoint import load_generator
from stylegan.conditional import build_conditional_generator, property_ranges
from stylegan.directions import fit_directions, fit_sefa_directions
from stylegan.property_regressor import PropertyRegressor, RegressorConfig

MEDIANS = {"eyes": 0.4, "hair_color": 0.5, "hair_length": 0.6, "mouth": 0.3, "face_pose": 0.0}


def make_world(root: Path, resolution: int = 32, sefa: bool = False, regressor: bool = False) -> PipelinePaths:
    """Write the generator, normalization.json, one fine-tuned checkpoint and the directions under ``root``.

    ``regressor=True``: the fine-tune checkpoint carries a (random, tiny) learned property regressor, as step 7b's
    do, so the directions+refine method is offered."""
    paths = PipelinePaths(Path(root))
    write_random_checkpoint(paths.stylegan_checkpoint, seed=1, **dict(TINY_G_32, resolution=resolution))
    scales = {p: {"kind": "minmax", "count": 10, "min": 0.0, "max": 100.0,
                  "target": [-1.0, 1.0] if p == "face_pose" else [0.0, 1.0]} for p in PROPERTY_NAMES}
    normalization = {"format_version": 1, "method": "minmax", "pose_scaling": "minmax", "decimals": 4,
                     "properties": list(PROPERTY_NAMES), "scales": scales}
    paths.property_scores_dir.mkdir(parents=True, exist_ok=True)
    paths.normalization_json.write_text(json.dumps(normalization))

    base = load_generator(paths.stylegan_checkpoint)
    generator = build_conditional_generator(base, seed=0)
    with torch.no_grad():  # the new columns start at zero; make the condition matter
        torch.manual_seed(0)
        generator.condition.columns.weight.normal_(0.0, 3.0)
    stats = {p: {"median": m, "min": 0.0, "max": 1.0} for p, m in MEDIANS.items()}
    config = {"format_version": 1, "property_names": list(PROPERTY_NAMES), "generator": generator.cond_config,
              "normalization": normalization, "condition_stats": stats}
    config["property_ranges"] = {k: list(v) for k, v in property_ranges(config).items()}
    state = {k: v.clone() for k, v in generator.state_dict().items()}
    payload = {"format_version": 1, "config": config, "generator": state, "generator_ema": state, "step": 4}
    if regressor:
        settings = {"input_size": 16, "width": 4, "num_outputs": len(PROPERTY_NAMES)}
        torch.manual_seed(1)
        config["regressor"] = settings
        payload["regressor"] = PropertyRegressor(RegressorConfig(**settings)).state_dict()
    atomic_torch_save(paths.finetuned_dir / "checkpoints" / "checkpoint_000004.pt", payload)

    # latent directions fitted on synthetic scores that are linear in w (plus noise), in range
    rng = np.random.default_rng(0)
    with torch.no_grad():
        z = rng.standard_normal((300, base.z_space_dim)).astype(np.float32)
        w = base.mapping(torch.from_numpy(z))["w"]
    w = w.numpy().astype(np.float64)
    raw = (w - w.mean(0)) @ rng.standard_normal((w.shape[1], len(PROPERTY_NAMES)))
    raw += 0.05 * raw.std(0) * rng.standard_normal(raw.shape)
    low = np.array([-1.0 if p == "face_pose" else 0.0 for p in PROPERTY_NAMES])
    scores = low + (1.0 - low) * (raw - raw.min(0)) / np.ptp(raw, axis=0)
    directions = fit_directions(w.astype(np.float32), scores.astype(np.float32), seed=0, method="ridge",
                                generator_fingerprint=file_fingerprint(paths.stylegan_checkpoint),
                                normalization=normalization)
    directions.save(paths.directions_pt)
    if sefa:
        fit_sefa_directions(base, w.astype(np.float32), scores.astype(np.float32),
                            generator_fingerprint=file_fingerprint(paths.stylegan_checkpoint),
                            normalization=normalization).save(paths.sefa_pt)
    return paths
