"""The shared per-number limiter, against the real Redis: slots are spaced by rate or by the configured interval."""

from __future__ import annotations

import itertools
import uuid

import pytest

from tasks.ratelimit import SendRateLimiter


@pytest.fixture
def limiter(redis_client):
    """A limiter with a key prefix of its own."""
    return SendRateLimiter(redis_client, prefix=f"wcq:rate:test:{uuid.uuid4().hex}:")


def test_slots_are_spaced_by_the_numbers_rate(limiter):
    waits = [limiter.reserve("111", messages_per_second=100) for _ in range(50)]
    assert waits[0] == 0
    # 50 slots at 100/s span half a second, whatever the calling processes' clocks say.
    assert waits[-1] == pytest.approx(0.49, abs=0.03)
    assert all(b >= a for a, b in itertools.pairwise(waits))


def test_intervalo_envio_ms_spaces_sends_further_than_the_rate(limiter):
    waits = [limiter.reserve("222", messages_per_second=80, min_interval_ms=200) for _ in range(5)]
    assert waits[-1] == pytest.approx(0.8, abs=0.03)


def test_each_sender_number_has_its_own_schedule(limiter):
    for _ in range(20):
        limiter.reserve("333", messages_per_second=10)
    assert limiter.reserve("444", messages_per_second=10) == 0


def test_a_chunk_books_consecutive_slots_in_one_call(limiter):
    slots = limiter.reserve_many("555", messages_per_second=100, count=5)
    assert slots == pytest.approx([0, 0.01, 0.02, 0.03, 0.04], abs=0.002)
    assert limiter.reserve("555", messages_per_second=100) == pytest.approx(0.05, abs=0.01)
