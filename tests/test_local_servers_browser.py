"""The shared servers' cross-site rule in a real browser: a page on another local port attacks both servers.

Headless Debian Chromium (Playwright) opens an attacker page served on another port of this host
(same-site to the servers) and on ``localhost`` (cross-site to ``127.0.0.1``); its script sends
``fetch(url, {mode: 'no-cors'})`` to the studio's renders, measures and saves and to the
labeller's state and label routes. The servers run in this process, so the test reads what
they did: the status each request got (the request log) and whether anything ran or was written.
Then the servers' own pages are opened and work, which proves the rule does not block them.
"""
from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from browser_support import BROWSER_MARKS
from PIL import Image
from studio_world import make_world

from gender_cnn.labeller import LabellerConfig, create_app
from gender_cnn.labeller import make_server as make_labeller
from pipeline.studio.app import StudioApp
from pipeline.studio.render import load_studio_models
from pipeline.studio.server import make_server as make_studio
from stylegan.control_measures import BrightnessScorer

pytestmark = BROWSER_MARKS

ATTACK = """<!doctype html><title>some other page</title><script>
(async () => {
  const sent = [];
  for (let i = 0; i < 4; i++) {
    sent.push(fetch(`${STUDIO}api/save?face=base&seed=${i}`, {mode: "no-cors"}));
    sent.push(fetch(`${STUDIO}api/measure?seed=${i}`, {mode: "no-cors"}));
    sent.push(fetch(`${STUDIO}api/render?seed=${i}`, {mode: "no-cors"}));
  }
  sent.push(fetch(`${LABELLER}api/state`, {mode: "no-cors"}));
  sent.push(fetch(`${LABELLER}api/label`, {mode: "no-cors", method: "POST",
                                          body: JSON.stringify({img: "000000.png", gender: 1, quality: 1})}));
  await Promise.allSettled(sent);
  document.body.dataset.done = "1";
})();
</script>"""
REQUEST_LOG = re.compile(r'"(GET|POST) (\S+) HTTP/1\.1" (\d{3})')


class _Log(logging.Handler):
    """(method, path, status) of every request the shared server logged."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seen: list[tuple[str, str, int]] = []

    def emit(self, record: logging.LogRecord) -> None:
        match = REQUEST_LOG.search(record.getMessage())
        if match:
            self.seen.append((match.group(1), match.group(2), int(match.group(3))))


def _serve(server) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return thread


@contextlib.contextmanager
def _running(labeller, studio, labeller_app):
    """Both servers serving; stopped, closed and the labels compacted whatever happens."""
    threads = [_serve(labeller), _serve(studio)]
    try:
        yield
    finally:
        for server in (labeller, studio):
            server.shutdown()
            server.server_close()
        labeller_app.close()
        for thread in threads:
            thread.join(timeout=5)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("studio"))


@pytest.fixture()
def servers(tmp_path, world, single_thread):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        Image.fromarray(np.full((16, 16, 3), 60 * i, np.uint8)).save(images / f"{i:06d}.png")
    app, _ = create_app(images, tmp_path / "hand_labels.csv", LabellerConfig(num=3))
    labeller = make_labeller(app, "127.0.0.1", 0)
    studio_app = StudioApp(load_studio_models(world), BrightnessScorer, "brightness")
    studio = make_studio(studio_app, "127.0.0.1", 0)
    log = _Log()
    logger = logging.getLogger("common.localserver")
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(log)
    try:
        with _running(labeller, studio, app):
            yield labeller, studio, log
    finally:
        logger.removeHandler(log)
        logger.setLevel(old_level)


def _attacker(page_html: str) -> ThreadingHTTPServer:
    class Attack(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - stdlib naming
            body = page_html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Attack)
    _serve(server)
    return server


@pytest.mark.parametrize("attacker_host", ["127.0.0.1", "localhost"], ids=["same-site", "cross-site"])
def test_a_page_on_another_port_cannot_drive_either_server(browser, servers, attacker_host):
    """Issue 19 (st_xorigin_jobs): a page on http://127.0.0.1:19998 sent 20 /api/measure and 20 /api/save with
    fetch(no-cors); all 40 ran (FaceXFormer loaded, the user's render waited 32 s). Reproduction: this test
    on the unfixed server logged 200 for every studio request and /api/stats counted 12 more renders.
    Now every request of the other page is a 403 and nothing runs or is written; the servers' own pages work."""
    labeller, studio, log = servers
    studio_url = f"http://127.0.0.1:{studio.server_address[1]}/"
    labeller_url = f"http://127.0.0.1:{labeller.server_address[1]}/"
    attacker = _attacker(ATTACK.replace("${STUDIO}", studio_url).replace("${LABELLER}", labeller_url))
    ran_before = studio.context.gate.stats()["ran"]
    try:
        page = browser.new_page()
        page.goto(f"http://{attacker_host}:{attacker.server_address[1]}/")
        page.wait_for_function("document.body.dataset.done === '1'", timeout=30_000)
        page.close()
    finally:
        attacker.shutdown()
        attacker.server_close()
    attacks = [entry for entry in log.seen if entry[1].startswith("/api/")]
    assert len(attacks) == 14, attacks                       # the browser did send them all
    assert {status for _, _, status in attacks} == {403}, attacks
    assert studio.context.gate.stats()["ran"] == ran_before
    assert labeller.app.store.labels() == {}

    log.seen.clear()                                          # the servers' own pages are not blocked
    page = browser.new_page(bypass_csp=True)
    page.goto(studio_url)
    page.wait_for_function("document.body.dataset.ready === '1'", timeout=60_000)
    page.goto(labeller_url)
    page.wait_for_function("document.body.dataset.ready === '1'", timeout=30_000)
    page.keyboard.press("1")
    page.wait_for_function("document.body.dataset.pending === '0'", timeout=30_000)
    page.close()
    own = [entry for entry in log.seen if entry[1].startswith("/api/")]
    assert own and {status for _, _, status in own} == {200}, own
    assert studio.context.gate.stats()["ran"] > ran_before
    assert set(labeller.app.store.labels()) == {"000000.png"}
    assert json.loads(json.dumps(studio.context.gate.stats()))["max_running"] == 1


@pytest.fixture()
def exposed(tmp_path, world, single_thread):
    """Both servers bound to every interface (token required), reached by the browser through 127.0.0.1."""
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(images / "000000.png")
    app, _ = create_app(images, tmp_path / "hand_labels.csv", LabellerConfig(num=1))
    labeller = make_labeller(app, "0.0.0.0", 0)
    studio = make_studio(StudioApp(load_studio_models(world)), "0.0.0.0", 0)
    with _running(labeller, studio, app):
        yield labeller, studio


def test_the_printed_url_token_lets_the_page_work_beyond_loopback(browser, exposed):
    """Issue 19: beyond loopback the page must send the token with every request, reading it from the URL
    once. The printed URL's token becomes a per-port HttpOnly cookie and the address bar loses it; the page's
    own requests (fetches, images) then carry it; without it the page says what to open."""
    labeller, studio = exposed
    page = browser.new_page(bypass_csp=True)
    bare = f"http://127.0.0.1:{labeller.server_address[1]}/"
    page.goto(bare)                                           # no token: the page loads, its API refuses
    page.wait_for_function("document.getElementById('status').textContent.includes('access token')")
    page.goto(f"{bare}?token={labeller.access.token}")
    page.wait_for_function("document.body.dataset.ready === '1'")
    assert page.url == bare
    page.wait_for_function("document.getElementById('face').naturalWidth > 0")   # /images/ carried it too
    page.keyboard.press("1")
    page.wait_for_function("document.body.dataset.pending === '0'")
    assert set(labeller.app.store.labels()) == {"000000.png"}
    studio_url = f"http://127.0.0.1:{studio.server_address[1]}/"
    page.goto(f"{studio_url}?seed=5&token={studio.access.token}")
    page.wait_for_function("document.body.dataset.ready === '1'", timeout=60_000)
    assert page.url.startswith(studio_url) and "token" not in page.url and "seed=5" in page.url
    assert studio.context.gate.stats()["ran"] >= 1
    cookies = {c["name"] for c in page.context.cookies()}
    assert cookies == {labeller.access.cookie_name, studio.access.cookie_name}
    page.close()
