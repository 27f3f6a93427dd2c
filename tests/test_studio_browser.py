"""Real-browser test of the studio: headless Debian Chromium via Playwright, real mouse drags.

The studio script runs as a subprocess on a tiny world (32-px random generator, a step-7-format
fine-tune, fitted latent directions). The test drags every slider, switches method, measures,
saves a face and regenerates it exactly from the PNG's recipe, and checks that a fast drag never
has more than one render in flight and ends on the last requested view. Set
UPDATE_README_IMAGES=1 to refresh images/studio.png from this run's screenshot.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from browser_support import BROWSER_MARKS, free_port
from pipeline.studio.params import parse_query
from pipeline.studio.pngmeta import read_recipe
from studio_world import make_world

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "stylegan_and_segmentation" / "studio.py"
README_SHOT = REPO_ROOT / "images" / "studio.png"
MAX_SHOT_BYTES = 300_000

pytestmark = BROWSER_MARKS


@pytest.fixture()
def studio(tmp_path):
    """The studio script on a tiny world, killed at the end whatever happens."""
    paths = make_world(tmp_path / "root")
    port = free_port()
    log = tmp_path / "studio.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(SCRIPT), "--root", str(paths.root), "--port", str(port),
                                 "--device", "cpu", "--threads", "1", "--scorer", "brightness",
                                 "--seed", "3"],
                                stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(url + "api/info", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"studio did not start:\n{log.read_text()}")
        time.sleep(0.1)
    yield url, paths, proc, log
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


def _open(browser, url: str):
    # bypass_csp: Playwright evaluates its wait predicates as strings, which the page's CSP forbids
    page = browser.new_page(viewport={"width": 1150, "height": 940}, bypass_csp=True, accept_downloads=True)
    page.set_default_timeout(30_000)
    page.goto(url)
    page.wait_for_function("document.body.dataset.ready === '1'")
    return page


def _settle(page) -> dict:
    """Wait until nothing is in flight or wanted; return the page's counters and its URL query."""
    page.wait_for_function("window.studioIdle()")
    stats = page.evaluate("window.studioStats")
    stats["query"] = page.evaluate("location.search.slice(1)")
    return stats


def _drag(page, selector: str, start: float, end: float, steps: int) -> None:
    """A real mouse drag on a range input from fraction ``start`` to ``end`` of its width."""
    box = page.locator(selector).bounding_box()
    y = box["y"] + box["height"] / 2
    x0 = box["x"] + 4 + start * (box["width"] - 8)
    x1 = box["x"] + 4 + end * (box["width"] - 8)
    page.mouse.move(x0, y)
    page.mouse.down()
    page.mouse.move(x1, y, steps=steps)
    page.mouse.up()


def _query(text: str):
    return parse_query(parse_qs(text, keep_blank_values=True))


def test_sliders_methods_fast_drag_save_and_regenerate_in_real_browser(browser, studio, tmp_path):
    url, paths, proc, log = studio
    page = _open(browser, url + "?method=both")
    stats = _settle(page)
    assert _query(stats["query"]).method == "both" and _query(stats["query"]).seed == 3
    assert "random weights" not in page.inner_text("#demo")  # not the demo: no demo banner text
    captions = page.locator("#captions span").all_inner_texts()
    assert captions == ["base (unedited)", "latent directions", "fine-tuned"]

    # every slider: a drag requests that property, and the last view painted is the one in the URL
    painted = len(stats["painted"])
    for j, name in enumerate(("eyes", "hair_color", "hair_length", "mouth", "face_pose")):
        _drag(page, f"#slider-{name}", 0.5, 0.2 + 0.15 * j, steps=6)
        stats = _settle(page)
        view = _query(stats["query"])
        assert view.values[j] is not None, name
        assert stats["painted"][-1] == stats["query"] and len(stats["painted"]) > painted
        painted = len(stats["painted"])
    assert all(v is not None for v in _query(stats["query"]).values)
    # one click = "input" then "change" for the same value: one request, not two
    sent = len(stats["sent"])
    box = page.locator("#slider-mouth").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.1, box["y"] + box["height"] / 2)
    stats = _settle(page)
    assert len(stats["sent"]) == sent + 1 and stats["painted"][-1] == stats["query"]
    first_src = page.get_attribute("#sheet", "src")

    # method switch: the columns follow; the layers control exists only for latent directions
    page.check("input[name=method][value=finetuned]")
    stats = _settle(page)
    assert _query(stats["query"]).method == "finetuned" and stats["painted"][-1] == stats["query"]
    assert page.locator("#captions span").all_inner_texts() == ["base (unedited)", "fine-tuned"]
    assert page.locator("#layers-row").is_hidden()
    page.check("input[name=method][value=directions]")
    stats = _settle(page)
    assert page.locator("#captions span").all_inner_texts() == ["base (unedited)", "latent directions"]
    page.select_option("#layers", "coarse")
    page.click("#next")
    stats = _settle(page)
    view = _query(stats["query"])
    assert view.method == "directions" and view.layers == "coarse" and view.seed == 4
    assert page.get_attribute("#sheet", "src") != first_src

    # a fast drag: dozens of input events, one render in flight at a time, the last one wins
    page.check("input[name=method][value=both]")
    _settle(page)
    sent_before = len(page.evaluate("window.studioStats.sent"))
    _drag(page, "#slider-eyes", 0.0, 1.0, steps=60)
    _drag(page, "#slider-face_pose", 1.0, 0.1, steps=60)
    stats = _settle(page)

    assert stats["maxInFlight"] == 1
    assert stats["painted"][-1] == stats["sent"][-1] == stats["query"]
    assert len(stats["sent"]) - sent_before < 120       # far fewer requests than input events
    with urllib.request.urlopen(url + "api/stats", timeout=5) as response:
        server = json.loads(response.read())
    assert server["max_running"] == 1
    final = _query(stats["query"])
    assert abs(final.values[0] - 1.0) < 0.02 and final.values[4] < -0.7

    # with a strip, a held slider previews one face per column; the release paints the exact full strip
    page.fill("#strip", "3")
    page.dispatch_event("#strip", "change")
    _settle(page)
    sent_before = len(page.evaluate("window.studioStats.sent"))
    _drag(page, "#slider-mouth", 0.9, 0.3, steps=25)
    stats = _settle(page)
    during = [_query(q) for q in stats["sent"][sent_before:]]
    assert any(v.strip == 1 for v in during[:-1]) and during[-1].strip == 3
    assert stats["painted"][-1] == stats["query"] and _query(stats["query"]).strip == 3
    assert page.locator("#sheet").evaluate("img => img.naturalHeight") == 3 * 32

    # the URL alone reproduces the view in a fresh page
    other = _open(browser, url + "?" + stats["query"])
    again = _settle(other)
    assert again["painted"][-1] == stats["query"]
    assert other.input_value("#slider-eyes") == page.input_value("#slider-eyes")
    other.close()

    # Measure shows measured next to requested, for base and both methods
    page.click("#measure")
    page.wait_for_selector("#measure-out table")
    table = page.inner_text("#measure-out")
    assert "measured: latent directions" in table and "measured: fine-tuned" in table and "STAND-IN" in table
    # the landmark judge's columns, or the one line that says why it has none (not installed / no face)
    from judges import dlib_status

    assert ("landmarks: fine-tuned" in table) if dlib_status()[0] else ("landmark judge not available" in table)

    # Save: a PNG with its recipe; the script regenerates it bit for bit from the embedded parameters
    with page.expect_download() as download:
        page.click("#save-directions")
    saved = tmp_path / "saved_directions.png"
    download.value.save_as(saved)
    recipe = read_recipe(saved)
    assert recipe["face"] == "directions" and recipe["params"]["values"]["eyes"] == final.values[0]
    assert set(recipe["models"]) == {"stylegan", "directions"}
    run = subprocess.run([sys.executable, str(SCRIPT), "--root", str(paths.root), "--device", "cpu",
                          "--threads", "1",
                          "--regenerate", str(saved), "--out", str(tmp_path / "again.png")],
                         capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "identical pixels" in run.stdout

    shot = tmp_path / "studio.png"
    page.screenshot(path=str(shot))
    if shot.stat().st_size > MAX_SHOT_BYTES:  # keep the README figure small: 256-colour PNG
        from PIL import Image

        with Image.open(shot) as image:
            small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
            small.save(shot, optimize=True)
    assert shot.stat().st_size < MAX_SHOT_BYTES
    page.close()

    proc.send_signal(signal.SIGINT)                     # Ctrl-C: clean stop with a summary line
    assert proc.wait(timeout=20) == 0
    out = log.read_text()
    assert "ssh -N -L" in out and "studio: served" in out
    if os.environ.get("UPDATE_README_IMAGES"):
        README_SHOT.parent.mkdir(exist_ok=True)
        shutil.copy(shot, README_SHOT)
