"""The sandbox's template pacing, template status and account notifications, spoken to over HTTP."""

from __future__ import annotations

import hashlib
import hmac
import time

import pytest
import requests

from sandbox.process import SandboxHandle, start_sandbox
from tests.test_sandbox_webhooks import Receiver

PHONE = "1000001"
TOKEN = "good-token"
SECRET = "signals-test-secret"
RECIPIENT = "584141234567"


@pytest.fixture(scope="module")
def receiver() -> Receiver:
    """One webhook receiver for the module."""
    endpoint = Receiver()
    yield endpoint
    endpoint.close()


@pytest.fixture(scope="module")
def sandbox(receiver: Receiver) -> SandboxHandle:
    """One sandbox for the module, posting its notifications to the receiver (no status webhooks planned)."""
    with start_sandbox(
        tokens={PHONE: TOKEN}, default_mps=10_000, webhook_url=receiver.url, app_secret=SECRET, delivered_share=0.0
    ) as handle:
        yield handle


@pytest.fixture(autouse=True)
def clean(sandbox: SandboxHandle, receiver: Receiver) -> None:
    """Start every test from the startup options with nothing received."""
    sandbox.reset(config=True)
    receiver.clear()


def send(sandbox: SandboxHandle, to: str = RECIPIENT, name: str = "promo", language: str = "es") -> requests.Response:
    """POST one template message."""
    body = {
        "messaging_product": "whatsapp",
        "to": to,
        "type": "template",
        "template": {"name": name, "language": {"code": language}},
    }
    return requests.post(sandbox.message_url(PHONE), json=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)


def test_held_recipients_and_templates_answer_with_their_message_status(sandbox: SandboxHandle) -> None:
    sandbox.configure(
        held_recipients={"+584140000001": "held_for_quality_assessment"}, held_templates={"nueva": "paused"}
    )
    statuses = [
        send(sandbox, to=to, name=name).json()["messages"][0]["message_status"]
        for to, name in ((RECIPIENT, "promo"), ("584140000001", "promo"), (RECIPIENT, "nueva"))
    ]
    assert statuses == ["accepted", "held_for_quality_assessment", "paused"]
    assert len(sandbox.messages()) == 3, "a held message is accepted all the same"
    with pytest.raises(ValueError, match="held_templates"):
        sandbox.configure(held_templates={"nueva": "on_hold"})


def test_template_status_notifications_are_signed_shaped_like_metas_and_block_sends(
    sandbox: SandboxHandle, receiver: Receiver
) -> None:
    started = int(time.time())
    posted = sandbox.signal("template-status", template="promo", language="es", event="PAUSED", reason="NONE")
    assert posted["http_status"] == 200
    [received] = receiver.accepted()
    digest = hmac.new(SECRET.encode(), received.body, hashlib.sha256).hexdigest()
    assert received.headers["x-hub-signature-256"] == f"sha256={digest}"
    [entry] = received.payload()["entry"]
    assert abs(entry["time"] - started) < 5
    [change] = entry["changes"]
    assert change["field"] == "message_template_status_update"
    value = change["value"]
    assert (value["event"], value["message_template_name"], value["message_template_language"]) == (
        "PAUSED",
        "promo",
        "es",
    )
    assert isinstance(value["message_template_id"], int) and value["other_info"]["title"] == "FIRST_PAUSE"

    paused = send(sandbox)
    assert paused.status_code == 400 and paused.json()["error"]["code"] == 132015
    assert send(sandbox, language="en_US").status_code == 200, "only that language is paused"
    sandbox.signal("template-status", template="promo", language="es", event="DISABLED")
    assert send(sandbox).json()["error"]["code"] == 132016
    sandbox.signal("template-status", template="promo", language="es", event="APPROVED")
    assert send(sandbox).status_code == 200
    assert sandbox.config()["template_statuses"] == {}


def test_quality_and_account_notifications_name_the_number_as_meta_does(
    sandbox: SandboxHandle, receiver: Receiver
) -> None:
    sandbox.configure(display_phone_numbers={PHONE: "15550001111"})
    sandbox.signal("quality", phone_number_id=PHONE, event="flagged", current_limit="TIER_10K", timestamp=1_798_000_000)
    sandbox.signal("account-alert", alert_type="OBA_APPROVED", alert_severity="INFORMATIONAL")
    sandbox.signal(
        "account-update",
        phone_number_id=PHONE,
        event="ACCOUNT_VIOLATION",
        detail={"violation_info": {"violation_type": "SPAM"}},
    )
    quality, alert, update = (r.payload()["entry"][0] for r in receiver.accepted())
    assert quality["time"] == 1_798_000_000
    assert quality["changes"][0] == {
        "field": "phone_number_quality_update",
        "value": {"display_phone_number": "15550001111", "event": "FLAGGED", "current_limit": "TIER_10K"},
    }
    assert alert["changes"][0]["field"] == "account_alerts"
    assert alert["changes"][0]["value"]["entity_id"] == alert["id"]
    assert alert["changes"][0]["value"]["alert_info"]["alert_type"] == "OBA_APPROVED"
    assert update["changes"][0]["value"] == {
        "event": "ACCOUNT_VIOLATION",
        "phone_number": "15550001111",
        "violation_info": {"violation_type": "SPAM"},
    }


def test_bad_signal_requests_say_what_is_wrong(sandbox: SandboxHandle) -> None:
    url = f"{sandbox.url}/_sandbox/signals"
    assert requests.post(f"{url}/template-status", json={"event": "PAUSED"}, timeout=5).json() == {
        "error": "template is required"
    }
    assert requests.post(f"{url}/weather", json={}, timeout=5).status_code == 404
    assert (
        requests.post(
            f"{url}/quality", json={"phone_number_id": PHONE, "event": "FLAGGED", "timestamp": -1}, timeout=5
        ).status_code
        == 400
    )
    sandbox.configure(webhook_url="", app_secret="")
    unset = requests.post(f"{url}/quality", json={"phone_number_id": PHONE, "event": "FLAGGED"}, timeout=5)
    assert (
        unset.status_code == 409
        and unset.json()["body"]["entry"][0]["changes"][0]["field"] == "phone_number_quality_update"
    )
