"""Scripts 07, 08 and 09 on a tiny random generator: every output file, exact resume, clear errors."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from tiny_models import TINY_G_16

from common.io import atomic_save_image
from common.paths import PROPERTY_NAMES, REPO_ROOT, PipelinePaths
from pipeline.runner import load_script, load_script_file
from stylegan.checkpoint import load_generator, write_random_checkpoint
from stylegan.comparison import COMPARISON_COLUMNS
from stylegan.conditional import load_conditional_generator
from stylegan.finetune_schema import FinetuneSettings
from stylegan.finetune_step import FinetuneStepConfig, run_finetune
from stylegan.finetune_trainer import FinetuneConfig
from stylegan.networks import postprocess_uint8

SCRIPTS = REPO_ROOT / "stylegan_and_segmentation"
FAST = ["--device", "cpu", "--batch-size", "4", "--regressor-epochs", "1", "-q"]


pytestmark = pytest.mark.usefixtures("single_thread")


def make_root(root: Path, num: int = 12, nan_rows: tuple[int, ...] = (3,)) -> PipelinePaths:
    """A tiny pipeline root: random 16x16 checkpoint, filtered images, all_scores.csv, normalization.json."""
    paths = PipelinePaths(root)
    write_random_checkpoint(paths.stylegan_checkpoint, seed=0, **TINY_G_16)
    generator = load_generator(paths.stylegan_checkpoint)
    with torch.no_grad():
        images = postprocess_uint8(generator(torch.randn(num, 16, generator=torch.Generator().manual_seed(1)))["image"])
    rng = np.random.default_rng(0)
    rows = []
    for i, image in enumerate(images):
        atomic_save_image(paths.filtered_dir / f"{i:06d}.png", image)
        raw = rng.uniform(0, 100, size=5)
        if i in nan_rows:
            raw[1] = raw[2] = np.nan
        norm = raw / 100.0
        norm[4] = norm[4] * 2 - 1
        rows.append([f"{i:06d}.png", *np.round(norm, 4), *raw, "no_hair" if i in nan_rows else ""])
    columns = ["img_name", *PROPERTY_NAMES, *(f"raw_{p}" for p in PROPERTY_NAMES), "flags"]
    paths.property_scores_dir.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=columns).to_csv(paths.all_scores_csv, index=False)
    scales = {p: {"kind": "minmax", "count": num, "min": 0.0, "max": 100.0,
                  "target": [-1.0, 1.0] if p == "face_pose" else [0.0, 1.0]} for p in PROPERTY_NAMES}
    paths.normalization_json.write_text(json.dumps({
        "format_version": 1, "method": "minmax", "pose_scaling": "minmax", "decimals": 4,
        "properties": list(PROPERTY_NAMES), "scales": scales}))
    return paths


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One 4-step run, checkpoints at 2 and 4, shared by the 08/09 tests."""
    paths = make_root(tmp_path_factory.mktemp("root"))
    rc = load_script("7b").main(["--root", str(paths.root), "--steps", "4", "--checkpoint-every", "2",
                                 "--sample-every", "2", *FAST])
    assert rc == 0
    return paths


def test_07_writes_every_output_and_a_loadable_checkpoint(trained, capsys):
    out = trained.finetuned_dir
    for name in ("train_log.csv", "finetune_config.json", "property_regressor_metrics.json",
                 "checkpoints/checkpoint_000002.pt", "checkpoints/checkpoint_000004.pt",
                 "samples/step_000000.png", "samples/step_000002.png", "samples/step_000004.png"):
        assert (out / name).is_file(), name
    log = pd.read_csv(out / "train_log.csv")
    assert log["step"].tolist() == [1, 2, 3, 4]
    assert np.isfinite(log[["loss_d", "loss_g", "loss_prop", "r1"]].to_numpy()).all()
    ckpt = torch.load(out / "checkpoints/checkpoint_000004.pt", weights_only=True)
    assert ckpt["step"] == 4
    for key in ("generator", "generator_ema", "discriminator", "optimizer_g", "optimizer_d", "rng", "regressor"):
        assert key in ckpt, key
    config = ckpt["config"]
    assert config["property_names"] == list(PROPERTY_NAMES) and config["embed_dim"] == 16
    assert config["normalization"]["scales"]["face_pose"]["target"] == [-1.0, 1.0]
    assert config["generator"]["base_config"]["resolution"] == 16
    assert config["num_train_images"] == 11  # one NaN row left out
    # the contract loader: EMA by default, (z, condition) -> image; synthesis equals the pretrained one
    generator = load_conditional_generator(out / "checkpoints/checkpoint_000004.pt")
    assert not generator.training
    image = generator(torch.randn(2, 16), torch.rand(2, 5))["image"]
    assert image.shape == (2, 3, 16, 16)
    base = load_generator(trained.stylegan_checkpoint)
    for key, value in base.synthesis.state_dict().items():
        assert torch.equal(generator.synthesis.state_dict()[key], value), key
    raw = load_conditional_generator(out / "checkpoints/checkpoint_000004.pt", which="raw")
    assert not torch.equal(raw.condition.columns.weight, generator.condition.columns.weight)


def _step7(paths: PipelinePaths, out: Path, **training) -> FinetuneStepConfig:
    """Step 7's config as FAST gives it: tiny, CPU, one regressor epoch."""
    settings = {"batch_size": 4, "regressor_epochs": 1, **training}
    return FinetuneStepConfig(root=paths.root, out=out, device="cpu", training=FinetuneConfig(**settings))


def test_07_resume_repeats_the_uninterrupted_losses(tmp_path):
    paths = make_root(tmp_path / "root")
    every = dict(checkpoint_every=3, sample_every=100)
    straight = run_finetune(_step7(paths, tmp_path / "straight", steps=6, **every))
    first = run_finetune(_step7(paths, tmp_path / "resumed", steps=3, **every))
    resumed = run_finetune(_step7(paths, tmp_path / "resumed", steps=6, **every))
    assert (straight.start_step, straight.end_step, first.end_step) == (0, 6, 3)
    assert (resumed.start_step, resumed.end_step, resumed.num_train, resumed.num_nan) == (3, 6, 11, 1)
    assert resumed.checkpoint == tmp_path / "resumed/checkpoints/checkpoint_000006.pt"
    assert ({k: v for k, v in resumed.last_losses.items() if k != "seconds"}
            == {k: v for k, v in straight.last_losses.items() if k != "seconds"})
    straight_log = pd.read_csv(tmp_path / "straight" / "train_log.csv").drop(columns="seconds")
    resumed_log = pd.read_csv(tmp_path / "resumed" / "train_log.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(straight_log, resumed_log, check_exact=True)
    a = torch.load(straight.checkpoint, weights_only=True)
    b = torch.load(resumed.checkpoint, weights_only=True)
    for key in ("generator", "generator_ema", "discriminator"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key


def test_07_weights_picks_the_base_entry_and_a_change_refuses_to_resume(tmp_path, capsys):
    paths = make_root(tmp_path / "root")
    raw = run_finetune(replace(_step7(paths, tmp_path / "raw", steps=1), weights="raw"))
    assert raw.checkpoint_key == "generator"
    assert run_finetune(_step7(paths, tmp_path / "auto", steps=0)).checkpoint_key == "generator_smooth"
    settings = FinetuneSettings.from_dict(torch.load(raw.checkpoint, weights_only=True)["config"])
    assert settings.base_entry == "generator"
    script = load_script("7b")
    rc = script.main(["--root", str(paths.root), "--out", str(tmp_path / "raw"), "--steps", "2", "--weights", "ema",
                      *FAST])
    assert rc == 2
    assert "base_entry: folder 'generator', now 'generator_smooth'" in capsys.readouterr().err


def test_07_changed_settings_refuse_to_resume(tmp_path, capsys):
    paths = make_root(tmp_path / "root")
    script = load_script("7b")
    assert script.main(["--root", str(paths.root), "--steps", "1", *FAST]) == 0
    assert script.main(["--root", str(paths.root), "--steps", "2", "--r1-gamma", "1", *FAST]) == 2
    err = capsys.readouterr().err
    assert "r1_gamma: folder" in err and "--overwrite" in err


def test_07_all_nan_scores_is_a_clear_error(tmp_path, capsys):
    paths = make_root(tmp_path / "root", num=4, nan_rows=(0, 1, 2, 3))
    rc = load_script("7b").main(["--root", str(paths.root), "--steps", "1", *FAST])
    assert rc == 2
    err = capsys.readouterr().err
    assert "no training image left" in err and "4 with a NaN score" in err


def test_08_writes_images_csv_and_sweeps(trained, tmp_path):
    out = tmp_path / "gen"
    rc = load_script("8").main(
        ["--root", str(trained.root), "--device", "cpu", "--num", "3", "--eyes", "0.9", "--face-pose", "-0.5",
         "--sweep", "mouth", "--sweep", "face_pose", "--sweep-z", "2", "--out", str(out), "-q"])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["000000.png", "000001.png", "000002.png", "properties.csv",
                                                     "recipe.json", "sweep_face_pose.png", "sweep_mouth.png"]
    frame = pd.read_csv(out / "properties.csv")
    assert (frame["eyes"] == 0.9).all() and (frame["face_pose"] == -0.5).all()
    config = json.loads((trained.finetuned_dir / "finetune_config.json").read_text())
    assert frame["mouth"].iloc[0] == pytest.approx(config["condition_stats"]["mouth"]["median"])


def test_09_writes_every_output_with_the_stand_in(trained):
    rc = load_script("9").main(
        ["--overwrite",
         "--root", str(trained.root), "--device", "cpu", "--num-z", "2", "--num-values", "3", "--scorer",
         "brightness", "-q"])
    assert rc == 0
    out = trained.evaluation_dir
    assert {"comparison.csv", "comparison_sweeps.png", "report.md"} <= {p.name for p in out.iterdir()}
    expected = {"control_samples.csv", "control_metrics.csv", "leakage_matrix.csv", "requested_vs_measured.png",
                "leakage_heatmap.png", "report.md", *(f"sweep_{p}.png" for p in PROPERTY_NAMES)}
    for method in ("baseline", "finetuned"):  # no directions file in this root: only the fine-tune is compared
        assert expected <= {p.name for p in (out / method).iterdir()}
        assert len(pd.read_csv(out / method / "control_samples.csv")) == 2 * 3 * 5
    comparison = pd.read_csv(trained.comparison_csv)
    assert list(comparison.columns[:len(COMPARISON_COLUMNS)]) == list(COMPARISON_COLUMNS)
    assert sorted(set(comparison["method"])) == ["baseline", "finetuned"]
    assert set(comparison["judge"]) == {"brightness-stand-in"} and len(comparison) == 2 * 5
    assert "WARNING: the scorer is a stand-in" in (out / "report.md").read_text()
    assert "WARNING: the scorer is a stand-in" in (out / "finetuned" / "report.md").read_text()


def test_09_without_checkpoint_or_segmentation_model_is_a_clear_error(tmp_path, trained, capsys):
    assert load_script("9").main(["--root", str(tmp_path), "--device", "cpu", "-q"]) == 2
    assert "no fine-tuned checkpoint" in capsys.readouterr().err
    assert load_script("9").main(["--root", str(trained.root), "--device", "cpu", "-q"]) == 2
    assert "checkpoint not found" in capsys.readouterr().err  # no FaceXFormer weights in this root


@pytest.mark.parametrize("step", ["7b", "8", "9"])
def test_help(step, capsys):
    with pytest.raises(SystemExit) as exc:
        load_script(step).main(["--help"])
    assert exc.value.code == 0
    assert "--device" in capsys.readouterr().out


@pytest.fixture(scope="module")
def both_routes(trained, tmp_path_factory):
    """The trained root plus a directions file fitted for its base generator (synthetic linear scores)."""
    import shutil

    from common.fingerprint import file_fingerprint
    from stylegan.directions import fit_directions

    paths = PipelinePaths(tmp_path_factory.mktemp("both") / "root")
    shutil.copytree(trained.root, paths.root)
    generator = load_generator(paths.stylegan_checkpoint)
    with torch.no_grad():
        w = generator.mapping(torch.randn(64, 16, generator=torch.Generator().manual_seed(3)))["w"].numpy()
    rng = np.random.default_rng(0)
    scores = 0.5 + 0.1 * (w @ rng.standard_normal((16, 5))) / np.sqrt(16) / w.std()
    directions = fit_directions(w, scores, method="ridge", generator_fingerprint=file_fingerprint(
        paths.stylegan_checkpoint), normalization=json.loads(paths.normalization_json.read_text()))
    directions.save(paths.directions_pt)
    return paths


def test_08_with_directions_and_with_both_routes(both_routes):
    paths = both_routes
    rc = load_script("8").main(
        ["--root", str(paths.root), "--device", "cpu", "--control", "directions", "--num", "2", "--eyes", "0.6",
         "--sweep", "eyes", "--sweep-z", "2", "--sweep-values", "3", "-q"])
    assert rc == 0
    out = paths.directions_dir / "generated"
    assert sorted(p.name for p in out.iterdir()) == ["000000.png", "000001.png", "properties.csv", "recipe.json",
                                                     "sweep_eyes.png"]
    frame = pd.read_csv(out / "properties.csv")
    assert set(frame["control"]) == {"directions"} and (frame["eyes"] == 0.6).all()
    assert frame["mouth"].isna().all()  # not requested: the directions' own rule, not a median
    # the same z with either route: image i of directions and of the fine-tune start from z(seed, i)
    rc = load_script("8").main(
        ["--root", str(paths.root), "--device", "cpu", "--control", "all", "--num", "2", "--eyes", "0.6", "-q"])
    assert rc == 0
    assert set(pd.read_csv(paths.finetuned_dir / "generated" / "properties.csv")["control"]) == {"finetuned"}
    # re-running directions into the fine-tune's folder is refused, not mixed
    rc = load_script("8").main(
        ["--root", str(paths.root), "--device", "cpu", "--control", "directions", "--num", "2", "--eyes", "0.6",
         "--out", str(paths.finetuned_dir / "generated"), "-q"])
    assert rc == 2


def test_09_compares_both_routes_and_the_baseline(both_routes, capsys):
    paths = both_routes
    rc = load_script("9").main(
        ["--overwrite",
         "--root", str(paths.root), "--device", "cpu", "--num-z", "2", "--num-values", "3", "--scorer",
         "brightness", "--random-weight-models", "-q"])
    assert rc == 0
    comparison = pd.read_csv(paths.comparison_csv)
    assert comparison["method"].drop_duplicates().tolist() == ["baseline", "directions", "finetuned"]
    assert len(comparison) == 3 * 5
    baseline = comparison[comparison["method"] == "baseline"]
    assert (baseline["control_slope"].abs() < 1e-3).all() and (baseline["leakage_mean"] < 1e-3).all()
    report = (paths.evaluation_dir / "report.md").read_text()
    assert report.splitlines()[1].startswith("> **These models are the demo's random-weight models")
    assert "default_rng([9000009, 0, k])" in report
    assert "baseline/directions/finetuned compared" in capsys.readouterr().out
    # one route only, and a missing route is a one-line error
    rc = load_script("9").main(
        ["--overwrite",
         "--root", str(paths.root), "--device", "cpu", "--num-z", "1", "--num-values", "2", "--scorer",
         "brightness", "--control", "directions", "--out", str(paths.root / "eval_dir"), "-q"])
    assert rc == 0
    assert set(pd.read_csv(paths.root / "eval_dir" / "comparison.csv")["method"]) == {"baseline", "directions"}


def test_08_and_09_take_control_sefa(both_routes, tmp_path, capsys):
    """SeFa's directions file (step 7a's sefa.pt) is a method of its own: ``--control sefa`` in steps 8 and 9,
    and step 9's ``all`` compares it beside directions and the fine-tune, labelled ``sefa``."""
    import shutil

    from common.fingerprint import file_fingerprint
    from stylegan.directions import fit_sefa_directions

    paths = PipelinePaths(tmp_path / "root")
    shutil.copytree(both_routes.root, paths.root)
    generator = load_generator(paths.stylegan_checkpoint)
    with torch.no_grad():
        w = generator.mapping(torch.randn(64, 16, generator=torch.Generator().manual_seed(4)))["w"].numpy()
    scores = 0.5 + 0.1 * (w @ np.random.default_rng(1).standard_normal((16, 5))) / np.sqrt(16) / w.std()
    fit_sefa_directions(generator, w, scores, generator_fingerprint=file_fingerprint(paths.stylegan_checkpoint),
                        normalization=json.loads(paths.normalization_json.read_text())).save(paths.sefa_pt)
    rc = load_script("8").main(["--root", str(paths.root), "--device", "cpu", "--control", "sefa", "--num", "2",
                                "--mouth", "0.6", "-q"])
    assert rc == 0
    frame = pd.read_csv(paths.sefa_generated_dir / "properties.csv")
    assert set(frame["control"]) == {"sefa"} and (frame["mouth"] == 0.6).all()
    rc = load_script("9").main(["--root", str(paths.root), "--device", "cpu", "--num-z", "2", "--num-values", "3",
                                "--scorer", "brightness", "--quality", "off", "--judges", "main", "-q"])
    assert rc == 0
    comparison = pd.read_csv(paths.comparison_csv)
    assert comparison["method"].drop_duplicates().tolist() == ["baseline", "directions", "sefa", "finetuned"]
    paths.sefa_pt.unlink()
    rc = load_script("9").main(["--root", str(paths.root), "--device", "cpu", "--scorer", "brightness",
                                "--control", "sefa", "-q"])
    assert rc == 2 and "no SeFa directions file" in capsys.readouterr().err


def test_09_missing_route_is_a_clear_error(trained, capsys):
    rc = load_script("9").main(
        ["--overwrite",
         "--root", str(trained.root), "--device", "cpu", "--scorer", "brightness", "--control", "directions", "-q"])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no directions file") and "07_fit_latent_directions.py" in err
    assert len(err.strip().splitlines()) == 1


def test_09_reports_quality_identity_and_names_missing_judges(trained, tmp_path):
    """FID/KID with the tiny extractor next to control; judges that cannot run are named with the reason."""
    out = tmp_path / "eval"
    rc = load_script("9").main(
        ["--overwrite",
         "--root", str(trained.root), "--device", "cpu", "--num-z", "2", "--num-values", "3", "--scorer",
         "brightness", "--quality", "tiny", "--quality-num", "4", "--out", str(out), "-q"])
    assert rc == 0
    comparison = pd.read_csv(out / "comparison.csv")
    assert list(comparison.columns[len(COMPARISON_COLUMNS):]) == ["identity_distance", "identity_changed_share",
                                                                  "fid", "kid_mean", "kid_std"]
    quality = pd.read_csv(out / "quality.csv")
    assert [tuple(r) for r in quality[["method", "samples"]].to_numpy()] == [
        ("baseline", "filtered split (base generator, step-4 filter)"), ("finetuned", "sweep extremes"),
        ("finetuned", "random requests")]
    assert (quality["count"] == 4).all()  # every set at one count
    assert np.isfinite(quality[["fid", "kid_mean", "kid_std"]].to_numpy()).all()
    fid = comparison.groupby("method")["fid"].first()
    assert fid["baseline"] == pytest.approx(quality["fid"].iloc[0]) and fid["finetuned"] == pytest.approx(
        quality["fid"].iloc[1])
    report = (out / "report.md").read_text()
    assert "## Other judges, identity and image quality" in report and "tiny stand-in features" in report
    assert "Missing figures" in report
    from judges import dlib_status

    if dlib_status()[0]:  # installed, but step 6 never fitted its normaliser in this root: named, with the fix
        assert "landmark_normalization.json" in report and "run step 6 with the landmark judge" in report
    else:
        assert "requirements-judges.txt" in report


def test_09_without_the_inception_file_names_the_missing_figure(trained, tmp_path, capsys):
    rc = load_script("9").main(
        ["--overwrite",
         "--root", str(trained.root), "--device", "cpu", "--num-z", "1", "--num-values", "2", "--scorer",
         "brightness", "--control", "finetuned", "--out", str(tmp_path / "eval")])
    assert rc == 0
    line = capsys.readouterr().out
    assert "missing: " in line and "FID/KID: checkpoint not found" in line and "download_models.py" in line
    assert pd.read_csv(tmp_path / "eval" / "comparison.csv")["fid"].isna().all()


def test_08_and_09_refuse_an_incomplete_directions_file_in_one_line(both_routes, tmp_path, capsys):
    """A directions file missing an entry (an older format) is a one-line error, never a KeyError traceback."""
    data = torch.load(both_routes.directions_pt, weights_only=True)
    del data["guard_names"]
    broken = tmp_path / "old_directions.pt"
    torch.save(data, broken)
    for step, extra in (("8", ["--control", "directions", "--num", "1"]),
                        ("9", ["--control", "directions", "--scorer", "brightness"])):
        rc = load_script(step).main(["--root", str(both_routes.root), "--device", "cpu", "--directions", str(broken),
                                     "--out", str(tmp_path / f"step{step}"), *extra, "-q"])
        assert rc == 2
        err = capsys.readouterr().err
        assert "not a complete directions file" in err and "07_fit_latent_directions.py" in err
        assert len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------------------------
# the directions route's "refine" option (--refine off|auto|PATH) in steps 8 and 9


def test_08_refine_auto_changes_the_images_and_the_summary_says_so(both_routes, capsys):
    from PIL import Image

    paths = both_routes
    args = ["--root", str(paths.root), "--device", "cpu", "--control", "directions", "--num", "2", "--eyes", "0.9",
            "--mouth", "0.1", "-q"]
    assert load_script("8").main([*args, "--out", str(paths.root / "linear")]) == 0
    assert "refine" not in capsys.readouterr().out
    assert load_script("8").main([*args, "--refine", "auto"]) == 0
    line = capsys.readouterr().out
    newest = paths.finetuned_dir / "checkpoints" / "checkpoint_000004.pt"
    assert "directions+refine: 2 images written" in line and f"refined with the regressor of {newest}" in line
    refined = paths.directions_dir / "generated_refine"   # never mixed with the linear edits' folder
    assert set(pd.read_csv(refined / "properties.csv")["control"]) == {"directions+refine"}
    for name in ("000000.png", "000001.png"):
        linear = np.asarray(Image.open(paths.root / "linear" / name), dtype=np.int16)
        assert np.abs(np.asarray(Image.open(refined / name), dtype=np.int16) - linear).mean() > 0.5


def test_refine_auto_without_a_step_7b_checkpoint_is_off_and_says_why(tmp_path):
    from stylegan.control_methods import resolve_refine

    choice = resolve_refine("auto", tmp_path)
    assert not choice.on and choice.note.startswith("refine auto: off (no step-7b checkpoint")
    assert not resolve_refine("off", tmp_path).on
    with pytest.raises(FileNotFoundError, match="--refine .*absent.pt: no such file"):
        resolve_refine(tmp_path / "absent.pt", tmp_path)


def test_09_refine_adds_a_directions_refine_row_beside_directions(both_routes, capsys):
    paths = both_routes
    out = paths.root / "eval_refine"
    rc = load_script("9").main(
        ["--overwrite",
         "--root", str(paths.root), "--device", "cpu", "--num-z", "1", "--num-values", "2", "--scorer", "brightness",
         "--control", "directions", "--refine", "auto", "--judges", "main", "--quality", "off", "--out", str(out),
         "-q"])
    assert rc == 0
    comparison = pd.read_csv(out / "comparison.csv")
    assert list(comparison.columns[:len(COMPARISON_COLUMNS)]) == list(COMPARISON_COLUMNS)
    assert comparison["method"].drop_duplicates().tolist() == ["baseline", "directions", "directions+refine"]
    linear = comparison[comparison["method"] == "directions"].set_index("property")["control_slope"]
    refined = comparison[comparison["method"] == "directions+refine"].set_index("property")["control_slope"]
    assert not np.allclose(linear, refined)   # the same latents and judge, other images
    assert (out / "directions+refine" / "control_metrics.csv").is_file()  # its own outputs, as every method
    assert "baseline/directions/directions+refine compared" in capsys.readouterr().out


def test_08_and_09_refuse_a_refine_checkpoint_of_another_normalisation_in_one_line(both_routes, tmp_path, capsys):
    ckpt = torch.load(both_routes.finetuned_dir / "checkpoints" / "checkpoint_000004.pt", weights_only=True)
    ckpt["config"]["normalization"]["scales"]["eyes"]["max"] = 50.0
    other = tmp_path / "other_norm.pt"
    torch.save(ckpt, other)
    names = dict(ckpt, config={**ckpt["config"], "property_names": list(reversed(PROPERTY_NAMES))})
    torch.save(names, tmp_path / "other_names.pt")
    for bad, words in ((other, "another normalisation"), (tmp_path / "other_names.pt", "predicts face_pose")):
        for script, extra in (("08_generate_with_properties.py", ["--control", "directions", "--num", "1"]),
                              ("09_evaluate_control.py", ["--control", "directions", "--scorer", "brightness",
                                                          "--out", str(tmp_path / "eval")])):
            rc = load_script_file(script).main(["--root", str(both_routes.root), "--device", "cpu", "--refine", str(bad),
                                       *extra, "-q"])
            assert rc == 2
            err = capsys.readouterr().err
            assert err.startswith(f"error: {bad}") and words in err and len(err.strip().splitlines()) == 1


def test_refine_without_the_directions_route_is_an_error_for_a_path_and_a_note_for_auto(both_routes, tmp_path,
                                                                                          capsys):
    ckpt = both_routes.finetuned_dir / "checkpoints" / "checkpoint_000004.pt"
    args = ["--root", str(both_routes.root), "--device", "cpu", "--control", "finetuned", "--num", "1",
            "--out", str(tmp_path / "generated"), "-q"]
    assert load_script("8").main([*args, "--refine", str(ckpt)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --refine {ckpt} refines the directions route") and len(err.splitlines()) == 1
    assert load_script("8").main([*args, "--refine", "auto"]) == 0
    assert "refine auto: not used (control finetuned)" in capsys.readouterr().out


def test_the_comparison_figure_labels_every_method_distinctly():
    from stylegan.comparison import method_label
    from stylegan.control_methods import BASELINE, DIRECTIONS, DIRECTIONS_REFINE, FINETUNED

    labels = [method_label(m) for m in (BASELINE, DIRECTIONS, DIRECTIONS_REFINE, FINETUNED)]
    assert len(set(labels)) == 4 and all(len(label) <= 10 for label in labels)
