"""Crash recovery in process: the sweeper settles what a dead worker or a lost chord left behind."""

from __future__ import annotations

import time

from tasks.sending import decode_answer, encode_answer
from tests.fast.helpers import live, new_campaign, sent_to, stored_statuses

GHOST = "ghost-host:4242:deadbeef"  # a worker that claimed messages and then died: it never beats


def wait_until_dead(rt) -> dict:
    """Sweep once (a missing heartbeat only makes a suspect), wait a heartbeat TTL, sweep again."""
    first = rt.sweeper.sweep()
    assert first["unknown"] == 0 and first["settled"] == 0
    time.sleep(rt.settings.worker_heartbeat_ttl_s + 0.2)
    return rt.sweeper.sweep()


def test_a_dead_workers_claims_become_unknown_if_requested_and_pending_otherwise(rt, queue, fast_sandbox):
    phones = new_campaign(rt, "huerfana", 20)
    queue.batches.popleft()  # batch 1 went to the worker that died
    claimed = rt.store.claim_messages("huerfana", 1, 5, GHOST)
    # It was requesting these two.
    assert rt.state.begin_sends("huerfana", [m.id for m in claimed[:2]], GHOST, False) == 1

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


def test_the_answers_a_dead_worker_left_in_redis_settle_its_claims(rt, queue, fast_sandbox):
    phones = new_campaign(rt, "respuestas", 10)
    _, _, outcomes = queue.send_unrecorded(rt, owner=GHOST)  # sent, then the worker died before recording
    marks, trusted = rt.state.attempts("respuestas")
    answers = rt.state.answers("respuestas", GHOST)
    assert trusted == {GHOST} and marks == {o["id"] for o in outcomes}
    # Each mark call carried the answers that had come back since the one before.
    assert 0 < len(answers) < len(outcomes)

    report = wait_until_dead(rt)
    assert report["settled"] == len(answers)
    assert report["unknown"] == len(outcomes) - len(answers)  # only the last answers were still in the worker
    assert stored_statuses(rt, "respuestas") == {"sent": len(answers), "unknown": len(outcomes) - len(answers)}
    assert live(rt, "respuestas")["sent"] == len(answers)
    assert rt.state.attempts("respuestas") == (set(), set()) and rt.state.answers("respuestas", GHOST) == {}
    assert sent_to(fast_sandbox) == {p: 1 for p in phones}


def test_what_whatsapp_reported_before_the_sweep_settles_a_dead_workers_claims(rt, queue):
    from tests.fast.test_webhook_applier import notification, status

    new_campaign(rt, "notificada", 10)
    _, _, outcomes = queue.send_unrecorded(rt, owner=GHOST)
    # WhatsApp's notifications for every message (matched by the callback data, since no wamid is stored
    # yet): the first failed after it was accepted, the rest were read.
    statuses = [
        status(o["wamid"], "failed" if i == 0 else "read", biz_opaque_callback_data=f"notificada/{o['id']}")
        | ({"errors": [{"code": 131026, "title": "Message undeliverable"}]} if i == 0 else {})
        for i, o in enumerate(outcomes)
    ]
    rt.inbox.push(notification(*statuses))
    assert rt.webhooks.process_inbox()["applied"] == len(outcomes)
    rt.state.end_sends("notificada", [o["id"] for o in outcomes], {GHOST})  # as if its answers were lost too

    report = wait_until_dead(rt)
    assert report["unknown"] == 0 and report["settled"] == len(outcomes)
    assert stored_statuses(rt, "notificada") == {"sent": len(outcomes) - 1, "failed": 1}
    state = live(rt, "notificada")
    assert (state["sent"], state["failed"], state["unknown"]) == (len(outcomes) - 1, 1, 0)


def test_a_dead_worker_whose_marks_redis_lost_leaves_unknown_never_pending(rt, queue, fast_sandbox, fast_redis):
    phones = new_campaign(rt, "sin-marcas", 10)
    _, _, outcomes = queue.send_unrecorded(rt, owner=GHOST)
    fast_redis.flushdb()  # marks, answers, heartbeats, the live state: all gone
    queue.batches.clear()  # the broker too

    report = wait_until_dead(rt)
    assert report["unknown"] == len(outcomes) and report["released"] == 0
    queue.run_all(rt)
    state = live(rt, "sin-marcas")
    assert (state["status"], state["unknown"], state["sent"]) == ("completed", len(outcomes), 10 - len(outcomes))
    assert sent_to(fast_sandbox) == {p: 1 for p in phones}, "nothing was sent twice"


def test_a_worker_that_finds_its_marks_gone_marks_them_again(rt, queue, fast_redis):
    new_campaign(rt, "remarca", 10)
    campaign_id, batch_no, _ = queue.batches.popleft()
    first = rt.sender.send(campaign_id, batch_no, 0, rt.owner)  # sent, not recorded yet
    fast_redis.flushdb()
    rt.pipeline.ensure_live_state(campaign_id)  # someone rebuilt the live state
    rt.sender.send(campaign_id, batch_no, 1, rt.owner)  # its first mark call finds the sentinel gone
    marks, trusted = rt.state.attempts(campaign_id)
    assert rt.owner in trusted
    assert {o["id"] for o in first} <= marks, "the chunk sent before the loss is marked again"


def test_a_batch_whose_callback_never_ran_is_moved_on_by_the_sweeper(rt, queue, fast_sandbox):
    phones = new_campaign(rt, "sin-union", 20)
    queue.send_chunks(rt)  # batch 1 sent and recorded, but its callback never ran
    assert stored_statuses(rt, "sin-union") == {"sent": 10, "pending": 10}
    time.sleep(rt.settings.stale_batch_s + 1.1)
    report = rt.sweeper.sweep()
    assert report["requeued_batches"] >= 1 and report["unknown"] == 0
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
    queue.send_chunks(rt)  # the chunks recorded their outcomes; the callback died
    assert live(rt, "quieta")["status"] == "running"
    time.sleep(rt.settings.stale_batch_s + 1.1)
    rt.sweeper.sweep()
    assert live(rt, "quieta")["status"] == "completed"


def test_answers_are_kept_compactly_and_read_back_whole():
    from tasks.sending import decode_answer, encode_answer

    sent = {"id": 7, "status": "sent", "wamid": "wamid.HBgM", "retries": 2, "owner": GHOST}
    failed = {"id": 8, "status": "failed", "retries": 0, "error_code": 131026, "error_detail": "no entregable"}
    handed_back = {"id": 9, "status": "pending", "retries": 1, "error_code": 190, "error_detail": "token vencido"}
    assert encode_answer(sent) == "2 wamid.HBgM"
    for outcome in (sent, failed, handed_back):
        assert decode_answer(outcome["id"], encode_answer(outcome), GHOST) == {**outcome, "owner": GHOST}


def test_notifications_a_dead_worker_took_go_back_and_are_applied(rt, queue):
    from tests.fast.test_webhook_applier import notification, sent_wamids, status

    new_campaign(rt, "tomadas", 10)
    queue.run_all(rt)
    wamid = sent_wamids(rt, "tomadas")[0]
    rt.inbox.push(notification(status(wamid, "read")))
    assert rt.inbox.take(200, GHOST)  # taken by a worker that died before applying it
    assert rt.webhooks.process_inbox()["applied"] == 0 and rt.inbox.takers() == [GHOST]
    drains = queue.webhook_drains
    rt.sweeper.sweep()
    time.sleep(rt.settings.worker_heartbeat_ttl_s + 0.2)
    rt.sweeper.sweep()
    assert rt.inbox.takers() == [] and rt.inbox.size() == 1
    assert queue.webhook_drains > drains, "the sweeper asked for a drain (the dead worker's task is gone)"
    assert rt.webhooks.process_inbox()["applied"] == 1
    assert live(rt, "tomadas")["read"] == 1


def test_answers_and_marks_kept_in_one_call_come_back_exactly_as_given(rt, queue):
    """A worker's answers travel to Redis with its marks, packed into one line each: whatever an answer holds
    (a wamid with a line break, an error detail with line breaks and commas, a held message's status), the
    recovery reads back the same outcome, and every message id given is marked, even past the script's
    groups of 1,000."""
    new_campaign(rt, "empaque", 5)
    outcomes = {
        1: {"id": 1, "status": "sent", "wamid": "wamid.HBgN==", "retries": 0},
        2: {"id": 2, "status": "sent", "wamid": "wamid.raro\nsegunda línea", "retries": 2},
        3: {"id": 3, "status": "failed", "retries": 1, "error_code": 131026, "error_detail": "no,\nentregable"},
        4: {"id": 4, "status": "sent", "wamid": "wamid.retenido", "retries": 0, "message_status": "paused"},
    }
    answers = {m: encode_answer(o) for m, o in outcomes.items()}
    ids = list(range(1, 2_501))
    assert rt.state.begin_sends("empaque", ids, GHOST, False, answers) == 1

    kept = rt.state.answers("empaque", GHOST)
    assert {m: decode_answer(m, text, GHOST) for m, text in kept.items()} == {
        m: {**o, "owner": GHOST} for m, o in outcomes.items()
    }
    marks, owners = rt.state.attempts("empaque")
    assert marks == set(ids) and owners == {GHOST}
