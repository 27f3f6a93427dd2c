"""Replay the adversarial campaign (issue 19) against this checkout, as a hostile user would, and classify each case.

Why: the campaign's case table (``cases-2026-12.md``) was made on an older tree; the lead needs to re-run
its non-CLEAR rows (and new cases of the same classes) after every merge and see the counts move.

    python benchmarks/replay_cases.py --demo /tmp/replay/demo_run --scratch /tmp/replay/scratch
    python benchmarks/replay_cases.py ... --only s8_ft_props,df_step5     # a few cases
    python benchmarks/replay_cases.py ... --group security                # one group
    python benchmarks/replay_cases.py --scratch ... --render > table.md   # the markdown table
    python benchmarks/replay_cases.py --scratch ... --record             # counts -> benchmarks/results

Every case runs the real scripts as subprocesses on copies of the demo run under ``--scratch`` (the big
FaceXFormer file hard-linked, never written in place); the full-disk and read-only cases mount small
tmpfs under the scratch root (skipped, with the reason, where mount is not permitted). Nothing outside
the scratch root is written, except the result record with ``--record``. Results go to
``SCRATCH/results.jsonl`` (one line per case; a re-run of a case replaces its line).

Classes (the table's): CLEAR (one-line error naming the problem, exit != 0, nothing lost, or the right
result), TRACEBACK, SILENT, SECURITY, HANG, LOSS; "CLEAR (weak)" = a clean refusal that does not name
the file or the cause. Not a pytest module (it lives outside ``tests/``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import replay_new, replay_table  # noqa: E402,F401  (they register the cases)
from benchmarks.replay_kit import CASES, CLASSES, Case, Ctx, Outcome, Skip  # noqa: E402

def run_cases(ctx: Ctx, selected: list[Case], results: Path) -> None:
    done = _load(results)
    for c in selected:
        print(f"[{time.strftime('%H:%M:%S')}] {c.id} ({c.source}, was {c.before})", flush=True)
        t0 = time.monotonic()
        try:
            got = c.fn(ctx)
            now, cmd, result, note = got if isinstance(got, tuple) else (got.now, got.command, got.result, got.note)
        except Skip as exc:
            now, cmd, result, note = "SKIPPED", "", "", str(exc)
        except Exception as exc:  # a bug of the driver, not of the project: say so, keep going
            now, cmd, result, note = "SKIPPED", "", "", f"driver error: {type(exc).__name__}: {exc}"
            traceback.print_exc()
        out = Outcome(c.id, c.source, c.before, now, cmd, result, note, round(time.monotonic() - t0, 1))
        print(f"    -> {now}: {result[:200]} {('[' + note[:200] + ']') if note else ''}", flush=True)
        done[c.id] = asdict(out)
        _save(results, done)


def _load(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    rows = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    return {r["id"]: r for r in rows}


def _save(path: Path, rows: dict[str, dict]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows.values()))
    os.replace(tmp, path)


def counts(rows: list[dict], key: str) -> dict[str, int]:
    c = Counter(r[key] for r in rows)
    return {k: c.get(k, 0) for k in CLASSES if c.get(k, 0) or k in ("TRACEBACK", "SILENT", "SECURITY", "HANG", "LOSS")}


def render(rows: list[dict]) -> str:
    def cell(s: str) -> str:
        return str(s).replace("|", "\\|").replace("\n", " ")
    order = {c.id: i for i, c in enumerate(CASES)}
    rows = sorted(rows, key=lambda r: order.get(r["id"], 10 ** 6))
    lines = ["| id | source | class before | command as run | what happened | class now |", "|---|---|---|---|---|---|"]
    for r in rows:
        what = r["result"] + (f" ({r['note']})" if r.get("note") else "")
        lines.append(f"| {r['id']} | {r['source']} | {r['before']} | `{cell(r['command'])}` | {cell(what)} | "
                     f"**{r['now']}** |")
    return "\n".join(lines) + "\n"


def write_record(rows: list[dict]) -> Path:
    from benchmarks.records import start_record
    rec = start_record("replay_cases", "cpu")
    table = [r for r in rows if r["source"] != "new"]
    new = [r for r in rows if r["source"] == "new"]
    figures = {}
    for label, subset, key in (("table_before", table, "before"), ("table_now", table, "now"), ("new_now", new, "now")):
        for cls, n in counts(subset, key).items():
            figures[f"{label}_{cls.lower().replace(' ', '_').replace('(', '').replace(')', '')}"] = n
    figures["table_rows"] = len(table)
    figures["new_cases"] = len(new)
    rec.figures.update(figures)
    rec.tables["cases"] = [{"id": r["id"], "source": r["source"], "before": r["before"], "now": r["now"],
                            "seconds": r.get("seconds", 0)} for r in rows]
    return rec.write()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--demo", type=Path, default=Path("/tmp/replay/demo_run"), help="a finished demo run (only read)")
    ap.add_argument("--scratch", type=Path, default=Path("/tmp/replay/scratch"), help="everything is written here")
    ap.add_argument("--only", default="", help="comma-separated case ids")
    ap.add_argument("--group", default="", help="comma-separated groups (" +
                    ", ".join(sorted({c.group for c in CASES})) + ")")
    ap.add_argument("--skip-done", action="store_true", help="skip cases that already have a result")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--render", action="store_true", help="print the markdown table of SCRATCH/results.jsonl")
    ap.add_argument("--record", action="store_true", help="write benchmarks/results/replay_cases-cpu.json")
    ap.add_argument("--also", type=Path, action="append", default=[],
                    help="with --render/--record: also read SCRATCH2/results.jsonl (cases split over scratch roots)")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)
    results = a.scratch.resolve() / "results.jsonl"
    if a.list:
        for c in CASES:
            print(f"{c.id:32s} {c.group:12s} {c.source:11s} {c.before}")
        return 0
    if a.render or a.record:
        merged: dict[str, dict] = {}
        for extra in a.also:
            merged.update(_load(extra.resolve() / "results.jsonl"))
        merged.update(_load(results))
        rows = list(merged.values())
        if a.render:
            print(render(rows))
            for label, subset, key in (("table rows, before", [r for r in rows if r["source"] != "new"], "before"),
                                       ("table rows, now", [r for r in rows if r["source"] != "new"], "now"),
                                       ("new cases, now", [r for r in rows if r["source"] == "new"], "now")):
                print(f"- {label}: " + ", ".join(f"{k} {v}" for k, v in counts(subset, key).items()))
        if a.record:
            print("record:", write_record(rows))
        return 0
    ids = {s for s in a.only.split(",") if s}
    groups = {s for s in a.group.split(",") if s}
    unknown = ids - {c.id for c in CASES}
    if unknown:
        ap.error(f"unknown case ids: {sorted(unknown)}")
    selected = [c for c in CASES if (not ids or c.id in ids) and (not groups or c.group in groups)]
    if a.skip_done:
        have = _load(results)
        selected = [c for c in selected if c.id not in have or have[c.id]["now"] == "SKIPPED"]
    ctx = Ctx(a.demo, a.scratch, sys.executable, a.verbose)
    ctx.prepare()
    run_cases(ctx, selected, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
