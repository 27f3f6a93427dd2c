"""The studio over sockets: 4xx for malformed requests, the shared server's guards, newest-wins over HTTP."""
from __future__ import annotations

import http.client
import json
import threading
import time

import pytest

import pipeline.studio.app as studio_app
from pipeline.studio.app import StudioApp
from pipeline.studio.render import load_studio_models
from pipeline.studio.server import STUDIO_CSP, make_server
from studio_world import make_world


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    models = load_studio_models(make_world(tmp_path_factory.mktemp("studio")))
    srv = make_server(StudioApp(models), "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    torch.set_num_threads(old)


def request(server, method: str, target: str, headers: dict | None = None, body: bytes | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=30)
    conn.request(method, target, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response, data


@pytest.mark.parametrize("target, status, needle", [
    ("/api/render?psi=abc", 400, "psi must be a number"),
    ("/api/render?seed=1&seed=2", 400, "given 2 times"),
    ("/api/render?eyes=7", 400, "outside its trained range"),
    ("/api/render?method=both&strip=17", 400, "strip must be in 1..16"),
    ("/api/render?" + "&".join(f"k{i}=1" for i in range(40)), 400, "bad query string"),
    ("/api/render?%ff%fe=1", 400, "unknown query key"),
    ("/api/save?face=../../etc/passwd", 400, "face must be one of"),
    ("/api/measure", 409, "Measure is not offered"),
    ("/api/nope", 404, "not found"),
    ("/static/../server.py", 404, "not found"),
    ("/static/%2e%2e/server.py", 404, "not found"),
    ("/pipeline/studio/server.py", 404, "not found"),
])
def test_malformed_requests_get_4xx_json_with_a_message(server, target, status, needle):
    response, data = request(server, "GET", target)
    assert response.status == status
    assert needle in json.loads(data)["error"]


def test_guards_of_the_shared_local_server_apply(server):
    response, data = request(server, "GET", "/api/info", {"Host": "attacker.example:80"})
    assert response.status == 403 and "DNS rebinding" in json.loads(data)["error"]
    response, _ = request(server, "POST", "/api/render", {"Content-Type": "application/json"}, b"{}")
    assert response.status == 405
    response, _ = request(server, "DELETE", "/")
    assert response.status == 405
    response, page = request(server, "GET", "/")
    assert response.status == 200 and b"studio.js" in page
    assert response.getheader("Content-Security-Policy") == STUDIO_CSP
    assert "img-src 'self' blob:" in STUDIO_CSP and "script-src 'self'" in STUDIO_CSP
    response, png = request(server, "GET", "/api/render?seed=2")
    assert response.status == 200 and png[:8] == b"\x89PNG\r\n\x1a\n"
    assert response.getheader("Content-Security-Policy").startswith("default-src 'none'")
    assert float(response.getheader("X-Studio-Server-Ms")) > 0
    assert server.loopback_only


def test_newest_view_request_wins_over_http(server, monkeypatch):
    """A render holds the device; of the requests that queue behind it only the newest renders."""
    real = studio_app.render_view
    started = threading.Event()

    def slow(models, params, *args):
        started.set()
        time.sleep(0.6 if params.seed == 100 else 0.0)
        return real(models, params, *args)

    monkeypatch.setattr(studio_app, "render_view", slow)
    results: dict[int, int] = {}

    def get(seed: int) -> None:
        response, _ = request(server, "GET", f"/api/render?seed={seed}")
        results[seed] = response.status

    first = threading.Thread(target=get, args=(100,))
    first.start()
    started.wait(5)
    later = []
    for seed in (101, 102, 103, 104):
        t = threading.Thread(target=get, args=(seed,))
        t.start()
        later.append(t)
        time.sleep(0.05)
    for t in [first, *later]:
        t.join(30)
    assert results == {100: 200, 101: 409, 102: 409, 103: 409, 104: 200}
    response, data = request(server, "GET", "/api/stats")
    assert json.loads(data)["max_running"] == 1
