"""Redis losing everything mid-campaign (FLUSHDB, FLUSHALL, a restart without persistence).

The broker's queued tasks, the chords' counters, the live counters, the send marks and the workers'
heartbeats all live in Redis. Whatever moment they vanish, the campaign completes from the database,
no recipient gets the message twice, and the counters shown equal the store's.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
import redis

from demo.services import EmbeddedRedis
from tests.conftest import SENDERS, make_csv, status, store_rows, upload, wait_for, wait_status
from tests.test_resilience import assert_each_recipient_at_most_once

pytestmark = pytest.mark.usefixtures("clean")

PNID = SENDERS["malo"][0]  # 200 msg/s in the sandbox and the store


def check_nothing_lost_or_twice(stack, sandbox, campaign_id: str, total: int) -> Counter:
    """The campaign completed, each recipient reached WhatsApp at most once, the counters equal the store."""
    final = wait_status(stack.api, campaign_id, {"completed"}, timeout=240)
    per_phone = assert_each_recipient_at_most_once(sandbox, PNID)
    rows = store_rows(campaign_id)
    by_status = Counter(r[1] for r in rows)
    assert set(by_status) <= {"sent", "unknown"} and sum(by_status.values()) == total, by_status
    assert (final["sent"], final["failed"], final["unknown"], final["pending"]) == (
        by_status["sent"],
        0,
        by_status["unknown"],
        0,
    )
    assert {r[0] for r in rows if r[1] == "sent"} <= set(per_phone), "every message marked sent reached WhatsApp"
    assert set(per_phone) <= {r[0] for r in rows if r[1] in ("sent", "unknown")}
    print(f"{campaign_id}: {dict(by_status)}, {len(per_phone)} reached WhatsApp")
    return by_status


def flush_while_sending(client: redis.Redis, moments: list[float], flush) -> threading.Thread:
    """Flush Redis at each of `moments` (seconds from now) in a thread of its own."""

    def run() -> None:
        start = time.monotonic()
        for at in moments:
            time.sleep(max(0.0, start + at - time.monotonic()))
            flush()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_flushdb_six_seconds_in_sends_nothing_twice(make_stack, sandbox):
    stack = make_stack()
    stack.start_worker("a")
    stack.start_worker("b")
    assert upload(stack.api, make_csv(3_000), title="Flush", buzon="malo").status_code == 201
    wait_for(lambda: status(stack.api, "flush")["sent"] > 0, 30, message="sending")
    time.sleep(6)
    stack.redis.flushdb()
    by_status = check_nothing_lost_or_twice(stack, sandbox, "flush", 3_000)
    # The workers lived through it and still knew what they had sent: nothing is left unknown.
    assert by_status["unknown"] == 0, by_status


def test_repeated_flushes_during_claims_sends_and_callbacks(make_stack, sandbox):
    """Eight flushes half a second to a second apart hit every phase: claims, sends, chord callbacks."""
    stack = make_stack()
    stack.start_worker("a")
    stack.start_worker("b")
    assert upload(stack.api, make_csv(3_000), title="Tormenta", buzon="malo").status_code == 201
    wait_for(lambda: status(stack.api, "tormenta")["sent"] > 0, 30, message="sending")
    moments = [0.3, 1.0, 1.6, 2.5, 3.1, 4.0, 4.6, 5.5]
    flush_while_sending(stack.redis, moments, stack.redis.flushdb).join()
    check_nothing_lost_or_twice(stack, sandbox, "tormenta", 3_000)


def test_flushall_on_a_redis_of_its_own(make_stack, sandbox, tmp_path):
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.start()
    try:
        stack = make_stack(redis_url=url)
        stack.start_worker("a")
        assert upload(stack.api, make_csv(2_000), title="Todo", buzon="malo").status_code == 201
        wait_for(lambda: status(stack.api, "todo")["sent"] >= 200, 30, message="sending")
        stack.redis.flushall()
        check_nothing_lost_or_twice(stack, sandbox, "todo", 2_000)
    finally:
        server.stop()
