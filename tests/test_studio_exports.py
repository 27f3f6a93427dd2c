"""Sweeps and expression sheets: frames, the two files, one recipe per frame, exact regeneration."""
from __future__ import annotations

import json
import threading
from urllib.parse import parse_qs

import numpy as np
import pytest
from judge_support import require_dlib
from studio_world import make_world

from pipeline.studio.app import StudioApp
from pipeline.studio.exports import SHEET_LEVELS, sheet_frames, sweep_frames
from pipeline.studio.params import ParamError, ViewParams
from pipeline.studio.pngmeta import RecipeError, file_frames, read_recipe, read_studio_file, regenerate_frames
from pipeline.studio.render import load_studio_models, render_face


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return load_studio_models(make_world(tmp_path_factory.mktemp("exports")))


def q(text: str) -> dict[str, list[str]]:
    return parse_qs(text, keep_blank_values=True)


def test_a_sweep_is_base_first_then_the_property_across_its_range_per_method(models):
    params = ViewParams(method="both", seed=4, values=(None, 0.3, None, 0.6, None))
    frames = sweep_frames(params, models.ranges, "face_pose", 3)
    assert [f.face for f in frames] == ["base", "directions", "directions", "directions",
                                        "base", "finetuned", "finetuned", "finetuned"]
    pose = [f.params.values[4] for f in frames if f.face != "base"]
    assert pose == [-1.0, 0.0, 1.0, -1.0, 0.0, 1.0]                 # the trained range, ends included
    assert all(f.params.values[1] == 0.3 and f.params.values[3] == 0.6 for f in frames)  # other requests kept
    assert all(f.params.seed == 4 and f.params.strip == 1 for f in frames)
    with pytest.raises(ParamError, match="count must be in 2..13"):
        sweep_frames(params, models.ranges, "eyes", 1)


def test_an_expression_sheet_holds_hair_and_walks_eyes_mouth_and_pose(models):
    frames = sheet_frames(models, ViewParams(method="directions", seed=2, values=(0.9, None, None, None, None)))
    per_row = 1 + len(SHEET_LEVELS["face_pose"])
    assert len(frames) == len(SHEET_LEVELS["eyes"]) * len(SHEET_LEVELS["mouth"]) * per_row
    assert [f.face for f in frames[:per_row]] == ["base"] + ["directions"] * (per_row - 1)
    edited = [f.params.values for f in frames if f.face != "base"]
    hair = {(v[1], v[2]) for v in edited}
    assert len(hair) == 1 and None not in next(iter(hair))           # hair held, and explicitly requested
    assert len({(v[0], v[3], v[4]) for v in edited}) == len(edited)  # every expression differs


@pytest.mark.parametrize("extra, count", [("kind=sweep&property=eyes&count=3", 8), ("kind=sheet", 16)])
def test_png_and_webp_hold_one_recipe_per_frame_and_regenerate_exactly(models, tmp_path, extra, count, single_thread):
    app = StudioApp(models)
    base = f"method=both&seed=6&mouth=0.2&{extra}"
    summary = json.loads(app.get("/api/export", q(base + "&format=json")).body)
    assert len(summary["frames"]) == count and summary["frames"][0]["label"] == "base"
    assert summary["identity_note"] == "identity distance: not offered by this studio"
    files = {}
    for fmt in ("png", "webp"):
        response = app.get("/api/export", q(f"{base}&format={fmt}"))
        assert response.status == 200 and response.content_type == f"image/{fmt}"
        name = response.headers["Content-Disposition"].split('"')[1]
        assert name.startswith("studio_seed6_") and name.endswith(f".{fmt}")
        files[fmt] = tmp_path / name
        files[fmt].write_bytes(response.body)
    kinds = {read_studio_file(path)[0] for path in files.values()}
    assert kinds == {"PNG", "WEBP"}
    png_frames, webp_frames = file_frames(files["png"]), file_frames(files["webp"])
    assert len(png_frames) == len(webp_frames) == count
    for a, b in zip(png_frames, webp_frames):
        assert np.array_equal(a, b)                                   # lossless, and the sheet's own pixels
    again, saved, labels = regenerate_frames(files["webp"], models)
    assert all(np.array_equal(x, y) for x, y in zip(again, saved)) and labels[0] == "base"
    _, recipes, _, _ = read_studio_file(files["png"])
    assert all(r["threads"] == 1 for r in recipes)
    k = count - 1                                                     # any frame: its recipe alone
    params = ViewParams.from_json(recipes[k]["params"])
    assert np.array_equal(render_face(models, params, recipes[k]["face"]), webp_frames[k])
    with pytest.raises(RecipeError, match="is a studio sheet of"):
        read_recipe(files["png"])
    app.close()


def test_a_second_export_while_one_runs_is_refused_and_bad_keys_name_themselves(models):
    app = StudioApp(models)
    release = threading.Event()
    results = []
    blocker = threading.Thread(target=lambda: results.append(app.background.run("export", "test", release.wait)))
    blocker.start()
    for _ in range(100):
        if app.background.running():
            break
        release.wait(0.02)
    response = app.get("/api/export", q("method=directions&kind=sheet"))
    assert response.status == 409 and "already running" in json.loads(response.body)["error"]
    release.set()
    blocker.join(10)
    for extra, key in (("kind=poster", "kind"), ("property=nose", "property"), ("count=40", "count"),
                       ("format=gif", "format")):
        body = json.loads(app.get("/api/export", q(f"method=directions&{extra}")).body)
        assert body["key"] == key, extra
    app.close()


def test_identity_distance_per_frame_where_the_judge_is_installed(real_faces, tmp_path, single_thread):
    """A real face against itself is 0 apart; a frame with no face has no distance (dlib extra only)."""
    require_dlib()
    from common.images import load_rgb
    from pipeline.studio.landmarks import StudioLandmarkJudge

    judge = StudioLandmarkJudge(tmp_path / "landmark_normalization.json")
    face, other = load_rgb(real_faces[0]), load_rgb(real_faces[1])
    flat = np.full_like(face, 128)
    distances, note = judge.identity(np.stack([face, face, other, flat]))
    assert distances[0] == pytest.approx(0.0, abs=1e-6) and distances[1] == pytest.approx(0.0, abs=1e-6)
    assert 0.0 < distances[2] and np.isnan(distances[3])
    assert "measured on 3 of 4 frames" in note
