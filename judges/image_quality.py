"""What fine-tuning or a latent edit costs in image quality: FID and KID against step 4's filtered set.

The distances are torchmetrics' (``FrechetInceptionDistance``, ``KernelInceptionDistance``); we
only extract the features once per set (batched, on the device) and hand them over, so FID and KID
share one pass. Both sets are cut to the same size first (FID is biased by the sample count, so
figures compare only at equal counts). The feature extractor is passed in: the Inception-v3 that
FID is defined with, loaded from a file on disk (:func:`load_inception_extractor`, never a
download), or :class:`TinyFeatureExtractor` for tests and the demo.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from common.checkpoints import (
    CheckpointError,
    CheckpointInfo,
    check_finite_tensors,
    read_checkpoint,
    require_file,
)
from common.fingerprint import sha256_of_file

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + INCEPTION_FILE
INCEPTION_SHA256_PREFIX = "6726825d"
"""torch.hub names a file after the first 8 hex digits of its sha256; the full digest is printed by
``download_models.py`` when the file is fetched."""

INCEPTION = CheckpointInfo(
    name="Inception-v3 for FID/KID (torch-fidelity's port of the TensorFlow FID network)",
    contract_path=f"judges/models/{INCEPTION_FILE}",  # PipelinePaths.inception_weights
    what="the state_dict torch-fidelity and torchmetrics use for FID/KID (2015-12-05 TF graph, 2048-d pool3)",
    how_to_get=f"python download_models.py (fetches {INCEPTION_URL}), or download it by hand to this path",
    approx_size="92 MB",
)


class TinyFeatureExtractor(nn.Module):
    """A fixed, weight-free stand-in for Inception: per-channel means over a 4x4 grid, per-channel
    spread and edge energy (54 features of uint8 [N, 3, H, W] images). For tests and the demo only:
    distances from it are not comparable with published FID figures."""

    num_features = 54

    def forward(self, images_u8: torch.Tensor) -> torch.Tensor:
        x = images_u8.to(torch.float64) / 255.0
        grid = nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)  # 48
        spread = x.flatten(2).std(dim=2)  # 3
        edges = (x[..., 1:, :] - x[..., :-1, :]).abs().mean(dim=(2, 3)) + (
            x[..., :, 1:] - x[..., :, :-1]
        ).abs().mean(dim=(2, 3))  # 3
        return torch.cat([grid, spread, edges], dim=1)


def load_inception_extractor(path: Path | str, device: str | torch.device = "cpu") -> nn.Module:
    """The FID Inception-v3 from ``path``: checked (sha256 prefix, safe ``weights_only`` load) before use.

    Raises CheckpointError (missing, wrong file, torchmetrics/torch-fidelity not installed).
    """
    path = require_file(path, INCEPTION)
    digest = sha256_of_file(path)
    if not digest.startswith(INCEPTION_SHA256_PREFIX):
        raise CheckpointError(
            f"{path} is not the FID Inception file: sha256 {digest} does not start with "
            f"{INCEPTION_SHA256_PREFIX}\n{INCEPTION.describe()}"
        )
    # proves the file holds plain tensors only, so the library's own load below runs no code
    weights = read_checkpoint(path, INCEPTION, kind="FID Inception file")
    if isinstance(weights, dict):
        check_finite_tensors(weights, path, INCEPTION.how_to_get)
    try:
        from torchmetrics.image.fid import NoTrainInceptionV3
    except ImportError as exc:
        raise CheckpointError(f"FID needs torchmetrics and torch-fidelity (requirements.txt): {exc}") from exc
    model = NoTrainInceptionV3(
        name="inception-v3-compat", features_list=["2048"], feature_extractor_weights_path=str(path)
    )
    model.num_features = 2048
    return model.to(device).eval()


class _Precomputed(nn.Module):
    """Hands features extracted once to torchmetrics (its metrics call ``feature(x)`` on what we pass)."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


@dataclass(frozen=True)
class QualityResult:
    """FID, KID (mean, std over ``kid_subsets`` subsets of ``kid_subset_size``), ``count`` images a side."""

    fid: float
    kid_mean: float
    kid_std: float
    count: int
    kid_subsets: int
    kid_subset_size: int

    def line(self) -> str:
        return (
            f"FID {self.fid:.2f}, KID {1000 * self.kid_mean:.2f} +- {1000 * self.kid_std:.2f} (x1e-3) "
            f"at {self.count} images a side"
        )


def equal_count_subsample(
    first: np.ndarray, second: np.ndarray, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays cut to the smaller length by a seeded random choice without replacement."""
    n = min(len(first), len(second))
    rng = np.random.default_rng(seed)
    pick = [
        np.sort(rng.choice(len(a), size=n, replace=False)) if len(a) > n else np.arange(n)
        for a in (first, second)
    ]
    return first[pick[0]], second[pick[1]]


def extract_features(
    images_u8: np.ndarray,
    extractor: nn.Module,
    device: str | torch.device = "cpu",
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """[N, H, W, 3] uint8 -> [N, D] float64 features, batched on ``device``."""
    images_u8 = np.asarray(images_u8)
    if images_u8.ndim != 4 or images_u8.shape[-1] != 3 or images_u8.dtype != np.uint8:
        raise ValueError(
            f"expected [N, H, W, 3] uint8 images, got shape {images_u8.shape} dtype {images_u8.dtype}"
        )
    parts = []
    with torch.inference_mode():
        for start in range(0, len(images_u8), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(images_u8[start : start + batch_size])).permute(
                0, 3, 1, 2
            )
            parts.append(extractor(batch.to(device)).to("cpu", torch.float64).reshape(len(batch), -1))
            if progress is not None:
                progress(len(batch))
    return (
        torch.cat(parts)
        if parts
        else torch.zeros(0, getattr(extractor, "num_features", 0), dtype=torch.float64)
    )


def distances_from_features(
    reference: torch.Tensor,
    samples: torch.Tensor,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 0,
) -> QualityResult:
    """FID and KID of two equal-size feature sets, with torchmetrics' implementations."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    if len(reference) != len(samples):
        raise ValueError(f"FID/KID compare equal counts; got {len(reference)} and {len(samples)}")
    count = len(reference)
    if count < 2:
        raise ValueError(f"FID/KID need at least 2 images a side, got {count}")
    dim = reference.shape[1]
    subset_size = min(kid_subset_size, max(2, count // 2))  # a subset of all images would give std 0
    fid = FrechetInceptionDistance(feature=_Precomputed(dim))
    with warnings.catch_warnings():  # "KID keeps all features in memory": yes, [N, D] floats, by design
        warnings.simplefilter("ignore", UserWarning)
        kid = KernelInceptionDistance(feature=_Precomputed(dim), subsets=kid_subsets, subset_size=subset_size)
    for metric in (fid, kid):
        metric.update(reference, real=True)
        metric.update(samples, real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # KID's random subsets
        kid_mean, kid_std = kid.compute()
    fid_value = float(fid.compute())
    return QualityResult(
        fid=max(fid_value, 0.0) if math.isfinite(fid_value) else fid_value,
        kid_mean=float(kid_mean),
        kid_std=float(kid_std),
        count=count,
        kid_subsets=kid_subsets,
        kid_subset_size=subset_size,
    )


def measure_image_quality(
    reference_u8: np.ndarray,
    samples_u8: np.ndarray,
    extractor: nn.Module,
    device: str | torch.device = "cpu",
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 0,
    batch_size: int = 32,
) -> QualityResult:
    """FID/KID of ``samples_u8`` against ``reference_u8`` ([N, H, W, 3] uint8 each), at equal counts."""
    reference_u8, samples_u8 = equal_count_subsample(np.asarray(reference_u8), np.asarray(samples_u8), seed)
    ref = extract_features(reference_u8, extractor, device, batch_size)
    gen = extract_features(samples_u8, extractor, device, batch_size)
    return distances_from_features(ref, gen, kid_subsets, kid_subset_size, seed)
