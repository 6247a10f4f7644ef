"""A worker killed while WhatsApp holds its requests: what WhatsApp reports settles them, in any order.

The sandbox answers every request only after 1.5–2 s, so when the worker is SIGKILLed hundreds of its
requests have been accepted by WhatsApp but not answered. WhatsApp's sent / delivered / read (or failed)
notifications for them arrive before the kill, between the kill and the sweep, or after the sweep; in
every case a message WhatsApp has reported on ends sent (or failed), never unknown, and nobody gets the
message twice.
"""

from __future__ import annotations

import signal
from collections import Counter

import pytest

from tests.conftest import APP_SECRET, SENDERS, make_csv, status, store_rows, upload, wait_for, wait_status
from tests.test_resilience import assert_each_recipient_at_most_once

pytestmark = pytest.mark.usefixtures("clean")

PNID = SENDERS["medio"][0]  # 150 msg/s
TOTAL = 900
FAILING = {f"58{4141000000 + i}": 131026 for i in range(0, 300, 30)}  # ten recipients WhatsApp fails later

# First status this long after WhatsApp accepts a message: before the kill, after it but before the
# sweeper finds the worker dead (about 4–8 s), or well after the sweep.
ORDERINGS = {
    "before_the_crash": (20, 60),
    "between_crash_and_sweep": (2_500, 3_000),
    "after_the_sweep": (14_000, 15_000),
}


@pytest.mark.parametrize("ordering", list(ORDERINGS))
def test_a_message_whatsapp_reported_on_is_never_unknown(make_stack, sandbox, ordering):
    stack = make_stack()
    sandbox.configure(
        latency_min_ms=1_500,
        latency_max_ms=2_000,
        webhook_url=stack.api.url + "/webhooks/whatsapp",
        app_secret=APP_SECRET,
        webhook_delay_ms=list(ORDERINGS[ordering]),
        delivered_share=1.0,
        read_share=1.0,
        failed_statuses=FAILING,
    )
    stack.start_worker("victim")
    assert upload(stack.api, make_csv(TOTAL), title="Evidencia", buzon="medio").status_code == 201
    wait_for(
        lambda: sandbox.stats()["by_phone_number_id"].get(PNID, {}).get("accepted", 0) >= 250,
        30,
        message="WhatsApp holding a few hundred requests",
    )
    stack.workers["victim"].stop(sig=signal.SIGKILL)
    accepted_at_kill = sandbox.stats()["by_phone_number_id"][PNID]["accepted"]
    stack.start_worker("rescuer")

    wait_status(stack.api, "evidencia", {"completed"}, timeout=180)
    sandbox.flush_webhooks(timeout=60)
    reported = {m["to"] for m in sandbox.messages(phone_number_id=PNID)}

    def settled_by_notifications():
        # The API has acknowledged every notification; the workers apply them a moment later.
        rows = store_rows("evidencia")
        failed = {r[0] for r in rows if r[1] == "failed"}
        return failed == set(FAILING) & reported and all(r[1] != "unknown" for r in rows if r[0] in reported) and rows

    try:
        rows = wait_for(settled_by_notifications, 30, message="every reported message settled as WhatsApp said")
    except AssertionError as exc:
        rows = store_rows("evidencia")
        left = Counter(r[1] for r in rows if r[0] in reported and r[1] == "unknown")
        wrong = {r[0]: r[1] for r in rows if r[0] in FAILING and r[0] in reported and r[1] != "failed"}
        raise AssertionError(f"{exc}: reported but unknown {dict(left)}, failures not failed {wrong}") from None
    by_status = Counter(r[1] for r in rows)
    per_phone = assert_each_recipient_at_most_once(sandbox, PNID)
    assert set(per_phone) == reported and len(reported) == TOTAL - by_status["unknown"]
    failed = {r[0] for r in rows if r[1] == "failed"}
    assert by_status["sent"] == len(reported) - len(failed)
    # Only requests that never reached WhatsApp can be unknown: at most those in transit at the kill.
    assert by_status["unknown"] <= 50, (by_status, accepted_at_kill)
    shown = wait_for(
        lambda: (s := status(stack.api, "evidencia"))["unknown"] == by_status["unknown"] and s,
        15,
        message="the counters to follow the notifications",
    )
    assert (shown["sent"], shown["failed"], shown["unknown"]) == (
        by_status["sent"],
        by_status["failed"],
        by_status["unknown"],
    )
