"""Render the docs' figures from the committed result records; ``--check`` fails where a page drifted.

    python -m benchmarks.report            # rewrite every generated block of README.md and docs/*.md
    python -m benchmarks.report --check    # exit 1 when a block differs from what the records give

A page marks what is generated; everything between a marker and its end is replaced:

* ``<!-- figures:bench_generate-cpu table=throughput -->`` ... ``<!-- /figures -->``: a record's table
  (``columns=a,b`` picks and orders columns; ``where=column:value`` keeps matching rows), or its
  figures (``keys=a,b``; none: all), then one line naming the record's date, commit, machine, load
  and command;
* ``<!-- figure:bench_demo-cpu:wall_s unit=s -->`` ... ``<!-- /figure -->``: one figure inside a sentence
  (with its unit, left out where the figure is not measured);
  a page with such figures lists their records in a ``<!-- sources -->`` ... ``<!-- /sources -->``
  block (date, commit, machine, load, command of each);
* ``<!-- flags:01_generate_images.py -->`` ... ``<!-- /flags -->``: a script's flags, defaults and help,
  read from its ``build_parser()``, so a page lists exactly the flags the script takes;
* ``<!-- concepts -->`` ... ``<!-- /concepts -->``: the one-flag-per-concept table of ``common/concepts.py``
  and the old spellings it replaces;
* ``<!-- promises -->`` ... ``<!-- /promises -->``: the table of what the docs promise and the test
  that proves each (``tests/tolerances.py``); ``<!-- value:NAME -->`` ... ``<!-- /value -->``: one of
  its constants inside a sentence, so the docs state the number the tests assert.

A record made on a dirty tree (``git_dirty`` true or unknown) is refused. A record nobody could make
here renders as "not measured", what it needs, and the command that measures it (``catalog.py``).
"""
from __future__ import annotations

import argparse
import functools
import importlib.util
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks.catalog import measure_command, needs
from benchmarks.records import NOT_MEASURED, REPO_ROOT, RESULTS_DIR, RecordError, iter_records, record_id
from common.markdown import markdown_rows

TOLERANCES_FILE = REPO_ROOT / "tests" / "tolerances.py"

_BLOCK = re.compile(r"<!-- figures:(?P<spec>[^>]*?) -->\n(?P<body>.*?)<!-- /figures -->", re.DOTALL)
_INLINE = re.compile(r"<!-- figure:(?P<record>[\w.-]+):(?P<key>[^ >]+)(?: unit=(?P<unit>[^>]*?))? -->(?P<body>.*?)"
                     r"<!-- /figure -->", re.DOTALL)
_SOURCES = re.compile(r"<!-- sources -->\n(?P<body>.*?)<!-- /sources -->", re.DOTALL)
_PROMISES = re.compile(r"<!-- promises(?::(?P<keys>[\w,]+))? -->\n(?P<body>.*?)<!-- /promises -->", re.DOTALL)
_FLAGS = re.compile(r"<!-- flags:(?P<script>[\w.]+) -->\n(?P<body>.*?)<!-- /flags -->", re.DOTALL)
_CONCEPTS = re.compile(r"<!-- concepts -->\n(?P<body>.*?)<!-- /concepts -->", re.DOTALL)
_VALUE = re.compile(r"<!-- value:(?P<name>\w+) -->(?P<body>.*?)<!-- /value -->", re.DOTALL)


class ReportError(ValueError):
    """A page cites something the records cannot give (unknown or dirty record, missing key): one line."""


@dataclass(frozen=True)
class Drift:
    """A generated block whose text differs from what the records give."""

    path: Path
    line: int
    marker: str

    def __str__(self) -> str:
        return f"{_rel(self.path)}:{self.line}: {self.marker} differs from the committed records"


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def load_tolerances(path: Path = TOLERANCES_FILE) -> ModuleType:
    """``tests/tolerances.py``: the constants the tests assert and the docs state (loaded by path: ``tests``
    is no package, and torch-fidelity installs a top-level package of that name)."""
    name = "_docs_tolerances"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------------------ formatting
def format_value(value: Any) -> str:
    """A figure as the docs print it: thousands separators, booleans as yes/no, JSON null as n/a."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        text = f"{value:,}"
        return text[:-2] if text.endswith(".0") and abs(value) >= 1000 else text
    if isinstance(value, (list, tuple)):
        return " / ".join(format_value(v) for v in value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def _date(record: dict) -> str:
    return str(record["date"]).replace("T", " ")[:16] + " UTC"


def _machine(record: dict) -> str:
    m = record.get("machine") or {}
    parts = [str(m.get("cpu") or "unknown CPU")]
    if m.get("cores"):
        parts.append(f"{m['cores']} cores")
    if m.get("memory_gib"):
        parts.append(f"{m['memory_gib']} GiB")
    parts.append(f"GPU {m['gpu']}" if m.get("gpu") else "no GPU")
    return ", ".join(parts)


def _load(record: dict) -> str:
    before, after = record.get("load_before"), record.get("load_after")
    return f"load {format_value(before)} before, {format_value(after)} after"


def provenance(record: dict, link_base: str) -> str:
    """One line: what, when, which commit, on what, under which load, by which command."""
    rid = record_id(record["name"], record["device_kind"])
    return (f"`{rid}`: {_date(record)}, commit `{str(record['git_head'])[:10]}`, {_machine(record)}, "
            f"{_load(record)}, torch {record['torch']}; `{record['command']}` "
            f"([record]({link_base}benchmarks/results/{rid}.json))")


def not_measured(rid: str) -> str:
    name, _, device = rid.rpartition("-")
    command = measure_command(name, device)
    if command is None:
        raise ReportError(f"{rid}: no record and no entry in benchmarks/catalog.py saying how to measure it; "
                          "add one there or fix the marker's name")
    need = needs(name, device)
    return f"`{rid}`: not measured{f' (needs {need})' if need else ''}; measure with `{command}`"


# ------------------------------------------------------------------------------------------------ records
class Records:
    """The committed records by id; a cited record made on a dirty tree is refused."""

    def __init__(self, results_dir: Path | None = None):
        self.by_id = {record_id(r["name"], r["device_kind"]): r for r in iter_records(results_dir or RESULTS_DIR)}

    def get(self, rid: str) -> dict | None:
        record = self.by_id.get(rid)
        if record is not None and record.get("git_dirty") is not False:
            state = "a dirty tree" if record.get("git_dirty") else "a tree of unknown state (no git)"
            raise ReportError(f"benchmarks/results/{rid}.json was made on {state}: commit the code, re-run "
                              f"`{record['command']}` on the committed tree, commit the record")
        return record


def _parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    rid, *options = spec.split()
    parsed = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or key not in ("table", "columns", "keys", "where"):
            raise ReportError(f"figures:{spec}: unknown option {option!r} (table=, columns=, keys=, where=)")
        parsed[key] = value
    return rid, parsed


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    return markdown_rows(header, rows, cell=format_value).splitlines()


def render_block(spec: str, records: Records, link_base: str) -> str:
    """The text between ``<!-- figures:SPEC -->`` and ``<!-- /figures -->``."""
    rid, options = _parse_spec(spec)
    record = records.get(rid)
    if record is None:
        return f"*{not_measured(rid)}.*\n"
    if "table" in options:
        rows = (record.get("tables") or {}).get(options["table"])
        if rows is None:
            raise ReportError(f"{rid}: no table {options['table']!r} (has: {', '.join(record.get('tables') or {})})")
        if "where" in options:
            column, _, wanted = options["where"].partition(":")
            rows = [r for r in rows if format_value(r.get(column)) == wanted]
        columns = options["columns"].split(",") if "columns" in options else list(dict.fromkeys(
            k for row in rows for k in row))
        missing = [c for c in columns if rows and all(c not in row for row in rows)]
        if missing:
            raise ReportError(f"{rid} table {options['table']}: no column {', '.join(missing)}")
        lines = _table(columns, ([row.get(c, "") for c in columns] for row in rows))
    else:
        figures = record["figures"]
        keys = options["keys"].split(",") if "keys" in options else list(figures)
        missing = [k for k in keys if k not in figures]
        if missing:
            raise ReportError(f"{rid}: no figure {', '.join(missing)} (re-run its benchmark or fix the marker)")
        lines = _table(("figure", "value"), ((k.replace("_", " "), figures[k]) for k in keys))
    return "\n".join(lines) + f"\n\n*{provenance(record, link_base)}.*\n"


def render_inline(rid: str, key: str, records: Records, unit: str | None = None) -> str:
    record = records.get(rid)
    if record is None:
        return NOT_MEASURED
    if key not in record["figures"]:
        raise ReportError(f"{rid}: no figure {key!r} (has: {', '.join(record['figures'])})")
    value = record["figures"][key]
    if value == NOT_MEASURED:
        return NOT_MEASURED
    return format_value(value) + (f" {unit}" if unit else "")


def render_sources(rids: Sequence[str], records: Records, link_base: str) -> str:
    lines = []
    for rid in rids:
        record = records.get(rid)
        lines.append(f"- {provenance(record, link_base) if record else not_measured(rid)}")
    return "\n".join(lines) + "\n" if lines else "- (no inline figures on this page)\n"


def render_promises(keys: str | None, tolerances: ModuleType) -> str:
    promises = tolerances.PROMISES
    if keys:
        wanted = keys.split(",")
        unknown = [k for k in wanted if k not in {p.key for p in promises}]
        if unknown:
            raise ReportError(f"promises:{keys}: no promise {', '.join(unknown)} in tests/tolerances.py")
        promises = [p for p in promises if p.key in wanted]
    rows = [(p.claim, ", ".join(f"`{t}`" for t in p.tests)) for p in promises]  # format_value escapes "|"
    return markdown_rows(("what the docs promise", "the test that proves it"), rows, cell=format_value) + "\n"


def render_value(name: str, tolerances: ModuleType) -> str:
    if not hasattr(tolerances, name) or name.startswith("_"):
        raise ReportError(f"value:{name}: tests/tolerances.py has no constant {name}")
    return format_value(getattr(tolerances, name))


def _flag_default(action: argparse.Action) -> str:
    if hasattr(action, "declared_default"):  # a flag declared with common.settings: its default as --help shows it
        shown = action.declared_default
        return "" if shown is None else (shown if " " in shown else f"`{shown}`")  # prose stays prose
    default = action.default
    if default is None or default is argparse.SUPPRESS or isinstance(action, (argparse._StoreTrueAction,
                                                                              argparse._StoreFalseAction,
                                                                              argparse._CountAction)):
        return ""
    if isinstance(default, (list, tuple)):
        return " ".join(str(v) for v in default)
    if isinstance(default, Path):  # the same text in every checkout
        try:
            default = default.resolve().relative_to(REPO_ROOT).as_posix() or "."
        except ValueError:
            pass
        if default == ".":
            return "the repository"
    return f"`{default}`"


def _flag_help(action: argparse.Action) -> str:
    text = getattr(action, "declared_help", None) or action.help or ""
    if "%(" in text:
        try:
            text = text % {**vars(action), "prog": ""}
        except (KeyError, TypeError, ValueError):
            pass
    text = " ".join(text.split()).replace("%%", "%")
    text = text.replace(f"{REPO_ROOT}/", "").replace(str(REPO_ROOT), ".")  # the same in every checkout
    if action.choices is not None and not isinstance(action.choices, range):
        text += f" (one of: {', '.join(str(c) for c in action.choices)})"
    return text


@functools.lru_cache(maxsize=None)
def render_flags(script: str) -> str:
    """A table of the script's flags from its ``build_parser()``: flag, default, what it does."""
    from pipeline.runner import SCRIPTS_DIR, load_script_file

    if not (SCRIPTS_DIR / script).is_file():
        raise ReportError(f"flags:{script}: no such script in {_rel(SCRIPTS_DIR)}")
    parser = load_script_file(script).build_parser()
    rows = []
    for action in parser._actions:
        if action.help is argparse.SUPPRESS or not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        default, what = _flag_default(action), _flag_help(action)
        stated = re.search(r"(?:^|\s*\()default: ([^()]*)\)?$", what)  # a default stated in the help
        if stated and not default:
            value = stated.group(1)
            default, what = (value if " " in value else f"`{value}`"), what[:stated.start()]
        rows.append((", ".join(f"`{o}`" for o in action.option_strings), default, what))
    return "\n".join(_table(("flag", "default", "what"), rows)) + "\n"


def render_concepts() -> str:
    """``common.concepts``: each concept's one flag, what it names, its default path; then the old spellings."""
    from common.concepts import CONCEPTS, OLD_SPELLINGS
    from common.paths import PipelinePaths

    paths = PipelinePaths(REPO_ROOT)
    rows = []
    for concept in CONCEPTS.values():
        default = ""
        if concept.default_path:
            default = f"`{Path(getattr(paths, concept.default_path)).relative_to(REPO_ROOT).as_posix()}`"
        rows.append((f"`{concept.flag}`", concept.meaning, default))
    lines = _table(("flag", "what it names", "default (under `--root`)"), rows) + [""]
    accepted = _old_spellings_accepted()
    lines += _table(("old spelling", "now", "still accepted (with a one-line note) by"),
                    ((f"`{old}`", new, ", ".join(accepted[old]) or "none: removed")
                     for old, new in OLD_SPELLINGS.items()))
    return "\n".join(lines) + "\n"


def _old_spellings_accepted() -> dict[str, list[str]]:
    """old spelling -> the scripts whose parser still takes it (read from the parsers, so never out of date)."""
    from common.concepts import OLD_SPELLINGS
    from pipeline.runner import STEPS, load_script_file

    scripts = [(f"step {step.id}", step.script) for step in STEPS.values()]
    scripts += [("run_pipeline", "run_pipeline.py"), ("studio", "studio.py")]
    accepted: dict[str, list[str]] = {old: [] for old in OLD_SPELLINGS}
    for name, script in scripts:
        actions = load_script_file(script).build_parser()._option_string_actions
        for old in OLD_SPELLINGS:
            if old in actions:
                accepted[old].append(name)
    return accepted


# ------------------------------------------------------------------------------------------------ pages
def render_page(text: str, records: Records, tolerances: ModuleType, link_base: str) -> str:
    """The page with every generated block rendered from the records and the tolerances."""
    cited: list[str] = []

    def inline(match: re.Match) -> str:
        rid = match["record"]
        if rid not in cited:
            cited.append(rid)
        unit = f" unit={match['unit']}" if match["unit"] else ""
        return (f"<!-- figure:{rid}:{match['key']}{unit} -->{render_inline(rid, match['key'], records, match['unit'])}"
                "<!-- /figure -->")

    text = _BLOCK.sub(lambda m: f"<!-- figures:{m['spec']} -->\n{render_block(m['spec'], records, link_base)}"
                                "<!-- /figures -->", text)
    text = _INLINE.sub(inline, text)
    if cited and not _SOURCES.search(text):
        raise ReportError("the page cites figures inline (<!-- figure:... -->) but has no "
                          "<!-- sources --> ... <!-- /sources --> block naming their records")
    text = _SOURCES.sub(lambda m: f"<!-- sources -->\n{render_sources(cited, records, link_base)}<!-- /sources -->",
                        text)
    text = _FLAGS.sub(lambda m: f"<!-- flags:{m['script']} -->\n{render_flags(m['script'])}<!-- /flags -->", text)
    text = _CONCEPTS.sub(lambda m: f"<!-- concepts -->\n{render_concepts()}<!-- /concepts -->", text)
    text = _PROMISES.sub(lambda m: (f"<!-- promises{':' + m['keys'] if m['keys'] else ''} -->\n"
                                    f"{render_promises(m['keys'], tolerances)}<!-- /promises -->"), text)
    return _VALUE.sub(lambda m: f"<!-- value:{m['name']} -->{render_value(m['name'], tolerances)}<!-- /value -->",
                      text)


def _link_base(path: Path) -> str:
    try:
        depth = len(path.resolve().relative_to(REPO_ROOT).parts) - 1
    except ValueError:
        depth = 0
    return "../" * depth


def _drifts(path: Path, old: str, new: str) -> list[Drift]:
    """The generated blocks of ``old`` whose rendering changed (by position: rendering never adds a block)."""
    found = []
    for pattern, label in ((_BLOCK, "figures"), (_INLINE, "figure"), (_SOURCES, "sources"), (_PROMISES, "promises"),
                           (_VALUE, "value"), (_FLAGS, "flags"),
                           (_CONCEPTS, "concepts")):
        for a, b in zip(pattern.finditer(old), pattern.finditer(new)):
            if a.group(0) != b.group(0):
                line = old.count("\n", 0, a.start()) + 1
                found.append(Drift(path, line, a.group(0).split("-->", 1)[0] + "-->"))
    return sorted(found, key=lambda d: d.line)


def default_pages(root: Path = REPO_ROOT) -> list[Path]:
    """README.md and every page under docs/."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def run(pages: Sequence[Path], check: bool, results_dir: Path | None = None,
        tolerances: ModuleType | None = None) -> tuple[list[Drift], list[Path]]:
    """(drifted blocks, pages rewritten); with ``check`` nothing is written. ReportError for a bad citation."""
    from common.io import atomic_write_text

    records = Records(results_dir)
    tolerances = tolerances or load_tolerances()
    drifts, written = [], []
    for path in pages:
        old = path.read_text(encoding="utf-8")
        try:
            new = render_page(old, records, tolerances, _link_base(path))
        except ReportError as exc:
            raise ReportError(f"{_rel(path)}: {exc}") from None
        if new != old:
            drifts += _drifts(path, old, new)
            if not check:
                atomic_write_text(path, new)
                written.append(path)
    return drifts, written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("pages", nargs="*", type=Path, help="markdown files (default: README.md and docs/*.md)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a block would change")
    parser.add_argument("--results-dir", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    pages = args.pages or default_pages()
    try:
        drifts, written = run(pages, args.check, args.results_dir)
    except (ReportError, RecordError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        for drift in drifts:
            print(drift, file=sys.stderr)
        if drifts:
            print(f"{len(drifts)} generated block(s) differ: run `python -m benchmarks.report` and commit the pages",
                  file=sys.stderr)
            return 1
        print(f"{len(pages)} page(s) match the committed records")
        return 0
    print(f"rewrote {len(written)} of {len(pages)} page(s)" + (": " + ", ".join(_rel(p) for p in written)
                                                             if written else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
