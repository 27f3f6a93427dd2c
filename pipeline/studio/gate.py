"""Where and when the studio's jobs run: one render at a time, the newest waiting view wins, and
the long jobs (Measure, exports) run beside rendering on their own thread.

A slider dragged for three seconds sends dozens of view requests. Rendering each in turn would
build a queue that the page drains long after the user let go. The gate runs one job at a time;
a *droppable* job (a view) that is still waiting when a newer droppable job arrives is dropped
at once (:class:`Superseded`, the server answers 409), so at most one view renders and one waits.
Jobs that must not be dropped (save) wait their turn behind the running job.

Every job runs on a :class:`PinnedWorker`: one long-lived thread with its own torch thread
count. A float result depends on the thread count (ATen splits reductions by thread), so the
frames of one worker always have the same bits, and a recipe records the count that made it.
"""
from __future__ import annotations

import queue
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Self, TypeVar

import torch

T = TypeVar("T")
_INIT_LOCK = threading.Lock()


class Superseded(Exception):
    """A newer view request arrived while this one waited; nothing was rendered."""


class Busy(Exception):
    """A background job of this kind is already running (the page never queues a second one)."""


class PinnedWorker:
    """A daemon thread that runs submitted callables in order with ``threads`` torch threads.

    torch keeps one process-wide count that each thread copies when it first runs a parallel op;
    the worker sets its own count before that first op, and the caller's count is restored after,
    so the rest of the process keeps what it had. The thread ends on :meth:`close` or when the
    worker object is garbage-collected.
    """

    def __init__(self, name: str, threads: int) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.threads = int(threads)
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        ready = threading.Event()
        before = torch.get_num_threads()
        self._thread = threading.Thread(target=_worker_loop, args=(self._jobs, self.threads, ready),
                                        name=f"studio-{name}", daemon=True)
        with _INIT_LOCK:
            self._thread.start()
            ready.wait()
            torch.set_num_threads(before)
        self._finalizer = weakref.finalize(self, self._jobs.put, None)

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the worker and return its result (or raise its exception) here."""
        if not self._thread.is_alive():
            raise RuntimeError("this worker was closed")
        future: Future = Future()
        self._jobs.put((fn, future))
        return future.result()

    def close(self) -> None:
        """Finish the queued jobs, then end the thread."""
        self._finalizer()
        self._thread.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _worker_loop(jobs: queue.SimpleQueue, threads: int, ready: threading.Event) -> None:
    torch.set_num_threads(threads)
    torch.ones(1 << 17).sum()  # the first parallel op fixes this thread's count
    ready.set()
    while True:
        item = jobs.get()
        if item is None:
            return
        fn, future = item
        if not future.set_running_or_notify_cancel():
            continue
        try:
            future.set_result(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, who raises it
            future.set_exception(exc)
        del fn, future, item


class NewestWinsGate:
    """Serialises jobs on one worker; a waiting droppable job loses to a newer droppable one.

    Counters (for tests, the benchmark and the page's status line): ``ran``, ``dropped``,
    ``max_running`` (never above 1).
    """

    def __init__(self, worker: PinnedWorker | None = None) -> None:
        self.worker = worker
        self._cond = threading.Condition()
        self._latest = 0
        self._running = 0
        self.ran = 0
        self.dropped = 0
        self.max_running = 0

    def run(self, job: Callable[[], T], droppable: bool = True) -> T:
        with self._cond:
            ticket = 0
            if droppable:
                self._latest += 1
                ticket = self._latest
                self._cond.notify_all()  # wake older waiters so they drop out now, not when the device frees
            while self._running or (droppable and ticket != self._latest):
                if droppable and ticket != self._latest:
                    self.dropped += 1
                    raise Superseded("a newer view request arrived")
                self._cond.wait()
            self._running += 1
            self.max_running = max(self.max_running, self._running)
        try:
            return self.worker.call(job) if self.worker is not None else job()
        finally:
            with self._cond:
                self._running -= 1
                self.ran += 1
                self._cond.notify_all()

    def stats(self) -> dict[str, int]:
        with self._cond:
            return {"ran": self.ran, "dropped": self.dropped, "max_running": self.max_running,
                    "running": self._running}


class BackgroundJobs:
    """Long jobs beside the render gate (Measure, exports): one at a time per kind, never queued.

    ``run(kind, label, fn)`` raises :class:`Busy` (naming what runs) when a job of that kind is
    running; the jobs of every kind share one worker, in order.
    """

    def __init__(self, worker: PinnedWorker | None = None) -> None:
        self.worker = worker
        self._lock = threading.Lock()
        self._running: dict[str, str] = {}

    def run(self, kind: str, label: str, fn: Callable[[], T]) -> T:
        with self._lock:
            if kind in self._running:
                raise Busy(f"a {kind} is already running ({self._running[kind]})")
            self._running[kind] = label
        try:
            return self.worker.call(fn) if self.worker is not None else fn()
        finally:
            with self._lock:
                self._running.pop(kind, None)

    def running(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._running)
