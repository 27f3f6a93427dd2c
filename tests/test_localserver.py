"""common.localserver: the shared mechanics a second local page reuses (files, headers, limits)."""
from __future__ import annotations

import http.client
import json
import os
import threading

import pytest

from common.localserver import (
    LocalRequestHandler,
    LocalServer,
    RequestError,
    ServerLimits,
    host_header_names_loopback,
    is_loopback,
    regular_file_inside,
)


def test_regular_file_inside(tmp_path):
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"a")
    (folder / "sub").mkdir()
    (tmp_path / "outside.png").write_bytes(b"o")
    (folder / "out.png").symlink_to(tmp_path / "outside.png")
    (folder / "in.png").symlink_to(folder / "a.png")
    (folder / "dangling.png").symlink_to(folder / "gone.png")
    os.mkfifo(folder / "fifo.png")
    assert regular_file_inside(folder, "a.png") == (folder / "a.png").resolve()
    assert regular_file_inside(folder, "in.png") == (folder / "a.png").resolve()
    for bad in ("out.png", "dangling.png", "fifo.png", "sub", "..", ".", "", "sub/../a.png", "../outside.png",
                "/etc/passwd", "a.png\0", "missing.png"):
        assert regular_file_inside(folder, bad) is None, bad


def test_json_depth():
    from common.localserver import json_depth

    assert json_depth(1) == 0 and json_depth([]) == 1 and json_depth({"a": [1, {"b": []}]}) == 4


def test_loopback_helpers():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")
    assert host_header_names_loopback("localhost:8765") and host_header_names_loopback("[::1]:80")
    assert not host_header_names_loopback("evil.example") and not host_header_names_loopback("127.0.0.1.nip.io")


class _Page(LocalRequestHandler):
    def get(self, path):
        if path.startswith("/files/"):
            self.send_file_in(self.server.context, path[len("/files/"):])
        else:
            raise RequestError(404, "not found")

    def post(self, path):
        self.send_json(200, {"got": self.read_json()})


@pytest.fixture()
def page(tmp_path):
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "x.png").write_bytes(b"\x89PNG")
    srv = LocalServer(("127.0.0.1", 0), _Page, context=folder, limits=ServerLimits(max_body_bytes=1000, max_threads=2))
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


def _call(srv, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read(), response
    finally:
        conn.close()


def test_a_second_page_gets_the_same_guarantees(page):
    status, data, response = _call(page, "GET", "/files/x.png")
    assert status == 200 and data == b"\x89PNG" and response.getheader("Content-Type") == "image/png"
    assert "default-src 'none'" in response.getheader("Content-Security-Policy")
    assert response.getheader("X-Content-Type-Options") == "nosniff"
    assert _call(page, "GET", "/files/..%2Fsecret")[0] == 404
    assert _call(page, "GET", "/files/x.png", headers={"Host": "evil.example"})[0] == 403
    assert _call(page, "POST", "/", b"[" * 40 + b"]" * 40, {"Content-Type": "application/json"})[0] == 400
    assert _call(page, "POST", "/", b"{}" + b" " * 2000, {"Content-Type": "application/json"})[0] == 413
    assert _call(page, "POST", "/", b"{}", {"Content-Type": "text/plain"})[0] == 415
    status, data, _ = _call(page, "POST", "/", json.dumps({"a": 1}), {"Content-Type": "application/json"})
    assert status == 200 and json.loads(data) == {"got": {"a": 1}}
    assert page.request_queue_size == ServerLimits().backlog


def test_more_clients_than_workers_all_get_answers(page):
    """max_threads=2: 20 parallel clients queue in the backlog and are all served."""
    results = []

    def client():
        results.append(_call(page, "GET", "/files/x.png")[0])

    threads = [threading.Thread(target=client) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == [200] * 20
