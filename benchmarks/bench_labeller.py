"""Labeller latency under a burst: N clients POST one decision each at the same moment.

Runs the real labeller server (``create_app`` + ``make_server``) on 127.0.0.1 in this process,
with tiny images in a temp folder; each client opens its own connection, posts one label and
stops (bounded: N requests per round). Every answer is fsynced to the journal before it is sent,
so this measures the journal's fsync queue as much as HTTP. Prints p50/p95/max latency and how
many were answered; writes the record ``benchmarks/results/bench_labeller-cpu.json``.

    python benchmarks/bench_labeller.py [--clients 200] [--rounds 5]
"""
from __future__ import annotations

import argparse
import json
import socket
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.records import add_results_dir_argument, start_record
from common.paths import HAND_LABELS_CSV
from gender_cnn.labeller import LabellerConfig, create_app, make_server, read_label_state



def _post(port: int, name: str, gender: int, barrier: threading.Barrier, timeout: float) -> tuple[int, float]:
    body = json.dumps({"img": name, "gender": gender, "quality": 1}).encode()
    request = (b"POST /api/label HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    barrier.wait(timeout=60)
    start = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(request)
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        return int(reply.split(b" ", 2)[1]), time.perf_counter() - start
    except (OSError, IndexError, ValueError):
        return -1, time.perf_counter() - start


def run(clients: int, rounds: int, timeout: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        images = Path(tmp) / "images"
        images.mkdir()
        names = [f"{i:06d}.png" for i in range(clients)]
        for name in names:
            Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(images / name)
        app, _ = create_app(images, Path(tmp) / HAND_LABELS_CSV, LabellerConfig(num=clients))
        server = make_server(app, "127.0.0.1", 0)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        latencies: list[float] = []
        answered = journaled = 0
        try:
            for r in range(rounds):
                barrier = threading.Barrier(clients)
                results: list[tuple[int, float]] = [(-1, 0.0)] * clients

                def client(i: int) -> None:
                    results[i] = _post(server.server_address[1], names[i], r % 2, barrier, timeout)

                threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                answered += sum(1 for status, _ in results if status == 200)
                latencies += [seconds for status, seconds in results if status == 200]
                state = read_label_state(app.store.csv_path)
                journaled += sum(1 for n in names if n in state and state[n].gender == r % 2)
        finally:
            server.shutdown()
            server.server_close()
            app.close()
    ms = np.array(latencies) * 1000
    return {"clients": clients, "rounds": rounds, "answered": answered, "journaled": journaled,
            "p50_ms": round(float(np.percentile(ms, 50)), 1) if ms.size else None,
            "p95_ms": round(float(np.percentile(ms, 95)), 1) if ms.size else None,
            "max_ms": round(float(ms.max()), 1) if ms.size else None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds a client waits for its answer")
    add_results_dir_argument(parser)
    args = parser.parse_args(argv)
    record = start_record("bench_labeller", "cpu")
    result = run(args.clients, args.rounds, args.timeout)
    print(f"{result['answered']}/{args.clients * args.rounds} answered, {result['journaled']} journaled; "
          f"latency p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms, max {result['max_ms']} ms")
    record.figures.update({"requests": args.clients * args.rounds, "answered": result["answered"],
                           "journaled": result["journaled"], "latency_p50_ms": result["p50_ms"],
                           "latency_p95_ms": result["p95_ms"], "latency_max_ms": result["max_ms"]})
    record.settings.update({"what": "a burst of clients posting one decision each at the same moment (fsync each)",
                            "clients": args.clients, "rounds": args.rounds, "timeout_s": args.timeout})
    record.write(args.results_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
