"""Measure the held-out accuracy spread of the step-3 CNN test world over seeds (the margin of its 0.95 threshold).

``tests/test_cnn_scripts.py::test_training_reaches_095_on_held_out_images_and_filter_runs`` asserts
accuracy >= 0.95 on 80 held-out synthetic images. A trained threshold is safe only below the
minimum over seeds *and* instruction sets, so run this once per setting, one after the other::

    for isa in default avx2 ""; do
        ATEN_CPU_CAPABILITY=$isa python benchmarks/cnn_margins.py --seeds 0 1 2 3 4
    done

Seed s draws the labelled and held-out images with data seed s + 1 (the test uses data seed 1) and
trains with ``--seed s``; the training settings are the test's. Prints one JSON line per seed and a
min / median / max summary per task; asserts nothing. ``--isa-sweep`` runs the three settings itself
(``_isa.py``) and writes the record ``benchmarks/results/cnn_margins-cpu.json``.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import pathlib
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tests' synthetic two-class world

import numpy as np  # noqa: E402
import torch  # noqa: E402
from cnn_world import write_synthetic_set  # noqa: E402

from common.paths import PipelinePaths  # noqa: E402
from gender_cnn.predict import load_ensemble, predict_images  # noqa: E402
from benchmarks._isa import run_per_isa, spread_table  # noqa: E402
from benchmarks.records import add_results_dir_argument, start_record  # noqa: E402
from pipeline.runner import load_script_file  # noqa: E402

TEST_FLAGS = ["--folds", "3", "--epochs", "12", "--patience", "3", "--input-size", "32", "--quality-size", "32x64",
              "--channels", "8,16,32", "--batch-size", "8", "--device", "cpu", "-q"]


def accuracy_for_seed(seed: int) -> dict[str, float]:
    """Train the test's world with ``seed`` and return held-out accuracy per task."""
    train_script = load_script_file("03_train_gender_cnn.py")
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        paths = PipelinePaths(root)
        labels = write_synthetic_set(paths.generated_dir, 160, seed=seed + 1, size=128)
        paths.hand_labels_csv.parent.mkdir(parents=True, exist_ok=True)
        labels.to_csv(paths.hand_labels_csv, index=False)
        held_out = write_synthetic_set(paths.generated_dir, 80, seed=seed + 1, start=1000, size=128)
        with contextlib.redirect_stdout(io.StringIO()):
            rc = train_script.main(["--root", str(root), "--seed", str(seed), *TEST_FLAGS])
        if rc != 0:
            raise SystemExit(f"step 3 failed for seed {seed} (exit {rc})")
        out = {}
        for task in ("gender", "quality"):
            result = predict_images([paths.generated_dir / n for n in held_out["img_name"]],
                                    {task: load_ensemble(paths.cnn_models_dir, task)}, batch_size=32)
            truth = held_out[task].to_numpy().astype(bool)
            out[task] = float(((result.scores[task] >= 0.5) == truth).mean())
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--isa-sweep", action="store_true",
                        help="run under ATEN_CPU_CAPABILITY=default, avx2 and native, one after the other; write the record")
    parser.add_argument("--emit-json", action="store_true", help=argparse.SUPPRESS)
    add_results_dir_argument(parser)
    args = parser.parse_args(argv)
    if args.isa_sweep:
        record = start_record("cnn_margins", "cpu")
        child = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--isa-sweep"]
        runs = run_per_isa(pathlib.Path(__file__), child)
        record.tables["spread"] = spread_table(runs)
        record.figures.update({f"{row['quantity']}_accuracy_min": row["min over all"] for row in record.tables["spread"]})
        record.settings.update({"seeds": args.seeds, "threads": 1, "held_out_images": 80,
                                "isa_runs": [run["isa"] for run in runs]})
        record.write(args.results_dir)
        return 0
    torch.set_num_threads(1)  # as the test
    isa = os.environ.get("ATEN_CPU_CAPABILITY", "native")
    rows = []
    for seed in args.seeds:
        row = {"isa": isa, "seed": seed, **accuracy_for_seed(seed)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    for task in ("gender", "quality"):
        values = np.array([r[task] for r in rows])
        print(f"{isa} {task}: min {values.min():.3f} median {np.median(values):.3f} max {values.max():.3f}")
    if args.emit_json:
        print(json.dumps({"isa": torch.backends.cpu.get_cpu_capability().lower(),
                          "values": {task: [r[task] for r in rows] for task in ("gender", "quality")}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
