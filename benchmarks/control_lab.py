"""The control lab: latent directions and the fine-tune, side by side, in a world whose truth is known.

See ``lab/control_lab.py`` for the world (a frozen random genforce generator, five exact image
properties, step 6's normaliser) and how each route is fed and judged (step 9's ``evaluate_control``
on its own latents). This script prints, and writes to ``benchmarks/results/control_lab.json``:

1. the world: base-set entanglement (pairs with |r| >= 0.3) and each property's spread;
2. directions: per variant (ridge / svm x hold / free x euclidean / whitened) r, rho, MAE, mean and
   largest off-diagonal leakage per property, and the fitting seconds;
3. the directions' "refine" option (SVM, hold, refined through the learned regressor; stylegan.refine), on all
   layers and with a layer range per property chosen by that regressor on latents of their own;
4. held-out r against the number of scored samples the directions were fitted on;
5. the fine-tune with the learned regressor (the same one): r after each step count, then the full tables;
6. the targets: per property, does some method reach r >= 0.9 with every leakage <= 0.2, and does the
   fine-tune reach r >= 0.9 wherever the base-set std is not zero.

    python benchmarks/control_lab.py                       # everything (directions 440 s + 3,600 fine-tune
                                                           # steps 655-1,816 s on 2 loaded cores, README)
    python benchmarks/control_lab.py --skip finetune       # the directions and their refine option only
    python benchmarks/control_lab.py --skip variants samples refine --steps 1200 2400 3600 --lambda-prop 10
"""
from __future__ import annotations

import os
import pathlib

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, is_dataclass  # noqa: E402

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from common.paths import PROPERTY_NAMES  # noqa: E402
from lab.control_lab import (  # noqa: E402
    LabConfig,
    base_correlations,
    baseline_arm,
    build_world,
    directions_arm,
    finetune_arm,
    fit_lab_directions,
    lab_regressor,
    refine_arm,
    select_refine_layers,
)
from stylegan.refine import RefineConfig  # noqa: E402

R_TARGET, LEAK_TARGET = 0.9, 0.2


def _table(rows: pd.DataFrame) -> pd.DataFrame:
    return rows.set_index("property")[["pearson_r", "spearman_rho", "mae", "leakage_mean", "leakage_max"]]


def main(argv: list[str] | None = None) -> int:
    defaults = LabConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=defaults.resolution)
    parser.add_argument("--num-samples", type=int, default=defaults.num_samples)
    parser.add_argument("--steps", type=int, nargs="+", default=list(defaults.finetune_steps))
    parser.add_argument("--samples", type=int, nargs="+", default=[250, 500, 1000, 2000],
                        help="sample counts for held-out r against samples (at most --num-samples)")
    parser.add_argument("--world-seed", type=int, default=defaults.world_seed)
    parser.add_argument("--train-seed", type=int, default=defaults.train_seed)
    parser.add_argument("--lambda-prop", type=float, default=defaults.lambda_prop,
                        help="the fine-tune's property-loss weight (FinetuneConfig.lambda_prop)")
    parser.add_argument("--lr-g", type=float, default=defaults.lr_g)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="the fine-tune's batch")
    parser.add_argument("--refine-from", choices=["ridge", "svm"], default="svm",
                        help="the directions (hold, euclidean) whose edits the refine option starts from")
    parser.add_argument("--refine-steps", type=int, default=defaults.refine.steps)
    parser.add_argument("--refine-lr", type=float, default=defaults.refine.lr)
    parser.add_argument("--refine-hold-weight", type=float, default=defaults.refine.hold_weight)
    parser.add_argument("--refine-anchor-weight", type=float, default=defaults.refine.anchor_weight)
    parser.add_argument("--refine-wplus", action="store_true", default=defaults.refine.wplus)
    parser.add_argument("--skip", choices=["variants", "samples", "refine", "finetune"], nargs="*", default=[])
    parser.add_argument("--small-seeds", type=int, nargs="+", default=None,
                        help="instead: run the CI's small lab (lab.control_lab.small_lab) for these seeds, "
                             "one after the other, and print its quantities (to measure the test's margins)")
    parser.add_argument("--isa-sweep", action="store_true",
                        help="with --small-seeds: run under ATEN_CPU_CAPABILITY=default, avx2 and native, one after "
                             "the other, and write the record control_lab_small-cpu.json")
    parser.add_argument("--emit-json", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=pathlib.Path,
                        default=pathlib.Path(__file__).resolve().parent / "results" / "control_lab.json")
    family = parser.add_argument_group("the family of worlds (lab/world_family.py; issue 21)")
    family.add_argument("--worlds", nargs="*", default=None, metavar="NAME",
                        help="instead: measure the family of worlds (these names, or all when none is given), "
                             "then write the record control_lab_worlds-cpu.json once every world is measured")
    family.add_argument("--seeds", type=int, nargs="+", default=None, help="world seeds (default: the family's 0 1 2)")
    family.add_argument("--eval-z", type=int, default=10, help="latents swept per property (step 9's design, "
                        "smaller)")
    family.add_argument("--eval-values", type=int, default=6, help="values per sweep")
    family.add_argument("--cache", type=pathlib.Path, default=pathlib.Path(tempfile.gettempdir()) / "control_lab_worlds",
                        help="per-world results, arm by arm (a stopped run resumes from here)")
    family.add_argument("--no-record", action="store_true", help="measure only (e.g. two processes, one per half)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.small_seeds is not None:
        if args.isa_sweep:
            return _small_isa_sweep(args, argv)
        return _small(args.small_seeds, args.emit_json)
    if args.worlds is not None:
        return _worlds(args, argv)
    config = LabConfig(resolution=args.resolution, num_samples=args.num_samples, finetune_steps=tuple(args.steps),
                       world_seed=args.world_seed, train_seed=args.train_seed, lambda_prop=args.lambda_prop,
                       lr_g=args.lr_g, batch_size=args.batch_size,
                       refine=RefineConfig(steps=args.refine_steps, lr=args.refine_lr,
                                           hold_weight=args.refine_hold_weight,
                                           anchor_weight=args.refine_anchor_weight, wplus=args.refine_wplus))
    report: dict = {"machine": f"{platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, "
                               f"torch {torch.__version__}, ATen {torch.backends.cpu.get_cpu_capability()}",
                    "config": {k: (list(v) if isinstance(v, tuple) else asdict(v) if is_dataclass(v) else v)
                               for k, v in vars(config).items()}}
    start = time.perf_counter()
    world = build_world(config)
    corr = base_correlations(world)
    pairs = [(a, b, round(float(corr.at[a, b]), 3)) for i, a in enumerate(PROPERTY_NAMES)
             for b in PROPERTY_NAMES[i + 1:] if abs(corr.at[a, b]) >= 0.3]
    print(f"world: {config.resolution} px, {config.num_samples} samples, built in {world.seconds:.1f}s; "
          f"entangled pairs (|r| >= 0.3): {pairs}")
    print("base-set std:", {p: round(v["std"], 3) for p, v in world.stats.items()})
    report["world"] = {"entangled_pairs": pairs, "std": {p: v["std"] for p, v in world.stats.items()},
                       "correlations": corr.round(4).to_dict()}
    tables: dict[str, pd.DataFrame] = {"baseline": baseline_arm(world)}

    fitted = {}
    for method in ("ridge", "svm"):
        fitted[method] = fit_lab_directions(world, method=method)
    report["directions_fit_seconds"] = {m: round(s, 2) for m, (_, s) in fitted.items()}
    variants = [(m, h, g) for m in ("ridge", "svm") for h in (True, False) for g in ("euclidean", "whitened")]
    if "variants" in args.skip:
        variants = [("ridge", config.hold, config.metric)]
    for method, hold, metric in variants:
        name = f"directions {method} {'hold' if hold else 'free'} {metric}"
        tables[name] = directions_arm(world, fitted[method][0].with_options(hold=hold, metric=metric))
        print(f"\n{name} (fit {fitted[method][1]:.1f}s on {config.num_samples} samples)")
        print(_table(tables[name]).round(3).to_string())

    regressor = None
    if "refine" not in args.skip or "finetune" not in args.skip:
        regressor = lab_regressor(world)     # one learned regressor for both: the refine option and the fine-tune
        report["regressor"] = {"seconds": round(regressor[2], 1),
                               "heldout_r": {p: regressor[1].get(f"r_{p}") for p in PROPERTY_NAMES}}
        print(f"\nlearned property regressor ({regressor[2]:.0f}s): held-out r {report['regressor']['heldout_r']}")
    if "refine" not in args.skip:
        name = f"directions {args.refine_from} hold euclidean + refine"
        start_refine = time.perf_counter()
        tables[name] = refine_arm(world, fitted[args.refine_from][0].with_options(hold=True, metric="euclidean"),
                                  regressor[0])
        report["refine_seconds"] = round(time.perf_counter() - start_refine, 1)
        print(f"\n{name} ({config.refine}; {report['refine_seconds']:.0f}s for step 9's sweep)")
        print(_table(tables[name]).round(3).to_string())
        # layer ranges per property, chosen by the learned regressor on fresh latents (never the judge)
        start_refine = time.perf_counter()
        chosen, selection = select_refine_layers(
            world, fitted[args.refine_from][0].with_options(hold=True, metric="euclidean"), regressor[0])
        report["refine_layers"] = {"chosen": dict(zip(PROPERTY_NAMES, chosen.layers)),
                                   "selection_seconds": round(time.perf_counter() - start_refine, 1),
                                   "selection": selection.round(4).to_dict(orient="records")}
        print(f"\nlayer ranges chosen by the learned regressor ({report['refine_layers']['selection_seconds']:.0f}s): "
              f"{report['refine_layers']['chosen']}")
        print(selection[["property", "layers", "pearson_r", "control_slope", "leakage_mean", "leakage_max",
                         "chosen"]].round(3).to_string(index=False))
        name += ", layers per property"
        tables[name] = refine_arm(world, chosen, regressor[0])
        print(f"\n{name}")
        print(_table(tables[name]).round(3).to_string())

    if "samples" not in args.skip:
        curve = {}
        for n in [n for n in args.samples if n <= config.num_samples]:
            model, seconds = fit_lab_directions(world, num_samples=n, method="ridge", metric="whitened", hold=False)
            rows = directions_arm(world, model).set_index("property")
            curve[n] = {"seconds": round(seconds, 2), **{p: round(float(rows.at[p, "pearson_r"]), 3)
                                                         for p in PROPERTY_NAMES}}
            print(f"directions fitted on {n} samples ({seconds:.1f}s): held-out r {curve[n]}")
        report["directions_r_vs_samples"] = curve

    if "finetune" not in args.skip:
        by_steps, info = finetune_arm(world, say=print, regressor=regressor)
        report["finetune"] = {"info": info, "r_by_steps": {
            s: {p: round(float(v), 3) for p, v in rows.set_index("property")["pearson_r"].items()}
            for s, rows in by_steps.items()}}
        for steps, rows in by_steps.items():
            tables[f"finetuned {steps} steps"] = rows
        last = max(by_steps)
        print(f"\nfine-tune, learned regressor (held-out r {info['regressor_r']}), {last} steps "
              f"({info['train_seconds']:.0f}s training)")
        print(_table(by_steps[last]).round(3).to_string())

    print("\ntargets: r >= 0.9 with every off-diagonal leakage <= 0.2")
    verdict = {}
    for p in PROPERTY_NAMES:
        ok = [name for name, rows in tables.items() if name != "baseline"
              and rows.set_index("property").at[p, "pearson_r"] >= R_TARGET
              and rows.set_index("property").at[p, "leakage_max"] <= LEAK_TARGET]
        verdict[p] = ok
        print(f"  {p:12s} {'met by ' + ', '.join(ok) if ok else 'NOT met'}")
    report["targets"] = verdict
    spread = [p for p in PROPERTY_NAMES if world.stats[p]["std"] > 0]
    finetune_target = {name: [p for p in spread if rows.set_index("property").at[p, "pearson_r"] < R_TARGET]
                       for name, rows in tables.items() if name.startswith("finetuned")}
    for name, short in finetune_target.items():
        print(f"  {name}: r >= 0.9 on every property with a spread: "
              f"{'met' if not short else 'NOT met (' + ', '.join(short) + ')'}")
    report["finetune_target_short_of"] = finetune_target
    report["tables"] = {name: rows.round(4).to_dict(orient="records") for name, rows in tables.items()}
    report["seconds"] = round(time.perf_counter() - start, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=float))
    print(f"\nwrote {args.out} ({report['seconds']:.0f}s)")
    return 0


def _worlds(args: argparse.Namespace, argv: list[str] | None) -> int:
    """Measure the family (or part of it); once all of it is cached, write the tuned and reported tables."""
    from benchmarks.records import start_record
    from lab.world_family import SEEDS, WORLDS, arm_summary, rule_by_arm, rule_check, run_world
    from stylegan.directions import default_settings

    record = start_record("control_lab_worlds", "cpu", argv=None if argv is None else ["benchmarks/control_lab.py",
                                                                                     *argv])
    chosen = [w for w in WORLDS if not args.worlds or w.name in args.worlds]
    unknown = set(args.worlds or ()) - {w.name for w in WORLDS}
    if unknown:
        raise SystemExit(f"unknown world(s) {sorted(unknown)}; the family: {[w.name for w in WORLDS]}")
    seeds = tuple(args.seeds or SEEDS)
    start = time.perf_counter()
    for spec in chosen:
        for seed in seeds:
            run_world(spec, seed, args.cache, eval_num_z=args.eval_z, eval_num_values=args.eval_values,
                      progress=lambda line: print(line, flush=True), tag=record.git_head)
    print(f"measured {len(chosen)} world(s) x {len(seeds)} seed(s) in {time.perf_counter() - start:.0f}s")
    if args.no_record:
        return 0
    records = []
    for spec in WORLDS:
        for seed in seeds:
            found = args.cache / f"{spec.name}-seed{seed}-z{args.eval_z}x{args.eval_values}.json"
            if not found.is_file():
                print(f"not writing the record: {spec.name} seed {seed} is not measured yet ({found})")
                return 0
            records.append(json.loads(found.read_text()))
    summary = arm_summary(records)
    check = rule_check(summary)
    worlds = pd.DataFrame([{**{k: v for k, v in r["spec"].items()}, "seed": r["seed"], **r.get("world", {})}
                           for r in records])
    world_table = (worlds.groupby(["name", "half"], sort=False)
                   .agg(resolution=("resolution", "first"), w_dim=("w_dim", "first"), entangle=("entangle", "first"),
                        num_samples=("num_samples", "first"), judge=("judge", "first"),
                        mean_abs_correlation=("mean_abs_correlation", "mean"),
                        entangled_pairs=("entangled_pairs", "mean")).reset_index())
    for half in ("tuned", "reported"):
        part = summary[summary["half"] == half].round(4)
        record.tables[half] = part.to_dict(orient="records")
        record.tables[f"{half}_methods"] = _methods_table(part).to_dict(orient="records")
        record.tables[f"{half}_rule"] = check[check["half"] == half].round(4).to_dict(orient="records")
        record.tables[f"{half}_rule_by_arm"] = rule_by_arm(part).round(4).to_dict(orient="records")
        rule = check[check["half"] == half]
        record.figures[f"{half}_worlds_meeting_rule"] = int(rule["met"].sum())
        record.figures[f"{half}_worlds"] = len(rule)
        record.figures[f"{half}_worst_r_shortfall"] = round(float(rule["r_shortfall"].max()), 4)
    record.tables["worlds"] = world_table.round(4).to_dict(orient="records")
    rules = sorted({default_settings(w.num_samples, w.w_dim).rule for w in WORLDS})
    record.figures["default_setting"] = "; ".join(rules)
    tags = sorted({str(fig.get("tag")) for r in records for fig in r["arms"].values()})
    record.figures["arms_measured_at_commits"] = ", ".join(tags)
    record.figures["seeds"] = len(seeds)
    busy = sum(fig.get("seconds", 0.0) for r in records for fig in r["arms"].values())
    busy += sum(r.get("world", {}).get("build_seconds", 0.0) for r in records)
    record.figures["measure_hours"] = round(busy / 3600, 1)
    record.figures["eval_latents_x_values"] = f"{args.eval_z}x{args.eval_values}"
    path = record.write()
    print(check.round(3).to_string(index=False))
    print(f"wrote {path}")
    return 0


def _methods_table(part: pd.DataFrame) -> pd.DataFrame:
    """One row per world: mean r / mean leakage (over the seeds) of the default, InterFaceGAN's recipe, SeFa, and
    the candidate with the highest r whatever its leakage."""
    from lab.world_family import CANDIDATES

    names = {c.name for c in CANDIDATES}
    rows = []
    for world, arms in part.groupby("world", sort=False):
        arms = arms.set_index("arm")
        row: dict = {"world": world}
        for label, arm in (("default", "default"), ("interfacegan", "interfacegan"), ("sefa", "sefa"),
                           ("sefa_whitened", "sefa whitened")):
            if arm in arms.index:
                row[f"{label}_r"] = arms.at[arm, "mean_r"]
                row[f"{label}_leakage"] = arms.at[arm, "leakage"]
        cands = arms[arms.index.isin(names)]
        if len(cands):
            top = cands["mean_r"].idxmax()
            row.update(highest_r_setting=top, highest_r=cands.at[top, "mean_r"],
                       highest_r_leakage=cands.at[top, "leakage"])
        rows.append(row)
    return pd.DataFrame(rows).round(3)


def _small(seeds: list[int], emit_json: bool = False) -> int:
    from lab.control_lab import small_lab

    isa = torch.backends.cpu.get_cpu_capability()
    table: dict[str, list[float]] = {}
    for seed in seeds:
        start = time.perf_counter()
        result = small_lab(seed)
        flat = {f"{m}:{k}": round(v, 4) for m, values in result.items() for k, v in values.items()}
        flat["seconds"] = round(time.perf_counter() - start, 1)
        for k, v in flat.items():
            table.setdefault(k, []).append(v)
        print(json.dumps({"aten": isa, "seed": seed, **flat}), flush=True)
    for k, values in table.items():
        if "baseline" not in k:
            print(f"{isa:8s} {k:32s} min {min(values):+.3f} max {max(values):+.3f} (n={len(values)})")
    if emit_json:
        print(json.dumps({"isa": isa.lower(), "values": table}))
    return 0


def _small_isa_sweep(args: argparse.Namespace, argv: list[str] | None) -> int:
    """The small lab under each instruction set (benchmarks/_isa.py), one after the other: the CI test's margins."""
    import sys

    from benchmarks._isa import run_per_isa, spread_table
    from benchmarks.records import start_record

    record = start_record("control_lab_small", "cpu")
    child = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--isa-sweep"]
    runs = run_per_isa(pathlib.Path(__file__), child)
    record.tables["spread"] = spread_table(runs)
    record.figures.update({f"{row['quantity']}_min": row["min over all"] for row in record.tables["spread"]})
    seconds = [s for run in runs for s in run["values"].get("seconds", [])]
    record.figures["seconds_max"] = max(seconds) if seconds else None
    record.settings.update({"seeds": args.small_seeds, "threads": 1, "isa_runs": [run["isa"] for run in runs]})
    print(f"wrote {record.write()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
