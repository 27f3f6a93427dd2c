"""Identity kept or lost: dlib face-embedding distance between an unedited and an edited face.

The original project's first fine-tune failed partly because changing a property changed the
person. dlib's embedding puts two photos of one person below 0.6 apart (its documented rule, 99.38%
on LFW), so the share of pairs above 0.6 is the share of edits that made "someone else".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAME_PERSON_THRESHOLD = 0.6


def identity_distances(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Euclidean distance per row of two [N, 128] embedding arrays (NaN rows stay NaN)."""
    before, after = np.asarray(before, dtype=np.float64), np.asarray(after, dtype=np.float64)
    if before.shape != after.shape or before.ndim != 2:
        raise ValueError(f"expected two [N, D] arrays of one shape, got {before.shape} and {after.shape}")
    return np.linalg.norm(before - after, axis=1)


@dataclass(frozen=True)
class IdentitySummary:
    """Over the pairs where both faces were found: mean and median distance, share above 0.6."""

    count: int
    mean: float
    median: float
    share_changed: float
    threshold: float = SAME_PERSON_THRESHOLD

    def line(self) -> str:
        return (
            f"identity distance mean {self.mean:.3f}, median {self.median:.3f}, "
            f"{100 * self.share_changed:.0f}% above {self.threshold} over {self.count} pairs"
        )


def summarize_identity(distances: np.ndarray, threshold: float = SAME_PERSON_THRESHOLD) -> IdentitySummary:
    values = np.asarray(distances, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return IdentitySummary(0, float("nan"), float("nan"), float("nan"), threshold)
    return IdentitySummary(
        int(values.size),
        float(values.mean()),
        float(np.median(values)),
        float((values > threshold).mean()),
        threshold,
    )
