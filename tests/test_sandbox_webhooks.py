"""Tests of the sandbox's status webhooks, received by a small HTTP endpoint running in a thread."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from sandbox.process import SandboxHandle, start_sandbox
from sandbox.settings import SandboxSettings, settings_from_sources

PHONE = "1000001"
TOKEN = "good-token"
OTHER_PHONE = "1000002"
OTHER_TOKEN = "other-token"
SECRET = "webhook-test-secret"
STATUS_KEYS = {"id", "status", "timestamp", "recipient_id"}


@dataclass
class Received:
    """One POST the receiver got: lower-cased headers, the raw body, and the HTTP status it answered."""

    headers: dict[str, str]
    body: bytes
    answered: int

    def payload(self) -> dict[str, Any]:
        """Return the parsed JSON body."""
        return json.loads(self.body)

    def statuses(self) -> list[dict[str, Any]]:
        """Return every status of the body, entry by entry."""
        return [
            status
            for entry in self.payload()["entry"]
            for change in entry["changes"]
            for status in change["value"]["statuses"]
        ]


class Receiver:
    """A webhook endpoint on a free loopback port that records every request before answering it."""

    def __init__(self) -> None:
        """Start serving in a daemon thread."""
        self.requests: list[Received] = []
        # Answer this many of the next POSTs with 500, as a receiver in trouble would.
        self.fail_next = 0
        # Hold every answer this long, as a stuck receiver would.
        self.hang_s = 0.0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            """Records the request, then answers 200 or an injected 500."""

            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                """Record one notification and answer it."""
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    status = 200
                    if receiver.fail_next > 0:
                        receiver.fail_next -= 1
                        status = 500
                    receiver.requests.append(Received({k.lower(): v for k, v in self.headers.items()}, body, status))
                if receiver.hang_s:
                    time.sleep(receiver.hang_s)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                """Keep the test output quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/whatsapp"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def clear(self) -> None:
        """Forget what was received and stop injecting failures."""
        with self._lock:
            self.requests.clear()
            self.fail_next = 0
            self.hang_s = 0.0

    def accepted(self) -> list[Received]:
        """Return the requests answered 200, in arrival order."""
        return [r for r in self.requests if r.answered == 200]

    def by_wamid(self) -> dict[str, list[str]]:
        """Return each wamid's statuses in the order they arrived (replays included)."""
        result: dict[str, list[str]] = {}
        for received in self.accepted():
            for status in received.statuses():
                result.setdefault(status["id"], []).append(status["status"])
        return result

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver() -> Receiver:
    """One webhook receiver for the module."""
    endpoint = Receiver()
    yield endpoint
    endpoint.close()


@pytest.fixture(scope="module")
def sandbox(receiver: Receiver) -> SandboxHandle:
    """One sandbox for the module, posting webhooks to the receiver; every message delivered and read."""
    with start_sandbox(
        tokens={PHONE: TOKEN, OTHER_PHONE: OTHER_TOKEN},
        default_mps=10_000,
        webhook_url=receiver.url,
        app_secret=SECRET,
        delivered_share=1.0,
        read_share=1.0,
    ) as handle:
        yield handle


@pytest.fixture(autouse=True)
def clean(request: pytest.FixtureRequest) -> None:
    """Start every test from the startup options with no webhook state and nothing received."""
    if "sandbox" in request.fixturenames:
        request.getfixturevalue("sandbox").reset(config=True)
        request.getfixturevalue("receiver").clear()


_http = requests.Session()


def send(
    sandbox: SandboxHandle,
    to: str = "584141234567",
    *,
    phone: str = PHONE,
    token: str = TOKEN,
    callback: str | None = None,
    text: bool = False,
) -> requests.Response:
    """POST one template (or text) message to the sandbox."""
    body: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to}
    if text:
        body.update(type="text", text={"body": "hola"})
    else:
        body.update(
            type="template",
            template={
                "name": "promo",
                "language": {"code": "es"},
                "components": [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}],
            },
        )
    if callback is not None:
        body["biz_opaque_callback_data"] = callback
    return _http.post(sandbox.message_url(phone), json=body, headers={"Authorization": f"Bearer {token}"}, timeout=5)


def send_many(sandbox: SandboxHandle, count: int, **options: Any) -> list[str]:
    """Send count messages to distinct recipients and return their wamids."""
    wamids = []
    for n in range(count):
        response = send(sandbox, f"5841400{n:05d}", **options)
        assert response.status_code == 200, response.text
        wamids.append(response.json()["messages"][0]["id"])
    return wamids


def closed_port() -> int:
    """Return a loopback port that was free a moment ago, so connecting to it is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def signature_ok(received: Received, secret: str = SECRET) -> bool:
    """Check X-Hub-Signature-256 over the raw body, the way a receiver must."""
    expected = "sha256=" + hmac.new(secret.encode(), received.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(received.headers.get("x-hub-signature-256", ""), expected)


def test_signature_and_payload_shape(sandbox: SandboxHandle, receiver: Receiver) -> None:
    """Every POST is signed over its raw bytes and has exactly Meta's shape, one entry per phone_number_id."""
    sandbox.configure(waba_id="waba-42", display_phone_numbers={PHONE: "+15550001111"})
    started = time.time()
    template_wamid = send(sandbox, "584141111111", callback="campaign-7:contact-9").json()["messages"][0]["id"]
    text_wamid = send(sandbox, "584142222222", phone=OTHER_PHONE, token=OTHER_TOKEN, text=True).json()["messages"][0][
        "id"
    ]
    sandbox.flush_webhooks()

    assert receiver.requests and all(r.answered == 200 for r in receiver.requests)
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for received in receiver.requests:
        assert signature_ok(received)
        assert not signature_ok(received, "another-secret")
        assert received.headers["content-type"] == "application/json"
        payload = received.payload()
        assert set(payload) == {"object", "entry"} and payload["object"] == "whatsapp_business_account"
        numbers = []
        for entry in payload["entry"]:
            assert set(entry) == {"id", "changes"} and entry["id"] == "waba-42"
            [change] = entry["changes"]
            assert set(change) == {"field", "value"} and change["field"] == "messages"
            value = change["value"]
            assert set(value) == {"messaging_product", "metadata", "statuses"}
            assert value["messaging_product"] == "whatsapp"
            number = value["metadata"]["phone_number_id"]
            numbers.append(number)
            display = "15550001111" if number == PHONE else OTHER_PHONE
            assert value["metadata"] == {"display_phone_number": display, "phone_number_id": number}
            for status in value["statuses"]:
                assert status["timestamp"].isdigit() and abs(int(status["timestamp"]) - started) < 30
                seen[(status["id"], status["status"])] = status
        assert len(numbers) == len(set(numbers)), "statuses of one number must share one entry"

    assert set(seen) == {(w, s) for w in (template_wamid, text_wamid) for s in ("sent", "delivered", "read")}
    sent = seen[(template_wamid, "sent")]
    assert set(sent) == STATUS_KEYS | {"conversation", "pricing", "biz_opaque_callback_data"}
    assert sent["recipient_id"] == "584141111111"
    assert sent["biz_opaque_callback_data"] == "campaign-7:contact-9"
    conversation = sent["conversation"]
    assert len(conversation["id"]) == 32 and conversation["origin"] == {"type": "marketing"}
    assert int(conversation["expiration_timestamp"]) == int(sent["timestamp"]) + 86400
    assert sent["pricing"] == {"billable": True, "pricing_model": "PMP", "category": "marketing", "type": "regular"}
    delivered = seen[(template_wamid, "delivered")]
    assert set(delivered) == STATUS_KEYS | {"conversation", "pricing", "biz_opaque_callback_data"}
    assert delivered["conversation"] == {"id": conversation["id"], "origin": {"type": "marketing"}}
    assert set(seen[(template_wamid, "read")]) == STATUS_KEYS | {"biz_opaque_callback_data"}
    # No callback data sent, none echoed; a text message is a service conversation.
    assert set(seen[(text_wamid, "read")]) == STATUS_KEYS
    assert seen[(text_wamid, "sent")]["pricing"] == {
        "billable": False,
        "pricing_model": "PMP",
        "category": "service",
        "type": "free_customer_service",
    }


def test_every_accepted_message_is_sent_delivered_read_in_order(sandbox: SandboxHandle, receiver: Receiver) -> None:
    """Accepted messages, and only those, get sent, delivered and read in that order; inspection agrees."""
    wamids = send_many(sandbox, 20) + send_many(sandbox, 20, phone=OTHER_PHONE, token=OTHER_TOKEN)
    assert send(sandbox, token="wrong").status_code == 401
    assert send(sandbox, "not-a-number").status_code == 400
    result = sandbox.flush_webhooks()
    assert result["pending"] == 0

    assert [m["wamid"] for m in sandbox.messages()] == wamids
    arrived = receiver.by_wamid()
    assert set(arrived) == set(wamids)
    assert all(arrived[w] == ["sent", "delivered", "read"] for w in wamids)
    for received in receiver.requests:
        by_wamid: dict[str, list[int]] = {}
        for status in received.statuses():
            by_wamid.setdefault(status["id"], []).append(int(status["timestamp"]))
        assert all(len(stamps) == 1 for stamps in by_wamid.values())

    inspected = sandbox.webhooks()
    counters = inspected["counters"]
    assert counters["statuses"] == {"sent": 40, "delivered": 40, "read": 40, "failed": 0}
    assert counters["posts"] == len(receiver.requests) and counters["retries"] == counters["failures"] == 0
    assert (inspected["enabled"], inspected["pending"], inspected["total"]) == (True, 0, 40)
    for item, wamid in zip(inspected["messages"], wamids, strict=True):
        assert item["wamid"] == wamid and item["planned"] == ["sent", "delivered", "read"]
        assert [(s["order"], s["status"], s["duplicate"], s["dropped"]) for s in item["statuses"]] == [
            (1, "sent", False, False),
            (2, "delivered", False, False),
            (3, "read", False, False),
        ]
        stamps = [int(s["timestamp"]) for s in item["statuses"]]
        assert stamps == sorted(stamps)


def test_default_shares(sandbox: SandboxHandle, receiver: Receiver) -> None:
    """With the default 0.95 delivered and 0.6 read, about that many statuses come; every message gets sent."""
    defaults = SandboxSettings()
    assert (defaults.delivered_share, defaults.read_share) == (0.95, 0.6)
    sandbox.configure(delivered_share=defaults.delivered_share, read_share=defaults.read_share)
    wamids = send_many(sandbox, 300)
    sandbox.flush_webhooks()
    arrived = receiver.by_wamid()
    assert set(arrived) == set(wamids)
    kinds = Counter(status for statuses in arrived.values() for status in statuses)
    assert kinds["sent"] == 300
    # Five standard deviations either side: such bounds fail about once in a million runs.
    assert 265 <= kinds["delivered"] <= 300
    assert 0.45 <= kinds["read"] / kinds["delivered"] <= 0.75
    assert all(s in (["sent"], ["sent", "delivered"], ["sent", "delivered", "read"]) for s in arrived.values())

    receiver.clear()
    sandbox.reset()
    sandbox.configure(delivered_share=0.0)
    wamids = send_many(sandbox, 10)
    sandbox.flush_webhooks()
    assert receiver.by_wamid() == {w: ["sent"] for w in wamids}


def test_failed_statuses(sandbox: SandboxHandle, receiver: Receiver) -> None:
    """A failed_statuses recipient is accepted with a wamid, then gets sent and failed with its code, never read."""
    sandbox.configure(failed_statuses={"+584140000009": 131026, "584140000008": 131049})
    undeliverable = send(sandbox, "584140000009", callback="c-9")
    ecosystem = send(sandbox, "+584140000008")
    healthy = send(sandbox, "584140000007")
    assert all(r.status_code == 200 for r in (undeliverable, ecosystem, healthy))
    wamids = [r.json()["messages"][0]["id"] for r in (undeliverable, ecosystem, healthy)]
    sandbox.flush_webhooks()

    arrived = receiver.by_wamid()
    assert arrived == {
        wamids[0]: ["sent", "failed"],
        wamids[1]: ["sent", "failed"],
        wamids[2]: ["sent", "delivered", "read"],
    }
    failed = {s["id"]: s for r in receiver.requests for s in r.statuses() if s["status"] == "failed"}
    for wamid, code in ((wamids[0], 131026), (wamids[1], 131049)):
        status = failed[wamid]
        assert "conversation" not in status and "pricing" not in status
        [error] = status["errors"]
        assert set(error) == {"code", "title", "message", "error_data"} and error["code"] == code
        assert error["title"] and error["message"] and error["error_data"]["details"]
    assert failed[wamids[0]]["biz_opaque_callback_data"] == "c-9"
    assert failed[wamids[0]]["errors"][0]["title"] == "Message undeliverable"

    counters = sandbox.webhooks()["counters"]["statuses"]
    assert counters == {"sent": 3, "delivered": 1, "read": 1, "failed": 2}
    assert sandbox.webhooks(wamid=wamids[1])["messages"][0]["failure_code"] == 131049


def test_duplicates_replay_identical_posts(sandbox: SandboxHandle, receiver: Receiver) -> None:
    """With duplicate_share 1 every notification is POSTed twice, same bytes and signature; inspection marks replays."""
    sandbox.configure(duplicate_share=1.0)
    wamids = send_many(sandbox, 10)
    sandbox.flush_webhooks()

    copies = Counter((r.body, r.headers["x-hub-signature-256"]) for r in receiver.requests)
    assert copies and set(copies.values()) == {2}
    arrived = receiver.by_wamid()
    assert all(Counter(arrived[w]) == {"sent": 2, "delivered": 2, "read": 2} for w in wamids)

    inspected = sandbox.webhooks()
    counters = inspected["counters"]
    assert counters["statuses"] == {"sent": 10, "delivered": 10, "read": 10, "failed": 0}
    assert counters["duplicates"] == 30
    assert counters["duplicate_posts"] * 2 == counters["posts"] == len(receiver.requests)
    for item in inspected["messages"]:
        flags = Counter((s["status"], s["duplicate"]) for s in item["statuses"])
        assert flags == {(kind, dup): 1 for kind in ("sent", "delivered", "read") for dup in (False, True)}
        originals = [s["status"] for s in item["statuses"] if not s["duplicate"]]
        assert originals == ["sent", "delivered", "read"]


def test_out_of_order(sandbox: SandboxHandle, receiver: Receiver) -> None:
    """With out_of_order_share 1 no message's statuses arrive in true order, yet their timestamps keep it."""
    sandbox.configure(out_of_order_share=1.0)
    wamids = send_many(sandbox, 20)
    sandbox.flush_webhooks()
    arrived = receiver.by_wamid()
    for wamid in wamids:
        assert sorted(arrived[wamid]) == ["delivered", "read", "sent"]
        assert arrived[wamid] != ["sent", "delivered", "read"]
    stamps: dict[tuple[str, str], int] = {
        (s["id"], s["status"]): int(s["timestamp"]) for r in receiver.requests for s in r.statuses()
    }
    for wamid in wamids:
        assert stamps[(wamid, "sent")] <= stamps[(wamid, "delivered")] <= stamps[(wamid, "read")]
    inspected = sandbox.webhooks()
    assert inspected["counters"]["out_of_order"] == 20
    assert all(m["out_of_order"] for m in inspected["messages"])

    # With two statuses there is one wrong order: delivered before sent.
    receiver.clear()
    sandbox.reset()
    sandbox.configure(read_share=0.0)
    wamids = send_many(sandbox, 5)
    sandbox.flush_webhooks()
    assert receiver.by_wamid() == {w: ["delivered", "sent"] for w in wamids}


def test_skip_delivered(sandbox: SandboxHandle, receiver: Receiver) -> None:
    """With skip_delivered_share 1 read messages never get a delivered status."""
    sandbox.configure(skip_delivered_share=1.0)
    wamids = send_many(sandbox, 8)
    sandbox.flush_webhooks()
    assert receiver.by_wamid() == {w: ["sent", "read"] for w in wamids}
    assert sandbox.webhooks()["counters"]["skipped_delivered"] == 8


def test_batches_never_exceed_max(sandbox: SandboxHandle, receiver: Receiver) -> None:
    """Statuses are grouped into POSTs of at most webhook_batch_max, whichever number they belong to."""
    sandbox.configure(webhook_batch_max=7)
    send_many(sandbox, 15)
    send_many(sandbox, 15, phone=OTHER_PHONE, token=OTHER_TOKEN)
    sandbox.flush_webhooks()
    sizes = [len(r.statuses()) for r in receiver.requests]
    assert sum(sizes) == 90
    assert max(sizes) == 7
    assert sandbox.webhooks()["counters"]["largest_batch"] == 7


def test_batching_and_delays_in_real_time(sandbox: SandboxHandle, receiver: Receiver) -> None:
    """Without a flush, statuses come after the configured delays, grouped into few POSTs, still in order."""
    sandbox.configure(webhook_delay_ms="60-80", webhook_batch_ms=200)
    accepted_at = time.monotonic()
    wamids = send_many(sandbox, 20)
    first_arrival = None
    deadline = time.monotonic() + 5
    while sum(len(r.statuses()) for r in receiver.requests) < 60 and time.monotonic() < deadline:
        if first_arrival is None and receiver.requests:
            first_arrival = time.monotonic()
        time.sleep(0.005)
    assert first_arrival is not None and first_arrival - accepted_at >= 0.06
    assert receiver.by_wamid() == {w: ["sent", "delivered", "read"] for w in wamids}
    # Each round of 20 statuses falls due within a few batch windows, so POSTs carry several statuses each;
    # the bound leaves room for a slow machine spreading the sends over more windows.
    assert len(receiver.requests) <= 30
    assert max(len(r.statuses()) for r in receiver.requests) > 1
    # The receiver has the last POST before the sandbox has read its answer: then nothing is left pending.
    settle_by = time.monotonic() + 5
    while sandbox.webhooks()["pending"] and time.monotonic() < settle_by:
        time.sleep(0.02)
    assert sandbox.webhooks()["pending"] == 0


def test_receiver_errors_cause_retries(sandbox: SandboxHandle, receiver: Receiver) -> None:
    """A 500 answer is retried with the identical body until it is accepted."""
    sandbox.configure(delivered_share=0.0)
    receiver.fail_next = 2
    wamids = send_many(sandbox, 3)
    sandbox.flush_webhooks()
    assert [r.answered for r in receiver.requests] == [500, 500, 200]
    assert len({(r.body, r.headers["x-hub-signature-256"]) for r in receiver.requests}) == 1
    assert receiver.by_wamid() == {w: ["sent"] for w in wamids}
    counters = sandbox.webhooks()["counters"]
    assert (counters["attempts"], counters["retries"], counters["posts"], counters["failures"]) == (3, 2, 1, 0)
    assert counters["last_error"] == "HTTP 500" and counters["statuses"]["sent"] == 3


def test_receiver_that_keeps_failing_is_given_up(sandbox: SandboxHandle, receiver: Receiver) -> None:
    """After webhook_retries retries a POST is dropped and counted; inspection shows its statuses as dropped."""
    sandbox.configure(delivered_share=0.0, webhook_retries=1)
    receiver.fail_next = 1000
    wamids = send_many(sandbox, 2)
    sandbox.flush_webhooks()
    assert len(receiver.requests) == 2
    inspected = sandbox.webhooks()
    counters = inspected["counters"]
    assert (counters["retries"], counters["failures"], counters["dropped"], counters["posts"]) == (1, 1, 2, 0)
    assert counters["statuses"]["sent"] == 0
    for item, wamid in zip(inspected["messages"], wamids, strict=True):
        assert item["wamid"] == wamid
        assert [(s["status"], s["dropped"]) for s in item["statuses"]] == [("sent", True)]


def test_unreachable_receiver(sandbox: SandboxHandle) -> None:
    """A connection refused counts as a failed attempt and is retried like an error answer."""
    sandbox.configure(webhook_url=f"http://127.0.0.1:{closed_port()}/hook", webhook_retries=2, delivered_share=0.0)
    send_many(sandbox, 1)
    sandbox.flush_webhooks()
    counters = sandbox.webhooks()["counters"]
    assert (counters["attempts"], counters["retries"], counters["failures"], counters["dropped"]) == (3, 2, 1, 1)
    assert "Connect" in counters["last_error"]


def test_inspection_filter_and_paging(sandbox: SandboxHandle) -> None:
    """GET /_sandbox/webhooks pages by message index like /_sandbox/messages and filters by wamid."""
    wamids = send_many(sandbox, 5)
    sandbox.flush_webhooks()
    [one] = sandbox.webhooks(wamid=wamids[3])["messages"]
    assert (one["wamid"], one["index"]) == (wamids[3], 3)
    assert sandbox.webhooks(wamid="wamid.unknown")["messages"] == []

    page = requests.get(f"{sandbox.url}/_sandbox/webhooks", params={"limit": 2}, timeout=5).json()
    assert [m["wamid"] for m in page["messages"]] == wamids[:2]
    assert (page["total"], page["next_since"]) == (5, 2)
    page = requests.get(f"{sandbox.url}/_sandbox/webhooks", params={"since": 2, "limit": 2}, timeout=5).json()
    assert [m["wamid"] for m in page["messages"]] == wamids[2:4]
    assert [m["wamid"] for m in sandbox.webhooks(page_size=2)["messages"]] == wamids
    bad = requests.get(f"{sandbox.url}/_sandbox/webhooks", params={"limit": 0}, timeout=5)
    assert bad.status_code == 400


def test_reset_clears_state_and_pending(sandbox: SandboxHandle, receiver: Receiver) -> None:
    """Reset forgets posted statuses and counters and cancels what was still planned."""
    send_many(sandbox, 2)
    sandbox.flush_webhooks()
    sandbox.configure(webhook_delay_ms="3000-4000")
    send_many(sandbox, 5)
    assert sandbox.webhooks()["pending"] == 15
    sandbox.reset()
    receiver.clear()
    inspected = sandbox.webhooks()
    assert (inspected["pending"], inspected["total"], inspected["messages"]) == (0, 0, [])
    assert inspected["counters"]["posts"] == 0 and sum(inspected["counters"]["statuses"].values()) == 0
    sandbox.flush_webhooks(timeout=1)
    assert receiver.requests == []


def test_switched_off(sandbox: SandboxHandle, receiver: Receiver) -> None:
    """With webhook_url empty (the default) nothing is planned or posted."""
    assert SandboxSettings().webhook_url == ""
    sandbox.configure(webhook_url="")
    send_many(sandbox, 3)
    assert sandbox.flush_webhooks()["enabled"] is False
    inspected = sandbox.webhooks()
    assert (inspected["enabled"], inspected["total"], inspected["pending"]) == (False, 0, 0)
    assert receiver.requests == []


def test_options_validation_and_roundtrip(sandbox: SandboxHandle) -> None:
    """Webhook options are checked like the others and read back as set."""
    config = sandbox.configure(webhook_delay_ms="10-20", webhook_batch_max=1000, failed_statuses={"+58414": 131026})
    assert config["webhook_delay_ms"] == [10, 20] and config["failed_statuses"] == {"58414": 131026}
    assert sandbox.configure(webhook_delay_ms=[5, 5])["webhook_delay_ms"] == [5, 5]
    assert sandbox.configure(webhook_delay_ms=7)["webhook_delay_ms"] == [7, 7]
    for bad in (
        {"webhook_url": "ftp://127.0.0.1/x"},
        {"webhook_url": 5},
        {"app_secret": ""},
        {"delivered_share": 1.5},
        {"read_share": -0.1},
        {"duplicate_share": "half"},
        {"webhook_batch_max": 1001},
        {"webhook_batch_max": 0},
        {"webhook_batch_ms": -1},
        {"webhook_delay_ms": "500-50"},
        {"webhook_delay_ms": [1, 2, 3]},
        {"webhook_delay_ms": "fast"},
        {"failed_statuses": {"abc": 131026}},
        {"failed_statuses": {"58414": 0}},
        {"webhook_concurrency": 0},
        {"webhook_timeout_s": 0},
        {"waba_id": ""},
    ):
        with pytest.raises(ValueError):
            sandbox.configure(**bad)
    # Switching off needs no secret; switching on needs one, given together or earlier.
    sandbox.configure(webhook_url="", app_secret="")
    with pytest.raises(ValueError, match="app_secret"):
        sandbox.configure(webhook_url="http://127.0.0.1:9/hook")
    assert sandbox.configure(webhook_url="http://127.0.0.1:9/hook", app_secret="s")["webhook_url"]


def test_webhook_settings_from_environment_and_flags() -> None:
    """Every webhook option can be set by environment variable or flag."""
    environ = {
        "SANDBOX_WEBHOOK_URL": "http://127.0.0.1:5000/webhooks/whatsapp",
        "SANDBOX_APP_SECRET": "shh",
        "SANDBOX_WEBHOOK_DELAY_MS": "20-40",
        "SANDBOX_FAILED_STATUSES": "+584140000001:131026,584140000002:131049",
        "SANDBOX_DUPLICATE_SHARE": "0.1",
    }
    settings = settings_from_sources(
        [
            "--delivered-share",
            "0.9",
            "--read-share",
            "0.5",
            "--out-of-order-share",
            "0.2",
            "--skip-delivered-share",
            "0.3",
            "--webhook-batch-max",
            "50",
            "--webhook-batch-ms",
            "20",
            "--waba-id",
            "w-1",
            "--display-phone-numbers",
            "111:15550001111",
            "--webhook-concurrency",
            "2",
            "--webhook-retries",
            "5",
            "--webhook-timeout-s",
            "2.5",
        ],
        environ,
    )
    assert settings == SandboxSettings(
        webhook_url="http://127.0.0.1:5000/webhooks/whatsapp",
        app_secret="shh",
        webhook_delay_ms=(20, 40),
        failed_statuses={"584140000001": 131026, "584140000002": 131049},
        duplicate_share=0.1,
        delivered_share=0.9,
        read_share=0.5,
        out_of_order_share=0.2,
        skip_delivered_share=0.3,
        webhook_batch_max=50,
        webhook_batch_ms=20,
        waba_id="w-1",
        display_phone_numbers={"111": "15550001111"},
        webhook_concurrency=2,
        webhook_retries=5,
        webhook_timeout_s=2.5,
    )
    with pytest.raises(ValueError, match="app_secret"):
        settings_from_sources([], {"SANDBOX_WEBHOOK_URL": "http://127.0.0.1:5000/hook"})
    with pytest.raises(ValueError, match="SANDBOX_WEBHOOK_DELAY_MS"):
        settings_from_sources([], {"SANDBOX_WEBHOOK_DELAY_MS": "slow"})


def test_stop_is_fast_with_work_pending_and_in_flight() -> None:
    """Stopping cancels planned statuses and a POST stuck at the receiver, and exits cleanly at once."""
    stuck = Receiver()
    stuck.hang_s = 5.0
    try:
        handle = start_sandbox(
            tokens={PHONE: TOKEN},
            webhook_url=stuck.url,
            app_secret=SECRET,
            delivered_share=0.0,
            webhook_delay_ms=0,
            webhook_batch_ms=0,
        )
        send_many(handle, 1)
        deadline = time.monotonic() + 5
        while not stuck.requests and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stuck.requests, "the first POST should be in flight"
        handle.configure(webhook_delay_ms="5000-6000")
        send_many(handle, 50)
        started = time.monotonic()
        handle.process.terminate()
        assert handle.process.wait(5) == 0
        assert time.monotonic() - started < 2.5
        assert "Traceback" not in handle.output()
        handle.stop()
    finally:
        stuck.close()


def test_a_portfolio_limit_refuses_new_recipients_past_it_and_a_raise_is_notified_signed(
    sandbox: SandboxHandle, receiver: Receiver
) -> None:
    # Both numbers share one portfolio of three unique recipients per moving 24 h.
    sandbox.configure(
        portfolios={"pf": {"limit": 3, "numbers": [PHONE, OTHER_PHONE], "waba_id": "waba-pf"}},
        delivered_share=0.0,
        read_share=0.0,
    )
    for to in ("584141000001", "584141000002"):
        assert send(sandbox, to).status_code == 200
    assert send(sandbox, "584141000003", phone=OTHER_PHONE, token=OTHER_TOKEN).status_code == 200
    assert send(sandbox, "584141000001").status_code == 200  # counted already: no new place needed
    refused = send(sandbox, "584141000004", phone=OTHER_PHONE, token=OTHER_TOKEN)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == 131048
    assert sandbox.portfolios() == {"pf": {"limit": 3, "unique_recipients": 3, "refused": 1}}

    receiver.requests.clear()
    answer = sandbox.change_portfolio_limit("pf", 2000)
    assert answer["webhook_status"] == 200
    [posted] = [r for r in receiver.requests if b"business_capability_update" in r.body]
    digest = hmac.new(SECRET.encode(), posted.body, hashlib.sha256).hexdigest()
    assert posted.headers["x-hub-signature-256"] == f"sha256={digest}"
    [entry] = posted.payload()["entry"]
    assert entry["id"] == "waba-pf"
    assert entry["changes"][0]["value"]["max_daily_conversations_per_business"] == 2000
    assert send(sandbox, "584141000004", phone=OTHER_PHONE, token=OTHER_TOKEN).status_code == 200
    with pytest.raises(ValueError, match="two portfolios"):
        sandbox.configure(portfolios={"a": {"limit": 250, "numbers": [PHONE]}, "b": {"limit": 250, "numbers": [PHONE]}})


def _changes(received: Received) -> list[dict[str, Any]]:
    """The changes of one notification, entry by entry."""
    return [change for entry in received.payload()["entry"] for change in entry["changes"]]


def test_a_recipient_who_opts_out_is_refused_131050_and_a_user_preferences_notification_is_posted(
    sandbox: SandboxHandle, receiver: Receiver
) -> None:
    """Opting out refuses marketing templates from that number only, and posts Meta's user_preferences change."""
    sandbox.configure(delivered_share=0.0)
    answer = sandbox.opt_out("584141234567", PHONE, timestamp=1_731_705_721)
    assert answer["webhook"] == {"posted": True, "status": 200}
    refused = send(sandbox, "584141234567")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == 131050
    assert send(sandbox, "584141234567", phone=OTHER_PHONE, token=OTHER_TOKEN).status_code == 200
    assert send(sandbox, "584141234567", text=True).status_code == 200  # only marketing templates are refused
    preference = next(r for r in receiver.requests if _changes(r)[0]["field"] == "user_preferences")
    assert signature_ok(preference)
    [change] = _changes(preference)
    assert change["value"]["metadata"]["phone_number_id"] == PHONE
    assert change["value"]["contacts"][0]["wa_id"] == "584141234567"
    assert change["value"]["user_preferences"] == [
        {
            "wa_id": "584141234567",
            "detail": "User requested to stop marketing messages",
            "category": "marketing_messages",
            "value": "stop",
            "timestamp": 1_731_705_721,
        }
    ]
    assert sandbox._admin("GET", "users") == {"opted_out": {"584141234567": [PHONE]}}

    receiver.clear()
    sandbox.opt_out("584141234567", PHONE, resume=True)
    assert send(sandbox, "584141234567").status_code == 200
    [resumed] = [r for r in receiver.requests if _changes(r)[0]["field"] == "user_preferences"]
    assert _changes(resumed)[0]["value"]["user_preferences"][0]["value"] == "resume"
    sandbox.opt_out("584141234567", PHONE, webhook=False)
    sandbox.reset()
    assert send(sandbox, "584141234567").status_code == 200  # a reset forgets every opt-out


def test_an_inbound_text_is_posted_as_a_messages_notification(sandbox: SandboxHandle, receiver: Receiver) -> None:
    answer = sandbox.inbound("584149876543", "BAJA", PHONE, timestamp=1_749_416_383, name="Ana")
    assert answer["webhook"]["status"] == 200 and answer["id"].startswith("wamid.")
    [received] = receiver.requests
    assert signature_ok(received)
    [change] = _changes(received)
    assert change["field"] == "messages"
    value = change["value"]
    assert value["contacts"] == [{"profile": {"name": "Ana"}, "wa_id": "584149876543"}]
    assert value["messages"] == [
        {
            "from": "584149876543",
            "id": answer["id"],
            "timestamp": "1749416383",
            "type": "text",
            "text": {"body": "BAJA"},
        }
    ]
    with pytest.raises(ValueError, match="phone_number_id"):
        sandbox.inbound("584149876543", "hola", "")
