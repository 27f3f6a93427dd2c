"""The local servers under hostile clients: normal request latency with 40 slow and with 33 idle connections open.

Runs the real labeller server (``create_app`` + ``make_server``, default ``ServerLimits``) on
127.0.0.1 in this process, with tiny images in a temp folder, and measures ``GET /api/state``
from request to full answer:

* alone (the baseline);
* while 40 connections trickle a partial request, one header line a second (slowloris; the
  reliability campaign's ``slowloris.py`` sends one every 10 s), and when the server closed them
  (the request deadline: 10 s after each connection, whatever they send);
* while 33 connections are open and send nothing (one more than the 32 workers; before the shared
  event loop a studio render waited 14.8 s behind them);
* how many log lines at WARNING or above 10 client resets caused (before: an ERROR and a traceback each).

The studio uses the same server code (``common.localserver``), so the figures hold for it too.
Writes the record ``benchmarks/results/bench_servers-cpu.json``. Asserts nothing; not collected by pytest.

    python benchmarks/bench_servers.py [--requests 20]
"""
from __future__ import annotations

import argparse
import logging
import selectors
import socket
import statistics
import struct
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.records import add_results_dir_argument, start_record
from gender_cnn.labeller import LabellerConfig, create_app, make_server

SLOW, IDLE, RESETS = 40, 33, 10


def _get_ms(port: int) -> float | None:
    """One GET /api/state on a new connection: ms to the whole answer, None when none came within 10 s."""
    start = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(f"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
    except OSError:
        return None
    return (time.perf_counter() - start) * 1000 if reply.startswith(b"HTTP/1.1 200") else None


def _latencies(port: int, count: int, spacing_s: float = 0.0) -> list[float | None]:
    out = []
    for _ in range(count):
        out.append(_get_ms(port))
        time.sleep(spacing_s)
    return out


def _summary(prefix: str, values: list[float | None]) -> dict[str, float | int]:
    answered = [v for v in values if v is not None]
    return {f"{prefix}_answered": len(answered), f"{prefix}_requests": len(values),
            f"{prefix}_p50_ms": round(statistics.median(answered), 2) if answered else float("nan"),
            f"{prefix}_max_ms": round(max(answered), 2) if answered else float("nan")}


def _slowloris(port: int, requests: int) -> tuple[dict, list[float]]:
    """40 trickling connections; the normal requests meanwhile; when each slow connection was closed."""
    opened = time.monotonic()
    socks = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(SLOW)]
    for sock in socks:
        sock.sendall(b"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    closed: dict[socket.socket, float] = {}
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(1.0):
            for sock in socks:
                if sock not in closed:
                    try:
                        sock.sendall(b"X-Slow: 1\r\n")
                    except OSError:
                        pass

    def watch() -> None:  # the moment each one is closed by the server (its 408, then EOF)
        with selectors.DefaultSelector() as selector:
            for sock in socks:
                selector.register(sock, selectors.EVENT_READ)
            while len(closed) < SLOW and not stop.is_set():
                for key, _ in selector.select(0.1):
                    try:
                        data = key.fileobj.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        closed[key.fileobj] = time.monotonic() - opened
                        selector.unregister(key.fileobj)

    threads = [threading.Thread(target=trickle, daemon=True), threading.Thread(target=watch, daemon=True)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    figures = _summary("slowloris", _latencies(port, requests, spacing_s=0.2))
    threads[1].join(timeout=30)
    stop.set()
    threads[0].join(timeout=5)
    for sock in socks:
        sock.close()
    return figures, sorted(closed.values())


def _idle(port: int, requests: int) -> dict:
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(IDLE)]
    try:
        time.sleep(0.3)
        return _summary("idle33", _latencies(port, requests))
    finally:
        for sock in socks:
            sock.close()


def _resets(port: int) -> int:
    """Log lines at WARNING or above that 10 client resets cause (half of them mid-request)."""
    loud: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = loud.append  # type: ignore[method-assign]
    logging.getLogger().addHandler(handler)
    try:
        for i in range(RESETS):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"GET /api/sta" if i % 2 else f"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            time.sleep(0.02)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        time.sleep(0.5)
    finally:
        logging.getLogger().removeHandler(handler)
    return len(loud)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20, help="normal requests per scenario")
    add_results_dir_argument(parser)
    args = parser.parse_args(argv)
    record = start_record("bench_servers", "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        images = Path(tmp) / "images"
        images.mkdir()
        for i in range(8):
            Image.fromarray(np.full((8, 8, 3), 30 * i, np.uint8)).save(images / f"{i:06d}.png")
        app, _ = create_app(images, Path(tmp) / "hand_labels.csv", LabellerConfig(num=8))
        server = make_server(app, "127.0.0.1", 0)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        port = server.server_address[1]
        try:
            figures = _summary("alone", _latencies(port, args.requests))
            slow, closed_at = _slowloris(port, args.requests)
            figures.update(slow)
            figures["slow_connections_closed"] = len(closed_at)
            figures["slow_connection_closed_after_median_s"] = round(statistics.median(closed_at), 2) \
                if closed_at else float("nan")
            figures["slow_connection_closed_after_max_s"] = round(max(closed_at), 2) if closed_at else float("nan")
            figures.update(_idle(port, args.requests))
            figures["reset_lines_warning_or_above"] = _resets(port)
            figures["after_all_answered_ms"] = _get_ms(port)
        finally:
            server.shutdown()
            server.server_close()
            app.close()
    record.figures = figures
    record.settings = {"slow_connections": SLOW, "slow_header_interval_s": 1.0, "idle_connections": IDLE,
                       "resets": RESETS, "requests_per_scenario": args.requests,
                       "request_deadline_s": server.limits.request_deadline_s, "workers": server.limits.max_threads}
    record.write(args.results_dir)
    for key, value in figures.items():
        print(f"{key:45s} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
