"""Run a margins benchmark once per CPU instruction set and gather its per-seed values.

A trained toy's result moves with the kernels ATen picks, so a threshold is safe only below the
minimum over seeds *and* instruction sets (``ATEN_CPU_CAPABILITY``): ``default`` (no AVX2), ``avx2``
and the machine's native one. Each setting runs in its own process, one after the other (the
machine is shared), and prints its values as the last line of JSON.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ISA_SETTINGS = ("default", "avx2", "")
"""What ``ATEN_CPU_CAPABILITY`` is set to per run ("" = unset: the machine's native instruction set)."""


def run_per_isa(script: Path, args: Sequence[str]) -> list[dict]:
    """``[{"isa": ..., "values": {quantity: [per seed]}}]``, one per setting, from ``script ARGS --emit-json``."""
    runs = []
    for isa in ISA_SETTINGS:
        env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
        if isa:
            env["ATEN_CPU_CAPABILITY"] = isa
        done = subprocess.run([sys.executable, str(script), *args, "--emit-json"], env=env, check=True,
                              capture_output=True, text=True)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"{runs[-1]['isa']}: done", file=sys.stderr, flush=True)
    return runs


def spread_table(runs: list[dict]) -> list[dict]:
    """One row per quantity: min / median / max over the seeds under each instruction set."""
    quantities = list(dict.fromkeys(q for run in runs for q in run["values"]))
    rows = []
    for quantity in quantities:
        row: dict = {"quantity": quantity}
        for run in runs:
            values = np.asarray(run["values"].get(quantity, []), dtype=float)
            if values.size:
                row[f"{run['isa']}: min / median / max"] = (f"{values.min():.3f} / {np.median(values):.3f} / "
                                                            f"{values.max():.3f}")
        everything = np.concatenate([np.asarray(run["values"].get(quantity, []), dtype=float) for run in runs])
        row["min over all"] = round(float(everything.min()), 3)
        rows.append(row)
    return rows
