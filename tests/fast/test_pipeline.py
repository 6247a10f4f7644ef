"""Campaign transitions through the real pipeline, store and Redis, with the test playing the worker."""

from __future__ import annotations

import pytest

from tasks.pipeline import CampaignNotFound, InvalidTransition
from tests.fast.helpers import live, new_campaign, sent_to, stored_statuses


def test_a_campaign_runs_batch_by_batch_within_its_in_flight_limit_and_completes(rt, queue, fast_sandbox):
    phones = new_campaign(rt, "completa", 35)
    # 35 messages in batches of 10: four batches, of which MAX_CONCURRENT_BATCHES=2 are handed out at once.
    assert [b for _, b, _ in queue.batches] == [1, 2]
    assert [chunks for _, _, chunks in queue.batches] == [2, 2]  # chunks of 5
    assert live(rt, "completa")["status"] == "running"
    queue.run_next(rt)
    assert [b for _, b, _ in queue.batches] == [2, 3]
    queue.run_all(rt)
    state = live(rt, "completa")
    assert (state["status"], state["sent"], state["failed"]) == ("completed", 35, 0)
    assert stored_statuses(rt, "completa") == {"sent": 35}
    assert sent_to(fast_sandbox) == {p: 1 for p in phones}


def test_pause_hands_back_what_was_queued_and_resume_sends_it_once(rt, queue, fast_sandbox):
    phones = new_campaign(rt, "pausada", 30)
    queue.run_next(rt)
    rt.pipeline.pause("pausada", "pausa de prueba")
    assert live(rt, "pausada")["status"] == "paused"
    queue.run_all(rt)  # the batch already enqueued finds the campaign paused and sends nothing
    assert stored_statuses(rt, "pausada") == {"sent": 10, "pending": 20}
    assert rt.pipeline.dispatch("pausada") == 0
    with pytest.raises(InvalidTransition):
        rt.pipeline.pause("pausada")

    assert rt.pipeline.resume("pausada") == "running"
    queue.run_all(rt)
    assert live(rt, "pausada")["status"] == "completed"
    assert sent_to(fast_sandbox) == {p: 1 for p in phones}


def test_cancel_marks_the_rest_cancelled_and_a_cancelled_campaign_cannot_be_retried(rt, queue, fast_sandbox):
    new_campaign(rt, "cancelada", 40)
    queue.run_next(rt)
    assert rt.pipeline.cancel("cancelada") == 30
    queue.run_all(rt)
    state = live(rt, "cancelada")
    assert (state["status"], state["sent"], state["cancelled"]) == ("cancelled", 10, 30)
    assert stored_statuses(rt, "cancelada") == {"sent": 10, "cancelled": 30}
    with pytest.raises(InvalidTransition, match="cancelada"):
        rt.pipeline.retry("cancelada", ["failed"])
    with pytest.raises(InvalidTransition):
        rt.pipeline.resume("cancelada")
    assert len(fast_sandbox.messages()) == 10


def test_retry_sends_the_failed_again_and_reopens_the_campaign(rt, queue, fast_sandbox):
    phones = new_campaign(rt, "reintento", 12, start=False)
    fast_sandbox.configure(recipient_errors={p: 131026 for p in phones[:4]})
    rt.pipeline.start("reintento")
    queue.run_all(rt)
    state = live(rt, "reintento")
    assert (state["status"], state["sent"], state["failed"]) == ("completed", 8, 4)
    with pytest.raises(InvalidTransition, match="unknown"):
        rt.pipeline.retry("reintento", ["unknown"])

    fast_sandbox.configure(recipient_errors={})
    assert rt.pipeline.retry("reintento", ["failed"]) == {"failed": 4}
    queue.run_all(rt)
    state = live(rt, "reintento")
    assert (state["status"], state["sent"], state["failed"]) == ("completed", 12, 0)
    assert stored_statuses(rt, "reintento") == {"sent": 12}


def test_a_repeated_chunk_or_batch_callback_counts_nothing_twice(rt, queue):
    new_campaign(rt, "repetida", 10)
    campaign_id, batch_no, chunks = queue.batches.popleft()
    reports = []
    for chunk_no in range(chunks):
        outcomes = rt.sender.send(campaign_id, batch_no, chunk_no, rt.owner)
        rt.sender.record(campaign_id, rt.owner, outcomes)
        rt.sender.record(campaign_id, rt.owner, outcomes)  # a redelivered chunk task records again
        reports.append({"claimed": len(outcomes), "handed_back": 0, "sent": len(outcomes), "failed": 0})
    rt.pipeline.finish_batch(campaign_id, batch_no, reports)
    rt.pipeline.finish_batch(campaign_id, batch_no, reports)  # a redelivered callback
    state = live(rt, "repetida")
    assert (state["status"], state["sent"]) == ("completed", 10)
    assert stored_statuses(rt, "repetida") == {"sent": 10}


def test_lost_live_state_is_rebuilt_from_the_store(rt, queue, fast_redis):
    new_campaign(rt, "olvidada", 20)
    queue.run_next(rt)
    queue.batches.clear()  # what Redis held (the broker too) is gone
    fast_redis.flushdb()
    fields = rt.pipeline.ensure_live_state("olvidada")
    assert (fields["status"], fields["sent"]) == ("running", "10")
    assert rt.pipeline.settle("olvidada") == "running"
    queue.run_all(rt)
    assert live(rt, "olvidada")["sent"] == 20 and live(rt, "olvidada")["status"] == "completed"


def test_unknown_campaigns_are_reported_as_such(rt):
    with pytest.raises(CampaignNotFound):
        rt.pipeline.pause("no-existe")
    with pytest.raises(CampaignNotFound):
        rt.pipeline.ensure_live_state("no-existe")


def test_status_writes_that_reach_redis_late_never_undo_a_newer_change(rt, queue):
    """A resume and a pause race: each process writes the store, then Redis; Redis may get them crossed."""
    new_campaign(rt, "cruzada", 20)
    paused = rt.store.set_campaign_status("cruzada", "paused", "token vencido (190)")  # a worker, first
    resumed = rt.store.set_campaign_status("cruzada", "running")  # the operator, right after
    assert rt.state.set_status("cruzada", "running", None, resumed["version"])  # the operator's Redis write lands
    assert not rt.state.set_status("cruzada", "paused", "token vencido (190)", paused["version"])  # then the late one
    assert live(rt, "cruzada")["status"] == rt.pipeline.campaign("cruzada")["status"] == "running"
    queue.run_all(rt)
    assert live(rt, "cruzada")["status"] == "completed", "the campaign did not stall half paused"
