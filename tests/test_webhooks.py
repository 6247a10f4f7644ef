"""Status webhooks: handshake, signatures, and delivered/read figures an operator sees."""

from __future__ import annotations

import hashlib
import hmac
import json
import os

import psycopg
import pytest

from tests.conftest import APP_SECRET, make_csv, status, store_rows, upload, wait_for, wait_status

pytestmark = pytest.mark.usefixtures("worker", "clean")

HOOK = "/webhooks/whatsapp"


def signed(body: bytes, secret: str = APP_SECRET) -> dict:
    """Headers Meta would send with this body."""
    return {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
    }


def notification(*statuses: dict) -> bytes:
    """A status notification in Meta's shape."""
    return json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "waba",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {"phone_number_id": "1"},
                                "statuses": list(statuses),
                            },
                        }
                    ],
                }
            ],
        }
    ).encode()


def st(wamid: str, kind: str, ts: int = 1_800_000_000, **extra) -> dict:
    """One status entry."""
    return {"id": wamid, "status": kind, "timestamp": str(ts), "recipient_id": "584140000000", **extra}


@pytest.fixture
def sent_campaign(api):
    """A small campaign sent to the end; returns its rows' wamids in order."""
    response = upload(api, make_csv(20), title="Webhooks")
    assert response.status_code == 201, response.text
    wait_status(api, "webhooks", {"completed"})
    return [r[2] for r in store_rows("webhooks")]


def test_verification_handshake(api):
    ok = api.get(HOOK, params={"hub.mode": "subscribe", "hub.verify_token": "verify-me", "hub.challenge": "1158201444"})
    assert ok.status_code == 200 and ok.text == "1158201444"
    bad = api.get(HOOK, params={"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "1"})
    assert bad.status_code == 403 and bad.json()["success"] is False


def test_delivered_and_read_reach_queue_status_once(api, sent_campaign):
    w = sent_campaign
    body = notification(
        st(w[0], "sent"),
        st(w[0], "delivered", 1_800_000_001),
        st(w[0], "read", 1_800_000_002),
        st(w[1], "read", 1_800_000_005),
        st(w[1], "delivered", 1_800_000_003),
        st(w[2], "delivered"),
    )
    for _ in range(2):  # Meta re-sends what it thinks was not acknowledged
        assert api.post(HOOK, data=body, headers=signed(body)).status_code == 200
    final = wait_for(lambda: (s := status(api, "webhooks"))["delivered"] == 3 and s, 15, message="delivered 3")
    assert final["read"] == 2 and final["delivery_rate"] == 15.0 and final["read_rate"] == 10.0
    assert final["last_read_at"] is not None
    rows = api.get("/api/destinatarios/webhooks").json()["destinatarios"]
    assert [r["delivery_status"] for r in rows[:4]] == ["read", "read", "delivered", None]
    listing = api.get("/api/listar-campanas").json()["campaigns"][0]
    assert (listing["delivered"], listing["read"]) == (3, 2)


def test_a_late_failure_moves_a_sent_message_to_failed(api, sent_campaign):
    body = notification(
        st(
            sent_campaign[5],
            "failed",
            errors=[
                {"code": 131026, "title": "Message undeliverable", "error_data": {"details": "Receiver is incapable"}}
            ],
        )
    )
    assert api.post(HOOK, data=body, headers=signed(body)).status_code == 200
    final = wait_for(lambda: (s := status(api, "webhooks"))["failed"] == 1 and s, 15, message="one failure")
    assert final["sent"] == 19 and final["errores"][0]["codigo"] == "131026"


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "application/json"},
        {"Content-Type": "application/json", "X-Hub-Signature-256": "sha256=" + "0" * 64},
        "wrong secret",
    ],
)
def test_missing_or_wrong_signatures_are_refused_and_nothing_is_recorded(api, redis_client, sent_campaign, headers):
    body = notification(st(sent_campaign[0], "delivered"))
    if headers == "wrong secret":
        headers = signed(body, secret="not-the-secret")
    response = api.post(HOOK, data=body, headers=headers)
    assert response.status_code == 401 and response.json()["success"] is False
    assert redis_client.llen("wcq:webhooks:inbox") == 0
    assert status(api, "webhooks")["delivered"] == 0


def test_malformed_json_with_a_valid_signature_is_refused(api):
    body = b'{"object": "whatsapp_business_account", "entry": ['
    response = api.post(HOOK, data=body, headers=signed(body))
    assert response.status_code == 400 and "JSON" in response.json()["message"]


def test_oversized_bodies_get_413(api):
    body = b'{"pad": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    assert api.post(HOOK, data=body, headers=signed(body)).status_code == 413


def test_unknown_wamids_are_kept_not_rejected(api, sent_campaign):
    body = notification(st("wamid.NOT-OURS", "delivered"))
    assert api.post(HOOK, data=body, headers=signed(body)).status_code == 200
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:

        def count() -> int:
            query = "SELECT count(*) FROM instancia_sofia.webhook_orphans WHERE wamid = 'wamid.NOT-OURS'"
            return conn.execute(query).fetchone()[0]

        wait_for(lambda: count() == 1, 15, message="the orphan status stored")
    assert status(api, "webhooks")["delivered"] == 0


def test_a_body_with_a_thousand_statuses(api, sent_campaign):
    statuses = [st(sent_campaign[i % 20], "delivered" if i < 20 else "sent", 1_800_000_000 + i) for i in range(1000)]
    body = notification(*statuses)
    response = api.post(HOOK, data=body, headers=signed(body))
    assert response.status_code == 200
    wait_for(lambda: status(api, "webhooks")["delivered"] == 20, 20, message="all 20 delivered")


def test_end_to_end_through_the_sandboxs_signed_webhooks(api, sandbox):
    # (A late 131049 would defer its recipient instead: tests/fast/test_optouts.py.)
    late_failures = {"584141000003": 131026, "584141000011": 131051}
    sandbox.configure(
        webhook_url=api.url + HOOK,
        app_secret=APP_SECRET,
        delivered_share=0.9,
        read_share=0.5,
        webhook_delay_ms=[5, 30],
        out_of_order_share=0.3,
        duplicate_share=0.3,
        skip_delivered_share=0.2,
        failed_statuses=late_failures,
    )
    upload(api, make_csv(200), title="Con acuses")
    wait_status(api, "con-acuses", {"completed"})
    sandbox.flush_webhooks()
    told = {"delivered": 0, "read": 0, "failed": 0}
    for message in sandbox.webhooks()["messages"]:
        kinds = {s["status"] for s in message["statuses"]}
        told["delivered"] += bool(kinds & {"delivered", "read"})
        told["read"] += "read" in kinds
        told["failed"] += "failed" in kinds
    assert told["failed"] == 2 and told["read"] > 0
    final = wait_for(
        lambda: (
            (s := status(api, "con-acuses"))["delivered"] == told["delivered"]
            and s["read"] == told["read"]
            and s["failed"] == 2
            and s
        ),
        30,
        message=f"{told['delivered']} delivered, {told['read']} read, 2 failed",
    )
    assert final["sent"] == 198
    assert {e["codigo"] for e in final["errores"]} == {"131026", "131051"}
    rows = {
        r["phone"]: r
        for r in api.get("/api/destinatarios/con-acuses", params={"por_pagina": 200}).json()["destinatarios"]
    }
    assert rows["584141000003"]["status"] == "failed" and rows["584141000003"]["error_code"] == 131026
