"""A tiny pipeline root for the provenance tests: a 16 px generator, step 6's files, a directions file.

Everything is made in seconds (no training): the directions are fitted on synthetic scores of the
generator's own w codes, so steps 8 and 9 can run the ``directions`` route.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tiny_models import TINY_G_16

from common.fingerprint import file_fingerprint
from common.paths import PROPERTY_NAMES, PipelinePaths
from stylegan.checkpoint import load_generator, write_random_checkpoint
from stylegan.directions import fit_directions

NORMALIZATION = {"format_version": 1, "method": "minmax", "pose_scaling": "minmax", "decimals": 4,
                 "properties": list(PROPERTY_NAMES),
                 "scales": {p: {"kind": "minmax", "count": 12, "min": 0.0, "max": 100.0,
                                "target": [-1.0, 1.0] if p == "face_pose" else [0.0, 1.0]} for p in PROPERTY_NAMES}}


def write_directions(paths: PipelinePaths, seed: int = 0, target: Path | None = None) -> Path:
    """A directions file fitted for the root's generator on synthetic linear scores (``seed`` picks them)."""
    generator = load_generator(paths.stylegan_checkpoint)
    with torch.no_grad():
        w = generator.mapping(torch.randn(64, 16, generator=torch.Generator().manual_seed(3)))["w"].numpy()
    rng = np.random.default_rng(seed)
    scores = 0.5 + 0.1 * (w @ rng.standard_normal((16, 5))) / np.sqrt(16) / w.std()
    directions = fit_directions(w, scores, method="ridge", generator_fingerprint=file_fingerprint(
        paths.stylegan_checkpoint), normalization=NORMALIZATION)
    target = target or paths.directions_pt
    directions.save(target)
    return target


def directions_root(root: Path) -> PipelinePaths:
    """A root with a tiny generator, normalization.json and a directions file (steps 8 and 9, directions)."""
    paths = PipelinePaths(root)
    write_random_checkpoint(paths.stylegan_checkpoint, seed=0, **TINY_G_16)
    paths.property_scores_dir.mkdir(parents=True, exist_ok=True)
    paths.normalization_json.write_text(json.dumps(NORMALIZATION))
    write_directions(paths)
    return paths


def scores_frame(names: list[str], seed: int = 0) -> pd.DataFrame:
    """An all_scores.csv frame for ``names`` (normalised scores, raw scores, no flags)."""
    rng = np.random.default_rng(seed)
    rows = []
    for name in names:
        raw = rng.uniform(0, 100, size=5)
        norm = raw / 100.0
        norm[4] = norm[4] * 2 - 1
        rows.append([name, *np.round(norm, 4), *raw, ""])
    return pd.DataFrame(rows, columns=["img_name", *PROPERTY_NAMES, *(f"raw_{p}" for p in PROPERTY_NAMES), "flags"])


def latent_world(root: Path, num: int = 24) -> PipelinePaths:
    """Steps 1, 4 and 6 of a tiny run for step 7a: images + w.npy, every image kept, planted scores."""
    import shutil

    from stylegan.generate import GenerateConfig, run_generate

    paths = PipelinePaths(root)
    write_random_checkpoint(paths.stylegan_checkpoint, seed=0, **TINY_G_16)
    run_generate(GenerateConfig(root=root, num=num, batch_size=num, image_format="png", device="cpu"))
    names = [f"{i:06d}.png" for i in range(num)]
    paths.filtered_dir.mkdir(parents=True)
    for name in names:
        shutil.copy(paths.generated_dir / name, paths.filtered_dir / name)
    paths.property_scores_dir.mkdir(parents=True)
    scores_frame(names).to_csv(paths.all_scores_csv, index=False)
    paths.normalization_json.write_text(json.dumps(NORMALIZATION))
    paths.quality_gender_csv.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"img_name": names, "gender_score": np.linspace(0.2, 0.9, num), "quality_score": 1.0,
                  "source": "cnn"}).to_csv(paths.quality_gender_csv, index=False)
    return paths
