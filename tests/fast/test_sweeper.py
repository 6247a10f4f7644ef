"""Crash recovery in process: the sweeper settles what a dead worker or a lost chord left behind."""

from __future__ import annotations

import time

from tests.fast.helpers import live, new_campaign, sent_to, stored_statuses

GHOST = "ghost-host:4242:deadbeef"  # a worker that claimed messages and then died: it never beats


def test_a_dead_workers_claims_become_unknown_if_requested_and_pending_otherwise(rt, queue, fast_sandbox):
    phones = new_campaign(rt, "huerfana", 20)
    queue.batches.popleft()  # batch 1 went to the worker that died
    claimed = rt.store.claim_messages("huerfana", 1, 5, GHOST)
    assert rt.state.begin_sends("huerfana", [m.id for m in claimed[:2]])  # it was requesting these two

    first = rt.sweeper.sweep()  # missing once: only a suspect (a Redis restart also loses heartbeats)
    assert first["unknown"] == 0 and stored_statuses(rt, "huerfana")["sending"] == 5
    time.sleep(rt.settings.worker_heartbeat_ttl_s + 0.2)
    report = rt.sweeper.sweep()
    assert (report["unknown"], report["released"]) == (2, 3)
    assert report["requeued_batches"] == 2  # both batches handed out stayed in flight too long, unsent

    queue.run_all(rt)
    state = live(rt, "huerfana")
    assert (state["status"], state["sent"], state["unknown"]) == ("completed", 18, 2)
    unknown = {r["phone"] for r in rt.store.list_recipients("huerfana", "unknown", 10, 0)["recipients"]}
    assert unknown == {m.phone for m in claimed[:2]}
    assert sent_to(fast_sandbox) == {p: 1 for p in phones if p not in unknown}


def test_results_of_a_chord_that_never_joined_are_applied_once(rt, queue, fast_sandbox):
    phones = new_campaign(rt, "sin-union", 20)
    queue.send_chunks(rt)  # batch 1 sent, but its callback never ran
    assert stored_statuses(rt, "sin-union")["sending"] == 10
    time.sleep(rt.settings.stale_batch_s + 1.1)
    report = rt.sweeper.sweep()
    assert report["requeued_batches"] >= 1 and report["unknown"] == 0
    assert stored_statuses(rt, "sin-union")["sent"] == 10
    queue.run_all(rt)
    state = live(rt, "sin-union")
    assert (state["status"], state["sent"]) == ("completed", 20)
    assert sent_to(fast_sandbox) == {p: 1 for p in phones}


def test_a_second_sweeper_waits_for_the_first(rt, fast_redis):
    from tasks import keys

    fast_redis.set(keys.SWEEP_LOCK, "another-sweeper", ex=30)
    assert rt.sweeper.sweep() == {"skipped": True}
    fast_redis.delete(keys.SWEEP_LOCK)
    assert "skipped" not in rt.sweeper.sweep()


def test_a_campaign_nobody_moves_is_completed_by_the_sweeper(rt, queue):
    new_campaign(rt, "quieta", 10)
    campaign_id, batch_no, task_ids = queue.send_chunks(rt)
    rt.pipeline.record_batch(campaign_id, batch_no, queue.finished_results(task_ids))  # callback died half-way
    assert live(rt, "quieta")["status"] == "running"
    time.sleep(rt.settings.stale_batch_s + 1.1)
    rt.sweeper.sweep()
    assert live(rt, "quieta")["status"] == "completed"
