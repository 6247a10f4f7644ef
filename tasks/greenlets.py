"""Running a chunk's sends concurrently on greenlets that are kept between chunks.

A sending worker runs one greenlet per message. Starting a new greenlet is not cheap on Python 3.11 and
later: its first switch maps a fresh frame stack (one mmap, and one munmap when it ends), and gevent's
`Greenlet` records where it was spawned. On this project's machines that was about 25 µs per message, close
to a tenth of the worker's CPU per message at the cap. `Runners.map` hands each call to an idle greenlet
left over from an earlier chunk, and starts a raw greenlet only when none is idle. A greenlet idle for longer
than `keep_idle_s` ends at the next `map`, so a worker's count follows its recent concurrency.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from gevent import get_hub, spawn_raw
from gevent.hub import Hub, Waiter

T = TypeVar("T")
R = TypeVar("R")

KEEP_IDLE_S = 60.0


class Runners:
    """Greenlets of one hub that each run one call at a time and then wait for the next."""

    def __init__(self, hub: Hub, keep_idle_s: float = KEEP_IDLE_S):
        self.hub = hub
        self.keep_idle_s = keep_idle_s
        # Waiting greenlets, each as the waiter that wakes it and when it began to wait (oldest first).
        self._idle: list[tuple[Waiter, float]] = []
        self.started = 0  # greenlets started since this object was made

    @property
    def idle(self) -> int:
        return len(self._idle)

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """`fn` of every item, all at once on greenlets; the results in order once every call has ended.

        If calls raised, the first one's exception (in item order) is raised, after the others ended.
        """
        work = list(items)
        results: list[Any] = [None] * len(work)
        errors: list[BaseException | None] = [None] * len(work)
        if not work:
            return results
        left = [len(work)]
        finished = Waiter(self.hub)

        def call(i: int) -> None:
            try:
                results[i] = fn(work[i])
            except BaseException as exc:
                errors[i] = exc
                if not isinstance(exc, Exception):
                    raise  # a kill (GreenletExit) ends the greenlet that ran it
            finally:
                left[0] -= 1
                if not left[0]:
                    self.hub.loop.run_callback(finished.switch, None)

        for i in range(len(work)):
            self._give(call, i)
        finished.get()
        self._trim()
        for exc in errors:
            if exc is not None:
                raise exc
        return results

    def _give(self, call: Callable[[int], None], i: int) -> None:
        if self._idle:
            waiter, _ = self._idle.pop()  # the most recently idle: the oldest may end
            self.hub.loop.run_callback(waiter.switch, (call, i))
        else:
            self.started += 1
            spawn_raw(self._run, call, i)

    def _run(self, call: Callable[[int], None], i: int) -> None:
        job: tuple[Callable[[int], None], int] | None = (call, i)
        while job is not None:
            job[0](job[1])
            job = None  # the finished call's work and results are not kept while this greenlet waits
            waiter = Waiter(self.hub)
            entry = (waiter, time.monotonic())
            self._idle.append(entry)
            try:
                job = waiter.get()
            except BaseException:  # killed while idle: it must not be given a call any more
                try:
                    self._idle.remove(entry)
                except ValueError:  # a call was given to it just before: another greenlet runs that call
                    self.started += 1
                    spawn_raw(self._take_over, waiter)
                raise

    def _take_over(self, waiter: Waiter) -> None:
        job = waiter.get()
        if job is not None:
            self._run(*job)

    def _trim(self) -> None:
        """End the greenlets that have waited longer than keep_idle_s."""
        cutoff = time.monotonic() - self.keep_idle_s
        idle = self._idle
        stale = 0
        while stale < len(idle) and idle[stale][1] < cutoff:
            stale += 1
        if stale:
            ending, self._idle = idle[:stale], idle[stale:]
            for waiter, _ in ending:
                self.hub.loop.run_callback(waiter.switch, None)


_MAIN: Runners | None = None


def runners() -> Runners:
    """The runners of the current thread's hub (a greenlet can only be woken by its own hub).

    Greenlets are kept only for the main thread's hub, where a worker sends. Another thread (a script, a test)
    gets runners whose greenlets end once each call is done: greenlets waiting in a thread that has ended
    would keep that thread's hub and loop alive.
    """
    global _MAIN
    hub = get_hub()
    if not hub.main_hub:
        return Runners(hub, keep_idle_s=-1.0)
    if _MAIN is None or _MAIN.hub is not hub:
        _MAIN = Runners(hub)
    return _MAIN
