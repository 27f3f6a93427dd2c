"""One render on the device at a time; among waiting view renders the newest wins.

A slider dragged for three seconds sends dozens of view requests. Rendering each in turn would
build a queue that the page drains long after the user let go. The gate runs one job at a time;
a *droppable* job (a view) that is still waiting when a newer droppable job arrives is dropped
at once (:class:`Superseded`, the server answers 409), so at most one view renders and one waits.
Jobs that must not be dropped (save, measure) wait their turn behind the running job.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Superseded(Exception):
    """A newer view request arrived while this one waited; nothing was rendered."""


class NewestWinsGate:
    """Serialises jobs; a waiting droppable job loses to a newer droppable one.

    Counters (for tests, the benchmark and the page's status line): ``ran``, ``dropped``,
    ``max_running`` (never above 1).
    """

    def __init__(self) -> None:
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
            return job()
        finally:
            with self._cond:
                self._running -= 1
                self.ran += 1
                self._cond.notify_all()

    def stats(self) -> dict[str, int]:
        with self._cond:
            return {"ran": self.ran, "dropped": self.dropped, "max_running": self.max_running,
                    "running": self._running}
