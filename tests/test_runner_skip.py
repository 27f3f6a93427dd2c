"""run_pipeline's skip rule (issue 9): a step is skipped only when its marker matches AND its
outputs exist, and the marker records the fingerprints of the files the step read, so a swapped
checkpoint at the same path runs the step again."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from segment_world import draw
from tiny_models import TINY_G_16

from common.paths import PipelinePaths
from pipeline.runner import PipelineOptions, load_script_file, missing_outputs, run_pipeline, step_inputs
from stylegan import write_random_checkpoint

pytestmark = pytest.mark.usefixtures("single_thread")


def _options(root: Path, first: int, last: int) -> PipelineOptions:
    return PipelineOptions(root=root, device="cpu", quiet=True, first=first, last=last,
                           step_args={"1": ["--num", "3", "--format", "png"]})


def test_deleted_outputs_run_the_step_again(tmp_path, capsys):
    paths = PipelinePaths(tmp_path)
    write_random_checkpoint(paths.stylegan_checkpoint, seed=0, **TINY_G_16)
    assert run_pipeline(_options(tmp_path, 1, 1)) == 0
    assert run_pipeline(_options(tmp_path, 1, 1)) == 0
    assert "step 1: finished earlier, skipped" in capsys.readouterr().out
    (paths.generated_dir / "w.npy").unlink()
    assert run_pipeline(_options(tmp_path, 1, 1)) == 0
    out = capsys.readouterr().out
    assert "outputs are missing" in out and "w.npy): running it again" in out
    assert "finished earlier, skipped" not in out
    assert (paths.generated_dir / "w.npy").is_file()


def test_swapped_checkpoint_at_the_same_path_is_not_skipped(tmp_path, capsys):
    paths = PipelinePaths(tmp_path)
    write_random_checkpoint(paths.stylegan_checkpoint, seed=0, **TINY_G_16)
    assert run_pipeline(_options(tmp_path, 1, 1)) == 0
    capsys.readouterr()
    write_random_checkpoint(paths.stylegan_checkpoint, seed=1, **TINY_G_16)  # same path, other generator
    assert run_pipeline(_options(tmp_path, 1, 1)) == 2  # step 1 runs, and refuses to mix two generators (a user-fixable input: exit 2)
    captured = capsys.readouterr()
    assert "finished earlier, skipped" not in captured.out and "checkpoint: another file" in captured.err


def _segmentation_folder(paths: PipelinePaths) -> None:
    seg = paths.segmentation_dir
    seg.mkdir(parents=True)
    rows = []
    for i in range(3):
        parsing, face = draw(i)
        Image.fromarray(parsing).save(seg / f"parsing_{i:06d}.png")
        Image.fromarray(face).save(seg / f"face_{i:06d}.png")
        rows.append({"img_name": f"{i:06d}.png", "face_found": 1, "x0": 0, "y0": 0, "x1": 9, "y1": 9,
                     "prob": 0.9, "crop": "full"})
    pd.DataFrame(rows).to_csv(seg / "crops.csv", index=False)


def _step6_world(root: Path) -> tuple[PipelinePaths, PipelineOptions]:
    """Step 5's folder under ``root`` and the runner's options for step 6 alone."""
    paths = PipelinePaths(root)
    _segmentation_folder(paths)
    return paths, PipelineOptions(root=root, device="cpu", quiet=True, first=6, last=6,
                                  step_args={"6": ["--no-pictures"]})

def test_step6_is_not_skipped_after_its_outputs_were_deleted(tmp_path, capsys):
    paths, options = _step6_world(tmp_path)
    assert run_pipeline(options) == 0
    assert run_pipeline(options) == 0
    assert "step 6: finished earlier, skipped" in capsys.readouterr().out
    for name in ("all_scores.csv", "normalization.json"):
        (paths.property_scores_dir / name).unlink()
    assert missing_outputs(6, paths)
    assert run_pipeline(options) == 0
    assert "finished earlier, skipped" not in capsys.readouterr().out
    assert (paths.property_scores_dir / "normalization.json").is_file()
    # a changed input (crops.csv) runs it again too
    crops = paths.segmentation_dir / "crops.csv"
    crops.write_text(crops.read_text().replace("0.9,full", "0.8,full"))
    assert run_pipeline(options) == 0
    assert "finished earlier, skipped" not in capsys.readouterr().out


def test_a_damaged_output_file_runs_the_step_again(tmp_path, capsys):
    """Hostile-review defect 7: the marker matched and the file existed, so a truncated output (there
    ``edit_correction.pt``; here step 6's table, the same rule) counted as done. The marker now records each
    single-file output's fingerprint; a file changed since runs the step again, which writes it whole."""
    import json

    paths, options = _step6_world(tmp_path)
    assert run_pipeline(options) == 0
    table = paths.property_scores_dir / "all_scores.csv"
    written = table.read_bytes()
    table.write_bytes(written[: len(written) // 2])          # a torn copy, a disk that filled, a stray edit
    capsys.readouterr()
    assert run_pipeline(options) == 0
    out = capsys.readouterr().out
    assert "finished earlier, skipped" not in out
    assert f"its outputs changed since ({table.relative_to(tmp_path)}): running it again" in out
    assert table.read_bytes() == written
    assert run_pipeline(options) == 0
    assert "step 6: finished earlier, skipped" in capsys.readouterr().out
    # a marker written before outputs were recorded is trusted as before (no run again on upgrade)
    marker = tmp_path / ".pipeline" / "step6.json"
    record = json.loads(marker.read_text())
    del record["outputs"]
    marker.write_text(json.dumps(record))
    table.write_bytes(written[:10])
    assert run_pipeline(options) == 0
    assert "step 6: finished earlier, skipped" in capsys.readouterr().out


def test_outputs_a_person_made_again_with_the_steps_script_are_kept(tmp_path, capsys):
    """Reproduction (hostile review 6): run_pipeline --from 7a after `07_fit_latent_directions.py --no-hold
    --overwrite` by hand ran 7a again under the runner's flags because directions.pt had changed; 7a refused (the
    folder's recipe is the person's) and every later run refused the same way, with a fix (--overwrite) the
    runner cannot pass. Step 6, which never gates, silently replaced the person's normalisation. A changed output
    beside a changed recipe.json was made by the step's own script on purpose: kept, not run again (a damaged
    file, its recipe unchanged, still runs the step again)."""
    paths, options = _step6_world(tmp_path)
    assert run_pipeline(options) == 0
    norm = paths.property_scores_dir / "normalization.json"
    runner_made = norm.read_bytes()
    script = load_script_file("06_compute_property_scores.py")
    assert script.main(["--root", str(tmp_path), "--no-pictures", "--method", "zscore", "-q"]) == 0
    by_hand = norm.read_bytes()
    assert by_hand != runner_made
    capsys.readouterr()
    assert run_pipeline(options) == 0
    out = capsys.readouterr().out
    assert "made again since by its own script" in out and "kept" in out
    assert norm.read_bytes() == by_hand
    assert run_pipeline(options) == 0       # adopted: the next run skips it quietly
    assert "step 6: finished earlier, skipped" in capsys.readouterr().out
    assert norm.read_bytes() == by_hand


def test_every_step_names_inputs_and_outputs(tmp_path):
    paths = PipelinePaths(tmp_path)
    for number in range(1, 10):
        assert isinstance(step_inputs(number, paths), list)
        assert missing_outputs(number, paths)  # nothing exists in an empty root
    assert paths.stylegan_checkpoint in step_inputs(1, paths)
    assert paths.segmentation_checkpoint in step_inputs(5, paths)


def test_quiet_or_not_a_finished_step_is_skipped(tmp_path, capsys):
    """Reproduction: `run_pipeline.py --demo` then `run_pipeline.py --demo -q` on the same root ran all ten
    steps again (step 9 re-judged for 245 s on the demo): the marker's argv held the display flag -q."""
    paths = PipelinePaths(tmp_path)
    write_random_checkpoint(paths.stylegan_checkpoint, seed=0, **TINY_G_16)
    loud = PipelineOptions(root=tmp_path, device="cpu", quiet=False, first=1, last=1,
                           step_args={"1": ["--num", "3", "--format", "png"]})
    assert run_pipeline(loud) == 0
    capsys.readouterr()
    assert run_pipeline(_options(tmp_path, 1, 1)) == 0  # quiet=True
    assert "step 1: finished earlier, skipped" in capsys.readouterr().out
    other = PipelineOptions(root=tmp_path, device="cpu", quiet=True, first=1, last=1,
                            step_args={"1": ["--num", "4", "--format", "png"]})
    assert run_pipeline(other) == 0  # a real argument still counts
    assert "finished earlier, skipped" not in capsys.readouterr().out


def test_step_1s_images_a_person_made_again_by_hand_are_kept(tmp_path, capsys):
    """Reproduction (hostile review 6): step 1 run again by hand (`01_generate_images.py --trunc-psi 0.5
    --overwrite`) changed generated.csv; the runner ran step 1 again under its own flags, which step 1 refused (the
    folder's recipe, generation.json, is the person's), and every later run refused the same way. Its recipe file
    changed with the outputs: kept. A torn generation.json is damage: the step runs again."""
    paths = PipelinePaths(tmp_path)
    write_random_checkpoint(paths.stylegan_checkpoint, seed=0, **TINY_G_16)
    assert run_pipeline(_options(tmp_path, 1, 1)) == 0
    hand = ["--root", str(tmp_path), "--num", "3", "--format", "png", "--trunc-psi", "0.5", "--overwrite", "-q",
            "--device", "cpu"]
    assert load_script_file("01_generate_images.py").main(hand) == 0
    by_hand = (paths.generated_dir / "w.npy").read_bytes()
    capsys.readouterr()
    assert run_pipeline(_options(tmp_path, 1, 1)) == 0
    assert "made again since by its own script" in capsys.readouterr().out
    assert (paths.generated_dir / "w.npy").read_bytes() == by_hand
    manifest = paths.generated_dir / "generation.json"
    manifest.write_bytes(manifest.read_bytes()[:20])
    assert run_pipeline(_options(tmp_path, 1, 1)) == 2     # run again: step 1 refuses its torn manifest in one line
    out = capsys.readouterr()
    assert "made again since" not in out.out and "outputs changed since" in out.out
