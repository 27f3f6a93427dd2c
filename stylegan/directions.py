"""Latent directions in w space: training-free control of the five properties (step 7's second route).

Each property p gets a unit direction ``n_p`` in w space and a one-dimensional calibration
``value = a_p + b_p * (w . n_p)`` fitted by least squares on every scored sample, so a requested
*value* (on step 6's scale) becomes a distance to move: a direction alone does not say how far to go.

Three ways to find ``n_p`` (the first two fitted with scikit-learn in float64):

* ``ridge``: ridge regression of the score on w over all scored samples (``RidgeCV`` picks the
  penalty by leave-one-out error);
* ``svm``: InterFaceGAN's recipe (genforce/interfacegan ``train_boundary``): a linear SVM
  (``SVC(kernel="linear")``) separating the highest-scored from the lowest-scored samples; the
  boundary's unit normal is the direction. Unlike InterFaceGAN we use every chosen extreme for
  fitting (it holds 30% out only to log an accuracy) and we calibrate the step;
* SeFa (:func:`fit_sefa_directions`): label-free, the top eigen-directions of the generator's stacked
  style-modulation weights, each property taking the one its scores correlate with best.

``method="auto"`` and every default follow :func:`default_settings` (chosen on the control lab's family
of worlds), never the held-out prediction r.

``edit`` moves w by the smallest change (Euclidean, or in w's own covariance metric when
``metric="whitened"``) whose calibrated predictions equal the requested values. Unrequested
properties are either left free (``hold=False``) or held at their current values (``hold=True``:
a joint solve, the many-property form of InterFaceGAN's conditional manipulation, which projects
out at most two other boundaries). The cap keeps w inside its distribution without refusing what
the data showed: no calibrated prediction may leave the fitted samples' mean +- ``cap`` standard
deviations widened to the range of scores seen in fitting (InterFaceGAN edits within +-3 boundary
distances), and a request beyond that range may not move w further than ``2 * cap`` standard
deviations along its own direction; a request inside the range is always met, one beyond a limit is
met as far as allowed and reported as not reached, and a free property pushed past its bound is
pinned there (format 2; a format-1 file keeps its narrower rule, see ``EDIT_RULE``). Guards (step 4's
gender_score) are extra linear quantities every edit holds (:meth:`LatentDirections.with_guards`).

Layer ranges (coarse / middle / fine synthesis layers) are applied when rendering
(:func:`mix_layers`, :func:`render_edit`): ``edit`` always returns plain w codes.

:func:`select_by_control` chooses per property between methods (and layer ranges) by the control
that edits achieve on held-out latents, given a render callable and a scorer callable, so this
module imports nothing of the segmentation package.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common import stats
from common.checkpoints import CheckpointError, check_finite_tensors, check_state_dict_fits, read_checkpoint
from common.fingerprint import file_fingerprint
from common.io import atomic_torch_save
from common.paths import PROPERTY_NAMES
from common.steps import StepError
from stylegan.control_measures import sweep_measures
from stylegan.networks import postprocess_uint8
from stylegan.sweeps import sweep_targets

logger = logging.getLogger(__name__)

__all__ = [
    "LatentDirections", "fit_directions", "load_directions", "DirectionsMismatchError", "METHODS_ALLOWED",
    "METRICS_ALLOWED", "LAYER_RANGES", "layer_mask", "mix_layers", "render_edit", "select_by_control",
    "SelectionResult", "default_svm_count", "DEFAULT_METHOD", "DEFAULT_HOLD", "DEFAULT_METRIC", "DEFAULT_CAP",
    "make_renderer",
    "available_layer_ranges", "combine_directions", "default_settings", "DefaultSettings", "directions_from_normals",
    "fit_sefa_directions", "sefa_weight", "SEFA", "SEFA_COMPONENTS", "require_w_dim",
]

METHODS_ALLOWED: tuple[str, ...] = ("auto", "ridge", "svm")
"""``auto`` takes :func:`default_settings`' method for the data's shape (never the held-out prediction r)."""
METRICS_ALLOWED: tuple[str, ...] = ("euclidean", "whitened")
LAYER_RANGES: tuple[str, ...] = ("all", "coarse", "middle", "fine")
FORMAT = "latent_directions"
FORMAT_VERSION = 2
"""2: the cap never clips a value inside the scores seen in fitting, and the step limit only shortens edits
whose request lies outside them (``edit_rule`` 2). A version-1 file loads with its own settings and rule."""
EDIT_RULE = 2
"""How the cap acts (stored per file, so an older file edits as it did when it was fitted): 1 = bounds of mean
+- cap sd of the *predicted* values and a step limit on every edit (format 1); 2 = those bounds widened to
the range of scores seen in fitting, and the step limit only where a request lies outside that range."""
DEFAULT_METHOD = "ridge"
DEFAULT_HOLD = True
DEFAULT_METRIC = "euclidean"
DEFAULT_CAP = 3.0
"""The defaults (see :func:`default_settings` for the rule that chose them and its evidence)."""
_RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-3, 5, 17))
_REACH_TOL = 1e-6


class DirectionsMismatchError(StepError, ValueError):
    """A saved directions file does not belong to this generator / w size / property list."""


# ----------------------------------------------------------------------------------------------
# fitting


@dataclass(frozen=True)
class DefaultSettings:
    """What ``fit_directions`` / ``edit`` use when not told: one rule of the data's shape (see default_settings)."""

    method: str
    hold: bool
    metric: str
    cap: float | None
    rule: str        # the rule in words, recorded in the fitted file's info


def default_settings(num_samples: int, w_dim: int) -> DefaultSettings:
    """The default method and edit settings for ``num_samples`` scored w codes of size ``w_dim``.

    Chosen by issue 21's rule on the control lab's family of worlds (``lab/world_family.py``: w of 32 /
    128 / 512, 32 / 64 px, weak / strong entanglement, 1,000 / 4,000 / 10,000 samples, exact / noisy
    scores; tuned on half, reported on the other half, ``benchmarks/results/control_lab_worlds-cpu.json``):
    among the settings ``fit_directions`` and ``edit`` offer, the default must be within 0.02 of the best
    mean r of those with mean leakage <= 0.2 (or within 0.02 of the lowest leakage when none is), with
    such a leakage itself. Ridge (every sample, the penalty by leave-one-out error), holding the
    unrequested properties, Euclidean, cap 3 met it on every tuned world (5 of 5) at every shape, so no
    shape dependence is written: free edits control more but leak far more (InterFaceGAN's own recipe:
    mean leakage 0.42-0.59 on the tuned worlds), and with the others held the SVM's direction, fitted on
    a few extremes, either leaks more or falls short in r. On the reported half it met the rule in 4 of 5
    worlds; it fell 0.24 short in r in a 32-d, strongly entangled world (docs/control.md). The arguments
    stay so a rule of shape can be written here, where ``method="auto"`` and every default read it.
    """
    return DefaultSettings(DEFAULT_METHOD, DEFAULT_HOLD, DEFAULT_METRIC, DEFAULT_CAP,
                           f"{DEFAULT_METHOD}, {'hold' if DEFAULT_HOLD else 'free'}, {DEFAULT_METRIC}, "
                           f"cap {DEFAULT_CAP:g} (every shape)")


def default_svm_count(num_samples: int) -> int:
    """Samples taken from each end for the SVM: InterFaceGAN's 2%, but at least min(N // 4, 500).

    InterFaceGAN had 500K samples (2% = 10K per side); a run with a few thousand scored images
    would get a few dozen, too few for a 512-d boundary, so small sets use up to a quarter per side.
    """
    return int(max(int(0.02 * num_samples), min(num_samples // 4, 500), 1))


def _svm_direction(w: np.ndarray, s: np.ndarray, count: int | None, c: float) -> np.ndarray:
    """Unit normal of a linear SVM separating the ``count`` highest from the ``count`` lowest scores."""
    from sklearn.svm import SVC

    k = min(count or default_svm_count(len(s)), len(s) // 2)
    order = np.argsort(s, kind="stable")
    low, high = order[:k], order[-k:]
    if not s[high].min() > s[low].max():
        # ties across the split: keep only strictly separated scores
        cut_lo, cut_hi = s[low].max(), s[high].min()
        low, high = low[s[low] < cut_hi], high[s[high] > cut_lo]
    if len(low) == 0 or len(high) == 0:
        raise ValueError("scores have no spread at the extremes")
    x = np.concatenate([w[high], w[low]])
    y = np.concatenate([np.ones(len(high), dtype=np.int64), np.zeros(len(low), dtype=np.int64)])
    coef = SVC(kernel="linear", C=c).fit(x, y).coef_.reshape(-1).astype(np.float64)
    return coef


def _ridge_directions(w: np.ndarray, s: np.ndarray) -> np.ndarray:
    """[K, D]: ridge coefficients of each of K score columns [N, K] on w, the penalty per column by
    leave-one-out error (one SVD of w, or of the Gram matrix, for all columns)."""
    from sklearn.linear_model import RidgeCV

    mode = "svd" if len(w) > w.shape[1] else "eigen"
    s = s.reshape(len(s), -1)
    model = RidgeCV(alphas=_RIDGE_ALPHAS, gcv_mode=mode, alpha_per_target=s.shape[1] > 1)
    return model.fit(w, s if s.shape[1] > 1 else s[:, 0]).coef_.reshape(s.shape[1], -1).astype(np.float64)


def _calibrate(w: np.ndarray, s: np.ndarray, direction: np.ndarray) -> tuple[np.ndarray, float, float, float, float]:
    """Unit direction oriented so the slope is positive, and value = a + b * (w . n) by least squares."""
    norm = float(np.linalg.norm(direction))
    if not np.isfinite(norm) or norm == 0:
        raise ValueError("the fitted direction is zero")
    n = direction / norm
    proj = w @ n
    var = float(proj.var())
    if var == 0:
        raise ValueError("the samples do not vary along the fitted direction")
    b = float(((proj - proj.mean()) * (s - s.mean())).mean() / var)
    if b < 0:
        n, proj, b = -n, -proj, -b
    a = float(s.mean() - b * proj.mean())
    return n, a, b, float(proj.mean()), float(proj.std())


def _heldout_r(w: np.ndarray, s: np.ndarray, direction: np.ndarray, train: np.ndarray) -> float:
    """Pearson r between the calibrated prediction of a direction fitted on ``train`` rows and the other rows."""
    try:
        n, a, b, _, _ = _calibrate(w[train], s[train], direction)
    except ValueError:
        return float("nan")
    return stats.pearson(a + b * (w[~train] @ n), s[~train])


def _check_inputs(latents: Any, scores: Any, property_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    w = np.asarray(latents, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    if w.ndim != 2:
        raise ValueError(f"latents must be w codes of shape [N, w_dim], got {list(w.shape)}")
    if s.ndim != 2 or s.shape != (len(w), len(property_names)):
        raise ValueError(f"scores must have shape [{len(w)}, {len(property_names)}] "
                         f"({', '.join(property_names)}), got {list(s.shape)}")
    if not np.isfinite(w).all():
        raise ValueError("latents contain NaN or inf")
    if np.isinf(s).any():
        raise ValueError("scores contain inf (use NaN for a missing score)")
    return w, s


def fit_directions(latents: Any, scores: Any, seed: int = 0, *, method: str | Sequence[str] = "auto",
                   property_names: Sequence[str] = PROPERTY_NAMES, hold: bool | None = None,
                   metric: str | None = None, cap: float | None | str = "default", svm_count: int | None = None,
                   svm_c: float = 1.0, heldout_share: float = 0.2, min_samples: int = 10,
                   generator_fingerprint: str | None = None, normalization: dict | None = None) -> "LatentDirections":
    """Fit one calibrated direction per property from w codes [N, w_dim] and step-6 scores [N, P].

    A NaN score leaves that row out for that property only. ``method``: ``auto`` | ``ridge`` |
    ``svm`` or one per property; ``auto`` takes :func:`default_settings`' method for the data's shape
    (never the held-out prediction r: prediction is not control). Each property's held-out Pearson r
    (a ``heldout_share`` of its rows, drawn with ``seed``) is recorded as a note on the fit; the final
    directions use all rows. A property with fewer than ``min_samples`` scores or no spread gets no
    direction (predict gives NaN; edits for it are reported as not reached). ``hold``, ``metric`` and
    ``cap`` are the default edit settings (see :meth:`LatentDirections.edit`); None / ``"default"``
    take :func:`default_settings`' for the data's shape. ``generator_fingerprint``
    (``common.fingerprint.file_fingerprint`` of the checkpoint) and ``normalization`` (step 6's
    normalization.json) are recorded for :func:`load_directions`.
    """
    property_names = tuple(property_names)
    w, s = _check_inputs(latents, scores, property_names)
    methods = (method,) * len(property_names) if isinstance(method, str) else tuple(method)
    if len(methods) != len(property_names):
        raise ValueError(f"method needs one entry per property ({len(property_names)}), got {len(methods)}")
    for m in methods:
        if m not in METHODS_ALLOWED:
            raise ValueError(f"method must be one of {METHODS_ALLOWED}, got {m!r}")
    if not 0.0 < heldout_share < 1.0:
        raise ValueError(f"heldout_share must be in (0, 1), got {heldout_share}")
    counts = [int(np.isfinite(s[:, j]).sum()) for j in range(len(property_names))]
    defaults = default_settings(max(counts, default=0), w.shape[1])
    hold = defaults.hold if hold is None else hold
    metric = defaults.metric if metric is None else metric
    cap = defaults.cap if isinstance(cap, str) and cap == "default" else cap
    _check_edit_options(hold, metric, cap)
    picks = tuple(defaults.method if m == "auto" else m for m in methods)
    rng = np.random.default_rng(seed)
    normals: list[np.ndarray | None] = [None] * len(property_names)
    heldout: dict[str, dict[str, float]] = {name: {} for name in property_names}
    # properties scored on the same rows share one held-out split and one ridge solve
    groups: dict[bytes, list[int]] = {}
    for j, name in enumerate(property_names):
        ok = np.isfinite(s[:, j])
        if ok.sum() < max(min_samples, 4) or np.ptp(s[ok, j]) == 0:
            logger.warning("%s: %d scored samples%s; no direction fitted", name, ok.sum(),
                           " with no spread" if ok.sum() else "")
            continue
        groups.setdefault(ok.tobytes(), []).append(j)
    for key, members in groups.items():
        ok = np.frombuffer(key, dtype=bool)
        wg, sg = w[ok], s[ok][:, members]
        train = np.ones(len(wg), dtype=bool)
        train[rng.permutation(len(wg))[:max(2, int(round(heldout_share * len(wg))))]] = False
        ridge = [k for k, j in enumerate(members) if picks[j] == "ridge"]
        found: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        if ridge:
            part, full = _ridge_directions(wg[train], sg[train][:, ridge]), _ridge_directions(wg, sg[:, ridge])
            found.update({members[k]: (part[i], full[i]) for i, k in enumerate(ridge)})
        for k, j in enumerate(members):
            if picks[j] == "svm":
                found[j] = (_svm_direction(wg[train], sg[train, k], svm_count, svm_c),
                            _svm_direction(wg, sg[:, k], svm_count, svm_c))
            heldout[property_names[j]][picks[j]] = _heldout_r(wg, sg[:, k], found[j][0], train)
            normals[j] = found[j][1]
    info = {"heldout_r": heldout, "seed": int(seed), "heldout_share": float(heldout_share), "svm_count": svm_count,
            "svm_c": float(svm_c), "requested_method": list(methods), "default_rule": defaults.rule}
    return directions_from_normals(w, s, normals, picks, property_names=property_names, hold=hold, metric=metric,
                                   cap=cap, generator_fingerprint=generator_fingerprint, normalization=normalization,
                                   info=info)


def directions_from_normals(latents: Any, scores: Any, normals: Sequence[np.ndarray | None], methods: Sequence[str], *,
                            property_names: Sequence[str] = PROPERTY_NAMES, hold: bool = DEFAULT_HOLD,
                            metric: str = DEFAULT_METRIC, cap: float | None = DEFAULT_CAP,
                            generator_fingerprint: str | None = None, normalization: dict | None = None,
                            layers: Sequence[str] | None = None, info: dict | None = None) -> "LatentDirections":
    """Calibrate given directions (one vector [D] per property, or None) on scored w codes: the one
    calibration every route shares (ridge, SVM, SeFa, the lab's InterFaceGAN reference).

    Each direction is made a unit vector oriented so its score rises along it, and ``value = a + b (w . n)``
    is fitted by least squares on the rows where that property's score is finite; ``methods`` labels each
    (``none`` where there is no direction or it cannot be calibrated).
    """
    property_names = tuple(property_names)
    w, s = _check_inputs(latents, scores, property_names)
    p_count, d = len(property_names), w.shape[1]
    directions = np.zeros((p_count, d))
    intercepts = np.full(p_count, np.nan)
    slopes = np.zeros(p_count)
    proj_mean, proj_std = np.zeros(p_count), np.zeros(p_count)
    labels: list[str] = []
    for j, name in enumerate(property_names):
        ok = np.isfinite(s[:, j])
        if normals[j] is None:
            labels.append("none")
            continue
        try:
            n, a, b, pm, ps = _calibrate(w[ok], s[ok, j], np.asarray(normals[j], dtype=np.float64).reshape(d))
        except ValueError as exc:
            logger.warning("%s: %s; no direction fitted", name, exc)
            labels.append("none")
            continue
        directions[j], intercepts[j], slopes[j], proj_mean[j], proj_std[j] = n, a, b, pm, ps
        labels.append(methods[j])
    cov = _shrunk_covariance(w)
    score_range = [[float(np.nanmin(s[:, j])), float(np.nanmax(s[:, j]))] if np.isfinite(s[:, j]).any()
                   else [float("nan"), float("nan")] for j in range(p_count)]
    info = {**(info or {}), "num_samples": [int(np.isfinite(s[:, j]).sum()) for j in range(p_count)],
            "score_range": score_range}
    return LatentDirections(directions, slopes, intercepts, tuple(labels), proj_mean, proj_std, cov @ directions.T,
                            property_names, w.mean(axis=0), hold=hold, metric=metric, cap=cap,
                            generator_fingerprint=generator_fingerprint, normalization=normalization,
                            layers=None if layers is None else tuple(layers), info=info)


SEFA = "sefa"
"""SeFa's method label (``LatentDirections.methods``, comparison.csv, ``--control sefa``)."""
SEFA_COMPONENTS = 16
"""Eigen-directions SeFa offers the properties by default: the top of the spectrum, where Shen and Zhou found
the semantic directions of a face GAN (the tail is mostly texture and noise)."""


def sefa_weight(generator: torch.nn.Module, layers: str = "all") -> np.ndarray:
    """float64 [R, D]: the style-modulation weights (w -> per-channel scale and shift) of the synthesis
    layers of a range, stacked, each row scaled to unit norm as SeFa does."""
    mask = layer_mask(generator.num_layers, layers)
    rows = []
    for i in np.flatnonzero(mask):
        style = getattr(generator.synthesis, f"layer{i}").style
        rows.append((style.weight.detach().double().cpu() * style.scale).numpy())
    weight = np.concatenate(rows)
    norms = np.linalg.norm(weight, axis=1, keepdims=True)
    return weight / np.where(norms > 0, norms, 1.0)


def fit_sefa_directions(generator: torch.nn.Module, latents: Any, scores: Any, seed: int = 0, *,
                        num_components: int = SEFA_COMPONENTS, layers: str = "all",
                        property_names: Sequence[str] = PROPERTY_NAMES, hold: bool | None = None,
                        metric: str | None = None, cap: float | None | str = "default", min_samples: int = 10,
                        generator_fingerprint: str | None = None, normalization: dict | None = None,
                        ) -> "LatentDirections":
    """SeFa (Shen and Zhou, "Closed-Form Factorization of Latent Semantics in GANs", CVPR 2021): label-free
    directions from the generator's weights alone, named and calibrated with the step-6 scores.

    The candidates are the top ``num_components`` eigenvectors of A'A, A the stacked style-modulation
    weights of the ``layers`` range (:func:`sefa_weight`): the directions of w that change the styles
    most. The scores only *name* them: each property takes the candidate whose projection correlates
    best with its score on the scored samples (|Pearson r|, each candidate to at most one property, the
    assignment that maximises the total), oriented so the score rises, and calibrated like every other
    direction (:func:`directions_from_normals`). Edits apply to the ``layers`` range. Usable through the
    same ``edit``, ``save`` and :func:`load_directions`; ``methods`` are ``sefa``. ``seed`` is accepted
    for the common signature: the factorisation is deterministic. Edit defaults as ``fit_directions``.
    """
    from scipy.optimize import linear_sum_assignment

    property_names = tuple(property_names)
    w, s = _check_inputs(latents, scores, property_names)
    if w.shape[1] != generator.w_space_dim:
        raise ValueError(f"latents are {w.shape[1]}-d, the generator's w is {generator.w_space_dim}-d")
    if num_components < 1:
        raise ValueError(f"num_components must be >= 1, got {num_components}")
    weight = sefa_weight(generator, layers)
    eigenvalues, eigenvectors = np.linalg.eigh(weight.T @ weight)
    order = np.argsort(eigenvalues)[::-1][:min(num_components, w.shape[1])]
    candidates = eigenvectors[:, order].T                                   # [K, D], unit rows
    proj = w @ candidates.T
    counts = [int(np.isfinite(s[:, j]).sum()) for j in range(len(property_names))]
    eligible = [j for j in range(len(property_names)) if counts[j] >= max(min_samples, 4)
                and np.ptp(s[np.isfinite(s[:, j]), j]) > 0]
    corr = np.array([[stats.pearson(proj[:, k], s[:, j]) for k in range(len(candidates))] for j in eligible])
    normals: list[np.ndarray | None] = [None] * len(property_names)
    component = [-1] * len(property_names)
    correlation = [float("nan")] * len(property_names)
    if eligible:
        strength = np.nan_to_num(np.abs(corr), nan=0.0)
        rows, cols = linear_sum_assignment(-strength)
        for i, k in zip(rows, cols):
            j = eligible[i]
            if strength[i, k] > 0:
                normals[j] = candidates[k] * np.sign(corr[i, k])
                component[j], correlation[j] = int(k), float(corr[i, k])
    defaults = default_settings(max(counts, default=0), w.shape[1])
    hold = defaults.hold if hold is None else hold
    metric = defaults.metric if metric is None else metric
    cap = defaults.cap if isinstance(cap, str) and cap == "default" else cap
    info = {"seed": int(seed), "sefa": {"layers": layers, "num_components": len(candidates),
                                        "eigenvalues": eigenvalues[order].tolist(), "component": component,
                                        "correlation": correlation}, "default_rule": defaults.rule}
    return directions_from_normals(w, s, normals, (SEFA,) * len(property_names), property_names=property_names,
                                   hold=hold, metric=metric, cap=cap, generator_fingerprint=generator_fingerprint,
                                   normalization=normalization, layers=(layers,) * len(property_names), info=info)


def _shrunk_covariance(w: np.ndarray) -> np.ndarray:
    """w's covariance with Ledoit-Wolf shrinkage (well-conditioned even with fewer samples than dimensions)."""
    from sklearn.covariance import LedoitWolf

    if len(w) < 2:
        return np.eye(w.shape[1])
    return LedoitWolf(store_precision=False).fit(w).covariance_


# ----------------------------------------------------------------------------------------------
# the fitted model


@dataclass
class LatentDirections:
    """Per property: unit direction [P, D], calibration value = intercept + slope * (w . direction).

    ``sigma_directions`` [D, P] is w's (shrunk) covariance times each direction, all the whitened
    metric needs. ``proj_mean`` / ``proj_std`` describe the fitted samples along each direction
    (the cap). A property with method ``none`` has no direction.
    """

    directions: np.ndarray
    slopes: np.ndarray
    intercepts: np.ndarray
    methods: tuple[str, ...]
    proj_mean: np.ndarray
    proj_std: np.ndarray
    sigma_directions: np.ndarray
    property_names: tuple[str, ...]
    w_mean: np.ndarray
    hold: bool = DEFAULT_HOLD
    metric: str = DEFAULT_METRIC
    cap: float | None = DEFAULT_CAP
    generator_fingerprint: str | None = None
    normalization: dict | None = None
    layers: tuple[str, ...] | None = None
    info: dict = field(default_factory=dict)
    guard_names: tuple[str, ...] = ()
    guard_coefficients: np.ndarray | None = None       # [G, D]: guard value = intercept + coefficients @ w
    guard_intercepts: np.ndarray | None = None         # [G]
    guard_sigma_coefficients: np.ndarray | None = None  # [D, G]: w's covariance times each guard's coefficients
    edit_rule: int = EDIT_RULE                         # how the cap acts (see EDIT_RULE); 1 for format-1 files

    def __post_init__(self) -> None:
        self.directions = np.asarray(self.directions, dtype=np.float64)
        p, d = self.directions.shape
        self.slopes = np.asarray(self.slopes, dtype=np.float64).reshape(p)
        self.intercepts = np.asarray(self.intercepts, dtype=np.float64).reshape(p)
        self.proj_mean = np.asarray(self.proj_mean, dtype=np.float64).reshape(p)
        self.proj_std = np.asarray(self.proj_std, dtype=np.float64).reshape(p)
        self.sigma_directions = np.asarray(self.sigma_directions, dtype=np.float64).reshape(d, p)
        self.w_mean = np.asarray(self.w_mean, dtype=np.float64).reshape(d)
        self.property_names = tuple(self.property_names)
        self.methods = tuple(self.methods)
        if len(self.property_names) != p or len(self.methods) != p:
            raise ValueError(f"{p} directions need {p} property names and methods")
        g = len(self.guard_names)
        self.guard_names = tuple(self.guard_names)
        self.guard_coefficients = np.zeros((0, d)) if g == 0 else np.asarray(self.guard_coefficients,
                                                                              np.float64).reshape(g, d)
        self.guard_intercepts = np.zeros(0) if g == 0 else np.asarray(self.guard_intercepts, np.float64).reshape(g)
        self.guard_sigma_coefficients = (np.zeros((d, 0)) if g == 0 else
                                         np.asarray(self.guard_sigma_coefficients, np.float64).reshape(d, g))
        if self.layers is None:
            self.layers = ("all",) * p
        self.layers = tuple(self.layers)
        _check_edit_options(self.hold, self.metric, self.cap)
        if self.edit_rule not in (1, 2):
            raise ValueError(f"edit_rule must be 1 or 2, got {self.edit_rule!r}")
        for name in self.layers:
            if name not in LAYER_RANGES:
                raise ValueError(f"layer range must be one of {LAYER_RANGES}, got {name!r}")

    # --- basic quantities ---------------------------------------------------------------------
    @property
    def w_dim(self) -> int:
        return int(self.directions.shape[1])

    @property
    def generator_entry(self) -> str:
        """The checkpoint entry (``generator_smooth`` / ``generator``) whose w space these directions were fitted
        in (step 7a records it), ``auto`` when the file does not say. The two entries have their own mapping
        networks, so an edit rendered by the other one moves another face: renders load this one."""
        entry = self.info.get("generator_entry") if isinstance(self.info, dict) else None
        return entry if entry in ("generator_smooth", "generator") else "auto"

    @property
    def fitted(self) -> np.ndarray:
        """bool [P]: which properties have a direction."""
        return np.array([m != "none" for m in self.methods])

    @property
    def coefficients(self) -> np.ndarray:
        """[P, D]: value = intercept + coefficients @ w."""
        return self.slopes[:, None] * self.directions

    def bounds(self, cap: float | None | str = "default") -> tuple[np.ndarray, np.ndarray]:
        """Lowest and highest value the cap allows per property: mean +- cap sd of the fitted predictions,
        widened to the range of scores seen in fitting (a target inside that range is never clipped;
        predictions are narrower than scores). A format-1 file (``edit_rule`` 1) keeps the narrower bounds.

        ``cap="default"`` uses the stored cap; ``None`` means no cap (infinite bounds).
        """
        cap = self.cap if isinstance(cap, str) and cap == "default" else cap
        centre = self.intercepts + self.slopes * self.proj_mean
        if cap is None:
            return np.full_like(centre, -np.inf), np.full_like(centre, np.inf)
        half = cap * self.slopes * self.proj_std
        lo, hi = centre - half, centre + half
        if self.edit_rule >= 2:
            seen = self.seen_range()
            lo, hi = np.fmin(lo, seen[:, 0]), np.fmax(hi, seen[:, 1])
        return lo, hi

    def seen_range(self) -> np.ndarray:
        """[P, 2]: the lowest and highest score each property had in fitting (NaN where unknown)."""
        seen = np.asarray(self.info.get("score_range", [[np.nan, np.nan]] * len(self.property_names)),
                          dtype=np.float64)
        return seen.reshape(len(self.property_names), 2)

    def sweep_range(self, cap: float | None | str = "default") -> tuple[np.ndarray, np.ndarray]:
        """The values worth requesting per property: the cap's bounds within the fitted scores' min..max.

        Beyond the scores seen in fitting an edit extrapolates; the sheets, the control choice and
        the female share sweep this range.
        """
        lo, hi = self.bounds(cap)
        seen = self.seen_range()
        seen = np.where(np.isfinite(seen), seen, [-np.inf, np.inf])
        return np.maximum(lo, seen[:, 0]), np.minimum(hi, seen[:, 1])

    def _as_w(self, latents: Any) -> np.ndarray:
        w = np.asarray(latents, dtype=np.float64)
        if w.ndim != 2 or w.shape[1] != self.w_dim:
            raise ValueError(f"latents must be w codes of shape [N, {self.w_dim}], got {list(w.shape)}")
        return w

    def predict(self, latents: Any) -> np.ndarray:
        """The calibrated property values [N, P] (step 6's scale; NaN for a property without direction)."""
        w = self._as_w(latents)
        return self.intercepts[None, :] + w @ self.coefficients.T

    def predict_guards(self, latents: Any) -> np.ndarray:
        """The guarded quantities [N, G] (e.g. step 4's gender_score) as their linear models predict them."""
        w = self._as_w(latents)
        return self.guard_intercepts[None, :] + w @ self.guard_coefficients.T

    def with_guards(self, **models: "LatentDirections") -> "LatentDirections":
        """A copy whose edits also hold these quantities (name=one-property directions fitted on the same w).

        A guard is never requested; it is held at its current value by every edit (``guard=False``
        turns that off per call). Used to keep step 4's gender_score while properties change.
        """
        names, coefs, intercepts, sigmas = list(self.guard_names), [*self.guard_coefficients], \
            [*self.guard_intercepts], [*self.guard_sigma_coefficients.T]
        for name, model in models.items():
            if model.w_dim != self.w_dim or len(model.property_names) != 1 or not model.fitted[0]:
                raise ValueError(f"guard {name!r} must be a fitted one-property model on {self.w_dim}-d w")
            if name in names or name in self.property_names:
                raise ValueError(f"guard {name!r} is already a property or guard")
            names.append(name)
            coefs.append(model.coefficients[0])
            intercepts.append(model.intercepts[0])
            sigmas.append(model.sigma_directions[:, 0] * model.slopes[0])
        d = self.w_dim
        return replace(self, guard_names=tuple(names), guard_coefficients=np.array(coefs).reshape(-1, d),
                       guard_intercepts=np.array(intercepts),
                       guard_sigma_coefficients=np.array(sigmas).reshape(-1, d).T)

    def layer_mask_for(self, requested: Any, num_layers: int) -> np.ndarray:
        """bool [num_layers]: the union of the layer ranges of the requested properties (bool [P] or targets)."""
        requested = np.asarray(requested)
        if requested.dtype != bool:
            requested = np.isfinite(requested.astype(np.float64))
        requested = requested.reshape(-1, len(self.property_names)).any(axis=0)
        mask = np.zeros(num_layers, dtype=bool)
        for j in np.flatnonzero(requested):
            mask |= layer_mask(num_layers, self.layers[j])
        return mask if requested.any() else np.ones(num_layers, dtype=bool)

    # --- editing ------------------------------------------------------------------------------
    def edit(self, latents: Any, targets: Any, return_report: bool = False, *, hold: bool | None = None,
             metric: str | None = None, cap: float | None | str = "default", guard: bool = True):
        """Edited w codes (float32 [N, D]) whose calibrated values equal ``targets`` [N, P] (NaN = no request).

        ``hold`` / ``metric`` / ``cap`` override the defaults stored at fit time (``cap=None`` turns
        the cap off). A requested value outside the cap's bounds (:meth:`bounds`: never inside the
        scores seen in fitting) is moved to the bound, and when a request lies outside the scores
        seen in fitting, a change longer than ``2 * cap`` standard deviations of w along its own
        direction (whitened: Mahalanobis length) is shortened to that (a joint solve between nearly
        parallel directions can ask for a huge move); a request inside that range is always met
        (format-1 files: every change is limited, as they were). Both are reported: with
        ``return_report=True`` the result is ``(latents, reached)``, ``reached`` bool [N, P], False
        where a request was not met (unrequested properties count as reached).
        Guards (:meth:`with_guards`) are held unless ``guard=False``.
        """
        hold = self.hold if hold is None else hold
        metric = self.metric if metric is None else metric
        cap = self.cap if isinstance(cap, str) and cap == "default" else cap
        _check_edit_options(hold, metric, cap)
        w = self._as_w(latents)
        t = np.asarray(targets, dtype=np.float64)
        if t.shape != (len(w), len(self.property_names)):
            raise ValueError(f"targets must have shape [{len(w)}, {len(self.property_names)}] "
                             f"({', '.join(self.property_names)}), got {list(t.shape)}")
        lo, hi = self.bounds(cap)
        fitted = self.fitted[None, :]
        requested = np.isfinite(t)
        start = self.predict(w)
        mask = requested & fitted
        values = np.where(mask, np.clip(t, lo, hi), np.nan)
        if hold:
            held = ~requested & fitted
            mask = mask | held
            values = np.where(held, start, values)
        edited, step = self._solve(w, mask, values, metric, guard)
        if cap is not None and not hold:
            # pin free properties that the edit pushed past their bound (beyond where they started)
            for _ in range(len(self.property_names)):
                now = self.predict(edited)
                low_b, high_b = np.minimum(lo, start), np.maximum(hi, start)
                out = ~mask & fitted & ((now < low_b - 1e-9) | (now > high_b + 1e-9))
                if not out.any():
                    break
                values = np.where(out, np.clip(now, low_b, high_b), values)
                mask = mask | out
                edited, step = self._solve(w, mask, values, metric, guard)
        if cap is not None:
            # a joint solve between nearly parallel directions can ask for a huge move: shorten it
            # (held properties and guards keep their values, the requests fall short and are reported)
            too_far = step > 2.0 * cap
            if self.edit_rule >= 2:   # only where a request lies beyond the scores seen in fitting
                seen = self.seen_range()
                beyond = requested & ((t < seen[None, :, 0] - _REACH_TOL) | (t > seen[None, :, 1] + _REACH_TOL))
                too_far &= beyond.any(axis=1)
            if too_far.any():
                shrink = (2.0 * cap / step[too_far])[:, None]
                edited[too_far] = w[too_far] + (edited[too_far] - w[too_far]) * shrink
        result = edited.astype(np.float32)
        if not return_report:
            return result
        final = self.predict(edited)
        scale = np.maximum(1.0, np.abs(t))
        reached = ~requested | (fitted & (np.abs(np.nan_to_num(final - t, nan=np.inf)) <= _REACH_TOL * scale))
        return result, reached

    def _solve(self, w: np.ndarray, mask: np.ndarray, values: np.ndarray, metric: str,
               guard: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Smallest change of w (in ``metric``) that sets the masked properties to ``values`` (guards held),
        and the size of each change in standard deviations of w (see :meth:`edit`)."""
        coef = self.coefficients
        sigma_coef = self.sigma_directions * self.slopes[None, :]                  # [D, P]: S C'
        current = self.predict(w)
        if guard and self.guard_names:
            g = len(self.guard_names)
            coef = np.vstack([coef, self.guard_coefficients])
            sigma_coef = np.hstack([sigma_coef, self.guard_sigma_coefficients])
            guarded = self.predict_guards(w)
            current = np.hstack([current, guarded])
            values = np.hstack([values, guarded])
            mask = np.hstack([mask, np.broadcast_to(mask.any(axis=1, keepdims=True), (len(w), g))])
        metric_coef = sigma_coef if metric == "whitened" else coef.T
        out = w.copy()
        step = np.zeros(len(w))
        patterns, inverse = np.unique(mask, axis=0, return_inverse=True)
        for k, pattern in enumerate(patterns):
            cols = np.flatnonzero(pattern)
            if len(cols) == 0:
                continue
            rows = np.flatnonzero(inverse.reshape(-1) == k)
            delta = values[np.ix_(rows, cols)] - current[np.ix_(rows, cols)]  # [n, S]
            gram = coef[cols] @ metric_coef[:, cols]                            # [S, S]
            y = np.linalg.lstsq(gram, delta.T, rcond=None)[0]                   # [S, n]
            change = (metric_coef[:, cols] @ y).T                               # [n, D]
            out[rows] += change
            # size of the change in w's own spread: dw' S dw (euclidean, dw = C'y) and dw' S^-1 dw
            # (whitened, dw = S C'y) are both y' (C S C') y, known without S itself
            quad = np.einsum("sn,st,tn->n", y, coef[cols] @ sigma_coef[:, cols], y).clip(min=0.0)
            if metric == "whitened":
                step[rows] = np.sqrt(quad)
            else:   # length over w's standard deviation along the change's own direction
                length2 = np.einsum("nd,nd->n", change, change)
                step[rows] = np.divide(length2, np.sqrt(quad), out=np.zeros_like(quad), where=quad > 0)
        return out, step

    # --- persistence --------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """A plain dict of tensors and builtins (loadable with ``torch.load(weights_only=True)``)."""
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "property_names": list(self.property_names), "w_dim": self.w_dim, "methods": list(self.methods),
            "layers": list(self.layers), "directions": torch.from_numpy(self.directions.copy()),
            "slopes": torch.from_numpy(self.slopes.copy()), "intercepts": torch.from_numpy(self.intercepts.copy()),
            "proj_mean": torch.from_numpy(self.proj_mean.copy()), "proj_std": torch.from_numpy(self.proj_std.copy()),
            "sigma_directions": torch.from_numpy(self.sigma_directions.copy()),
            "w_mean": torch.from_numpy(self.w_mean.copy()),
            "hold": bool(self.hold), "metric": self.metric, "cap": None if self.cap is None else float(self.cap),
            "generator_fingerprint": self.generator_fingerprint, "normalization": self.normalization,
            "info": self.info, "guard_names": list(self.guard_names),
            "guard_coefficients": torch.from_numpy(self.guard_coefficients.copy()),
            "guard_intercepts": torch.from_numpy(self.guard_intercepts.copy()),
            "guard_sigma_coefficients": torch.from_numpy(self.guard_sigma_coefficients.copy()),
            "edit_rule": int(self.edit_rule),
        }

    def save(self, path: Path | str) -> Path:
        """Write the directions atomically (a small plain-dict torch file)."""
        return atomic_torch_save(path, self.to_dict())

    def with_options(self, **changes: Any) -> "LatentDirections":
        """A copy with other default edit options (``hold``, ``metric``, ``cap``) or ``layers``."""
        return replace(self, **changes)


def _check_edit_options(hold: bool, metric: str, cap: float | None) -> None:
    if not isinstance(hold, (bool, np.bool_)):
        raise ValueError(f"hold must be True or False, got {hold!r}")
    if metric not in METRICS_ALLOWED:
        raise ValueError(f"metric must be one of {METRICS_ALLOWED}, got {metric!r}")
    if cap is not None and not (np.isfinite(cap) and cap > 0):
        raise ValueError(f"cap must be a positive number of standard deviations or None, got {cap!r}")


_SAVED_KEYS = ("generator_fingerprint", "w_dim", "property_names", "normalization", "directions", "slopes",
               "intercepts", "methods", "proj_mean", "proj_std", "sigma_directions", "w_mean", "hold", "metric", "cap",
               "layers", "info", "guard_names", "guard_coefficients", "guard_intercepts", "guard_sigma_coefficients")
"""Every entry :meth:`LatentDirections.save` writes (format 2 adds ``edit_rule``); a file lacking one is refused
in one line."""
_READABLE_VERSIONS = (1, 2)


_REFIT = "refit with 07_fit_latent_directions.py"


def _check_saved_arrays(data: dict, path: Path) -> None:
    """Every saved array has the shape the file's own header implies, a float dtype and finite values
    (an intercept is NaN only for a property without direction): one line naming the file, not a
    reshape or SVD error later."""
    names, methods, guards, w_dim = data["property_names"], data["methods"], data["guard_names"], data["w_dim"]
    header = [(key, value) for key, value in (("property_names", names), ("methods", methods), ("guard_names", guards))
              if not (isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value))]
    if header or not isinstance(w_dim, int) or isinstance(w_dim, bool) or w_dim < 1 or len(methods) != len(names):
        bad = ", ".join(k for k, _ in header) or ("w_dim" if not isinstance(w_dim, int) or w_dim < 1 else "methods")
        raise DirectionsMismatchError(f"{path} has an unreadable header ({bad}); {_REFIT}")
    p, d, g = len(names), w_dim, len(guards)
    shapes = {"directions": (p, d), "slopes": (p,), "intercepts": (p,), "proj_mean": (p,), "proj_std": (p,),
              "sigma_directions": (d, p), "w_mean": (d,), "guard_coefficients": (g, d), "guard_intercepts": (g,),
              "guard_sigma_coefficients": (d, g)}
    expected = {k: torch.empty(shape, dtype=torch.float64, device="meta") for k, shape in shapes.items()}
    found = {k: data[k] for k in shapes}
    fitted = torch.tensor([m != "none" for m in methods], dtype=torch.bool)
    try:
        check_state_dict_fits(expected, found, path, _REFIT,
                              what=f"its own header ({p} properties, {d}-d w, {g} guard{'' if g == 1 else 's'})")
        finite = {k: v for k, v in found.items() if k != "intercepts"}
        finite["intercepts"] = found["intercepts"][fitted]
        check_finite_tensors(finite, path, _REFIT)
    except CheckpointError as exc:
        raise DirectionsMismatchError(str(exc)) from None


def load_directions(path: Path | str, *, checkpoint: Path | str | None = None,
                    generator_fingerprint: str | None = None, w_dim: int | None = None,
                    property_names: Sequence[str] | None = PROPERTY_NAMES,
                    normalization: dict | None = None) -> LatentDirections:
    """Load a directions file and refuse it when it does not match what the caller will use it with.

    checkpoint / generator_fingerprint: the generator the edits go to (the file records the
    fingerprint it was fitted for); w_dim; property_names (default the pipeline's five);
    normalization: step 6's current normalization.json content. Each given one must match.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"directions file not found: {path} (run 07_fit_latent_directions.py)")
    try:
        data = read_checkpoint(path, _REFIT, kind="directions file")
    except CheckpointError as exc:
        raise DirectionsMismatchError(str(exc)) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DirectionsMismatchError(f"{path} is not a latent-directions file (no format '{FORMAT}')")
    version = data.get("format_version")
    if version not in _READABLE_VERSIONS:
        raise DirectionsMismatchError(f"{path} has format version {version}, this code reads "
                                      f"{', '.join(map(str, _READABLE_VERSIONS))}; refit with 07_fit_latent_directions.py")
    fix = "refit with 07_fit_latent_directions.py for this generator and these scores"
    missing = [key for key in _SAVED_KEYS + (("edit_rule",) if version >= 2 else ()) if key not in data]
    if missing:
        raise DirectionsMismatchError(f"{path} is not a complete directions file (missing {', '.join(missing)}); "
                                      "refit with 07_fit_latent_directions.py")
    _check_saved_arrays(data, path)
    if checkpoint is not None:
        generator_fingerprint = file_fingerprint(checkpoint)
    if generator_fingerprint is not None and data["generator_fingerprint"] != generator_fingerprint:
        where = f" ({checkpoint})" if checkpoint is not None else ""
        raise DirectionsMismatchError(
            f"{path} was fitted for generator {data['generator_fingerprint']}, not this one{where} "
            f"({generator_fingerprint}); {fix}")
    if w_dim is not None:
        require_w_dim(path, int(data["w_dim"]), w_dim)
    if property_names is not None and list(data["property_names"]) != list(property_names):
        raise DirectionsMismatchError(f"{path} has properties {data['property_names']}, expected "
                                      f"{list(property_names)}; {fix}")
    if normalization is not None and data["normalization"] != normalization:
        raise DirectionsMismatchError(f"{path} was fitted on another normalisation than the current "
                                      f"normalization.json; {fix}")
    edit_rule = int(data["edit_rule"]) if version >= 2 else 1
    if edit_rule < EDIT_RULE:
        logger.warning("%s was fitted with the edit settings of format %s (hold=%s, metric=%s, cap=%s, the cap "
                       "clipping inside the scores seen); it keeps them: a refit with 07_fit_latent_directions.py "
                       "gives the new defaults", path, version, data["hold"], data["metric"], data["cap"])
    try:
        return _directions_from_dict(data, edit_rule)
    except ValueError as exc:  # LatentDirections' own checks of the saved edit options and layer ranges
        raise DirectionsMismatchError(f"{path}: {exc}; {_REFIT}") from None


def require_w_dim(path: Path | str, saved: int, w_dim: int) -> None:
    """Refuse directions of ``saved`` dimensions for a generator whose w has ``w_dim`` (one line, the fix)."""
    if int(saved) != int(w_dim):
        raise DirectionsMismatchError(f"{path} holds {saved}-d directions, the generator's w has {w_dim}; refit with "
                                      "07_fit_latent_directions.py for this generator and these scores")


def _directions_from_dict(data: dict, edit_rule: int) -> LatentDirections:
    return LatentDirections(
        directions=data["directions"].numpy(), slopes=data["slopes"].numpy(), intercepts=data["intercepts"].numpy(),
        methods=tuple(data["methods"]), proj_mean=data["proj_mean"].numpy(), proj_std=data["proj_std"].numpy(),
        sigma_directions=data["sigma_directions"].numpy(), property_names=tuple(data["property_names"]),
        w_mean=data["w_mean"].numpy(), hold=bool(data["hold"]), metric=data["metric"], cap=data["cap"],
        generator_fingerprint=data["generator_fingerprint"], normalization=data["normalization"],
        layers=tuple(data["layers"]), info=data["info"], guard_names=tuple(data["guard_names"]),
        guard_coefficients=data["guard_coefficients"].numpy(), guard_intercepts=data["guard_intercepts"].numpy(),
        guard_sigma_coefficients=data["guard_sigma_coefficients"].numpy(), edit_rule=edit_rule)


# ----------------------------------------------------------------------------------------------
# layer ranges and rendering

_LAYER_RES = {"coarse": (4, 8), "middle": (16, 32), "fine": (64, 1 << 30)}


def layer_mask(num_layers: int, name: str) -> np.ndarray:
    """bool [num_layers]: the synthesis layers of a range (StyleGAN's coarse 4-8 px, middle 16-32, fine 64+).

    Layer i of a StyleGAN v1 synthesis network works at 4 * 2 ** (i // 2) pixels. A range with no
    layer in this generator (fine layers of a 32 px model) is an error, not an empty edit.
    """
    if name not in LAYER_RANGES:
        raise ValueError(f"layer range must be one of {LAYER_RANGES}, got {name!r}")
    res = 4 * 2 ** (np.arange(num_layers) // 2)
    if name == "all":
        return np.ones(num_layers, dtype=bool)
    low, high = _LAYER_RES[name]
    mask = (res >= low) & (res <= high)
    if not mask.any():
        raise ValueError(f"a generator with {num_layers} synthesis layers (up to {res.max()} px) has no "
                         f"{name} layers; use one of {[n for n in LAYER_RANGES if n != name]}")
    return mask


def available_layer_ranges(num_layers: int) -> tuple[str, ...]:
    """The layer ranges this generator has."""
    out = []
    for name in LAYER_RANGES:
        try:
            layer_mask(num_layers, name)
        except ValueError:
            continue
        out.append(name)
    return tuple(out)


def mix_layers(w_original: Any, w_edited: Any, mask: Any) -> np.ndarray:
    """wp float32 [N, L, D]: the edited w on the masked layers, the original w elsewhere."""
    orig = np.asarray(w_original, dtype=np.float32)
    edit = np.asarray(w_edited, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    if orig.shape != edit.shape or orig.ndim != 2:
        raise ValueError(f"original and edited w must both be [N, D], got {list(orig.shape)} and {list(edit.shape)}")
    return np.where(mask[None, :, None], edit[:, None, :], orig[:, None, :])


@torch.inference_mode()
def render_edit(generator: torch.nn.Module, w_original: Any, w_edited: Any, layers: str | np.ndarray = "all",
                batch_size: int = 16) -> np.ndarray:
    """uint8 [N, H, W, 3] images of the edited w applied to a layer range (a name, or a bool mask [L] such as
    :meth:`LatentDirections.layer_mask_for` gives); stored noise, no truncation."""
    device = next(generator.parameters()).device
    mask = layer_mask(generator.num_layers, layers) if isinstance(layers, str) else np.asarray(layers, bool)
    if mask.shape != (generator.num_layers,):
        raise ValueError(f"layer mask must have {generator.num_layers} entries, got {list(mask.shape)}")
    wp = mix_layers(w_original, w_edited, mask)
    images = []
    for first in range(0, len(wp), batch_size):
        out = generator.synthesis(torch.from_numpy(wp[first:first + batch_size]).to(device),
                                  randomize_noise=False)["image"]
        if getattr(generator, "final_tanh", False):
            out = torch.tanh(out)
        images.append(postprocess_uint8(out))
    if not images:
        return np.zeros((0, generator.resolution, generator.resolution, 3), dtype=np.uint8)
    return np.concatenate(images)


def make_renderer(generator: torch.nn.Module, batch_size: int = 16) -> "RenderFn":
    """The render callable :func:`select_by_control` takes, for one of our generators."""
    def render(w_original: np.ndarray, w_edited: np.ndarray, layers: str = "all") -> np.ndarray:
        return render_edit(generator, w_original, w_edited, layers, batch_size)

    return render


def make_generate_fn(generator: torch.nn.Module, directions: LatentDirections,
                     batch_size: int = 16) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``(z [N, z_dim], targets [N, P]) -> uint8 images``: step 9's generate callable for the directions route.

    z -> w through the mapping (untruncated), w edited to the targets (NaN = no request) with the
    file's edit settings, rendered on the union of the requested properties' layer ranges.
    """
    if directions.w_dim != generator.w_space_dim:
        raise ValueError(f"directions are {directions.w_dim}-d, the generator's w is {generator.w_space_dim}-d")

    @torch.inference_mode()
    def generate(z: np.ndarray, targets: np.ndarray) -> np.ndarray:
        device = next(generator.parameters()).device
        z_t = torch.as_tensor(np.asarray(z, dtype=np.float32)).to(device)
        w = generator.mapping(z_t)["w"].float().cpu().numpy()
        targets = np.asarray(targets, dtype=np.float64)
        edited = directions.edit(w, targets)
        images = np.zeros((len(w), generator.resolution, generator.resolution, 3), dtype=np.uint8)
        patterns, inverse = np.unique(np.isfinite(targets), axis=0, return_inverse=True)
        for k, pattern in enumerate(patterns):
            rows = np.flatnonzero(inverse.reshape(-1) == k)
            mask = directions.layer_mask_for(pattern, generator.num_layers)
            images[rows] = render_edit(generator, w[rows], edited[rows], mask, batch_size)
        return images

    return generate


# ----------------------------------------------------------------------------------------------
# choosing by the control edits achieve

RenderFn = Callable[[np.ndarray, np.ndarray, str], np.ndarray]
Scorer = Callable[[np.ndarray], np.ndarray]
SELECTION_COLUMNS = ("property", "method", "layers", "pearson_r", "control_slope", "leakage_mean",
                     "failed_share", "chosen")


@dataclass
class SelectionResult:
    directions: LatentDirections   # per property the chosen candidate's direction and layer range
    table: Any                     # pandas DataFrame, SELECTION_COLUMNS (+ female_share when measured)


def _sweep_metrics(requested: np.ndarray, measured: np.ndarray, sweep_id: np.ndarray, j: int) -> dict[str, float]:
    """The selection table's measures of property j (``stylegan.control_measures.sweep_measures``)."""
    m = sweep_measures(requested, measured, sweep_id, j)
    return {k: m[k] for k in ("pearson_r", "control_slope", "leakage_mean", "failed_share")}


def select_by_control(candidates: dict[str, LatentDirections], heldout_latents: Any, render: RenderFn,
                      scorer: Scorer, *, num_values: int = 5, layer_ranges: Sequence[str] = ("all",),
                      sweep_cap: float = 2.0, r_tolerance: float = 0.02, gender: Scorer | None = None,
                      progress: Callable[[int], None] | None = None) -> SelectionResult:
    """Per property, the candidate (and layer range) whose edits control the rendered images best.

    candidates: name -> directions fitted on the same samples (e.g. ``ridge`` and ``svm``).
    heldout_latents: w codes [K, D] the candidates were *not* fitted on. Each property is swept
    over ``num_values`` targets spanning the candidates' common range (mean +- ``sweep_cap`` sd, within
    the fitted scores' range),
    edited with each candidate's own edit settings, rendered by ``render(w, w_edited, layers)``
    and measured by ``scorer`` (images -> [N, P] on step 6's scale, NaN = failed). The best
    Pearson r wins; among its layer ranges within ``r_tolerance`` of that r, the lowest leakage
    (mean |slope| of the other properties) per unit of control slope wins. ``gender``
    (images -> P(woman)) adds female_share.
    """
    import pandas as pd

    if not candidates:
        raise ValueError("select_by_control needs at least one candidate")
    names = list(candidates)
    first = candidates[names[0]]
    props = first.property_names
    for name, cand in candidates.items():
        if cand.property_names != props or cand.w_dim != first.w_dim:
            raise ValueError(f"candidate {name!r} has other properties or w size than {names[0]!r}")
    w = first._as_w(heldout_latents)
    k = len(w)
    rows = []
    bounds = [c.sweep_range(sweep_cap) for c in candidates.values()]
    lo = np.max([b[0] for b in bounds], axis=0)
    hi = np.min([b[1] for b in bounds], axis=0)
    for j, prop in enumerate(props):
        grid = np.linspace(lo[j], hi[j], num_values) if np.isfinite(lo[j]) and hi[j] > lo[j] else None
        for name, cand in candidates.items():
            if grid is None or not cand.fitted[j]:
                rows.append({"property": prop, "method": name, "layers": "all", "pearson_r": float("nan"),
                             "control_slope": float("nan"), "leakage_mean": float("nan"),
                             "failed_share": float("nan")})
                continue
            base = np.repeat(w, num_values, axis=0)
            targets = sweep_targets(np.full((k, len(props)), np.nan), j, grid)
            edited = cand.edit(base, targets)
            sweep_id = np.repeat(np.arange(k), num_values)
            for layers in layer_ranges:
                images = render(base.astype(np.float32), edited, layers)
                measured = np.asarray(scorer(images), dtype=np.float64)
                if measured.shape != (len(base), len(props)):
                    raise ValueError(f"scorer returned shape {measured.shape}, expected ({len(base)}, {len(props)})")
                row = {"property": prop, "method": name, "layers": layers,
                       **_sweep_metrics(targets[:, j], measured, sweep_id, j)}
                if gender is not None:
                    row["female_share"] = float(np.mean(np.asarray(gender(images)).reshape(-1) >= 0.5))
                rows.append(row)
                if progress is not None:
                    progress(len(images))
    table = pd.DataFrame(rows)
    table["chosen"] = False
    picks: dict[str, tuple[str, str]] = {}
    for prop, part in table.groupby("property", sort=False):
        scored = part[np.isfinite(part["pearson_r"])]
        if scored.empty:
            picks[prop] = (names[0], "all")
            table.loc[part.index[0], "chosen"] = True
            continue
        best_method = scored.loc[scored["pearson_r"].idxmax(), "method"]
        same = scored[scored["method"] == best_method]
        close = same[same["pearson_r"] >= same["pearson_r"].max() - r_tolerance]
        # leakage per unit of achieved control: a range that moves nothing leaks nothing, too
        leak = (close["leakage_mean"] / close["control_slope"].abs()).replace([np.inf, -np.inf], np.nan)
        pick = leak.fillna(np.inf).idxmin()
        table.loc[pick, "chosen"] = True
        picks[prop] = (best_method, table.loc[pick, "layers"])
    return SelectionResult(combine_directions(candidates, picks), table[[*SELECTION_COLUMNS, *(
        ["female_share"] if "female_share" in table else [])]])


def combine_directions(candidates: dict[str, LatentDirections], picks: dict[str, tuple[str, str]]) -> LatentDirections:
    """One LatentDirections taking each property's row from the candidate picked for it.

    picks: property -> (candidate name, layer range).
    """
    first = next(iter(candidates.values()))
    rows = [candidates[picks[p][0]] for p in first.property_names]
    j = range(len(rows))
    info = dict(first.info)
    info["selected_from"] = {p: {"candidate": picks[p][0], "layers": picks[p][1]} for p in first.property_names}
    return LatentDirections(
        directions=np.stack([r.directions[i] for i, r in zip(j, rows)]),
        slopes=np.array([r.slopes[i] for i, r in zip(j, rows)]),
        intercepts=np.array([r.intercepts[i] for i, r in zip(j, rows)]),
        methods=tuple(r.methods[i] for i, r in zip(j, rows)),
        proj_mean=np.array([r.proj_mean[i] for i, r in zip(j, rows)]),
        proj_std=np.array([r.proj_std[i] for i, r in zip(j, rows)]),
        sigma_directions=np.stack([r.sigma_directions[:, i] for i, r in zip(j, rows)], axis=1),
        property_names=first.property_names, w_mean=first.w_mean, hold=first.hold, metric=first.metric,
        cap=first.cap, generator_fingerprint=first.generator_fingerprint, normalization=first.normalization,
        layers=tuple(picks[p][1] for p in first.property_names), info=info, guard_names=first.guard_names,
        guard_coefficients=first.guard_coefficients, guard_intercepts=first.guard_intercepts,
        guard_sigma_coefficients=first.guard_sigma_coefficients, edit_rule=first.edit_rule)
