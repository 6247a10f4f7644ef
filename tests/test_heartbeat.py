"""Dead-worker detection on the real Redis: a missing heartbeat must stay missing a whole TTL."""

from __future__ import annotations

import time

from tasks.heartbeat import KNOWN_SET, PREFIX, SUSPECT_HASH, dead_workers, forget_worker


def test_a_worker_is_dead_only_after_missing_a_whole_ttl(redis_client):
    redis_client.delete(KNOWN_SET, SUSPECT_HASH)
    redis_client.sadd(KNOWN_SET, "gone", "back")
    assert {"gone", "back"} & dead_workers(redis_client, ttl_s=1) == set(), (
        "a first miss (say, Redis restarting) only suspects"
    )
    redis_client.set(PREFIX + "back", "alive", ex=5)  # beats again after the gap
    time.sleep(1.2)
    # Other workers of the test run beat into the same Redis, so only these two are looked at.
    assert {"gone", "back"} & dead_workers(redis_client, ttl_s=1) == {"gone"}
    assert not redis_client.hexists(SUSPECT_HASH, "back")
    forget_worker(redis_client, "gone")
    assert {"gone", "back"} & redis_client.smembers(KNOWN_SET) == {"back"}


def test_claim_owners_that_never_beat_are_judged_the_same_way(redis_client):
    redis_client.delete(KNOWN_SET, SUSPECT_HASH)
    assert "stranger" not in dead_workers(redis_client, ttl_s=1, also={"stranger"})
    time.sleep(1.2)
    assert "stranger" in dead_workers(redis_client, ttl_s=1, also={"stranger"})
