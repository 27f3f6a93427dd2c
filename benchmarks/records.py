"""Result records: every figure the docs cite comes from one of these files, written by code, never by hand.

One schema for every benchmark and the control lab (NVIDIA's metric records are the model): a run writes
``benchmarks/results/<name>-<device kind>.json`` (for example ``bench_generate-cpu.json``), replacing the
previous record of the same name and device kind, and the file is committed. ``python -m benchmarks.report``
renders the docs' figure tables from the committed records; it refuses a record made on a dirty tree.

Keys:

* ``name``: the benchmark (``bench_generate``, ``control_lab``, ...); ``device_kind``: ``cpu`` or ``cuda``;
* ``figures``: figure name -> number (or ``"not measured"``), the unit in the name (``images_per_s``,
  ``peak_rss_mb``, ``ratio_to_forward``);
* ``tables`` (optional): table name -> list of rows (dicts), for per-world or per-setting tables; the docs
  render a row's keys as column headers, so benchmarks name them for readers (``"images/s"``, ``"batch"``);
* ``settings`` (optional): what was measured (image counts, batch sizes, threads), name -> value;
* ``command``: the command line that made it; ``git_head``, ``git_dirty`` at measurement time;
* ``machine``: CPU model, cores, memory in GiB, GPU model or null; ``load_before``, ``load_after``: the
  1-minute load average around the measurement (a loaded machine is said, not hidden);
* ``torch``, ``python``, ``date`` (UTC, ISO 8601).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
NOT_MEASURED = "not measured"
SCHEMA_VERSION = 1
RECORD_KEYS: tuple[str, ...] = ("schema_version", "name", "device_kind", "figures", "command", "git_head",
                                "git_dirty", "machine", "load_before", "load_after", "torch", "python", "date")
"""Keys every record has (``tables`` is optional)."""


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state() -> tuple[str | None, bool | None]:
    """(HEAD commit, whether tracked files differ from it); (None, None) outside a git checkout.

    Untracked files and ``benchmarks/results/`` itself do not count: a run writes its own record there.
    """
    head = _git("rev-parse", "HEAD")
    if head is None:
        return None, None
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)benchmarks/results")
    return head, bool(status) if status is not None else None


def folder_bytes(folder: Path) -> int:
    """Bytes of every regular file under ``folder`` (links not followed): what the disk-size figures count."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file() and not p.is_symlink())


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 ** 2, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _gpu_model() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def machine_info() -> dict[str, Any]:
    """What the figures were measured on: CPU model, cores, memory, GPU (or None), ATen's CPU capability."""
    info: dict[str, Any] = {"cpu": _cpu_model(), "cores": os.cpu_count(), "memory_gib": _memory_gib(),
                            "gpu": _gpu_model(), "arch": platform.machine()}
    try:
        import torch

        info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except (ImportError, AttributeError):
        info["cpu_capability"] = None
    return info


def load_average() -> float | None:
    """The 1-minute load average (None where the OS has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def _torch_version() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.__version__


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf become None (JSON has neither), numpy scalars plain numbers, tuples lists."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


@dataclass
class Measurement:
    """One run's record in the making: ``start_record`` reads the load and the tree before any work."""

    name: str
    device_kind: str
    command: str
    git_head: str | None
    git_dirty: bool | None
    load_before: float | None
    figures: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def write(self, results_dir: Path | str | None = None) -> Path:
        """Write the record (atomically) to ``<results_dir>/<name>-<device kind>.json``; returns its path.

        ``results_dir`` None is the committed ``benchmarks/results/``; tests pass a temporary folder.
        """
        from common.io import atomic_write_text

        record = {
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "device_kind": self.device_kind,
            "figures": _clean(self.figures),
            "command": self.command,
            "git_head": self.git_head,
            "git_dirty": self.git_dirty,
            "machine": machine_info(),
            "load_before": self.load_before,
            "load_after": load_average(),
            "torch": _torch_version(),
            "python": platform.python_version(),
            "date": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        }
        if self.tables:
            record["tables"] = _clean(self.tables)
        if self.settings:
            record["settings"] = _clean(self.settings)
        folder = Path(results_dir) if results_dir is not None else RESULTS_DIR
        path = folder / record_file_name(self.name, self.device_kind)
        atomic_write_text(path, json.dumps(record, indent=1, sort_keys=False, allow_nan=False) + "\n")
        print(f"wrote {_display(path)}", file=sys.stderr)
        return path


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def record_file_name(name: str, device_kind: str) -> str:
    return f"{record_id(name, device_kind)}.json"


def record_id(name: str, device_kind: str) -> str:
    """How the docs name a record: ``bench_generate-cpu`` (its file name without ``.json``)."""
    return f"{name}-{device_kind}"


def add_results_dir_argument(parser: argparse.ArgumentParser) -> None:
    """``--results-dir``: where a benchmark writes its record (tests and trial runs pass a scratch folder)."""
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR,
                        help="folder of the result record (default: the committed benchmarks/results/)")


def device_kind_of(device: Any) -> str:
    """``cpu`` / ``cuda`` from a torch.device, ``"cuda:1"`` or ``"cpu"``."""
    text = str(getattr(device, "type", device))
    return text.split(":", 1)[0]


def start_record(name: str, device_kind: str = "cpu", argv: Sequence[str] | None = None) -> Measurement:
    """Begin a record before measuring: the tree's state and the load now, and the command that runs."""
    head, dirty = git_state()
    argv = list(sys.argv if argv is None else argv)
    if argv:
        script = Path(argv[0])
        try:
            argv[0] = str(script.resolve().relative_to(REPO_ROOT))
        except ValueError:
            pass
    command = " ".join(shlex.quote(a) for a in ["python", *argv]) if argv else "python"
    return Measurement(name=name, device_kind=device_kind, command=command, git_head=head, git_dirty=dirty,
                       load_before=load_average())


class RecordError(ValueError):
    """A record file does not follow the schema (the report names the file and the key)."""


def read_record(path: Path | str) -> dict[str, Any]:
    """A committed record, checked against the schema; RecordError names the file and what is wrong."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RecordError(f"{path}: not a readable JSON record ({exc})") from None
    if not isinstance(data, dict):
        raise RecordError(f"{path}: a record is a JSON object, found {type(data).__name__}")
    missing = [key for key in RECORD_KEYS if key not in data]
    if missing:
        raise RecordError(f"{path}: missing keys {', '.join(missing)}; re-run the benchmark that writes it")
    if not isinstance(data["figures"], dict):
        raise RecordError(f"{path}: 'figures' must be an object of name -> value")
    tables = data.get("tables", {})
    if not isinstance(tables, dict) or not all(isinstance(rows, list) and all(isinstance(r, dict) for r in rows)
                                                for rows in tables.values()):
        raise RecordError(f"{path}: 'tables' must be an object of name -> list of rows (objects)")
    expected = record_file_name(str(data["name"]), str(data["device_kind"]))
    if path.name != expected:
        raise RecordError(f"{path}: holds the record {expected!r}; rename the file or re-run its benchmark")
    return data


def iter_records(results_dir: Path | str | None = None) -> list[dict[str, Any]]:
    """Every schema record under the results folder (files of the old, free-form kind are left out)."""
    folder = Path(results_dir) if results_dir is not None else RESULTS_DIR
    records = []
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("schema_version") == SCHEMA_VERSION:
            records.append(read_record(path))
    return records
