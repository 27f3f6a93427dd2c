"""benchmarks/device_check.py runs every code path in --quick mode on a CPU (so it cannot rot)."""
from __future__ import annotations

import json
import sys
import time


def test_device_check_quick_on_cpu(tmp_path, single_thread, capsys, benchmark_script):
    module = benchmark_script("device_check.py")
    start = time.perf_counter()
    assert module.main(["--quick", "--device", "cpu", "--results-dir", str(tmp_path)]) == 0
    seconds = time.perf_counter() - start
    report = json.loads((tmp_path / "device_check_quick-cpu.json").read_text())  # never the real record's name
    table = capsys.readouterr().out
    assert report["settings"]["quick"] and report["settings"]["device"] == "cpu" and report["machine"]["gpu"] is None
    rows = report["tables"]["rows"]
    groups = {row["group"].split(" ")[0] for row in rows}
    assert groups == {"generation", "FaceXFormer", "fine-tune"}
    measured = [r for r in rows if r["value"] != "not measured"]
    assert all(isinstance(r["value"], (int, float)) and r["value"] > 0 for r in measured)
    assert len(report["figures"]) == len(rows)
    # what needs CUDA says so instead of a number
    assert any(r["value"] == "not measured" and "CUDA" in r["note"] for r in rows)
    assert "bf16 autocast" in table and "% of parsing-map pixels differ" in table
    print(f"device check --quick: {seconds:.1f}s", file=sys.stderr)
