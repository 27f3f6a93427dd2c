"""Latent directions against InterFaceGAN's recipe, in a synthetic world whose truth is known.

Three measurements (a table on stdout; the records ``bench_directions-cpu`` for 1 and 2 and
``bench_directions_timing-cpu`` for 3, under benchmarks/results/):

1. agreement: on the same rows, the cosine between our ``svm`` direction and a direction made
   by InterFaceGAN's ``train_boundary`` recipe (the 2% highest / lowest scores, 70% of them to
   fit a linear ``SVC``; re-stated here from its description, not copied);
2. control: w codes with correlated dimensions, five saturating properties of w, two pairs of
   them entangled (their true directions overlap); directions fitted on noisy scores; held-out
   latents edited to a grid of values; the *true* property of the edited w is the judge
   (Pearson r, MAE, mean |slope| of the other properties = leakage, share of requests the cap
   refused). InterFaceGAN's direction gets the same one-dimensional calibration as ours (a
   direction alone does not say how far to go);
3. time: fitting at the real size (w_dim 512) for N = 2,000 and 10,000 samples.

This world is linear-ish in w by construction; whether holding or a whitened metric helps on a
real generator is measured by benchmarks/control_lab.py, where the judge looks at images.

    python benchmarks/bench_directions.py [--seeds 5] [--skip-timing | --timing-only]
"""
from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks.records import add_results_dir_argument, start_record  # noqa: E402
from common.paths import PROPERTY_NAMES  # noqa: E402
from stylegan.directions import LatentDirections, fit_directions  # noqa: E402

P = len(PROPERTY_NAMES)


class World:
    """w = A g + mu (anisotropic, correlated); property p = sigmoid(k * beta_p . (w - mu)) in [0, 1].

    beta_1 leans on beta_0 and beta_4 on beta_3 (entangled pairs, |cos| about 0.6).
    """

    def __init__(self, dim: int, seed: int):
        rng = np.random.default_rng(seed)
        scales = 1.0 / np.sqrt(1.0 + np.arange(dim) / 8.0)
        q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
        self.a = q * scales[None, :]
        self.mu = rng.standard_normal(dim) * 0.3
        beta = rng.standard_normal((P, dim))
        beta[1] = 0.6 * beta[0] / np.linalg.norm(beta[0]) * np.linalg.norm(beta[1]) + 0.8 * beta[1]
        beta[4] = -0.6 * beta[3] / np.linalg.norm(beta[3]) * np.linalg.norm(beta[4]) + 0.8 * beta[4]
        cov = self.a @ self.a.T
        self.beta = beta / np.sqrt(np.einsum("pd,de,pe->p", beta, cov, beta))[:, None]   # unit sd along each
        self.dim = dim

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return (rng.standard_normal((n, self.dim)) @ self.a.T + self.mu).astype(np.float32)

    def truth(self, w: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-1.5 * (np.asarray(w, np.float64) - self.mu) @ self.beta.T))


def interfacegan_recipe(w: np.ndarray, s: np.ndarray, ratio: float = 0.02, train_share: float = 0.7,
                        seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit normal of a linear SVC on InterFaceGAN's split (top / bottom ``ratio``, ``train_share`` of them
    fitted) and the rows it was fitted on."""
    from sklearn.svm import SVC

    rng = np.random.default_rng(seed)
    order = np.argsort(-s)
    k = min(int(len(s) * ratio), len(s) // 2)
    t = int(k * train_share)
    pos = order[:k][rng.permutation(k)[:t]]
    neg = order[-k:][rng.permutation(k)[:t]]
    x = np.concatenate([w[pos], w[neg]]).astype(np.float64)
    y = np.r_[np.ones(t), np.zeros(t)]
    coef = SVC(kernel="linear").fit(x, y).coef_.reshape(-1)
    return coef / np.linalg.norm(coef), np.concatenate([pos, neg])


def calibrated(directions: np.ndarray, w: np.ndarray, s: np.ndarray, cap: float = 3.0) -> LatentDirections:
    """Our container around given unit directions, with the same 1-d least-squares calibration as ours."""
    w = np.asarray(w, np.float64)
    slopes, intercepts, pm, ps = [], [], [], []
    for j, n in enumerate(directions):
        proj = w @ n
        b = np.cov(proj, s[:, j], bias=True)[0, 1] / proj.var()
        slopes.append(b)
        intercepts.append(s[:, j].mean() - b * proj.mean())
        pm.append(proj.mean())
        ps.append(proj.std())
    cov = np.cov(w, rowvar=False)
    return LatentDirections(directions, slopes, intercepts, ("igan",) * P, pm, ps, cov @ directions.T,
                            PROPERTY_NAMES, w.mean(0), cap=cap)


def control(model: LatentDirections, world: World, w: np.ndarray, grid: np.ndarray, **edit) -> dict:
    """Sweep every property over its grid on latents w; judge with the truth."""
    rs, maes, leaks, refused = [], [], [], []
    for j in range(P):
        base = np.repeat(w, len(grid[j]), axis=0)
        targets = np.full((len(base), P), np.nan)
        targets[:, j] = np.tile(grid[j], len(w))
        edited, reached = model.edit(base, targets, return_report=True, **edit)
        true = world.truth(edited)
        rs.append(np.corrcoef(targets[:, j], true[:, j])[0, 1])
        maes.append(np.abs(targets[:, j] - true[:, j]).mean())
        x = grid[j] - grid[j].mean()
        slopes = (true.reshape(len(w), len(grid[j]), P) * x[None, :, None]).sum(1) / (x * x).sum()  # [K, P]
        leaks.append(np.abs(np.delete(slopes, j, axis=1)).mean())
        refused.append(1.0 - reached[:, j].mean())
    return {"r": rs, "mae": maes, "leakage": leaks, "refused": refused}


def run_seed(seed: int, dim: int, n: int, noise: float) -> dict:
    world = World(dim, seed)
    rng = np.random.default_rng(seed + 1000)
    w = world.sample(n, rng)
    scores = world.truth(w) + noise * rng.standard_normal((n, P))
    heldout = world.sample(40, rng)
    grid = np.stack([np.linspace(*np.quantile(scores[:, j], [0.1, 0.9]), 7) for j in range(P)])
    recipe = [interfacegan_recipe(w, scores[:, j], seed=seed) for j in range(P)]
    igan = np.stack([d for d, _ in recipe])
    # our svm on exactly the recipe's fitted rows (each property alone): the same method, so cosine ~1
    same_rows = []
    for j, (_, rows) in enumerate(recipe):
        fitted = fit_directions(w[rows], scores[rows, j:j + 1], seed, method="svm", svm_count=len(rows) // 2,
                                property_names=(PROPERTY_NAMES[j],), min_samples=4)
        same_rows.append(float(fitted.directions[0] @ igan[j]))
    models = {
        "interfacegan": calibrated(igan, w, scores),
        "svm": fit_directions(w, scores, seed, method="svm"),
        "svm_2pct": fit_directions(w, scores, seed, method="svm", svm_count=int(0.02 * n)),
        "ridge": fit_directions(w, scores, seed, method="ridge"),
        "auto": fit_directions(w, scores, seed),
    }
    out = {"cosine_same_rows": same_rows,
           "cosine_svm_2pct_vs_interfacegan": np.sum(models["svm_2pct"].directions * igan, axis=1).tolist(),
           "cosine_svm_vs_interfacegan": np.sum(models["svm"].directions * igan, axis=1).tolist(),
           "cosine_truth": {name: np.sum(m.directions * world.beta / np.linalg.norm(world.beta, axis=1,
                                                                                     keepdims=True), 1).tolist()
                            for name, m in models.items()},
           "auto_methods": list(models["auto"].methods), "control": {}}
    for name, model in models.items():
        for hold in (False, True):
            for metric in ("euclidean", "whitened"):
                if name == "interfacegan" and (hold or metric != "euclidean"):
                    continue
                key = f"{name} {'hold' if hold else 'free'} {metric}"
                out["control"][key] = control(model, world, heldout, grid, hold=hold, metric=metric)
    return out


def timing(seed: int = 0) -> dict:
    out = {}
    warm = World(16, seed).sample(64, np.random.default_rng(seed))   # imports and first calls out of the timing
    fit_directions(warm, np.random.default_rng(seed).random((64, P)), seed)
    for n in (2000, 10000):
        world = World(512, seed)
        rng = np.random.default_rng(seed)
        w = world.sample(n, rng)
        s = world.truth(w) + 0.05 * rng.standard_normal((n, P))
        for method in ("ridge", "svm", "auto"):
            start, cpu = time.perf_counter(), time.process_time()
            fit_directions(w, s, seed, method=method)
            out[f"{method} N={n}"] = time.perf_counter() - start
            out[f"{method} N={n} cpu"] = time.process_time() - cpu   # one thread: robust to a busy machine
    return out


def record_timing(results_dir) -> None:
    record = start_record("bench_directions_timing", "cpu")
    seconds = timing()
    print("fit seconds (w_dim 512, 5 properties): " + ", ".join(f"{k} {v:.1f}s" for k, v in seconds.items()))
    rows = []
    for n in (2000, 10000):
        row = {"samples": n}
        for method in ("ridge", "svm", "auto"):
            row[f"{method}, CPU s"] = round(seconds[f"{method} N={n} cpu"], 2)
            row[f"{method}, wall s"] = round(seconds[f"{method} N={n}"], 2)
            record.figures[f"{method}_n{n}_cpu_seconds"] = round(seconds[f"{method} N={n} cpu"], 2)
            record.figures[f"{method}_n{n}_wall_seconds"] = round(seconds[f"{method} N={n}"], 2)
        rows.append(row)
    record.tables["fit_seconds"] = rows
    record.settings.update({"what": "fit_directions at w_dim 512, five properties, the held-out check included; "
                                    "CPU seconds of one thread (robust to a busy machine) and wall seconds"})
    record.write(results_dir)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--timing-only", action="store_true")
    add_results_dir_argument(parser)
    args = parser.parse_args(argv)
    if args.timing_only:
        record_timing(args.results_dir)
        return 0
    record = start_record("bench_directions", "cpu")
    runs = [run_seed(seed, args.dim, args.samples, args.noise) for seed in range(args.seeds)]
    keys = list(runs[0]["control"])
    print(f"world: w_dim {args.dim}, {args.samples} samples, score noise sd {args.noise}, {args.seeds} seeds; "
          "mean over properties and seeds (worst property in brackets)")
    print(f"{'method':34s} {'r':>14s} {'mae':>14s} {'leakage':>14s} {'refused':>8s}")
    table = []
    for key in keys:
        r = np.array([run["control"][key]["r"] for run in runs])
        mae = np.array([run["control"][key]["mae"] for run in runs])
        leak = np.array([run["control"][key]["leakage"] for run in runs])
        ref = np.array([run["control"][key]["refused"] for run in runs])
        t = {"direction, edit, metric": key, "r": round(r.mean(), 3), "r worst property": round(r.mean(0).min(), 3),
             "MAE": round(mae.mean(), 3), "MAE worst": round(mae.mean(0).max(), 3),
             "leakage": round(leak.mean(), 3), "leakage worst": round(leak.mean(0).max(), 3),
             "refused": round(ref.mean(), 3)}
        table.append(t)
        print(f"{key:34s} {t['r']:6.3f} ({t['r worst property']:.3f}) {t['MAE']:6.3f} ({t['MAE worst']:.3f}) "
              f"{t['leakage']:6.3f} ({t['leakage worst']:.3f}) {t['refused']:8.3f}")
    same = np.array([run["cosine_same_rows"] for run in runs])
    print(f"cosine(our svm, InterFaceGAN recipe) on the recipe's own fitted rows: min {same.min():.6f}")
    cos2 = np.array([run["cosine_svm_2pct_vs_interfacegan"] for run in runs])
    cos = np.array([run["cosine_svm_vs_interfacegan"] for run in runs])
    print(f"cosine(our svm on the same 2% extremes, InterFaceGAN recipe): min {cos2.min():.4f}, mean {cos2.mean():.4f}")
    print(f"cosine(our svm with the default count, InterFaceGAN recipe): min {cos.min():.4f}, mean {cos.mean():.4f}")
    truth = {name: float(np.mean([run["cosine_truth"][name] for run in runs])) for name in runs[0]["cosine_truth"]}
    print("mean cosine to the true direction: " + ", ".join(f"{k} {v:.3f}" for k, v in truth.items()))
    auto = [m for run in runs for m in run["auto_methods"]]
    record.tables["control"] = table
    record.figures.update({"cosine_same_rows_min": round(float(same.min()), 6),
                           "cosine_svm_2pct_vs_interfacegan_min": round(float(cos2.min()), 4),
                           "cosine_svm_vs_interfacegan_min": round(float(cos.min()), 4),
                           **{f"cosine_truth_{k}": round(v, 3) for k, v in truth.items()},
                           "auto_picked_ridge_share": round(auto.count("ridge") / len(auto), 3)})
    record.settings.update({"w_dim": args.dim, "samples": args.samples, "noise_sd": args.noise, "seeds": args.seeds,
                            "heldout_latents": 40, "targets_per_property": 7})
    record.write(args.results_dir)
    if not args.skip_timing:
        record_timing(args.results_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
