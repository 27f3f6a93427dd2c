"""Run a step under torchrun (2 gloo processes) and read every rank's Summary, not its printed text.

Each rank builds the config from the script's own flags (``parse_step_config``), calls the step's
package function and writes its Summary's fields to ``summary-<rank>.json``; the test reads them.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_PROBE = """
import dataclasses, json, os, sys
sys.path.insert(0, {repo!r})
from common.cli import parse_step_config
from pipeline.runner import load_script_file
script = load_script_file({script!r})
config, _ = parse_step_config(script.build_parser(), script.config_from_args, sys.argv[1:])
module, name = {function!r}.split(":")
summary = getattr(__import__(module, fromlist=[name]), name)(config)
fields = {{f.name: getattr(summary, f.name) for f in dataclasses.fields(summary)}}
with open(os.path.join({out!r}, "summary-" + os.environ.get("RANK", "0") + ".json"), "w") as fh:
    json.dump(fields, fh, default=str)
"""


def step_env() -> dict[str, str]:
    """This environment without torchrun's variables, one OpenMP thread per process (as torchrun sets)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    return env


def run_step(script: str, function: str, argv: list[str], out: Path, processes: int = 2) -> list[dict]:
    """Every rank's Summary fields (rank order) after running ``function`` with ``script``'s flags."""
    out.mkdir(parents=True, exist_ok=True)
    probe = out / "probe.py"
    probe.write_text(_PROBE.format(repo=str(REPO), script=script, function=function, out=str(out)))
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
                if processes > 1 else [sys.executable])
    result = subprocess.run([*launcher, str(probe), *(["--"] if processes > 1 else []), *argv], env=step_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads((out / f"summary-{rank}.json").read_text()) for rank in range(processes)]

