"""Status notifications applied in process: from the inbox to the store and the live counters."""

from __future__ import annotations

import json
import threading
import time

from tests.fast.helpers import live, new_campaign


def notification(*statuses: dict) -> bytes:
    """A WhatsApp notification body carrying these statuses."""
    return json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "1",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {"metadata": {"phone_number_id": "100000000000001"}, "statuses": list(statuses)},
                        }
                    ],
                }
            ],
        }
    ).encode()


def status(wamid: str, name: str, ts: int = 1_798_000_000, **extra) -> dict:
    """One status of a notification."""
    return {"id": wamid, "status": name, "timestamp": str(ts), "recipient_id": "584141000000", **extra}


def sent_wamids(rt, campaign_id: str) -> list[str]:
    """The wamids WhatsApp gave the campaign's sent messages."""
    rows = rt.store.list_recipients(campaign_id, "sent", 100, 0)["recipients"]
    return [r["wamid"] for r in rows]


def test_statuses_move_the_store_and_the_counters_forward_only(rt, queue):
    new_campaign(rt, "entregas", 10)
    queue.run_all(rt)
    wamids = sent_wamids(rt, "entregas")
    assert len(wamids) == 10
    rt.inbox.push(notification(*(status(w, "delivered") for w in wamids)))
    rt.inbox.push(notification(*(status(w, "read", ts=1_798_000_100) for w in wamids[:4])))
    # Out of order and repeated: a late "delivered" after "read" changes nothing, a repeat counts once.
    rt.inbox.push(notification(status(wamids[0], "delivered", ts=1_798_000_050), status(wamids[1], "read")))
    rt.inbox.push(b"not json")
    report = rt.webhooks.process_inbox()
    assert report["bodies"] == 4 and report["orphans"] == 0
    state = live(rt, "entregas")
    assert (state["delivered"], state["read"]) == (10, 4)
    counts = rt.store.delivery_counts("entregas")
    assert (counts["delivered"], counts["read"]) == (10, 4)
    assert rt.inbox.size() == 0


def test_a_failed_status_fails_a_sent_message_with_its_code(rt, queue):
    new_campaign(rt, "fallo-tardio", 5)
    queue.run_all(rt)
    wamid = sent_wamids(rt, "fallo-tardio")[0]
    rt.inbox.push(
        notification(
            status(
                wamid,
                "failed",
                errors=[{"code": 131026, "title": "Undeliverable", "error_data": {"details": "no WhatsApp"}}],
            )
        )
    )
    rt.webhooks.process_inbox()
    failed = rt.store.list_recipients("fallo-tardio", "failed", 10, 0)["recipients"]
    assert [(r["wamid"], r["error_code"]) for r in failed] == [(wamid, 131026)]


def test_a_status_that_arrives_before_its_message_is_recorded_is_kept_and_applied_later(rt, queue):
    new_campaign(rt, "adelantada", 5)
    campaign_id, _, outcomes = queue.send_unrecorded(rt)  # sent, but the outcomes are not in the store yet
    wamid = outcomes[0]["wamid"]
    rt.inbox.push(notification(status(wamid, "delivered")))
    assert rt.webhooks.process_inbox()["orphans"] == 1
    rt.sender.record(campaign_id, rt.owner, outcomes)
    assert rt.webhooks.process_inbox()["applied"] == 1
    assert live(rt, "adelantada")["delivered"] == 1


def test_one_drain_task_is_asked_for_a_burst(rt):
    assert rt.inbox.push(notification()) is True
    assert rt.inbox.push(notification()) is False  # the drain already scheduled takes this one too
    rt.webhooks.process_inbox()
    assert rt.inbox.push(notification()) is True


def test_a_running_drain_is_not_asked_for_again_and_one_out_of_time_asks_for_the_next(rt, queue):
    assert rt.inbox.push(notification()) is True  # the inbox was empty and no drain was on its way
    assert rt.inbox.take(10, rt.owner) is not None  # a drain took everything and is applying it
    rt.inbox.applied(rt.owner)
    # The inbox is empty again while that drain runs: its next take will find these, no new task needed.
    assert rt.inbox.push(notification()) is False
    assert rt.inbox.push_many([notification(), notification()]) is False
    assert rt.inbox.take(10, rt.owner) is not None and rt.inbox.take(10, rt.owner) is None  # done: flag cleared
    assert rt.inbox.push(notification()) is True
    # A drain that runs out of time with bodies left asks for the next one itself.
    asked = queue.webhook_drains
    rt.webhooks.process_inbox(budget_s=0)
    assert queue.webhook_drains == asked + 1 and rt.inbox.size() == 1
    rt.webhooks.process_inbox()
    assert queue.webhook_drains == asked + 1 and rt.inbox.size() == 0
    assert rt.inbox.push(notification()) is True


def test_a_drain_with_bodies_still_coming_waits_for_them_and_applies_them_in_one_more_batch(rt, queue):
    new_campaign(rt, "racha", 18)
    queue.run_all(rt)
    wamids = sent_wamids(rt, "racha")
    rt.webhooks.gather_s = 2.0  # well past the late bodies' 0.2 s, however slowly the first batch goes
    for wamid in wamids[:13]:
        rt.inbox.push(notification(status(wamid, "delivered")))

    def later() -> None:
        """WhatsApp's next notifications, while the drain is applying the first batch or waiting."""
        time.sleep(0.2)
        rt.inbox.push_many([notification(status(w, "delivered")) for w in wamids[13:]])

    pusher = threading.Thread(target=later)
    pusher.start()
    try:
        # A full batch of 10, then 3 left: fewer than a batch, so the drain lets the stream fill the next one.
        report = rt.webhooks.process_inbox(max_bodies=10)
    finally:
        pusher.join()
    assert (report["bodies"], report["batches"], report["applied"]) == (18, 2, 18)
    assert live(rt, "racha")["delivered"] == 18 and rt.inbox.size() == 0


def test_a_drain_that_empties_the_inbox_ends_without_waiting(rt, queue):
    new_campaign(rt, "sin-espera", 3)
    queue.run_all(rt)
    rt.webhooks.gather_s = 30.0
    rt.inbox.push_many([notification(status(w, "delivered")) for w in sent_wamids(rt, "sin-espera")])
    started = time.monotonic()
    report = rt.webhooks.process_inbox()
    assert (report["batches"], report["applied"]) == (1, 3)
    assert time.monotonic() - started < 10  # not the 30 s a drain waits for a batch to fill
    assert rt.inbox.push(notification()) is True  # it ended: the next body asks for a new drain
