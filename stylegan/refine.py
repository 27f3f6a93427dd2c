"""Refining a linear latent edit through the generator and the learned property regressor.

A calibrated linear edit (``LatentDirections.edit``) holds the unrequested properties only as far
as their *linear* predictions are right; in the control lab (docs/control.md) that left a largest
off-target leakage of 0.3-0.5 for every directions variant. The refinement starts from the linear
edit and corrects it with the frozen learned property regressor R (the same CNN the fine-tune uses
as its loss, never the judge) on the rendered image G(w'), per image aiming at

    R_j(G(w')) = t_j          for the requested properties,
    R_j(G(w')) = R_j(G(w))    for the others (held where the original image has them).

Four methods (``RefineConfig.method``), measured in the control lab by ``benchmarks/bench_refine.py``:

* ``learned`` (the one that meets issue 21's figures at <= 10 forwards): a small MLP trained once per generator,
  regressor and directions on the gradient method's objective (``stylegan.refine_correction``) corrects the
  linear edit in one pass; ``steps`` Broyden passes (below) then finish it. ``learned`` with 3 steps costs
  about 9 generator forwards (quiet CPU; a backward pass weighs more under load); with 0 steps one render.
* ``broyden``: ``steps`` passes (render, regressor, one backward) of damped Gauss-Newton steps on a Jacobian
  estimate started from the directions' linear model and corrected by each pass (the backward gives J^T e
  exactly, each step's observed change gives J du); the refined code is the best one rendered, so the last
  pass's image is the result (no render repeated). 3 steps cost about 9 forwards.
* ``secant``: the edit moves only inside the span of the directions' own vectors (the
  space the linear edit moves in; one coordinate per property with a direction), so the task is
  P equations in P unknowns. Broyden's method solves them from forward passes alone: the linear
  model's effect matrix is the first Jacobian, each render updates it by the change it saw, and a
  step that made things worse is halved. Each correction costs one render and one regressor pass;
  the refined image is the best one rendered, so no render is repeated. With the default 6
  corrections an image costs about 8 generator forwards (the original, the linear edit, 6
  corrections).
* ``gradient`` (default: it needs nothing but the regressor): the first version (Adam on the codes through G and
  R, about 30 steps), minimising

      sum_requested ((R_j(G(w')) - t_j) / s_j)^2
    + hold_weight * sum_unrequested ((R_j(G(w')) - R_j(G(w))) / s_j)^2
    + anchor_weight * mean(((w' - w_linear) / sd_w)^2)

  with ``s_j`` each property's spread and ``sd_w`` w's per-dimension spread; ``wplus=True`` gives
  each edited synthesis layer its own code. It costs 70-180 forwards.

It is the third option of the directions route ("refine", the ``directions+refine`` method), used when a
regressor is given (``stylegan.control_methods.DirectionsMethod(refiner=...)``); the default route stays linear.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from common.schedules import cosine_rampdown

__all__ = ["REFINE_METHODS", "EditRefiner", "RefineConfig", "w_spread"]

REFINE_METHODS = ("gradient", "secant", "learned", "broyden")
_DEFAULT_STEPS = {"gradient": 30, "secant": 6, "learned": 0, "broyden": 3}


@dataclass(frozen=True)
class RefineConfig:
    """Settings of the refinement (defaults measured in the control lab, docs/control.md)."""

    steps: int | None = None         # secant: corrections after the linear edit (one render each, default 6);
    #                                  gradient: Adam steps (default 30); broyden: passes (default 3)
    method: str = "gradient"         # gradient | secant | learned | broyden (see the module's docstring)
    #                                  learned: steps = Broyden passes after the learned correction (default 0)
    lr: float = 0.1                  # gradient only: Adam's first step, in units of w's per-dimension standard deviation
    #                                  (cosine decay to zero over the steps)
    hold_weight: float = 1.0         # gradient, broyden, learned's steps
    anchor_weight: float = 0.01      # gradient, broyden, learned's steps
    wplus: bool = False              # gradient only: one code per edited layer instead of one shared w

    def __post_init__(self) -> None:
        if self.method not in REFINE_METHODS:
            raise ValueError(f"refine method must be one of {REFINE_METHODS}, got {self.method!r}")
        if self.steps is None:   # each method's own default
            object.__setattr__(self, "steps", _DEFAULT_STEPS[self.method])
        if self.steps < 0:
            raise ValueError(f"refine steps must be >= 0, got {self.steps}")
        if not self.lr > 0:
            raise ValueError(f"refine lr must be > 0, got {self.lr}")
        if self.hold_weight < 0 or self.anchor_weight < 0:
            raise ValueError(f"refine weights must be >= 0, got {self.hold_weight}, {self.anchor_weight}")
        if self.wplus and self.method != "gradient":
            raise ValueError("refine wplus needs method='gradient' (the secant method moves one shared w)")


@torch.no_grad()
def w_spread(generator: torch.nn.Module, num: int = 4096, seed: int = 0) -> torch.Tensor:
    """w's per-dimension standard deviation [D] over ``num`` untruncated mapping outputs (a fixed seed)."""
    device = next(generator.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(num, generator.z_space_dim, generator=gen).to(device)
    w = torch.cat([generator.mapping(z[i:i + 512])["w"].float() for i in range(0, num, 512)])
    return w.std(dim=0).clamp_min(1e-6)


class EditRefiner:
    """Refines edited codes of one generator with one frozen property regressor (images_pm1 -> [N, P]).

    ``property_scale`` [P]: each property's spread on step 6's scale (the weights 1 / s_j); the
    directions' calibrated prediction spread is a good choice. ``directions``: the fitted
    ``LatentDirections`` whose edits are refined (the secant method needs their vectors; build
    with :meth:`for_directions`). The generator and the regressor are never changed.
    """

    def __init__(self, generator: torch.nn.Module, property_model: torch.nn.Module, property_scale: np.ndarray,
                 config: RefineConfig = RefineConfig(), directions: Any = None, correction: Any = None):
        self.generator = generator
        self.property_model = property_model.eval()
        self.property_model.requires_grad_(False)
        self.config = config
        self.device = next(generator.parameters()).device
        scale = np.asarray(property_scale, dtype=np.float32)
        if scale.ndim != 1 or not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            raise ValueError(f"property_scale must be positive and finite per property, got {scale}")
        needs_directions = config.method in ("secant", "broyden") or (config.method == "learned" and config.steps > 0)
        if needs_directions and directions is None:
            raise ValueError(f"the {config.method} refine starts from the directions' linear model: build it with "
                             "EditRefiner.for_directions(generator, regressor, directions), or use "
                             "RefineConfig(method='gradient')")
        if config.method == "learned" and correction is None:
            raise ValueError("the learned refine needs its correction: stylegan.refine_correction."
                             "fit_edit_correction(generator, regressor, directions), passed as correction=")
        self.inv_scale = torch.from_numpy(1.0 / scale).to(self.device)
        self.directions = directions
        self.correction = correction
        self._w_std: torch.Tensor | None = None

    @classmethod
    def for_directions(cls, generator: torch.nn.Module, property_model: torch.nn.Module, directions: Any,
                       config: RefineConfig = RefineConfig(), correction: Any = None) -> EditRefiner:
        """A refiner whose property scales are the spreads of the directions' calibrated predictions
        (``slopes * proj_std``; 1 for a property without direction)."""
        scale = np.asarray(directions.slopes * directions.proj_std, dtype=np.float64)
        return cls(generator, property_model, np.where(scale > 0, scale, 1.0), config, directions, correction)

    @property
    def w_std(self) -> torch.Tensor:
        """w's per-dimension spread (the gradient method's units), computed on first use."""
        if self._w_std is None:
            self._w_std = w_spread(self.generator).to(self.device)
        return self._w_std

    def _images(self, wp: torch.Tensor) -> torch.Tensor:
        image = self.generator.synthesis(wp, None, False)["image"]
        return torch.tanh(image) if getattr(self.generator, "final_tanh", False) else image

    def refine(self, w_original: torch.Tensor, w_edited: torch.Tensor, targets: np.ndarray,
               layer_mask: torch.Tensor) -> torch.Tensor:
        """wp [N, L, D]: the refined codes on the masked layers [N, L] (bool), the original w elsewhere.

        targets [N, P]: the requests (NaN = hold that property at the original image's value).
        """
        return self.refine_and_render(w_original, w_edited, targets, layer_mask)[0]

    def refine_and_render(self, w_original: torch.Tensor, w_edited: torch.Tensor, targets: np.ndarray,
                          layer_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(wp, its raw images or None): the secant and broyden methods (and learned with steps) return the image
        they already rendered for the refined codes (the caller need not render it again); the others None."""
        with torch.inference_mode(False):   # fresh tensors: the gradient method needs them outside inference mode
            w0 = w_original.detach().clone().float().to(self.device)
            w1 = w_edited.detach().clone().float().to(self.device)
            mask = layer_mask.detach().clone().bool().to(self.device)[:, :, None]            # [N, L, 1]
            t = torch.tensor(np.array(targets, dtype=np.float32), device=self.device)
            if self.config.method == "learned":
                with torch.no_grad():
                    w1 = self.correction.to(self.device)(w0, w1, t).detach()
            if self.config.steps == 0:
                return _mix(w0, w1[:, None, :], mask), None
            if self.config.method == "learned":   # its steps: Broyden passes from the corrected start
                return self._broyden(w0, w1, t, mask)
            if self.config.method == "gradient":
                with torch.enable_grad():
                    return self._gradient(w0, w1, t, mask), None
            if self.config.method == "broyden":
                return self._broyden(w0, w1, t, mask)
            with torch.no_grad():
                return self._secant(w0, w1, t, mask)

    # --- the secant method (Broyden) -----------------------------------------------------------
    def _secant(self, w0: torch.Tensor, w1: torch.Tensor, t: torch.Tensor, mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        n, num_layers = len(w0), mask.shape[1]
        d = self.directions
        active = np.flatnonzero(d.fitted)                       # properties with a direction: the unknowns
        coef = torch.from_numpy(d.coefficients[active]).float().to(self.device)          # [S, D]
        if d.metric == "whitened":
            basis = torch.from_numpy((d.sigma_directions * d.slopes[None, :])[:, active]).float().to(self.device)
        else:
            basis = coef.T.contiguous()                                                   # [D, S]
        jacobian = (coef @ basis).expand(n, -1, -1).clone()     # the linear model's effect of each coordinate
        inv = self.inv_scale[active]

        def measure(wp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            images = self._images(wp)
            return self.property_model(images).float()[:, active], images

        values, images = measure(torch.cat([w0[:, None, :].expand(-1, num_layers, -1), _mix(w0, w1[:, None, :], mask)]))
        start, y = values[:n], values[n:]
        best_images = images[n:]
        goal = torch.where(torch.isfinite(t[:, active]), torch.nan_to_num(t[:, active]), start)
        b = torch.zeros(n, len(active), device=self.device)
        err = _error(y, goal, inv)
        damping = torch.ones(n, device=self.device)
        for _ in range(self.config.steps):
            step = torch.linalg.lstsq(jacobian, (goal - y)[:, :, None]).solution[:, :, 0] * damping[:, None]
            y_new, images = measure(_mix(w0, (w1 + (b + step) @ basis.T)[:, None, :], mask))
            # Broyden's update from what the step really did (a step that made things worse informs too)
            surprise = y_new - y - (jacobian @ step[:, :, None])[:, :, 0]
            norm = step.square().sum(dim=1).clamp_min(1e-12)[:, None, None]
            jacobian = jacobian + surprise[:, :, None] * step[:, None, :] / norm
            err_new = _error(y_new, goal, inv)
            better = err_new < err
            damping = torch.where(better, torch.ones_like(damping), damping * 0.5)
            b = torch.where(better[:, None], b + step, b)
            y = torch.where(better[:, None], y_new, y)
            err = torch.where(better, err_new, err)
            best_images = torch.where(better[:, None, None, None], images, best_images)
        return _mix(w0, (w1 + b @ basis.T)[:, None, :], mask), best_images

    # --- the Broyden method: a few gradient passes on a Jacobian estimate that each pass corrects ---------
    def _broyden(self, w0: torch.Tensor, w1: torch.Tensor, t: torch.Tensor, mask: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """``steps`` passes (render, regressor, one backward) and one last render; the refined code is the best
        one rendered (its image comes with it, so no render is repeated).

        The objective is the gradient method's, written as ||e||^2 + a ||u||^2 with the residuals
        e_j = sqrt(weight_j) (R_j(G(w')) - goal_j) / s_j and u the change of w' in units of w's spread: a sum
        of squares whose optimum is near zero, so Gauss-Newton steps fit it better than Adam's lr-sized ones.
        The Jacobian estimate J [P, D] starts from the directions' linear model; the backward pass gives
        J^T e exactly at each code (adjoint update) and each step's observed change of e gives J du (secant
        update). Each step is the damped Gauss-Newton step from the best code so far; a step that made things
        worse raises the (Levenberg) damping, one that helped lowers it.
        """
        cfg = self.config
        n, num_layers, dim = len(w0), mask.shape[1], w0.shape[1]
        requested = torch.isfinite(t)
        with torch.no_grad():
            start = self.property_model(self._images(w0[:, None, :].expand(-1, num_layers, -1).contiguous())).float()
        goal = torch.where(requested, torch.nan_to_num(t), start)
        sw = torch.where(requested, torch.ones_like(t), torch.full_like(t, cfg.hold_weight)).sqrt() * self.inv_scale
        w_std = self.w_std
        a = cfg.anchor_weight / dim                       # the anchor as a sum over u's dimensions
        jac = self._linear_jacobian(sw, w_std)            # [N, P, D]
        u = torch.zeros(n, dim, device=w0.device)
        best = {"loss": torch.full((n,), math.inf, device=w0.device), "u": u.clone(), "e": None, "images": None}
        prev_u = prev_e = None
        damping = torch.zeros(n, device=w0.device)
        for k in range(cfg.steps + 1):
            last = k == cfg.steps
            with torch.enable_grad() if not last else torch.no_grad():
                uu = u.clone().requires_grad_(not last)
                images = self._images(_mix(w0, (w1 + uu * w_std)[:, None, :], mask))
                e = (self.property_model(images).float() - goal) * sw
                if not last:
                    (jte,) = torch.autograd.grad(e.square().sum(), uu)
                    jte = jte / 2                                                       # J^T e
            e, images = e.detach(), images.detach()
            loss = e.square().sum(1) + a * u.square().sum(1)
            better = loss < best["loss"]
            best["loss"] = torch.where(better, loss, best["loss"])
            best["u"] = torch.where(better[:, None], u, best["u"])
            best["e"] = e if best["e"] is None else torch.where(better[:, None], e, best["e"])
            best["images"] = images if best["images"] is None else torch.where(better[:, None, None, None], images,
                                                                               best["images"])
            if last:
                break
            if prev_u is not None:   # secant: what the last step really did
                du, de = u - prev_u, e - prev_e
                miss = de - (jac @ du[:, :, None])[:, :, 0]
                jac = jac + miss[:, :, None] * du[:, None, :] / du.square().sum(1).clamp_min(1e-12)[:, None, None]
                damping = torch.where(better, damping * 0.1,
                                      torch.maximum(damping * 10, jac.square().sum((1, 2)) / jac.shape[1] * 0.1))
            # adjoint: J^T e is known exactly at this code
            miss = jte - (jac.transpose(1, 2) @ e[:, :, None])[:, :, 0]
            jac = jac + e[:, :, None] * miss[:, None, :] / e.square().sum(1).clamp_min(1e-12)[:, None, None]
            prev_u, prev_e = u, e
            u = best["u"] + _damped_gauss_newton(jac, best["e"], best["u"], a, damping)
        return _mix(w0, (w1 + best["u"] * w_std)[:, None, :], mask), best["images"]

    def _linear_jacobian(self, sw: torch.Tensor, w_std: torch.Tensor) -> torch.Tensor:
        """[N, P, D]: the directions' linear model of the residuals' response to u (zero rows without direction)."""
        coef = torch.from_numpy(np.asarray(self.directions.coefficients, dtype=np.float32)).to(sw.device)
        coef = torch.where(torch.from_numpy(np.asarray(self.directions.fitted))[:, None].to(sw.device), coef,
                           torch.zeros_like(coef))
        return sw[:, :, None] * (coef * w_std[None, :])[None]

    # --- the gradient method (the first version) -----------------------------------------------
    def _gradient(self, w0: torch.Tensor, w1: torch.Tensor, t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        requested = torch.isfinite(t)
        num_layers = mask.shape[1]
        with torch.no_grad():
            start = self.property_model(self._images(w0[:, None, :].expand(-1, num_layers, -1).contiguous()))
        goal = torch.where(requested, torch.nan_to_num(t), start)
        weight = torch.where(requested, torch.ones_like(t), torch.full_like(t, cfg.hold_weight))
        shape = (len(w0), num_layers if cfg.wplus else 1, w0.shape[1])
        u = torch.zeros(shape, device=w0.device, requires_grad=True)
        opt = torch.optim.Adam([u], lr=cfg.lr)
        w_std = self.w_std
        for k in range(cfg.steps):
            # cosine decay to zero: Adam's constant-size steps would otherwise leave every code
            # jittering around the optimum by about lr, which the judge sees as leakage
            for group in opt.param_groups:
                group["lr"] = cfg.lr * cosine_rampdown(k, cfg.steps)
            wp = _mix(w0, w1[:, None, :] + u * w_std, mask)
            pred = self.property_model(self._images(wp))
            err = ((pred - goal) * self.inv_scale).square() * weight
            loss = err.sum(dim=1) + cfg.anchor_weight * u.square().mean(dim=(1, 2))
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            opt.step()
        return _mix(w0, w1[:, None, :] + u.detach() * w_std, mask).detach()


def _damped_gauss_newton(jac: torch.Tensor, e: torch.Tensor, u: torch.Tensor, a: float, damping: torch.Tensor
                         ) -> torch.Tensor:
    """The step d [N, D] minimising ||e + J d||^2 + a ||u + d||^2 + damping ||d||^2 (per code), solved in the
    P-dimensional residual space: d = -(g - J^T (J J^T + s)^-1 J g) / s with g = J^T e + a u, s = a + damping."""
    jac, e, u = jac.double(), e.double(), u.double()      # float64: the two terms nearly cancel when s is small
    s = (a + damping.double()).clamp_min(1e-8)
    g = (jac.transpose(1, 2) @ e[:, :, None])[:, :, 0] + a * u
    eye = torch.eye(jac.shape[1], device=jac.device, dtype=jac.dtype)
    inner = torch.linalg.solve(jac @ jac.transpose(1, 2) + s[:, None, None] * eye, (jac @ g[:, :, None]))
    return (-(g - (jac.transpose(1, 2) @ inner)[:, :, 0]) / s[:, None]).float()


def _error(values: torch.Tensor, goal: torch.Tensor, inv_scale: torch.Tensor) -> torch.Tensor:
    """Per code: the squared distance to the goal in units of each property's spread."""
    return ((values - goal) * inv_scale).square().sum(dim=1)


def _mix(w0: torch.Tensor, edited: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[N, L, D]: ``edited`` ([N, 1 or L, D]) on the masked layers, the original w elsewhere."""
    edited = edited.expand(-1, mask.shape[1], -1)
    return torch.where(mask, edited, w0[:, None, :].expand_as(edited)).contiguous()
