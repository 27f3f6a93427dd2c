"""Provenance (issue 19, section 2): a step continues only under its folder's recipe.

The mechanism (``common.recipe``) first, then each step's cases from the reliability campaign
(``cases-2026-12.md``: the id is in each test's docstring, with the reproduction).
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from provenance_world import directions_root, write_directions

from common.paths import PipelinePaths
from common.recipe import (
    LOCK_NAME,
    FolderBusyError,
    FolderLock,
    Recipe,
    RecipeMismatchError,
    claim_output,
    merging,
    owned_by_patterns,
    part_name,
)
from pipeline.runner import PipelineOptions, load_script, load_script_file, run_pipeline

pytestmark = pytest.mark.usefixtures("single_thread")

OWNED = owned_by_patterns("*.png")


def _digests(folder: Path, pattern: str = "*.png") -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob(pattern))}


def _rc(main, argv: list[str]) -> int:
    """A script's exit code, whether its parser refused (SystemExit) or its run did (return value)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


# ----------------------------------------------------------------------------------------------
# the mechanism


def test_a_recipe_that_differs_is_refused_naming_the_field_and_the_flag(tmp_path):
    folder = tmp_path / "out"
    a = Recipe.of("8", {"seed": 0, "eyes": 0.3})
    with claim_output(folder, a, overwrite=False, owned=OWNED):
        (folder / "000000.png").write_bytes(b"made by a")
    with claim_output(folder, a, overwrite=False, owned=OWNED) as claim:  # the same recipe continues
        assert claim.continued
    with pytest.raises(RecipeMismatchError) as info:
        with claim_output(folder, Recipe.of("8", {"seed": 0, "eyes": 0.9}), overwrite=False, owned=OWNED):
            pass
    message = str(info.value)
    assert "eyes: folder 0.3, now 0.9" in message and "--overwrite" in message and "\n" not in message
    assert "seed" not in message.split("another recipe")[1].split(")")[0]  # only what differs is named
    assert (folder / "000000.png").read_bytes() == b"made by a"


def test_an_input_file_is_part_of_the_recipe(tmp_path):
    model = tmp_path / "model.pt"
    model.write_bytes(b"one model")
    first = Recipe.of("5", {"crop": "full"}, {"checkpoint": model})
    model.write_bytes(b"another model, same path")
    second = Recipe.of("5", {"crop": "full"}, {"checkpoint": model})
    [difference] = first.differences(second)
    assert difference.startswith("checkpoint: another file")


def test_items_without_a_recipe_are_refused_and_overwrite_removes_them_first(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "000000.png").write_bytes(b"older version")
    (folder / "notes.txt").write_text("the user's, not the step's")
    recipe = Recipe.of("8", {"seed": 0})
    with pytest.raises(RecipeMismatchError, match="no recipe.json"):
        with claim_output(folder, recipe, overwrite=False, owned=OWNED):
            pass
    with claim_output(folder, recipe, overwrite=True, owned=OWNED) as claim:
        assert claim.removed == 1 and not (folder / "000000.png").exists()
    assert (folder / "notes.txt").exists()  # only the step's own files go
    assert json.loads((folder / "recipe.json").read_text())["settings"] == {"seed": 0}


def test_a_live_lock_refuses_a_second_run_and_a_stale_one_is_recovered(tmp_path):
    folder = tmp_path / "out"
    recipe = Recipe.of("8", {"seed": 0})
    with claim_output(folder, recipe, overwrite=False, owned=OWNED):
        with pytest.raises(FolderBusyError, match=f"pid {os.getpid()}"):
            with claim_output(folder, recipe, overwrite=False, owned=OWNED):
                pass
    assert not (folder / LOCK_NAME).exists()  # released
    # a run killed with -9 leaves its lock behind: its pid no longer exists, so the next run takes over
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    held = FolderLock(folder).acquire()
    lock = json.loads((folder / LOCK_NAME).read_text())
    (folder / LOCK_NAME).write_text(json.dumps({**lock, "pid": dead.pid}))
    held.held = False  # that "process" is gone without releasing
    with claim_output(folder, recipe, overwrite=False, owned=OWNED) as claim:
        assert claim.continued


def test_the_lock_works_where_the_filesystem_has_no_hard_links(tmp_path, monkeypatch):
    """Some network and FUSE mounts refuse os.link: the lock falls back to an exclusive create."""
    def no_links(src, dst):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    folder = tmp_path / "out"
    with FolderLock(folder):
        assert json.loads((folder / LOCK_NAME).read_text())["pid"] == os.getpid()
        with pytest.raises(FolderBusyError):
            FolderLock(folder).acquire()
    assert not (folder / LOCK_NAME).exists()


def test_a_shard_merge_refuses_parts_of_another_recipe(tmp_path):
    folder = tmp_path / "out"
    for k, seed in ((0, 0), (1, 1)):
        with claim_output(folder, Recipe.of("1", {"seed": seed}), overwrite=False, owned=OWNED, shard=(k, 2)):
            pass
    assert (folder / part_name("recipe.json", 1, 2)).is_file()
    with pytest.raises(RecipeMismatchError, match=r"recipe.part-1-of-2.json was made by another recipe.*seed"):
        with merging(folder, Recipe.of("1", {"seed": 0})):
            pass
    assert not (folder / "recipe.json").exists()


# ----------------------------------------------------------------------------------------------
# step 8


@pytest.fixture(scope="module")
def root8(tmp_path_factory) -> Path:
    return directions_root(tmp_path_factory.mktemp("prov8") / "root").root


def _step8(root: Path, out: Path, *extra: str) -> int:
    return load_script("8").main(["--root", str(root), "--device", "cpu", "--control", "directions", "--out",
                                  str(out), "-q", *extra])


def test_step8_refuses_a_folder_made_with_another_directions_file(root8, tmp_path, capsys):
    """s8_mix_checkpoints: 08 --num 2 into a folder, then --num 4 with another checkpoint (or --weights) wrote
    "2 images written (2 already there)": images of two models, properties.csv crediting the last."""
    out = tmp_path / "gen"
    assert _step8(root8, out, "--num", "2", "--eyes", "0.5") == 0
    before = _digests(out)
    other = write_directions(PipelinePaths(root8), seed=1, target=tmp_path / "other.pt")
    capsys.readouterr()
    assert _step8(root8, out, "--num", "4", "--eyes", "0.5", "--directions", str(other)) == 2
    line = _error_line(capsys)
    assert "directions: another file" in line and "--overwrite" in line
    assert _digests(out) == before  # nothing written, nothing adopted
    assert _step8(root8, out, "--num", "4", "--eyes", "0.5") == 0  # a larger --num alone is fine
    assert "2 images written (2 already there)" in capsys.readouterr().out


def test_step8_after_a_kill_never_adopts_images_for_other_values(root8, tmp_path, capsys):
    """k8_kill_then_other_values: 08 --eyes 0.3 killed after 58 images, then 08 --eyes 0.9 into the same folder
    said "142 written (58 already there)" and properties.csv called all 200 eyes=0.9."""
    from stylegan.property_generation import GeneratePropertiesConfig, run_generate_with_properties

    out = tmp_path / "gen"
    config = GeneratePropertiesConfig(root=root8, control="directions", requested=(0.3, None, None, None, None),
                                      num=4, batch_size=1, device="cpu", out=out)

    def killed(done: int, total: int) -> None:
        if done >= 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_generate_with_properties(config, killed)
    assert sorted(p.name for p in out.glob("0*.png")) == ["000000.png", "000001.png"]
    assert not (out / LOCK_NAME).exists()
    listed = (out / "properties.csv").read_text()
    assert "000001.png" in listed  # each image is listed with its recipe as its batch finishes
    capsys.readouterr()
    assert _step8(root8, out, "--num", "4", "--eyes", "0.9") == 2
    assert "eyes" in _error_line(capsys)
    assert _step8(root8, out, "--num", "4", "--eyes", "0.3") == 0  # the killed run's recipe resumes
    assert "2 images written (2 already there)" in capsys.readouterr().out
    fresh = tmp_path / "fresh"
    assert _step8(root8, fresh, "--num", "4", "--eyes", "0.3") == 0
    assert _digests(out) == _digests(fresh)
    assert _step8(root8, out, "--num", "4", "--eyes", "0.9", "--overwrite") == 0
    assert "4 images written (0 already there)" in capsys.readouterr().out


def test_step8_second_run_into_a_busy_folder_refuses(root8, tmp_path, capsys):
    """cc_step8: two 08 runs with --eyes 0.2 and 0.9 started together into one folder both "wrote 200 images":
    24 of one, 176 of the other, properties.csv saying 0.9 for all."""
    out = tmp_path / "gen"
    with FolderLock(out):  # another run holds the folder
        assert _step8(root8, out, "--num", "2", "--eyes", "0.2") == 2
    line = _error_line(capsys)
    assert "in use by another run" in line and str(os.getpid()) in line
    assert not list(out.glob("0*.png"))


def test_runner_stops_at_step8_after_a_newer_model_and_never_overwrites(root8, tmp_path, capsys):
    """rp_step8_stale: after a newer fine-tune, run_pipeline --from 8 --to 8 "ran" step 8, which wrote
    "0 images written (4 already there)": the old model's images under a properties.csv naming the new one."""
    import shutil

    root = tmp_path / "root"
    shutil.copytree(root8, root)
    options = PipelineOptions(root=root, device="cpu", quiet=True, first="8", last="8",
                              step_args={"8": ["--control", "directions", "--num", "2"]})
    assert run_pipeline(options) == 0
    out = root / "stylegan" / "directions" / "generated"
    before = _digests(out)
    write_directions(PipelinePaths(root), seed=5)  # a newer fit at the same path
    capsys.readouterr()
    assert run_pipeline(options) == 2
    err = capsys.readouterr().err
    assert "directions: another file" in err and "--overwrite" in err and "Traceback" not in err
    assert _digests(out) == before


@pytest.mark.parametrize("target", ["generated_dir", "filtered_dir"])
def test_step8_out_inside_an_image_folder_is_refused(root8, capsys, target):
    """s8_out_eq_step1: 08 --out stylegan/synthesize_results wrote 000000.png beside step 1's 000000.jpg; the
    next step 4 scored the two PNGs as generated faces."""
    folder = getattr(PipelinePaths(root8), target)
    assert _step8(root8, folder / "sub", "--num", "1") == 2
    assert "other steps read that folder as images" in _error_line(capsys)
    assert not folder.exists()


# ----------------------------------------------------------------------------------------------
# step 1 and its shard merge


@pytest.fixture(scope="module")
def two_generators(tmp_path_factory) -> tuple[Path, Path]:
    from tiny_models import TINY_G_16

    from stylegan.checkpoint import write_random_checkpoint

    folder = tmp_path_factory.mktemp("gens")
    return (write_random_checkpoint(folder / "a.pth", seed=0, **TINY_G_16),
            write_random_checkpoint(folder / "b.pth", seed=1, **TINY_G_16))


def _step1(checkpoint: Path, out: Path, *extra: str) -> int:
    return _rc(load_script("1").main, ["--checkpoint", str(checkpoint), "--out", str(out), "--num", "4",
                                        "--format", "png", "--device", "cpu", "-q", *extra])


@pytest.mark.parametrize("case", ["ms1_foreign_seed", "ms1_foreign_ckpt"])
def test_shard_merge_refuses_a_shard_made_by_another_recipe(two_generators, tmp_path, capsys, case):
    """ms1_foreign_seed / ms1_foreign_ckpt: 01 --shard 0/2 --seed 0 and 01 --shard 1/2 --seed 1 (or another
    checkpoint) into two folders, copied together (shard B's generation.json last), then merge_shards.py 1
    --seed 1: "merged the shards' 40 images" with every even image seed 0's while latents.npy was seed 1's."""
    import shutil

    a, b = two_generators
    first, second = tmp_path / "A", tmp_path / "B"
    assert _step1(a, first, "--shard", "0/2", "--seed", "0") == 0
    other = ["--seed", "1"] if case == "ms1_foreign_seed" else ["--seed", "0"]
    assert _step1(a if case == "ms1_foreign_seed" else b, second, "--shard", "1/2", *other) == 0
    together = tmp_path / "together"
    shutil.copytree(first, together)
    shutil.copytree(second, together, dirs_exist_ok=True)
    capsys.readouterr()
    merged_with = a if case == "ms1_foreign_seed" else b
    assert load_script_file("merge_shards.py").main(
        ["1", "--checkpoint", str(merged_with), "--out", str(together), "--num", "4", "--format", "png",
         "--device", "cpu", "-q", *other]) == 2
    line = _error_line(capsys)
    assert "generation.part-0-of-2.json was made by another recipe" in line
    assert ("seed: folder 0, now 1" if case == "ms1_foreign_seed" else "checkpoint: another file") in line
    assert not (together / "generated.csv").exists() and not (together / "latents.npy").exists()


def test_step1_out_may_not_be_a_file_or_another_steps_image_folder(two_generators, tmp_path, capsys):
    """s1_out_file: 01 --out an existing file gave a FileExistsError traceback."""
    target = tmp_path / "afile"
    target.write_text("mine")
    assert _step1(two_generators[0], target) == 2
    assert "is a file, not a folder" in _error_line(capsys)  # the flag's own check, at parse time
    assert target.read_text() == "mine"
    filtered = PipelinePaths(tmp_path).filtered_dir
    assert load_script("1").main(["--root", str(tmp_path), "--checkpoint", str(two_generators[0]), "--out",
                                  str(filtered), "--num", "1", "--device", "cpu", "-q"]) == 2
    assert "step 4's kept-image folder" in _error_line(capsys)


# ----------------------------------------------------------------------------------------------
# step 5 (a tiny parser stands in for FaceXFormer: the recipe keys the checkpoint file's bytes)


def _step5(images: Path, out: Path, checkpoint: Path, **kwargs):
    from segment_world import TinyParser

    from segmentation.segment import SegmentConfig, run_segmentation

    config = SegmentConfig(images=images, out=out, checkpoint=checkpoint, device="cpu", crop="full", batch_size=2,
                           **kwargs)
    return run_segmentation(config, model_loader=TinyParser)


@pytest.fixture()
def seg_inputs(tmp_path) -> tuple[Path, Path]:
    from segment_world import write_image_folder

    checkpoint = tmp_path / "segmentation_model.pt"
    checkpoint.write_bytes(b"model A")
    return write_image_folder(tmp_path / "images"), checkpoint


def test_step5_refuses_to_continue_after_the_model_was_swapped(seg_inputs, tmp_path):
    """rp_swapped_fx: segmentation_model.pt replaced by another FaceXFormer, then step 5 (by the runner):
    "parsed 0 ... skipped (already done) 15", every map the old model's while steps 6-9 re-ran on them."""
    images, checkpoint = seg_inputs
    out = tmp_path / "seg"
    _step5(images, out, checkpoint)
    before = _digests(out)
    checkpoint.write_bytes(b"model B, same path")
    with pytest.raises(RecipeMismatchError, match=r"checkpoint: another file .*--overwrite"):
        _step5(images, out, checkpoint)
    assert _digests(out) == before
    again = _step5(images, out, checkpoint, overwrite=True)
    assert again.skipped == 0 and again.parsed == 6


def test_step5_redoes_an_image_whose_file_changed(seg_inputs, tmp_path):
    """Each crops.csv row keeps its input's identity (size + sha256): an edited image is parsed again."""
    from PIL import Image

    images, checkpoint = seg_inputs
    out = tmp_path / "seg"
    _step5(images, out, checkpoint)
    edited = images / "000002.png"
    Image.new("RGB", (32, 32), (200, 10, 10)).save(edited)
    summary = _step5(images, out, checkpoint)
    assert (summary.parsed, summary.skipped) == (1, 6)
    from common.recipe import item_identity

    row = (out / "crops.csv").read_text().splitlines()
    assert any(line.startswith("000002.png,") and line.endswith(item_identity(edited)) for line in row)


def test_step5_refuses_two_images_with_one_stem(seg_inputs, tmp_path):
    """s5_stem_collision: 000001.png (grey) beside 000001.jpg: its parse files overwrote the other's while
    crops.csv still listed 000001.jpg; step 6 then silently lost 000001.jpg."""
    from PIL import Image

    from segmentation.segment import SegmentationError

    images, checkpoint = seg_inputs
    Image.new("RGB", (32, 32), (128, 128, 128)).save(images / "000001.jpg")
    out = tmp_path / "seg"
    with pytest.raises(SegmentationError, match=r"000001.jpg and 000001.png share the stem '000001'"):
        _step5(images, out, checkpoint)
    assert not list(out.glob("parsing_*"))


def test_step5_shard_merge_refuses_a_shard_of_another_crop_mode(seg_inputs, tmp_path, capsys):
    """ms5_foreign_crop: shard 0/2 with --crop full, shard 1/2 with --crop mtcnn, copied together; merge_shards.py 5
    --crop full: "merged 2 parts into crops.csv" mixing 8 full rows and 7 mtcnn rows."""
    images, checkpoint = seg_inputs
    out = tmp_path / "together"
    _step5(images, out, checkpoint, shard="0/2")
    _step5(images, out, checkpoint, shard="1/2", mtcnn_device="cpu")
    part = out / "recipe.part-1-of-2.json"
    record = json.loads(part.read_text())
    record["settings"]["crop"] = "mtcnn"  # what shard 1's folder recorded when it ran with --crop mtcnn
    part.write_text(json.dumps(record))
    flags = ["--images", str(images), "--out", str(out), "--checkpoint", str(checkpoint), "--crop", "full",
             "--device", "cpu", "-q"]
    capsys.readouterr()  # the shards' own log lines
    assert load_script_file("merge_shards.py").main(["5", *flags]) == 2
    assert "crop: folder 'mtcnn', now 'full'" in _error_line(capsys)
    assert not (out / "crops.csv").exists()


# ----------------------------------------------------------------------------------------------
# step 7a: one reader per file kind (the same one line as step 7b), and its own provenance


@pytest.fixture(scope="module")
def world7a(tmp_path_factory) -> PipelinePaths:
    from provenance_world import latent_world

    return latent_world(tmp_path_factory.mktemp("prov7a") / "root")


def _copy_root(paths: PipelinePaths, tmp_path: Path) -> PipelinePaths:
    import shutil

    shutil.copytree(paths.root, tmp_path / "root")
    return PipelinePaths(tmp_path / "root")


def _step7a(root: Path, *extra: str) -> int:
    return load_script("7a").main(["--root", str(root), "--device", "cpu", "--select", "heldout-r", "--num-heldout",
                                   "4", "--num-values", "2", "-q", *extra])


def _w_variant(kind: str, path: Path) -> None:
    import numpy as np

    w = np.load(path)
    if kind == "nan":
        w[3, 5] = np.nan
        np.save(path, w)
    elif kind == "object":
        np.save(path, np.array([{"a": 1}] * len(w), dtype=object), allow_pickle=True)
    elif kind == "truncated":
        path.write_bytes(path.read_bytes()[:500])
    elif kind == "int64":
        np.save(path, w.astype(np.int64))


@pytest.mark.parametrize("kind, needle", [
    ("nan", "row 3 holds NaN or infinite values"),                 # s7a_w_nan
    ("object", "is not a readable step 1's w.npy"),                # s7a_w_obj (never unpickled)
    ("truncated", "is not a readable step 1's w.npy"),             # s7a_w_trunc
    ("int64", "holds int64 values"),                               # s7a_w_int
])
def test_step7a_refuses_a_bad_w_npy_in_one_line(world7a, tmp_path, capsys, kind, needle):
    """s7a_w_nan / s7a_w_obj / s7a_w_trunc: w.npy with one NaN, an object array, or cut to 500 bytes gave
    tracebacks ("latents contain NaN or inf", "Array can't be memory-mapped", "mmap length is greater than file
    size"); s7a_w_int: w.npy saved as int64 was cast silently and directions were fitted on rounded codes."""
    paths = _copy_root(world7a, tmp_path)
    _w_variant(kind, paths.w_npy)
    assert _step7a(paths.root) == 2
    line = _error_line(capsys)
    assert needle in line and "w.npy" in line
    assert not paths.directions_pt.exists()


@pytest.mark.parametrize("value, needle", [("inf", "got 'inf'"), ("abc", "got 'abc'")])
def test_step7a_refuses_inf_or_text_in_all_scores_naming_the_line(world7a, tmp_path, capsys, value, needle):
    """s7a_scores_inf / s7a_scores_text: all_scores.csv row 1 eyes = inf (or abc) gave tracebacks ("scores
    contain inf", "could not convert string to float") where step 7b refuses the same file in one line."""
    paths = _copy_root(world7a, tmp_path)
    lines = paths.all_scores_csv.read_text().splitlines()
    cells = lines[1].split(",")
    cells[1] = value
    lines[1] = ",".join(cells)
    paths.all_scores_csv.write_text("\n".join(lines) + "\n")
    assert _step7a(paths.root) == 2
    line = _error_line(capsys)
    assert "all_scores.csv line 2" in line and needle in line
    assert load_script("7b").main(["--root", str(paths.root), "--device", "cpu", "--steps", "1", "-q"]) == 2
    assert _error_line(capsys).split("error: ")[1].startswith(line.split("error: ")[1][:60])  # the same line


@pytest.mark.parametrize("content, needle", [
    (lambda text: text[:300], "is not valid JSON"),                                      # s7a_norm_trunc
    (lambda text: text.replace('"format_version": 1', '"format_version": 7'), "format_version 7"),  # s7a_norm_ver
])
def test_step7a_reads_normalization_json_as_step_7b_does(world7a, tmp_path, capsys, content, needle):
    """s7a_norm_trunc: normalization.json cut to 300 bytes gave a JSONDecodeError traceback; s7a_norm_ver:
    format_version 7 was accepted and directions fitted (7b refuses it)."""
    paths = _copy_root(world7a, tmp_path)
    paths.normalization_json.write_text(content(paths.normalization_json.read_text()))
    assert _step7a(paths.root) == 2
    assert needle in _error_line(capsys)
    assert not paths.directions_pt.exists()


def test_step7a_refuses_an_infinite_gender_score_naming_the_row(world7a, tmp_path, capsys):
    """s7a_qg_inf: all_image_quality_and_gender.csv row 1 gender_score = inf: the row was dropped without a word
    and the gender guard refitted on the rest (intercept 1.0643 -> 1.0551)."""
    paths = _copy_root(world7a, tmp_path)
    text = paths.quality_gender_csv.read_text().splitlines()
    cells = text[1].split(",")
    cells[1] = "inf"
    text[1] = ",".join(cells)
    paths.quality_gender_csv.write_text("\n".join(text) + "\n")
    assert _step7a(paths.root) == 2
    line = _error_line(capsys)
    assert "all_image_quality_and_gender.csv line 2 (000000.png): gender_score must be a finite number" in line


def test_step7a_refuses_step_1s_latents_of_another_generator(world7a, tmp_path, capsys):
    """s7a_other_generator: stylegan_model.pth replaced by another random generator of the same shape: 7a fitted
    on the old generator's w.npy and stamped the new fingerprint on the directions (steps 8, 9 and the studio
    then accepted them)."""
    from tiny_models import TINY_G_16

    from stylegan.checkpoint import write_random_checkpoint

    paths = _copy_root(world7a, tmp_path)
    write_random_checkpoint(paths.stylegan_checkpoint, seed=1, **TINY_G_16)
    assert _step7a(paths.root) == 2
    assert "made by another generator" in _error_line(capsys)
    assert not paths.directions_pt.exists()


def test_step7a_out_inside_step_1s_images_is_refused(world7a, tmp_path, capsys):
    """s7a_out_in_images: 07_fit_latent_directions.py --out stylegan/synthesize_results wrote directions.pt, the
    report and five sweep_*.png into step 1's image folder, where list_images picks the sheets up as faces."""
    paths = _copy_root(world7a, tmp_path)
    before = sorted(p.name for p in paths.generated_dir.iterdir())
    assert _step7a(paths.root, "--out", str(paths.generated_dir)) == 2
    line = _error_line(capsys)
    assert "--out" in line and "step 1's" in line  # named as step 1's input or as its image folder
    assert sorted(p.name for p in paths.generated_dir.iterdir()) == before


# ----------------------------------------------------------------------------------------------
# step 7b: resume only the run's own checkpoints, under the run's recipe

FAST7B = ["--device", "cpu", "--batch-size", "4", "--regressor-epochs", "1", "--checkpoint-every", "1",
          "--sample-every", "100", "-q"]


@pytest.fixture(scope="module")
def run7b(world7a, tmp_path_factory) -> PipelinePaths:
    """world7a plus a 2-step fine-tune (checkpoints 1 and 2)."""
    import shutil

    root = tmp_path_factory.mktemp("prov7b") / "root"
    shutil.copytree(world7a.root, root)
    assert load_script("7b").main(["--root", str(root), "--steps", "2", *FAST7B]) == 0
    return PipelinePaths(root)


def test_step7b_refuses_to_resume_after_step_6_changed_the_normalisation(run7b, tmp_path, capsys):
    """s7b_resume_after_renorm: 06 --method zscore re-run, then 07 --steps 24: "resumed at 16" with weights and a
    regressor trained on min-max conditions, the mixed model labelled z-score."""
    paths = _copy_root(run7b, tmp_path)
    norm = json.loads(paths.normalization_json.read_text())
    norm["method"] = "zscore"
    paths.normalization_json.write_text(json.dumps(norm))
    checkpoints = sorted((paths.finetuned_dir / "checkpoints").iterdir())
    capsys.readouterr()
    assert load_script("7b").main(["--root", str(paths.root), "--steps", "4", *FAST7B]) == 2
    line = _error_line(capsys)
    assert "normalization_json: another file" in line and "--overwrite" in line
    assert sorted((paths.finetuned_dir / "checkpoints").iterdir()) == checkpoints


@pytest.mark.parametrize("change, needle", [
    ({"property_names": ["a", "b", "c", "d", "e"]}, "belongs to another run (properties a, b, c, d, e"),
    ({"finetune_seed": 7}, "trained under another recipe than this run's (seed: folder 7, now 0)"),
])
def test_step7b_refuses_a_foreign_checkpoint_and_prunes_nothing(run7b, tmp_path, capsys, change, needle):
    """s7b_foreign_resume: another run's checkpoint (property names a..e, internal step 16) copied in as
    checkpoint_000024.pt: "fine-tuned steps 16->32 (resumed at 16)" from the foreign weights, then pruning
    deleted the run's own checkpoint_000008/16 and kept the foreign file."""
    import torch

    paths = _copy_root(run7b, tmp_path)
    folder = paths.finetuned_dir / "checkpoints"
    foreign = torch.load(folder / "checkpoint_000002.pt", weights_only=True)
    if "finetune_seed" in change:
        foreign["config"]["recipe"]["settings"]["seed"] = change["finetune_seed"]
    else:
        foreign["config"].update(change)
    foreign["step"] = 24
    torch.save(foreign, folder / "checkpoint_000024.pt")
    own = {p.name: p.read_bytes() for p in folder.iterdir()}
    capsys.readouterr()
    assert load_script("7b").main(["--root", str(paths.root), "--steps", "32", "--keep-checkpoints", "1",
                                   *FAST7B]) == 2
    assert needle in _error_line(capsys)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == own


def test_step7b_refuses_a_checkpoint_whose_name_is_not_its_step(run7b, tmp_path, capsys):
    """The foreign file of s7b_foreign_resume said step 24 in its name and held step 16."""
    import shutil

    paths = _copy_root(run7b, tmp_path)
    folder = paths.finetuned_dir / "checkpoints"
    shutil.copy(folder / "checkpoint_000001.pt", folder / "checkpoint_000024.pt")
    assert load_script("7b").main(["--root", str(paths.root), "--steps", "32", *FAST7B]) == 2
    assert "holds step 1 although its name says 24" in _error_line(capsys)


@pytest.mark.parametrize("script", ["8", "9"])
def test_steps_8_and_9_refuse_a_fine_tune_of_other_properties_at_load(run7b, tmp_path, capsys, script):
    """s8_ft_props / s9_ft_props: 08 (or 09) --checkpoint a step-7b checkpoint of another run (properties a..e):
    KeyError 'eyes' traceback (step 9 after 13 s, FaceXFormer loaded first); the studio answered 500 on every
    render. The loader (load_conditional_generator) now refuses it in one line, before any work."""
    import torch

    checkpoint = torch.load(run7b.finetuned_dir / "checkpoints" / "checkpoint_000002.pt", weights_only=True)
    checkpoint["config"]["property_names"] = ["a", "b", "c", "d", "e"]
    other = tmp_path / "ft_props.pt"
    torch.save(checkpoint, other)
    out = tmp_path / "out"
    flags = {"8": ["--control", "finetuned", "--num", "1", "--eyes", "0.5"],
             "9": ["--control", "finetuned", "--scorer", "brightness", "--num-z", "1", "--num-values", "2",
                   "--quality", "off", "--judges", "main"]}[script]
    capsys.readouterr()
    assert load_script(script).main(["--root", str(run7b.root), "--device", "cpu", "--checkpoint", str(other),
                                     "--out", str(out), "-q", *flags]) == 2
    assert "fine-tuned for the properties a, b, c, d, e" in _error_line(capsys)
    assert not out.exists() or not any(out.iterdir())


def test_a_directions_file_with_nan_is_refused_at_load(root8, tmp_path):
    """st_dir_nan: studio --directions dir_nan.pt (one NaN in the directions) started, then answered 500 with
    "SVD did not converge" on every render; steps 8 and 9 only failed at their first edit."""
    import torch

    from stylegan.control_methods import load_directions_method
    from stylegan.directions import DirectionsMismatchError

    paths = PipelinePaths(root8)
    data = torch.load(paths.directions_pt, weights_only=True)
    data["directions"][0, 0] = float("nan")
    bad = tmp_path / "dir_nan.pt"
    torch.save(data, bad)
    with pytest.raises(DirectionsMismatchError, match=r"dir_nan.pt holds NaN or infinite weights .*\(directions\)"):
        load_directions_method(paths.stylegan_checkpoint, bad, "cpu")


# ----------------------------------------------------------------------------------------------
# the runner: --labels is keyed by content and never ignored; the demo never replaces someone's labels


@pytest.fixture()
def labelled_root(tmp_path) -> Path:
    """Step 1 (8 images) run by the runner, then 8 hand labels imported by the labeller's path."""
    from tiny_models import TINY_G_16

    from stylegan.checkpoint import write_random_checkpoint

    root = tmp_path / "root"
    write_random_checkpoint(PipelinePaths(root).stylegan_checkpoint, seed=0, **TINY_G_16)
    assert run_pipeline(_runner(root, "1", "1")) == 0
    labels = tmp_path / "mylabels.csv"
    labels.write_text("img_name,gender,quality,labeller\n" + "".join(f"{i:06d}.png,1,1,hand\n" for i in range(8)))
    assert run_pipeline(_runner(root, "2", "2", labels=labels)) == 0
    return root


def _runner(root: Path, first: str, last: str, **options) -> PipelineOptions:
    return PipelineOptions(root=root, device="cpu", quiet=True, first=first, last=last,
                           step_args={"1": ["--num", "8", "--format", "png"]}, **options)


def _labels(root: Path) -> dict:
    from gender_cnn.hand_labels import read_label_state

    return read_label_state(PipelinePaths(root).hand_labels_csv)


def _refused_labels(root: Path, text: str, first: str, capsys) -> str:
    """run_pipeline --from FIRST --to FIRST --labels <text> refused: exit 2, no step ran, the labels unchanged;
    returns stderr."""
    labels = root.parent / "refused.csv"
    labels.write_text(text)
    before = _labels(root)
    capsys.readouterr()
    assert run_pipeline(_runner(root, first, first, labels=labels)) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "== step 3" not in captured.out
    assert _labels(root) == before
    return captured.err


def test_runner_imports_an_edited_labels_file_at_the_same_path(labelled_root, capsys):
    """rpl_same_path_edited: run_pipeline --from 2 --to 2 --labels mylabels.csv, edit 5 rows of mylabels.csv,
    run again: "2 skipped", hand_labels.csv kept the old values (the marker recorded only the path)."""
    labels = labelled_root.parent / "mylabels.csv"
    labels.write_text(labels.read_text().replace("000002.png,1,1", "000002.png,0,0"))
    capsys.readouterr()
    assert run_pipeline(_runner(labelled_root, "2", "2", labels=labels)) == 0
    assert "finished earlier, skipped" not in capsys.readouterr().out
    assert (_labels(labelled_root)["000002.png"].gender, _labels(labelled_root)["000002.png"].quality) == (0, 0)
    assert run_pipeline(_runner(labelled_root, "2", "2", labels=labels)) == 0  # unchanged content: skipped
    assert "finished earlier, skipped" in capsys.readouterr().out


def test_runner_refuses_labels_when_step_2_does_not_run(labelled_root, capsys):
    """rp_labels_with_from3: run_pipeline --from 3 --to 3 --labels mylabels.csv ignored --labels without a word
    (hand_labels.csv unchanged) and step 3 trained on the old labels."""
    err = _refused_labels(labelled_root, "img_name,gender,quality\n000000.png,0,0\n", "3", capsys)
    assert "imported by step 2, which this run does not include" in err and "--from 2" in err


def test_a_labels_file_with_a_cut_last_row_is_refused(labelled_root, capsys):
    """rpl_truncated: --labels truncated.csv (10 rows, the last cut to "000009.jpg,1"): "10 labels imported (23
    changed)": the cut row became gender 1, quality unsure, and under replace semantics 22 labels were removed."""
    err = _refused_labels(labelled_root, "img_name,gender,quality,labeller\n000000.png,0,0,hand\n000001.png,1", "2",
                          capsys)
    assert "line 3 has 2 cells where the header has 4" in err


def test_demo_refuses_a_root_with_hand_labels_and_keeps_them(labelled_root, capsys):
    """demo_over_real_labels: run_pipeline --demo --root <a run with 32 hand labels> --from 2 --to 2 replaced
    hand_labels.csv by 32 rule labels, with no backup and without the labeller's lock."""
    csv = PipelinePaths(labelled_root).hand_labels_csv
    before = csv.read_bytes()
    capsys.readouterr()
    assert run_pipeline(PipelineOptions(root=labelled_root, demo=True, device="cpu", quiet=True, first="2",
                                        last="2")) == 2
    err = capsys.readouterr().err
    assert "--demo --root" in err and "Traceback" not in err
    assert csv.read_bytes() == before and not list(csv.parent.glob("*.bak-*"))


def test_demo_labels_take_the_lock_and_back_up_what_they_replace(tmp_path, capsys):
    """Every path that replaces labels takes the labeller's lock and keeps a backup (issue 19, section 5): the
    demo's rule labels are step 2's ``--rule-labels`` import, the labeller's one import path."""
    from gender_cnn.hand_labels import Label
    from gender_cnn.labeller.store import LabelStore

    root = tmp_path / "demo"
    assert run_pipeline(PipelineOptions(root=root, demo=True, device="cpu", quiet=True, first="1", last="1",
                                        step_args={"1": ["--num", "4"]})) == 0
    paths = PipelinePaths(root)
    step2 = load_script_file("02_label_images.py").main
    argv = ["--root", str(root), "--rule-labels", "--num", "4", "--no-serve", "-q"]
    capsys.readouterr()
    with LabelStore(paths.hand_labels_csv, lock=True):
        assert step2(argv) == 2
        assert "another labeller" in capsys.readouterr().err
    with LabelStore(paths.hand_labels_csv, lock=True) as store:  # an earlier demo's labels, one of them changed
        store.import_labels({"000000.jpg": Label(0, 0, "demo")})
    assert step2(argv) == 0
    assert "backed up to" in "".join(capsys.readouterr())
    assert step2(argv) == 0
    assert "backed up to" not in "".join(capsys.readouterr())  # nothing to replace: no backup


# ----------------------------------------------------------------------------------------------
# step 9: its renders resume under the recipe rule


def _step9_config(root: Path, out: Path, **changes):
    from pipeline.evaluate_control_step import EvaluateControlConfig

    settings = dict(root=root, control="directions", scorer="brightness", num_z=2, num_values=3, batch_size=2,
                    device="cpu", judges="main", quality="off", out=out)
    return EvaluateControlConfig(**{**settings, **changes})


def test_step9_resumes_a_killed_run_from_its_renders_and_refuses_another_recipe(root8, tmp_path, monkeypatch):
    """Step 9 had no skip logic: a killed run started over. Now its renders are kept (per request, in the
    folder whose recipe is this run's) until it finishes, and a run with other settings is refused."""
    import pandas as pd

    from pipeline.evaluate_control_step import run_evaluate_control
    from stylegan.control_methods import DirectionsMethod

    out = tmp_path / "eval"

    def killed(done: int, total: int) -> None:
        if done >= total * 3 // 4:  # inside the second method (the baseline comes first)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_evaluate_control(_step9_config(root8, out), killed)
    cached = list((out / "renders").rglob("*.npz"))
    assert cached and not (out / "comparison.csv").exists()
    with pytest.raises(RecipeMismatchError, match="num_values: folder 3, now 4"):
        run_evaluate_control(_step9_config(root8, out, num_values=4))
    calls = []
    original = DirectionsMethod.render
    monkeypatch.setattr(DirectionsMethod, "render", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    run_evaluate_control(_step9_config(root8, out))
    resumed_calls = len(calls)
    assert not (out / "renders").exists()  # finished: the cache is gone
    calls.clear()
    fresh = tmp_path / "fresh"
    run_evaluate_control(_step9_config(root8, fresh))
    assert resumed_calls < len(calls)  # the killed run's renders were not made again
    pd.testing.assert_frame_equal(pd.read_csv(out / "comparison.csv"), pd.read_csv(fresh / "comparison.csv"))


def test_step9_out_inside_step_4s_kept_images_is_refused(root8, capsys):
    """s9_out_in_filtered: 09 --quality off --out stylegan/synthesize_results_filtered wrote comparison.csv,
    report.md and comparison_sweeps.png among the kept images; the next step 4 deleted the figure as a "stale"
    kept image and step 5 would have parsed it as a face."""
    filtered = PipelinePaths(root8).filtered_dir
    assert load_script("9").main(["--root", str(root8), "--device", "cpu", "--control", "directions", "--scorer",
                                  "brightness", "--quality", "off", "--out", str(filtered), "-q"]) == 2
    assert "step 4's kept-image folder" in _error_line(capsys)
    assert not filtered.exists()


def test_step6_shard_merge_refuses_a_shard_of_another_normalisation(tmp_path, capsys):
    """Shard merges compare recipes (issue 19, section 2): step 6's shards normalised another way are refused."""
    from segment_world import write_segmentation_folder

    seg = write_segmentation_folder(tmp_path / "seg", count=4, crop="full")
    out = tmp_path / "scores"
    flags = ["--segmentation-dir", str(seg), "--out", str(out), "--images", str(tmp_path / "none"),
             "--landmark-judge", "off", "--no-pictures", "-q"]
    step6 = load_script_file("06_compute_property_scores.py").main
    assert step6([*flags, "--shard", "0/2"]) == 0
    assert step6([*flags, "--shard", "1/2", "--method", "zscore"]) == 0
    capsys.readouterr()
    assert load_script_file("merge_shards.py").main(["6", *flags]) == 2
    assert "method: folder 'zscore', now 'minmax'" in _error_line(capsys)
    assert not (out / "all_scores.csv").exists()


def test_studio_regenerate_refuses_a_recipe_nested_thousands_deep(tmp_path):
    """st_regen_deep: studio.py --regenerate a PNG whose studio chunk held 5,000 nested lists: RecursionError
    traceback."""
    import numpy as np
    from PIL import Image, PngImagePlugin

    from pipeline.studio.pngmeta import CHUNK_KEY, RecipeError, read_recipe

    info = PngImagePlugin.PngInfo()
    info.add_itxt(CHUNK_KEY, '{"version": 1, "params": ' + "[" * 5000 + "]" * 5000 + "}")
    path = tmp_path / "deep.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path, pnginfo=info)
    with pytest.raises(RecipeError, match="nests too deep"):
        read_recipe(path)
