"""Measure the spread of every trained quantity the tests put a threshold on, over seeds.

The tests assert thresholds on trained toys (``tests/toy_worlds.py``). A GAN's training amplifies
the smallest numeric difference, so another instruction set behaves like another seed; a threshold
is safe only below the minimum over seeds *and* instruction sets, with a margin. Run this once per
setting, one after the other (the machine is shared), e.g.::

    for isa in default avx2 ""; do
        ATEN_CPU_CAPABILITY=$isa python benchmarks/toy_margins.py --seeds 0 1 2 3 4 --steps 200
    done
    MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/toy_margins.py ...

Prints one JSON line per seed and a summary (min / median / max) per quantity; asserts nothing.
``--isa-sweep`` runs the three settings itself (``_isa.py``) and writes the record
``benchmarks/results/toy_margins-cpu.json``, the table the docs show beside the asserted thresholds.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # not ``tests.``: torch-fidelity installs a ``tests`` package

import numpy as np  # noqa: E402
import torch  # noqa: E402
from toy_worlds import one_property_toy, regressor_r_eyes, toy_control_r, two_property_results  # noqa: E402

from benchmarks._isa import run_per_isa, spread_table  # noqa: E402
from benchmarks.records import add_results_dir_argument, start_record  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=200, help="fine-tune steps of the toys")
    parser.add_argument("--only", choices=["control", "two", "regressor"], nargs="+",
                        default=["control", "two", "regressor"])
    parser.add_argument("--with-plain", action="store_true",
                        help="also run lambda = 0 (the plain GAN recipe) in the two-property toy (not asserted)")
    parser.add_argument("--isa-sweep", action="store_true",
                        help="run under ATEN_CPU_CAPABILITY=default, avx2 and native, one after the other; write the record")
    parser.add_argument("--emit-json", action="store_true", help=argparse.SUPPRESS)
    add_results_dir_argument(parser)
    args = parser.parse_args(argv)
    if args.isa_sweep:
        record = start_record("toy_margins", "cpu")
        child = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--isa-sweep"]
        runs = run_per_isa(pathlib.Path(__file__), child)
        record.tables["spread"] = spread_table(runs)
        record.figures.update({f"{row['quantity']}_min": row["min over all"] for row in record.tables["spread"]})
        record.settings.update({"seeds": args.seeds, "steps": args.steps, "threads": 1,
                                "isa_runs": [run["isa"] for run in runs]})
        record.write(args.results_dir)
        return 0
    torch.set_num_threads(1)
    setting = {"aten": torch.backends.cpu.get_cpu_capability(),
               "mkl": os.environ.get("MKL_ENABLE_INSTRUCTIONS", "native"),
               "onednn": os.environ.get("ONEDNN_MAX_CPU_ISA", "native")}
    toy = one_property_toy()
    table: dict[str, list[float]] = {}
    for seed in args.seeds:
        start = time.perf_counter()
        row: dict[str, float] = {}
        if "control" in args.only:
            row["toy_r_lambda3"] = toy_control_r(seed, 3.0, args.steps, toy)
        if "two" in args.only:
            two = two_property_results(seed, args.steps, lams=(3.0, 0.0) if args.with_plain else (3.0,))
            row.update({"two_r_eyes_lambda3": two[(3.0, 0)]["r"], "two_r_hair_lambda3": two[(3.0, 3)]["r"]})
            if args.with_plain:
                row.update({"two_r_eyes_lambda0": two[(0.0, 0)]["r"], "two_r_hair_lambda0": two[(0.0, 3)]["r"]})
        if "regressor" in args.only:
            row["regressor_r_eyes"] = regressor_r_eyes(seed)[0]
        for k, v in row.items():
            table.setdefault(k, []).append(v)
        print(json.dumps({**setting, "seed": seed, "steps": args.steps, **{k: round(v, 4) for k, v in row.items()},
                          "seconds": round(time.perf_counter() - start, 1)}), flush=True)
    for k, values in table.items():
        a = np.array(values)
        print(f"{setting['aten']:8s} mkl={setting['mkl']:6s} {k:22s} min {a.min():+.3f}  median "
              f"{np.median(a):+.3f}  max {a.max():+.3f}  (|x| max {np.abs(a).max():.3f}, n={len(a)})")
    if args.emit_json:
        print(json.dumps({"isa": setting["aten"].lower(), "values": table}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
