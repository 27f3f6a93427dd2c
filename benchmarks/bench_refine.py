"""What the directions route's "refine" option costs per image, and what each refine method holds (issue 21 §4).

Target: in the lab's exact-judge worlds, r >= 0.9 and every off-diagonal leakage <= 0.2 on every property,
at a cost of at most 10 generator forwards of the same image (batch 1, 2 threads, this machine).

1. Cost. The real size: genforce's 256 px StyleGAN v1 generator (random weights: speed does not depend on
   them) and the learned regressor at its default size. Batch 1, end to end: the refine of an edit plus
   the refined image's render, divided by one forward (mapping + synthesis) of the same batch. Batch 64
   (at ``--batch-resolution`` px: a 256 px batch of 64 does not fit this machine's time): the unit costs
   (one forward; one render + regressor; one gradient step through both) measured at batch 64, and each
   method's ratio composed from its pass counts (said so in the table).
2. Quality. Each method in the lab worlds (``--worlds``, ``--seeds``): the lab's refine arm (SVM
   directions, hold, Euclidean; step 9's sweeps judged by the exact properties), cached per world, seed and
   method in ``--cache`` (the learned method's correction too, trained once per world and seed with
   ``--correction-steps``; its training seconds are a column).

    python benchmarks/bench_refine.py --worlds t1 --seeds 0 --methods gradient:30 learned:3 broyden:3
"""
from __future__ import annotations

import argparse
import functools
import json
import pathlib
import sys
import tempfile
import time

import numpy as np
import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks.records import NOT_MEASURED, add_results_dir_argument, start_record
from common.paths import PROPERTY_NAMES
from stylegan.networks import StyleGANGenerator
from stylegan.property_regressor import PropertyRegressor
from stylegan.refine import EditRefiner, RefineConfig
from stylegan.refine_correction import CorrectionConfig, EditCorrection
from stylegan.refine_correction_step import LEARNED_REFINE

R_TARGET, LEAK_TARGET, FORWARD_BUDGET = 0.9, 0.2, 10.0
COST_COLUMNS = {"one forward, s per image": "forward_s", "refine, s per image": "refine_s",
                "ratio, measured": "ratio_measured", "ratio, composed": "ratio_composed"}
"""The record's column names (no spaces or commas: the docs' markers name them)."""


def parse_method(text: str) -> RefineConfig:
    """``gradient:30``, ``secant:6``, ``learned:3``, ``broyden:3,hold_weight=2`` -> RefineConfig(method, steps, options)."""
    method, _, rest = text.partition(":")
    steps, *options = rest.split(",") if rest else [""]
    settings = {}
    for option in options:
        key, _, value = option.partition("=")
        if key not in RefineConfig.__dataclass_fields__ or key in ("method", "steps") or not value:
            raise ValueError(f"refine method {text!r}: {option!r} is no RefineConfig setting (key=value)")
        settings[key] = value.lower() == "true" if value.lower() in ("true", "false") else float(value)
    return RefineConfig(method=method, steps=int(steps) if steps else None, **settings)


def passes(config: RefineConfig) -> dict[str, int]:
    """How many of each pass one refined image costs (the final render included)."""
    if config.method == "gradient":
        return {"render+R": 1, "gradient": config.steps, "render": 1}
    if config.method == "secant":
        return {"render+R": 2 + config.steps}
    if config.method == "learned" and config.steps == 0:
        return {"render": 1}
    # broyden, learned with steps: the last pass renders the refined image (no render after it)
    return {"render+R": 2, "gradient": config.steps}


def _median_time(fn, repeats: int, device: torch.device | None = None, warm_up: bool = True) -> float:
    sync = torch.cuda.synchronize if device is not None and device.type == "cuda" else (lambda: None)
    if warm_up:
        fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


@functools.cache
def _timing_directions(w_dim: int):
    from stylegan.directions import fit_directions
    rng = np.random.default_rng(0)
    w = rng.standard_normal((600, w_dim))
    scores = np.clip(0.5 + 0.1 * w[:, :5] + 0.02 * rng.standard_normal((600, 5)), 0, 1)
    return fit_directions(w, scores, seed=0, method="ridge")


_UNIT_COSTS: dict[tuple, dict[str, float]] = {}


@functools.cache
def _timing_models(resolution: int, device: torch.device):
    torch.manual_seed(0)
    generator = StyleGANGenerator(resolution=resolution).to(device).eval().requires_grad_(False)
    regressor = PropertyRegressor().to(device).eval().requires_grad_(False)
    correction = EditCorrection(generator.w_space_dim, 5, CorrectionConfig().hidden).to(device)
    return generator, regressor, correction


def measure_cost(methods: list[str], resolution: int, batch: int, repeats: int, end_to_end: bool,
                 device: torch.device) -> list[dict]:
    generator, regressor, correction = _timing_models(resolution, device)
    directions = _timing_directions(generator.w_space_dim)
    layers = generator.num_layers
    z = torch.randn(batch, generator.z_space_dim).to(device)
    with torch.no_grad():
        w = generator.mapping(z)["w"]
    targets = np.full((batch, 5), np.nan, np.float32)
    targets[:, 0] = 0.9
    w_edit = torch.from_numpy(directions.edit(w.cpu().numpy(), targets)).float().to(device)
    mask = torch.ones(batch, layers, dtype=torch.bool, device=device)

    def forward():
        with torch.inference_mode():
            generator.synthesis(generator.mapping(z)["w"][:, None].expand(-1, layers, -1), None, False)

    def render_r():
        with torch.inference_mode():
            regressor(generator.synthesis(w[:, None].expand(-1, layers, -1), None, False)["image"])

    def gradient_step():
        u = w.clone().requires_grad_(True)
        regressor(generator.synthesis(u[:, None].expand(-1, layers, -1), None, False)["image"]).square().sum().backward()

    key = (resolution, batch, str(device))
    if key not in _UNIT_COSTS:   # the same for every method: measured once per process
        unit = {"forward": _median_time(forward, repeats, device)}
        unit["render"] = unit["forward"]
        unit["render+R"] = _median_time(render_r, repeats, device)
        unit["gradient"] = _median_time(gradient_step, max(1, repeats // 2), device)
        _UNIT_COSTS[key] = unit
    unit = _UNIT_COSTS[key]
    rows = []
    for text in methods:
        config = parse_method(text)
        composed = sum(count * unit[kind] for kind, count in passes(config).items()) / unit["forward"]
        row = {"method": text, "batch": batch, "resolution": resolution,
               "one forward, s per image": round(unit["forward"] / batch, 4),
               "passes": " + ".join(f"{n} {k}" for k, n in passes(config).items()),
               "ratio, composed": round(composed, 2)}
        if end_to_end:
            refiner = EditRefiner.for_directions(generator, regressor, directions, config, correction)

            def refine_and_render(refiner=refiner):
                wp, images = refiner.refine_and_render(w, w_edit, targets, mask)
                if images is None:
                    with torch.inference_mode():
                        generator.synthesis(wp, None, False)

            # the unit costs warmed the networks up; a long method is timed once, without a second warm-up run
            seconds = _median_time(refine_and_render, 1 if config.steps > 6 else repeats, device,
                                   warm_up=config.steps <= 6)
            row["refine, s per image"] = round(seconds / batch, 3)
            row["ratio, measured"] = round(seconds / unit["forward"], 2)
        rows.append(row)
        print(row, flush=True)
    return rows


def measure_quality(world_name: str, seed: int, methods: list[str], cache: pathlib.Path, say,
                    correction_config: CorrectionConfig | None = None, cached_only: bool = False) -> dict[str, dict]:
    """{method: {"r": [P], "leakage_max": [P], ...}} of the lab's refine arm in one world and seed."""
    from common.io import atomic_write_text
    from lab.control_lab import build_world, comparison_rows, evaluate_method, fit_lab_directions
    from lab.regressor_cache import cached_lab_regressor
    from lab.world_family import WORLDS
    from stylegan.control_methods import DirectionsMethod

    correction_config = correction_config or CorrectionConfig()
    spec = next(w for w in WORLDS if w.name == world_name)
    path = cache / f"refine-{world_name}-s{seed}.json"
    done = json.loads(path.read_text()) if path.is_file() else {}
    def key(text: str) -> str:   # a learned result belongs to its correction's training length
        return f"{text}, correction {correction_config.steps} steps" if text.startswith("learned") else text

    todo = [m for m in ["linear", *methods] if key(m) not in done]
    if not todo or cached_only:
        return {m: done[key(m)] for m in ["linear", *methods] if key(m) in done}
    world = build_world(spec.config(seed, 10, 6))
    regressor, _, _ = cached_lab_regressor(world, cache / f"regressor-{world_name}-s{seed}")
    directions = fit_lab_directions(world, method="svm")[0].with_options(hold=True, metric="euclidean")
    correction, correction_info = None, None
    for text in todo:
        start = time.perf_counter()
        refiner = None
        if text != "linear":
            config = parse_method(text)
            if config.method == "learned" and correction is None:
                correction, correction_info = _cached_correction(
                    cache / f"correction-{world_name}-s{seed}-{correction_config.steps}", world.generator, regressor,
                    directions, correction_config, say)
            refiner = EditRefiner.for_directions(world.generator, regressor, directions, config, correction)
        method = DirectionsMethod(world.generator, directions, world.config.batch, world.ranges, refiner=refiner)
        rows = comparison_rows("directions", evaluate_method(world, method)).set_index("property")
        done[key(text)] = {"r": [round(float(rows.at[p, "pearson_r"]), 4) for p in PROPERTY_NAMES],
                      "leakage_max": [round(float(rows.at[p, "leakage_max"]), 4) for p in PROPERTY_NAMES],
                           "seconds": round(time.perf_counter() - start, 1)}
        if text.startswith("learned"):
            done[key(text)]["correction"] = correction_info
        atomic_write_text(path, json.dumps(done))
        q = done[key(text)]
        say(f"{world_name} s{seed} {key(text)}: r {q['r']} leakage max {q['leakage_max']} ({q['seconds']:.0f}s)")
    return {m: done[key(m)] for m in ["linear", *methods]}


def world_means(quality_rows: list[dict]) -> list[dict]:
    """Per world and method, the mean over its measured seeds of each property's r and largest leakage, then the
    smallest mean r and the largest mean leakage (issue 21 judges a world by its mean over seeds). The mean of
    each property's largest leakage bounds the largest mean pair leakage from above: a verdict on it is strict."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in quality_rows:
        groups.setdefault((row["world"], row["method"]), []).append(row)
    means = []
    for (world, method), rows in groups.items():
        r = {p: round(float(np.mean([row[f"r_{p}"] for row in rows])), 4) for p in PROPERTY_NAMES}
        leak = {p: round(float(np.mean([row[f"leak_{p}"] for row in rows])), 4) for p in PROPERTY_NAMES}
        means.append({"world": world, "method": method, "seeds": " ".join(str(row["seed"]) for row in rows),
                      "r_min": min(r.values()), "leakage_max": max(leak.values()),
                      "met": min(r.values()) >= R_TARGET and max(leak.values()) <= LEAK_TARGET,
                      **{f"r_{p}": v for p, v in r.items()}, **{f"leak_{p}": v for p, v in leak.items()}})
    return means


def _cached_correction(stem: pathlib.Path, generator, regressor, directions, config: CorrectionConfig, say
                       ) -> tuple[EditCorrection, dict]:
    """``fit_edit_correction``, kept as ``<stem>.pt`` + ``<stem>.json`` (its settings, loss and training seconds):
    a stopped or second run reuses it; a cache trained with other settings is retrained."""
    from dataclasses import asdict

    from common.io import atomic_write_text
    from stylegan.refine_correction import fit_edit_correction

    weights, meta = stem.with_suffix(".pt"), stem.with_suffix(".json")
    if weights.is_file() and meta.is_file():
        info = json.loads(meta.read_text())
        if info.get("config") == asdict(config):
            model = EditCorrection(generator.w_space_dim, len(directions.property_names), config.hidden)
            model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
            return model.eval().requires_grad_(False), info
    model, info = fit_edit_correction(generator, regressor, directions, config, say=say)
    tmp = weights.with_suffix(".pt.tmp")
    torch.save(model.state_dict(), tmp)
    tmp.replace(weights)
    atomic_write_text(meta, json.dumps(info))
    return model, info


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="where the cost is measured (the lab's quality: always CPU)")
    parser.add_argument("--methods", nargs="+", default=["gradient:30", "gradient:2", "secant:6", "broyden:3", "learned:0",
                                                         "learned:2", "learned:3"])
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch-resolution", type=int, default=64, help="resolution of the batch-64 unit costs")
    parser.add_argument("--large-batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worlds", nargs="*", default=["t1"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--quality-threads", type=int, default=1)
    parser.add_argument("--correction-steps", type=int, default=CorrectionConfig().steps,
                        help="training steps of the learned correction (the learned method)")
    parser.add_argument("--skip-cost", action="store_true")
    parser.add_argument("--cached-only", action="store_true",
                        help="measure nothing: the record from what --cache holds (e.g. after one process measured "
                             "the cost and another the quality); what it lacks is 'not measured'")
    parser.add_argument("--cache", type=pathlib.Path, default=pathlib.Path(tempfile.gettempdir()) / "control_lab_ft")
    add_results_dir_argument(parser)
    args = parser.parse_args(argv)
    for text in args.methods:
        parse_method(text)
    device = torch.device(args.device)
    record = start_record("bench_refine", device.type)
    record.settings.update({"resolution": args.resolution, "batch_resolution": args.batch_resolution,
                            "threads": args.threads, "methods": args.methods, "worlds": args.worlds,
                            "seeds": args.seeds, "weights (cost)": "random (speed does not depend on them)",
                            "targets": f"r >= {R_TARGET}, every leakage <= {LEAK_TARGET}, <= {FORWARD_BUDGET:g} "
                                       "forwards at batch 1", "cuda": "measured" if device.type == "cuda" else "not measured here"})
    args.cache.mkdir(parents=True, exist_ok=True)
    if not args.skip_cost:   # cached per method and setting: a second process may measure the quality meanwhile
        from common.io import atomic_write_text
        torch.set_num_threads(args.threads)
        rows = []
        for text in args.methods:
            for batch, resolution, whole in ((1, args.resolution, True), (args.large_batch, args.batch_resolution, False)):
                path = args.cache / f"cost-{device.type}-{args.threads}t-{text}-b{batch}-{resolution}px.json"
                if not path.is_file() and args.cached_only:
                    continue
                if not path.is_file():
                    found = measure_cost([text], resolution, batch, args.repeats if batch == 1 else 1, end_to_end=whole,
                                         device=device)
                    atomic_write_text(path, json.dumps(found[0]))
                rows.append(json.loads(path.read_text()))
        record.tables["cost"] = [{COST_COLUMNS.get(k, k): v for k, v in row.items()} for row in rows]
        default = f"{RefineConfig().method}:{RefineConfig().steps}"   # --refine without step 7c's correction
        learned = f"{LEARNED_REFINE.method}:{LEARNED_REFINE.steps}"    # --refine with it
        per_image = []
        for row in (r for r in rows if r["method"] in (default, learned)):
            whole = "refine, s per image" in row
            refined = row["refine, s per image"] if whole else row["ratio, composed"] * row["one forward, s per image"]
            # (the cached rows keep the measuring names; the record's "cost" table renames them)
            per_image.append({"batch": row["batch"], "resolution": row["resolution"], "method": row["method"],
                              "when": "without step 7c" if row["method"] == default else "with step 7c's correction",
                              "linear, s per image": row["one forward, s per image"],
                              "refined, s per image": round(refined, 3),
                              "how": "end to end" if whole else "composed from unit costs"})
            if row["batch"] == 1 and row["method"] == default:
                record.figures["batch1_linear_seconds_per_image"] = row["one forward, s per image"]
                record.figures["batch1_refine_seconds_per_image"] = round(refined, 2)
            if row["batch"] == 1 and row["method"] == learned:
                record.figures["batch1_learned_refine_seconds_per_image"] = round(refined, 2)
        record.tables["per_image"] = per_image
    for key in ("batch1_linear_seconds_per_image", "batch1_refine_seconds_per_image"):
        record.figures.setdefault(key, NOT_MEASURED)
    torch.set_num_threads(args.quality_threads)
    quality_rows = []
    for world in args.worlds:
        for seed in args.seeds:
            found = measure_quality(world, seed, args.methods, args.cache, print,
                                    CorrectionConfig(steps=args.correction_steps), args.cached_only)
            for text, q in found.items():
                if text in args.methods or text == "linear":
                    quality_rows.append({"world": world, "seed": seed, "method": text, "r_min": min(q["r"]),
                                         "leakage_max": max(q["leakage_max"]),
                                         **{f"r_{p}": q["r"][i] for i, p in enumerate(PROPERTY_NAMES)},
                                         **{f"leak_{p}": q["leakage_max"][i] for i, p in enumerate(PROPERTY_NAMES)},
                                         "seconds": q["seconds"],
                                         # the learned method's one-time training (its first row's seconds hold it too)
                                         "correction_s": (q.get("correction") or {}).get("seconds", "")})
    record.tables["quality"] = quality_rows
    record.tables["quality_mean"] = world_means(quality_rows)
    verdict = {}
    for text in args.methods:
        cost = next((r for r in record.tables.get("cost", []) if r["method"] == text and r["batch"] == 1), None)
        q = [r for r in quality_rows if r["method"] == text]
        ratio = cost["ratio_measured"] if cost else NOT_MEASURED
        quality_ok = bool(q) and all(r["r_min"] >= R_TARGET and r["leakage_max"] <= LEAK_TARGET for r in q)
        cost_ok = cost is not None and ratio <= FORWARD_BUDGET
        cost_text = f"{ratio} forwards at batch 1" if cost else "cost not measured"
        verdict[text] = (f"{'met' if quality_ok and cost_ok else 'NOT met'}: {cost_text}; "
                         f"r min {min(r['r_min'] for r in q):.3f}, leakage max {max(r['leakage_max'] for r in q):.3f}"
                         f" over {len(q)} world-seed(s)" if q else f"NOT met: {cost_text}; quality not measured")
        record.figures[f"ratio_batch1_{text}"] = ratio
        record.figures[f"target_{text}"] = verdict[text]
        if q:
            ok = [r for r in q if r["r_min"] >= R_TARGET and r["leakage_max"] <= LEAK_TARGET]
            means = [m for m in record.tables["quality_mean"] if m["method"] == text]
            record.figures[f"quality_{text}"] = (
                f"{len(ok)} of {len(q)} world-seeds; world means: "
                + ", ".join(f"{m['world']} {'met' if m['met'] else 'not'}" for m in means))
    print(json.dumps(verdict, indent=1))
    record.write(args.results_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
