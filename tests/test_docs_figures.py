"""The docs' figures come from committed records, and what the docs promise names a test that proves it.

``python -m benchmarks.report --check`` over README.md and docs/*.md must find nothing to change; the
renderer itself is tested on scratch records (tables, inline figures, "not measured", a dirty tree).
"""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import tolerances

from benchmarks import report
from benchmarks.records import iter_records, start_record

REPO = Path(__file__).resolve().parents[1]


def test_every_page_matches_the_committed_records():
    """Reproduction of issue 23: tables typed by hand drifted from the runs; this fails on any such drift."""
    drifts, written = report.run(report.default_pages(REPO), check=True)
    assert not written
    assert not drifts, "\n".join(map(str, drifts)) + "\nrun `python -m benchmarks.report` and commit the pages"


def test_committed_records_follow_the_schema_and_come_from_clean_trees():
    records = iter_records()
    assert records, "benchmarks/results/ holds no record"
    dirty = [r["name"] for r in records if r["git_dirty"] is not False]
    assert not dirty, f"records made on a dirty tree: {dirty}"


def _defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


@pytest.mark.parametrize("promise", tolerances.PROMISES, ids=lambda p: p.key)
def test_each_promise_names_tests_that_exist_and_use_its_constants(promise):
    files = set()
    for node in promise.tests:
        file, _, name = node.partition("::")
        assert (REPO / file).is_file(), f"{promise.key}: {file} does not exist"
        assert name in _defined_tests(REPO / file), f"{promise.key}: {file} defines no {name}"
        files.add(REPO / file)
    for constant in promise.constants:
        assert hasattr(tolerances, constant), constant
        users = [f for f in files if constant in f.read_text(encoding="utf-8")]
        assert users, f"{promise.key}: no test it names asserts {constant} (the docs state it from tolerances.py)"


# ------------------------------------------------------------------------------------------------ the renderer
@pytest.fixture()
def clean_record(tmp_path, monkeypatch):
    """A scratch record as a clean tree would write it."""
    monkeypatch.setattr("benchmarks.records.git_state", lambda: ("a" * 40, False))

    def make(name="bench_demo", device="cpu", dirty=False, **figures):
        if dirty:
            monkeypatch.setattr("benchmarks.records.git_state", lambda: ("b" * 40, True))
        record = start_record(name, device, argv=["benchmarks/bench_demo.py"])
        record.figures.update(figures or {"wall_s": 37.2, "peak_rss_mb": 1912.0})
        record.tables["steps"] = [{"step": "1", "seconds": 0.4}, {"step": "3", "seconds": 0.3}]
        return record.write(tmp_path / "results")

    return make


def _render(tmp_path, text: str) -> str:
    page = tmp_path / "page.md"
    page.write_text(text)
    report.run([page], check=False, results_dir=tmp_path / "results")
    return page.read_text()


def test_blocks_inline_figures_and_sources_render_from_a_record(tmp_path, clean_record):
    clean_record()
    out = _render(tmp_path, "Demo: <!-- figure:bench_demo-cpu:wall_s -->?<!-- /figure --> s.\n\n"
                            "<!-- figures:bench_demo-cpu table=steps columns=step,seconds -->\nold\n<!-- /figures -->\n"
                            "<!-- sources -->\n<!-- /sources -->\n")
    assert "Demo: <!-- figure:bench_demo-cpu:wall_s -->37.2<!-- /figure --> s." in out
    assert "| step | seconds |\n|---|---|\n| 1 | 0.4 |\n| 3 | 0.3 |" in out
    assert "commit `aaaaaaaaaa`" in out and "`python benchmarks/bench_demo.py`" in out
    assert "- `bench_demo-cpu`:" in out and "load " in out


def test_check_fails_when_a_number_was_edited_by_hand(tmp_path, clean_record):
    clean_record()
    page = tmp_path / "page.md"
    page.write_text(_render(tmp_path, "<!-- figures:bench_demo-cpu keys=wall_s -->\n<!-- /figures -->\n")
                    .replace("37.2", "30.0"))
    drifts, written = report.run([page], check=True, results_dir=tmp_path / "results")
    assert [d.marker for d in drifts] == ["<!-- figures:bench_demo-cpu keys=wall_s -->"] and not written
    assert "30.0" in page.read_text()  # --check writes nothing
    assert report.main([str(page), "--check", "--results-dir", str(tmp_path / "results")]) == 1


def test_a_record_from_a_dirty_tree_is_refused(tmp_path, clean_record, capsys):
    clean_record(dirty=True)
    capsys.readouterr()
    page = tmp_path / "page.md"
    page.write_text("<!-- figures:bench_demo-cpu -->\n<!-- /figures -->\n")
    assert report.main([str(page), "--results-dir", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert "dirty tree" in err and "bench_demo-cpu" in err and err.count("\n") == 1


def test_a_missing_record_says_not_measured_and_how_to_measure_it(tmp_path):
    out = _render(tmp_path, "<!-- figures:bench_generate-cuda -->\n<!-- /figures -->\n"
                            "x <!-- figure:device_check-cuda:fp16 -->1<!-- /figure -->\n<!-- sources -->\n<!-- /sources -->\n")
    assert "`bench_generate-cuda`: not measured (needs a CUDA GPU); measure with " \
           "`python benchmarks/bench_generate.py --device cuda --num 512`" in out
    assert "x <!-- figure:device_check-cuda:fp16 -->not measured<!-- /figure -->" in out
    assert "`python benchmarks/device_check.py --device cuda`" in out


def test_unknown_records_keys_and_inline_figures_without_sources_are_one_line_errors(tmp_path, clean_record):
    clean_record()
    for text, words in [("<!-- figures:bench_nothing-cpu -->\n<!-- /figures -->\n", "catalog.py"),
                        ("<!-- figures:bench_demo-cpu keys=nope -->\n<!-- /figures -->\n", "no figure nope"),
                        ("<!-- figures:bench_demo-cpu colour=red -->\n<!-- /figures -->\n", "unknown option"),
                        ("a <!-- figure:bench_demo-cpu:wall_s -->1<!-- /figure -->\n", "sources"),
                        ("<!-- value:NOT_A_CONSTANT -->1<!-- /value -->\n", "NOT_A_CONSTANT")]:
        page = tmp_path / "page.md"
        page.write_text(text)
        with pytest.raises(report.ReportError, match=words):
            report.run([page], check=True, results_dir=tmp_path / "results")


def test_values_and_promises_render_from_the_tolerances(tmp_path):
    out = _render(tmp_path, "atol <!-- value:GOLDEN_IMAGE_ATOL -->0<!-- /value -->\n"
                            "<!-- promises:golden_facexformer -->\n<!-- /promises -->\n")
    assert f"atol <!-- value:GOLDEN_IMAGE_ATOL -->{tolerances.GOLDEN_IMAGE_ATOL}<!-- /value -->" in out
    assert "`tests/test_facexformer.py::test_seg_logits_match_golden`" in out


def test_record_file_holds_the_schema(tmp_path, clean_record):
    path = clean_record(wall_s=float("nan"))
    data = json.loads(path.read_text())
    assert path.name == "bench_demo-cpu.json" and data["figures"]["wall_s"] is None
    assert {"git_head", "git_dirty", "machine", "load_before", "load_after", "torch", "python", "date"} <= set(data)


def test_every_benchmark_writes_a_record_the_catalog_knows():
    """Each benchmark script writes through ``start_record`` under a name catalog.py says how to measure."""
    import re

    from benchmarks.catalog import BENCHMARKS

    scripts = sorted(p for p in (REPO / "benchmarks").glob("*.py")
                     if p.name.startswith(("bench_", "device_check", "control_lab")) or p.stem.endswith("_margins"))
    assert scripts
    for script in scripts:
        names = re.findall(r'start_record\(\s*"(\w+)"', script.read_text(encoding="utf-8"))
        assert names, f"{script.name} writes no result record (benchmarks.records.start_record)"
        unknown = [n for n in names if n not in BENCHMARKS]
        assert not unknown, f"{script.name}: records {unknown} have no entry in benchmarks/catalog.py"


def test_flag_tables_come_from_the_scripts_own_parsers(tmp_path):
    out = _render(tmp_path, "<!-- flags:01_generate_images.py -->\nold\n<!-- /flags -->\n")
    assert "| `--num` | `10000` |" in out and "| `--weights` | `auto` |" in out
    assert str(REPO) not in out  # the same text in every checkout
    with pytest.raises(report.ReportError, match="no such script"):
        _render(tmp_path, "<!-- flags:99_nothing.py -->\n<!-- /flags -->\n")


def test_the_concept_table_comes_from_common_concepts(tmp_path):
    from common.concepts import CONCEPTS

    out = _render(tmp_path, "<!-- concepts -->\n<!-- /concepts -->\n")
    assert all(f"| `{c.flag}` |" in out for c in CONCEPTS.values())
    assert "`stylegan/stylegan_model.pth`" in out and str(REPO) not in out


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    import re

    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_every_relative_link_of_the_docs_points_at_a_file_and_heading_that_exist():
    """A page moved or a heading renamed leaves no dead link behind (README.md and docs/*.md)."""
    import re

    missing = []
    for page in report.default_pages(REPO):
        text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            path = (page.parent / file).resolve() if file else page
            if not path.exists():
                missing.append(f"{page.name}: {target}")
            elif anchor and path.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", path.read_text(encoding="utf-8"), flags=re.MULTILINE)
                if anchor not in {_slug(h) for h in headings}:
                    missing.append(f"{page.name}: {target} (no such heading)")
    assert not missing, "dead links:\n" + "\n".join(missing)


def test_run_all_plans_only_what_the_device_records_and_leaves_manual_ones_out():
    from benchmarks.run_all import plan

    cpu = dict(plan("cpu", None, []))
    assert "bench_generate" in cpu and "bench_tests" == list(cpu)[-1]
    assert "bench_generate_vs_genforce" not in cpu and "device_check" not in cpu  # a checkout; a GPU's figures
    cuda = dict(plan("cuda", None, []))
    assert cuda["bench_generate"].endswith("--device cuda --num 512") and "bench_scores" not in cuda
    assert dict(plan("cpu", ["bench_scores"], [])) == {"bench_scores": "python benchmarks/bench_scores.py"}
