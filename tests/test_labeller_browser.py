"""Real-browser test of the labeller: headless Debian Chromium via Playwright, real key presses.

The server runs as a subprocess (the real script) on copies of real generated faces; the test
presses keys, reads the labels on disk, kills the server with SIGKILL mid-session and restarts
it. Set UPDATE_README_IMAGES=1 to refresh images/labeller.png from this run's screenshot.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from browser_support import BROWSER_MARKS, free_port, wait_for_server

from gender_cnn.label_csv import read_hand_labels
from gender_cnn.labeller import read_label_state
from gender_cnn.labeller.store import Label

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "stylegan_and_segmentation" / "02_label_images.py"
README_SHOT = REPO_ROOT / "images" / "labeller.png"
MAX_SHOT_BYTES = 300_000

pytestmark = BROWSER_MARKS


class _Server:
    """The labeller script as a subprocess; started and killed like a user would."""

    def __init__(self, images: Path, csv: Path, extra: list[str], log: Path, preexec_fn=None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(SCRIPT), "--images", str(images), "--labels", str(csv),
                 "--port", str(self.port), "--no-browser", "--compact-interval", "0.3", *extra],
                stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT, preexec_fn=preexec_fn)
        wait_for_server(self.proc, self.url + "api/state", log, "labeller", timeout=60)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)  # Ctrl-C
        return self.proc.wait(timeout=20)


@pytest.fixture()
def start_server():
    """Starts labeller subprocesses; any still running when the test ends (a failure) is killed."""
    started: list[_Server] = []

    def start(*args, **kwargs) -> _Server:
        started.append(_Server(*args, **kwargs))
        return started[-1]

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(timeout=10)


def _open(browser, url):
    # bypass_csp: Playwright evaluates its wait predicates as strings, which our CSP forbids
    page = browser.new_page(viewport={"width": 1000, "height": 700}, bypass_csp=True)
    page.set_default_timeout(15_000)
    page.goto(url)
    page.wait_for_function("document.body.dataset.ready === '1'")
    return page


def _wait_shown(page, name: str) -> None:
    page.wait_for_function("n => document.getElementById('name').textContent === n", arg=name)


def _press(page, key: str, then_shown: str) -> None:
    page.keyboard.press(key)
    _wait_shown(page, then_shown)


def _wait_csv(csv: Path, expected: dict, timeout: float = 10.0) -> dict:
    """The compacted CSV on disk (not the journal) reaches ``expected``."""
    deadline = time.monotonic() + timeout
    rows = {}
    while time.monotonic() < deadline:
        if csv.exists():
            frame = read_hand_labels(csv)
            rows = {r.img_name: (None if pd.isna(r.gender) else int(r.gender),
                                 None if pd.isna(r.quality) else int(r.quality)) for r in frame.itertuples()}
            if rows == expected:
                return rows
        time.sleep(0.1)
    raise AssertionError(f"CSV {csv} never reached {expected}; last seen {rows}")


def _save_screenshot(page, path: Path) -> Path:
    page.wait_for_function("document.getElementById('face').complete && "
                           "document.getElementById('face').naturalWidth > 0")
    page.screenshot(path=str(path))
    if path.stat().st_size > MAX_SHOT_BYTES:  # keep the README figure small: 256-colour PNG
        from PIL import Image

        with Image.open(path) as shot:
            shot.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path


def test_label_undo_kill_resume_in_real_browser(browser, start_server, real_faces, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    faces = [face.name for face in real_faces[:6]]
    for face in real_faces[:6]:
        shutil.copy(face, images / face.name)
    csv = tmp_path / "gender_cnn" / "hand_labels.csv"
    log = tmp_path / "server.log"
    oof = tmp_path / "oof_predictions.csv"  # the model disagrees with our first label
    pd.DataFrame({"img_name": [faces[0], faces[1]], "task": ["gender", "gender"], "label": [1, 0],
                  "oof_score": [0.08, 0.1], "fold": [0, 1]}).to_csv(oof, index=False)

    server = start_server(images, csv, ["--oof", str(oof)], log)
    page = _open(browser, server.url)
    _wait_shown(page, faces[0])
    assert "0 / 6 labelled" in page.inner_text("#progress")
    assert "woman, good" in page.inner_text("#keys")  # keys are on screen

    _press(page, "1", faces[1])          # woman, good: one key
    # the decision is on disk (journal) once the next image shows
    assert read_label_state(csv)[faces[0]] == Label(1, 1)
    _press(page, "2", faces[2])          # man, good
    _press(page, "s", faces[3])          # unsure
    _press(page, "4", faces[4])          # man, bad
    _press(page, "Backspace", faces[3])  # undo: back to the previous image, decision removed
    assert faces[3] not in read_label_state(csv)
    _press(page, "3", faces[4])          # woman, bad
    expected = {faces[0]: (1, 1), faces[1]: (0, 1), faces[2]: (None, None), faces[3]: (1, 0)}
    _wait_csv(csv, expected)
    assert "4 / 6 labelled" in page.inner_text("#progress")
    shot = _save_screenshot(page, tmp_path / "labeller.png")
    assert shot.stat().st_size < MAX_SHOT_BYTES

    _press(page, "Space", faces[5])      # woman, good ... and the server dies right after the answer
    server.kill9()
    page.close()
    expected[faces[4]] = (1, 1)

    server = start_server(images, csv, ["--oof", str(oof)], log)
    _wait_csv(csv, expected, timeout=2)  # start-up compaction already folded the journal in
    page = _open(browser, server.url)
    _wait_shown(page, faces[5])          # resumes at the first unlabelled image
    assert "5 / 6 labelled" in page.inner_text("#progress")
    _press(page, "ArrowLeft", faces[4])
    _press(page, "n", faces[5])          # jump to the next unlabelled

    # review list: face 0 was labelled woman, the out-of-fold gender score says man
    page.keyboard.press("r")
    _wait_shown(page, faces[0])
    assert "gender 0.08" in page.inner_text("#model")
    page.keyboard.press("2")             # fix it: man, good
    page.wait_for_function("document.getElementById('done').hidden === false")
    expected[faces[0]] = (0, 1)
    page.keyboard.press("r")
    _wait_shown(page, faces[5])

    # grid: select two images, one key sets both, one undo reverts both
    page.keyboard.press("g")
    page.wait_for_selector("#grid .cell")
    assert page.locator("#grid .cell").count() == 6
    page.click(f'#grid .cell[data-img="{faces[1]}"]')
    page.click(f'#grid .cell[data-img="{faces[5]}"]')
    page.keyboard.press("4")
    page.wait_for_function("document.getElementById('status').textContent === 'set 2 image(s)'")
    state = read_label_state(csv)
    assert state[faces[1]] == Label(0, 0) and state[faces[5]] == Label(0, 0)
    page.keyboard.press("z")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('undone: 2')")
    assert read_label_state(csv)[faces[1]] == Label(0, 1) and faces[5] not in read_label_state(csv)
    page.keyboard.press("g")             # back to one image: the undo moved the cursor to the first one
    _wait_shown(page, faces[1])
    _press(page, "n", faces[5])
    page.keyboard.press("2")             # man, good on the last image
    page.wait_for_function("document.getElementById('done').hidden === false")
    expected[faces[5]] = (0, 1)
    page.close()

    assert server.stop() == 0            # Ctrl-C: clean shutdown compacts the CSV
    assert _wait_csv(csv, expected, timeout=1) == expected
    out = log.read_text()
    assert "labelled 6/6 images" in out and str(csv) in out
    assert "ssh -N -L" in out

    if os.environ.get("UPDATE_README_IMAGES"):
        README_SHOT.parent.mkdir(exist_ok=True)
        shutil.copy(shot, README_SHOT)


def _small_images(folder: Path, count: int) -> list[str]:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    names = [f"{i:06d}.png" for i in range(count)]
    for i, name in enumerate(names):
        Image.fromarray(np.full((32, 32, 3), (40 * i) % 255, np.uint8)).save(folder / name)
    return names


def _file_size_limit(limit: int):
    """A real 'disk full' for the server process: writes past ``limit`` bytes fail (EFBIG)."""
    def apply() -> None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    return apply


def _status(page) -> str:
    return page.inner_text("#status")


def test_page_says_disk_full_and_server_down(browser, start_server, tmp_path):
    """Issue 9/10: a decision the disk refused shows NOT SAVED + the reason; a dead server is named."""
    names = _small_images(tmp_path / "images", 40)
    csv = tmp_path / "gender_cnn" / "hand_labels.csv"
    server = start_server(tmp_path / "images", csv, [], tmp_path / "server.log",
                          preexec_fn=_file_size_limit(4000))
    page = _open(browser, server.url)
    _wait_shown(page, names[0])
    shown = 0
    for _ in range(39):                  # every journal line is ~130 bytes: the limit bites within 39
        page.keyboard.press("1")
        page.wait_for_function("document.body.dataset.pending === '0'")
        if page.locator("#status.error").count():
            break
        shown += 1
        _wait_shown(page, names[shown])
    text = _status(page)
    assert "NOT SAVED" in text and "disk full" in text, text
    assert page.inner_text("#name") == names[shown]     # the page did not move on
    assert set(read_label_state(csv)) == set(names[:shown])  # acknowledged == on disk
    server.kill9()
    page.keyboard.press("2")
    page.wait_for_function("document.body.dataset.pending === '0'")
    assert "server is not answering" in _status(page)
    page.close()


def test_review_on_demand_words_and_untinted_grid(browser, start_server, tmp_path):
    names = _small_images(tmp_path / "images", 4)
    csv = tmp_path / "gender_cnn" / "hand_labels.csv"
    oof = tmp_path / "oof_predictions.csv"   # absent at start-up
    server = start_server(tmp_path / "images", csv, ["--oof", str(oof)], tmp_path / "server.log")
    page = _open(browser, server.url)
    _press(page, "3", names[1])          # woman, bad
    page.keyboard.press("r")
    page.wait_for_function("document.getElementById('status').textContent.includes('no review list yet')")
    pd.DataFrame({"img_name": [names[0]], "task": ["quality"], "label": [0], "oof_score": [0.95],
                  "fold": [0]}).to_csv(oof, index=False)  # step 3 finished meanwhile
    page.keyboard.press("r")
    _wait_shown(page, names[0])
    assert "label was bad" in page.inner_text("#model")
    page.keyboard.press("r")
    page.keyboard.press("g")
    page.wait_for_selector("#grid .cell.undecided")
    opacity = page.eval_on_selector("#grid .cell.undecided img", "img => getComputedStyle(img).opacity")
    assert opacity == "1"                # unlabelled images keep their colours
    page.close()
    assert server.stop() == 0


def test_end_of_list_says_all_done_only_when_every_image_has_a_decision(browser, start_server, tmp_path):
    """Issue 22: the page said "All images of this list have a decision" at 46 of 48 labelled when the end was
    reached with earlier images skipped (the message only looked at the position). Reproduction: 4 images,
    label 1, skip 2 with the right arrow, label 4: the end said "All images ... have a decision" at 2/4.
    Now it names how many are open; n goes to the first open one; "all done" comes after the last decision."""
    names = _small_images(tmp_path / "images", 4)
    server = start_server(tmp_path / "images", tmp_path / "hand_labels.csv", [], tmp_path / "server.log")
    page = _open(browser, server.url)
    _press(page, "1", names[1])
    _press(page, "ArrowRight", names[2])
    _press(page, "ArrowRight", names[3])
    page.keyboard.press("2")                                   # the last image: the end of the list
    page.wait_for_function("document.body.dataset.img === '' && document.body.dataset.pending === '0'")
    assert page.is_hidden("#done"), page.inner_text("#done")
    assert page.is_visible("#open") and "2 images are without a decision" in page.inner_text("#open")
    _press(page, "n", names[1])
    _press(page, "3", names[2])
    _press(page, "n", names[2])
    page.keyboard.press("4")                                   # every image decided now
    _wait_shown(page, names[3])
    page.keyboard.press("ArrowRight")
    page.wait_for_selector("#done", state="visible")
    assert page.is_hidden("#open") and "All images of this list have a decision" in page.inner_text("#done")
    assert page.inner_text("#progress").startswith("4 / 4")
    page.close()
    assert server.stop() == 0
