"""benchmarks/device_check.py runs every code path in --quick mode on a CPU (so it cannot rot)."""
from __future__ import annotations

import json
import sys
import time


def test_device_check_quick_on_cpu(tmp_path, single_thread, capsys, benchmark_script):
    module = benchmark_script("device_check.py")
    out = tmp_path / "check.json"
    start = time.perf_counter()
    assert module.main(["--quick", "--device", "cpu", "--out", str(out)]) == 0
    seconds = time.perf_counter() - start
    report = json.loads(out.read_text())
    table = capsys.readouterr().out
    assert report["quick"] and report["device"] == "cpu" and report["gpu"] == "not measured"
    groups = {row["group"].split(" ")[0] for row in report["rows"]}
    assert groups == {"generation", "FaceXFormer", "fine-tune"}
    measured = [r for r in report["rows"] if r["value"] != "not measured"]
    assert all(isinstance(r["value"], (int, float)) and r["value"] > 0 for r in measured)
    # what needs CUDA says so instead of a number
    assert any(r["value"] == "not measured" and "CUDA" in r["note"] for r in report["rows"])
    assert "bf16 autocast" in table and "% of parsing-map pixels differ" in table
    print(f"device check --quick: {seconds:.1f}s", file=sys.stderr)
