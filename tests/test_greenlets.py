"""The greenlets a chunk's sends run on: concurrent, in order, reused between chunks, ended when idle."""

from __future__ import annotations

import time

import gevent
import pytest

from tasks.greenlets import Runners, runners


def test_every_call_runs_at_once_and_the_results_come_in_item_order():
    pool = Runners(gevent.get_hub())
    started = time.monotonic()

    def slow(n: int) -> int:
        gevent.sleep(0.2 - n * 0.01)  # the later items finish first
        return n * n

    assert pool.map(slow, range(10)) == [n * n for n in range(10)]
    assert time.monotonic() - started < 1.0  # together, not 10 × 0.2 s one after the other


def test_greenlets_of_an_earlier_call_are_reused():
    pool = Runners(gevent.get_hub())
    pool.map(gevent.sleep, [0.01] * 50)
    assert (pool.started, pool.idle) == (50, 50)
    pool.map(gevent.sleep, [0.01] * 30)
    pool.map(gevent.sleep, [0.01] * 50)
    assert (pool.started, pool.idle) == (50, 50)  # no new greenlet for the same concurrency
    pool.map(gevent.sleep, [0.01] * 60)
    assert (pool.started, pool.idle) == (60, 60)


def test_an_error_is_raised_after_every_other_call_has_ended():
    pool = Runners(gevent.get_hub())
    ended: list[int] = []

    def work(n: int) -> int:
        if n in (3, 5):
            raise ValueError(f"item {n}")
        gevent.sleep(0.05)
        ended.append(n)
        return n

    with pytest.raises(ValueError, match="item 3"):
        pool.map(work, range(8))
    assert sorted(ended) == [0, 1, 2, 4, 6, 7]
    assert pool.map(lambda n: n + 1, range(8)) == list(range(1, 9))  # the greenlets are still usable
    assert pool.started == 8


def test_greenlets_idle_for_longer_than_the_limit_end():
    pool = Runners(gevent.get_hub(), keep_idle_s=0.1)
    pool.map(gevent.sleep, [0.01] * 20)
    assert pool.idle == 20
    time.sleep(0.2)
    pool.map(gevent.sleep, [0.01] * 5)  # takes 5 of the 20, then ends the 15 that kept waiting
    assert pool.idle == 5
    gevent.sleep(0)
    pool.map(gevent.sleep, [0.01] * 8)
    assert (pool.started, pool.idle) == (23, 8)


def test_an_empty_call_and_the_threads_own_runners():
    assert runners().map(str, []) == []
    assert runners() is runners()


def test_a_greenlet_killed_while_idle_is_never_given_a_call():
    pool = Runners(gevent.get_hub())
    pool.map(gevent.sleep, [0.01] * 4)
    for waiter, _ in list(pool._idle)[:2]:
        gevent.kill(waiter.greenlet)
    gevent.sleep(0.05)
    assert pool.idle == 2
    assert pool.map(lambda n: n * 2, range(4)) == [0, 2, 4, 6]  # two kept greenlets and two new ones
    assert pool.started == 6


def test_a_call_given_to_a_greenlet_as_it_is_killed_still_runs():
    pool = Runners(gevent.get_hub())
    pool.map(gevent.sleep, [0.01])
    ((waiter, _),) = pool._idle
    ran: list[int] = []
    gevent.kill(waiter.greenlet)  # only scheduled: it lands after the call below was handed over
    pool._give(ran.append, 7)
    gevent.sleep(0.05)
    assert ran == [7] and pool.idle == 1


def test_outside_the_main_thread_no_greenlet_is_kept():
    import threading

    seen = []

    def work():
        pool = runners()
        seen.append(pool.map(lambda n: n + 1, range(3)))
        gevent.sleep(0)  # the greenlets it started end here
        seen.append((pool.started, pool.idle, runners() is pool))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(10)
    assert seen == [[1, 2, 3], (3, 0, False)]
