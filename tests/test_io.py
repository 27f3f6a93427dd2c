"""common.io: standard JSON (null, never NaN) and file modes that follow the umask."""
from __future__ import annotations

import json
import math
import os
import stat

import numpy as np
import pytest

from common.io import atomic_save_npy, atomic_write_json, atomic_write_text


def _strict_load(path):
    """Parse like a browser: bare NaN/Infinity are errors."""
    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_json_writes_null_for_nan_and_infinity(tmp_path):
    path = atomic_write_json(tmp_path / "a.json", {
        "nan": float("nan"), "inf": float("inf"), "neg": -float("inf"), "ok": 1.5,
        "nested": {"list": [1.0, float("nan"), np.float64("nan")], "tuple": (float("nan"), 2)},
    })
    data = _strict_load(path)
    assert data == {"nan": None, "inf": None, "neg": None, "ok": 1.5,
                    "nested": {"list": [1.0, None, None], "tuple": [None, 2]}}


def test_null_reads_back_as_no_value_in_normalization(tmp_path):
    """normalization.json with a property that was NaN everywhere: its null scale keeps NaN."""
    from segmentation.normalize import PropertyNormalizer

    raw = {"hair_length": np.array([100.0, 200.0, np.nan]), "hair_color": np.array([np.nan] * 3)}
    normalizer = PropertyNormalizer.fit(raw, properties=("hair_length", "hair_color"))
    path = atomic_write_json(tmp_path / "normalization.json", normalizer.to_dict())
    _strict_load(path)
    loaded = PropertyNormalizer.load(path)
    out = loaded.apply(raw)
    assert np.isnan(out["hair_color"]).all()
    assert out["hair_length"][0] == 0.0 and out["hair_length"][1] == 1.0 and math.isnan(out["hair_length"][2])


def test_recipe_with_null_round_trips(tmp_path):
    """A recipe holding NaN (written as null) compares equal to itself on resume."""
    from common.recipe import Recipe, claim_output, owned_by_patterns

    recipe = Recipe.of("1", {"seed": 1, "truncation_psi": float("nan"), "num": 3})
    for _ in range(2):
        with claim_output(tmp_path, recipe, overwrite=False, owned=owned_by_patterns("*.png")):
            pass


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_output_files_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        paths = [atomic_write_text(tmp_path / "a.txt", "x"), atomic_write_json(tmp_path / "b.json", {}),
                 atomic_save_npy(tmp_path / "c.npy", np.zeros(2))]
        with open(tmp_path / "plain.txt", "w") as handle:  # what a plain open gives
            handle.write("x")
    finally:
        os.umask(old)
    expected = stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    assert expected == 0o666 & ~umask
    for path in paths:
        assert stat.S_IMODE(path.stat().st_mode) == expected, path
