"""07_fit_latent_directions.py and run_fit_directions on a tiny random generator with planted scores."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from provenance_world import NORMALIZATION
import torch
from tiny_models import TINY_G_32_2MAP

from common.paths import PROPERTY_NAMES, PipelinePaths
from pipeline.runner import load_script
from stylegan import load_generator, write_random_checkpoint
from stylegan.control_measures import BrightnessScorer
from stylegan.directions import load_directions
from stylegan.directions_step import FitDirectionsConfig, load_w_codes, run_fit_directions
from stylegan.generate import GenerateConfig, run_generate

N = 120


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Steps 1, 4 and 6 of a tiny run: scores are planted linear functions of w (plus noise, some NaN)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("root")
    paths = PipelinePaths(root)
    write_random_checkpoint(paths.stylegan_checkpoint, seed=0, **TINY_G_32_2MAP)
    run_generate(GenerateConfig(root=root, num=N, batch_size=64, image_format="png", device="cpu"))
    generator = load_generator(paths.stylegan_checkpoint)
    w = load_w_codes(generator, paths.generated_dir, np.arange(N), 1.0, 0)
    rng = np.random.default_rng(0)
    beta = rng.standard_normal((len(PROPERTY_NAMES), w.shape[1]))
    scores = (w - w.mean(0)) / w.std(0) @ beta.T / 8 + 0.5 + 0.01 * rng.standard_normal((N, len(PROPERTY_NAMES)))
    scores[rng.random(N) < 0.1, 2] = np.nan                       # no hair on some images
    names = [f"{i:06d}.png" for i in range(N)]
    kept = np.ones(N, dtype=bool)
    kept[::4] = False                                              # step 4 dropped every fourth image
    paths.filtered_dir.mkdir(parents=True)
    for i in np.flatnonzero(kept):
        shutil.copy(paths.generated_dir / names[i], paths.filtered_dir / names[i])
    table = pd.DataFrame({"img_name": names, **{p: scores[:, j] for j, p in enumerate(PROPERTY_NAMES)}})
    table = table[kept]                                             # step 6 ran on the kept images
    paths.property_scores_dir.mkdir(parents=True)
    table.to_csv(paths.all_scores_csv, index=False)
    paths.normalization_json.write_text(json.dumps(NORMALIZATION))  # 7a reads it with step 7b's reader
    gender = pd.DataFrame({"img_name": names, "gender_score": np.clip(0.8 + 0.1 * w[:, 0], 0, 1),
                           "quality_score": 1.0, "source": "cnn"})
    paths.quality_gender_csv.parent.mkdir(parents=True)
    gender.to_csv(paths.quality_gender_csv, index=False)
    return paths, w, scores, kept


def _config(paths: PipelinePaths, **changes) -> FitDirectionsConfig:
    base = dict(checkpoint=paths.stylegan_checkpoint, generated_dir=paths.generated_dir,
                scores_csv=paths.all_scores_csv, normalization_json=paths.normalization_json,
                out_dir=paths.directions_dir, filtered_dir=paths.filtered_dir,
                quality_gender_csv=paths.quality_gender_csv, num_values=3, sheet_rows=2)
    base.update(changes)
    return FitDirectionsConfig(**base)


def test_w_codes_come_from_the_mapping_or_w_npy(world, tmp_path):
    paths, w, _, _ = world
    generator = load_generator(paths.stylegan_checkpoint)
    with torch.inference_mode():
        z = torch.from_numpy(np.load(paths.generated_dir / "latents.npy")[[3, 7]])
        np.testing.assert_allclose(w[[3, 7]], generator.mapping(z)["w"].numpy(), rtol=1e-5, atol=1e-6)
    folder = tmp_path / "gen"
    folder.mkdir()
    np.save(folder / "w.npy", w * 2)                               # w.npy wins over latents.npy
    np.testing.assert_array_equal(load_w_codes(generator, folder, np.array([5]), 1.0, 0), w[[5]] * 2)
    truncated = load_w_codes(generator, folder, np.array([5]), 0.7, generator.num_layers)
    w_avg = generator.truncation.w_avg.numpy()
    np.testing.assert_allclose(truncated, w_avg + 0.7 * (w[[5]] * 2 - w_avg), rtol=1e-6)
    with pytest.raises(RuntimeError, match="truncated only the first 2"):
        load_w_codes(generator, folder, np.array([5]), 0.7, 2)


def test_step_fits_on_kept_images_and_writes_its_report(world, single_thread):
    paths, w, scores, kept = world
    summary = run_fit_directions(_config(paths, select="heldout-r"))
    out = paths.directions_dir
    for name in ("directions.pt", "report.md", "directions_report.csv", "direction_angles.csv",
                 *(f"sweep_{p}.png" for p in PROPERTY_NAMES)):
        assert (out / name).is_file(), name
    directions = load_directions(out / "directions.pt", checkpoint=paths.stylegan_checkpoint, w_dim=16,
                                 normalization=NORMALIZATION)
    expected = [int(kept.sum())] * 5
    expected[2] = int((kept & np.isfinite(scores[:, 2])).sum())
    assert directions.info["num_samples"] == expected
    assert summary.num_samples == dict(zip(PROPERTY_NAMES, expected))
    # the planted linear scores are predicted on the images step 4 dropped (never fitted on)
    dropped = ~kept & np.isfinite(scores).all(axis=1)
    pred = directions.predict(w[dropped])
    for j in range(len(PROPERTY_NAMES)):
        assert np.corrcoef(pred[:, j], scores[dropped, j])[0, 1] > 0.9
    report = pd.read_csv(out / "directions_report.csv")
    assert list(report["property"]) == list(PROPERTY_NAMES) and (report["heldout_r"] > 0.9).all()
    angles = pd.read_csv(out / "direction_angles.csv").set_index("property")
    assert np.allclose(np.diag(angles.to_numpy()), 0, atol=1e-3)
    assert directions.info["female_share"]["unedited"] > 0.5
    # edits hold step 4's gender_score (the guard), which the planted world ties to w[:, 0]
    assert directions.guard_names == ("gender_score",)
    targets = np.full((len(w), len(PROPERTY_NAMES)), np.nan)
    targets[:, 0] = directions.bounds()[1][0]
    edited = directions.edit(w, targets)
    np.testing.assert_allclose(directions.predict_guards(edited), directions.predict_guards(w), atol=1e-3)
    assert "edited_without_gender_guard" in directions.info["female_share"]
    assert "step 7 (directions)" in summary.line() and not summary.skipped
    # SeFa's label-free directions beside them, on the same samples and guards (steps 8/9 --control sefa)
    sefa = load_directions(out / "sefa.pt", checkpoint=paths.stylegan_checkpoint, w_dim=16)
    assert set(sefa.methods) <= {"sefa", "none"} and "sefa" in sefa.methods
    assert sefa.guard_names == ("gender_score",) and sefa.info["num_samples"] == expected


def test_step_is_idempotent_and_refuses_another_recipe_until_overwrite(world, tmp_path, single_thread):
    from common.recipe import RecipeMismatchError

    paths, _, _, _ = world
    out = tmp_path / "dirs"
    run_fit_directions(_config(paths, select="heldout-r", out_dir=out))
    before = (out / "directions.pt").read_bytes()
    again = run_fit_directions(_config(paths, select="heldout-r", out_dir=out))
    assert again.skipped and (out / "directions.pt").read_bytes() == before
    with pytest.raises(RecipeMismatchError, match=r"cap: folder 3.0, now 2.0.*--overwrite"):
        run_fit_directions(_config(paths, select="heldout-r", out_dir=out, cap=2.0))
    assert (out / "directions.pt").read_bytes() == before
    changed = run_fit_directions(_config(paths, select="heldout-r", out_dir=out, cap=2.0, overwrite=True))
    assert not changed.skipped and load_directions(out / "directions.pt").cap == 2.0


def test_control_choice_with_a_passed_in_scorer(world, tmp_path, single_thread):
    paths, _, _, _ = world
    out = tmp_path / "dirs"
    summary = run_fit_directions(_config(paths, out_dir=out, layer_ranges=("all", "coarse", "middle", "fine"),
                                         num_heldout=4), scorer=BrightnessScorer())
    assert summary.selected_by == "control on held-out latents"
    table = pd.read_csv(out / "selection.csv")
    assert set(table["layers"]) == {"all", "coarse", "middle"}       # a 32 px generator has no fine layers
    chosen = table[table["chosen"]]
    assert list(chosen["property"]) == list(PROPERTY_NAMES)
    directions = load_directions(out / "directions.pt")
    assert directions.methods == tuple(chosen["method"]) and directions.layers == tuple(chosen["layers"])


def test_script_reports_missing_inputs_in_one_line(world, tmp_path, capsys):
    paths, _, _, _ = world
    script = load_script("7a")
    bare = tmp_path / "bare"
    shutil.copytree(paths.generated_dir, PipelinePaths(bare).generated_dir)
    shutil.copy(paths.stylegan_checkpoint, PipelinePaths(bare).stylegan_checkpoint)
    code = script.main(["--root", str(bare), "--device", "cpu", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "normalization.json not found" in err[0] and "run step 6" in err[0]
    PipelinePaths(bare).property_scores_dir.mkdir(parents=True)
    shutil.copy(paths.normalization_json, PipelinePaths(bare).normalization_json)
    shutil.copy(paths.all_scores_csv, PipelinePaths(bare).all_scores_csv)
    code = script.main(["--root", str(bare), "--device", "cpu", "-q", "--select", "heldout-r"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "filtered folder not found" in err[0] and "--all-scored" in err[0]
    code = script.main(["--root", str(bare), "--device", "cpu", "-q", "--select", "heldout-r", "--all-scored",
                        "--num-values", "2"])
    assert code == 0 and "step 7 (directions)" in capsys.readouterr().out


def test_generate_fn_for_step_9_edits_and_renders(world, single_thread):
    from stylegan.directions import fit_directions, make_generate_fn, render_edit
    from stylegan.generate import synthesize_uint8

    paths, w, scores, _ = world
    generator = load_generator(paths.stylegan_checkpoint)
    ok = np.isfinite(scores).all(axis=1)
    directions = fit_directions(w[ok], scores[ok], method="ridge")
    generate = make_generate_fn(generator, directions, batch_size=4)
    z = np.load(paths.generated_dir / "latents.npy")[:3]
    none = np.full((3, len(PROPERTY_NAMES)), np.nan)
    np.testing.assert_array_equal(generate(z, none), synthesize_uint8(generator, z))   # no request: step 1's image
    targets = none.copy()
    targets[:, 1] = directions.sweep_range()[1][1]
    with torch.inference_mode():  # w of these 3 latents as generate() maps them: one batch of 3, the same bits
        w3 = generator.mapping(torch.from_numpy(z))["w"].numpy()  # (w.npy was mapped in other batches)
    expected = render_edit(generator, w3, directions.edit(w3, targets))
    np.testing.assert_array_equal(generate(z, targets), expected)
    assert not np.array_equal(expected, synthesize_uint8(generator, z))


def test_another_generator_entry_than_step_1_used_is_refused(world, tmp_path):
    from stylegan.directions_step import FitDirectionsInputError

    paths, _, _, _ = world
    with pytest.raises(FitDirectionsInputError, match="'generator_smooth' entry .* pass --weights ema"):
        run_fit_directions(_config(paths, select="heldout-r", out_dir=tmp_path / "d", weights="raw"))
