"""The send loop's decisions, in process, against the real sandbox over HTTP."""

from __future__ import annotations

import time

import pytest

from tasks.sending import Next
from tests.conftest import SENDERS
from tests.fast.helpers import live, new_campaign, sent_to, stored_statuses


def send_all(rt, queue) -> list[dict]:
    """Run every batch as a worker does (send, record, callback) and return every outcome it recorded."""
    outcomes = []
    while queue.batches:
        campaign_id, batch_no, chunks = queue.batches.popleft()
        reports = []
        for chunk_no in range(chunks):
            chunk = rt.sender.send(campaign_id, batch_no, chunk_no, rt.owner)
            moved = rt.sender.record(campaign_id, rt.owner, chunk)
            outcomes += chunk
            reports.append(
                {
                    "claimed": len(chunk),
                    "handed_back": sum(o["status"] == "pending" for o in chunk),
                    "sent": moved.get("sent", 0),
                    "failed": moved.get("failed", 0),
                }
            )
        rt.pipeline.finish_batch(campaign_id, batch_no, reports)
    return outcomes


def test_outcomes_are_sorted_by_error_code(rt, queue, fast_sandbox):
    phones = new_campaign(rt, "codigos", 10, start=False)
    fast_sandbox.configure(recipient_errors={phones[0]: 131026, phones[1]: 131050, phones[2]: 131049})
    rt.pipeline.start("codigos")
    outcomes = {o["id"]: o for o in send_all(rt, queue)}
    by_status = sorted(o["status"] for o in outcomes.values())
    # The per-user marketing limit (131049) is not a failure yet: that recipient waits for its retry.
    assert by_status == ["deferred"] + ["failed"] * 2 + ["sent"] * 7
    assert sorted(o["error_code"] for o in outcomes.values() if o["status"] == "failed") == [131026, 131050]
    assert all(o["wamid"].startswith("wamid.") for o in outcomes.values() if o["status"] == "sent")
    assert all(o["owner"] == rt.owner for o in outcomes.values())
    state = live(rt, "codigos")
    assert state["status"] == "running" and "131049" in state["reason"] and state["deferred"] == 1


def test_a_template_error_stops_the_campaign_as_failed(rt, queue, fast_sandbox):
    fast_sandbox.configure(templates={"promo_enero": {"es": 1}})
    new_campaign(rt, "sin-plantilla", 10, template="no_existe")
    send_all(rt, queue)
    state = live(rt, "sin-plantilla")
    assert state["status"] == "failed" and "132001" in state["reason"]
    assert stored_statuses(rt, "sin-plantilla").get("sent", 0) == 0


def test_an_expired_token_pauses_the_campaign_and_hands_messages_back(rt, queue, fast_sandbox):
    fast_sandbox.configure(forced_errors={SENDERS["ventas"][0]: 190})
    new_campaign(rt, "token-vencido", 10)
    outcomes = send_all(rt, queue)
    assert {o["status"] for o in outcomes} == {"pending"}
    state = live(rt, "token-vencido")
    assert state["status"] == "paused" and "190" in state["reason"]
    assert stored_statuses(rt, "token-vencido") == {"pending": 10}

    fast_sandbox.configure(forced_errors={})
    rt.pipeline.resume("token-vencido")
    queue.run_all(rt)
    assert live(rt, "token-vencido")["status"] == "completed"


def test_transient_errors_are_retried_until_sent(rt, queue, fast_sandbox):
    phones = new_campaign(rt, "inestable", 20, start=False)
    fast_sandbox.configure(error_5xx_share=0.4)
    rt.pipeline.start("inestable")
    outcomes = send_all(rt, queue)
    assert sum(o["retries"] for o in outcomes) > 0
    state = live(rt, "inestable")
    # MAX_RETRIES=2: with 40 % errors a few may run out of retries, and fail with the last reason.
    assert state["sent"] + state["failed"] == 20 and state["sent"] >= 14
    assert all(o.get("error_code") in (131000, 131016) for o in outcomes if o["status"] == "failed")
    assert max(sent_to(fast_sandbox).values()) == 1 and set(sent_to(fast_sandbox)) <= set(phones)


def test_a_message_that_keeps_failing_fails_after_its_retries(rt, queue, fast_sandbox):
    new_campaign(rt, "siempre-falla", 3, start=False)
    fast_sandbox.configure(error_5xx_share=1.0)
    rt.pipeline.start("siempre-falla")
    outcomes = send_all(rt, queue)
    assert [o["status"] for o in outcomes] == ["failed"] * 3
    assert [o["retries"] for o in outcomes] == [2, 2, 2]  # MAX_RETRIES


def test_throttling_waits_and_never_fails_a_message(rt, queue, fast_sandbox):
    fast_sandbox.configure(mps={SENDERS["ventas"][0]: 8})  # WhatsApp allows less than the buzón says
    phones = new_campaign(rt, "estrangulada", 30)
    outcomes = send_all(rt, queue)
    assert {o["status"] for o in outcomes} == {"sent"}
    assert fast_sandbox.stats()["by_phone_number_id"][SENDERS["ventas"][0]]["rejected"].get("130429", 0) > 0
    assert sum(o["retries"] for o in outcomes) > 0
    assert sent_to(fast_sandbox) == {p: 1 for p in phones}


def test_no_answer_means_unknown_and_no_resend(rt, queue, fast_sandbox):
    fast_sandbox.configure(timeout_share=1.0, timeout_hold_s=2, timeout_accepts=True)
    new_campaign(rt, "sin-respuesta", 3)
    outcomes = send_all(rt, queue)
    assert {o["status"] for o in outcomes} == {"unknown"}
    assert stored_statuses(rt, "sin-respuesta") == {"unknown": 3}
    assert max(sent_to(fast_sandbox).values()) == 1


def test_a_paused_campaign_sends_nothing_more(rt, queue, fast_sandbox):
    new_campaign(rt, "parada", 10)
    rt.pipeline.pause("parada")
    assert send_all(rt, queue) == []
    assert fast_sandbox.messages() == []


@pytest.mark.parametrize(
    "code, expected",
    [(131026, Next.DONE), (130429, Next.WAIT), (131000, Next.RETRY), (132001, Next.STOP), (190, Next.HAND_BACK)],
)
def test_each_answer_has_one_named_next_step(rt, code, expected):
    from tasks.sending import CampaignSpec, _Job, _Ledger, _SendMarks
    from tasks.store.base import ClaimedMessage
    from tasks.whatsapp import SendResult

    sender = rt.store.get_sender("ventas")
    job = _Job(
        "x",
        CampaignSpec(1, "ventas", "t", "es", 1, 1),
        sender,
        80,
        0.0,
        0.0,
        _SendMarks(rt.state, "x", "o:w", _Ledger(), {}),
    )
    message = ClaimedMessage(1, 1, "584141000000", [], 0)
    decision = rt.sender._judge(job, message, SendResult(error_code=code, http_status=400), 0)
    assert decision.next is expected


def test_an_account_error_answered_after_a_resume_does_not_pause_again(rt, queue):
    new_campaign(rt, "reanudada", 10)
    requested_before_resume = time.time()
    rt.pipeline.pause("reanudada", "token vencido (190)")
    rt.pipeline.resume("reanudada")
    # The 190 of a request that left before the operator resumed arrives now: the campaign keeps running.
    rt.sender._stop("reanudada", "paused", "token vencido (190)", requested_before_resume)
    assert live(rt, "reanudada")["status"] == "running"
    # One that left after the resume still pauses it.
    rt.sender._stop("reanudada", "paused", "token vencido (190)", time.time())
    assert live(rt, "reanudada")["status"] == "paused"
