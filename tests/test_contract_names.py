"""Contract file names (pipeline.md) are spelled once, in common/paths.py: a rename there reaches every hand-off."""
from __future__ import annotations

import re
from pathlib import Path

import common.paths as paths

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("common", "stylegan", "segmentation", "gender_cnn", "pipeline", "judges", "stylegan_and_segmentation")
CONTRACT_NAMES = (paths.LATENTS_NPY, paths.W_NPY, paths.GENERATED_CSV, paths.GENERATION_JSON, paths.HAND_LABELS_CSV,
                  paths.OOF_PREDICTIONS_CSV, paths.QUALITY_GENDER_CSV, paths.CROPS_CSV, paths.ALL_SCORES_CSV,
                  paths.NORMALIZATION_JSON, paths.DIRECTIONS_PT, paths.COMPARISON_CSV)


def literal_spellings(source: str) -> list[str]:
    """Quoted string literals that are exactly a contract name (prose that mentions one is fine)."""
    names = "|".join(re.escape(name) for name in CONTRACT_NAMES)
    return re.findall(rf"""(?<![\w./])(['"])({names})\1""", source)


def test_literal_finder_catches_a_spelling():
    assert literal_spellings('out / "crops.csv"') == [('"', "crops.csv")]
    assert literal_spellings("x / 'w.npy'") == [("'", "w.npy")]
    assert literal_spellings('"step 6 writes all_scores.csv"') == []
    assert literal_spellings('"raw_w.npy"') == []


def test_contract_names_are_spelled_only_in_common_paths():
    offenders = []
    for package in PACKAGES:
        for file in sorted((ROOT / package).rglob("*.py")):
            if file == ROOT / "common" / "paths.py":
                continue
            for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
                if literal_spellings(line):
                    offenders.append(f"{file.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "use the constants of common/paths.py:\n" + "\n".join(offenders)


def test_pipeline_paths_use_the_constants():
    p = paths.PipelinePaths(Path("/r"))
    assert (p.latents_npy.name, p.w_npy.name, p.generated_csv.name) == ("latents.npy", "w.npy", "generated.csv")
    assert (p.crops_csv.name, p.all_scores_csv.name, p.normalization_json.name) == (
        "crops.csv", "all_scores.csv", "normalization.json")
    assert (p.directions_pt.name, p.comparison_csv.name, p.hand_labels_csv.name) == (
        "directions.pt", "comparison.csv", "hand_labels.csv")
