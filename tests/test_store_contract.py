"""One contract for both store adapters: direct Postgres, and Supabase's client through a PostgREST endpoint."""

from __future__ import annotations

import psycopg
import pytest

from tasks.store.base import StoreError
from tasks.store.migrate import apply_migrations
from tasks.store.postgres import PostgresStore
from tasks.store.supabase import SupabaseStore
from tests.conftest import PG_ADMIN_URL, TEST_DB
from tests.support.postgrest import start_postgrest

# A syntactically valid JWT: the supabase client checks the key's shape, PostgREST here checks its presence.
DUMMY_KEY = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0."
    "c2lnbmF0dXJlLW5vdC1jaGVja2VkLWJ5LXRoZS10ZXN0LWVuZHBvaW50"
)


@pytest.fixture(scope="module")
def contract_db():
    """A database of its own, so emptying it never touches the senders other tests registered."""
    name = f"{TEST_DB}_contract"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN_URL.rpartition("/")[0] + f"/{name}"
    apply_migrations(url)
    yield url
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def postgrest(contract_db):
    """A PostgREST-compatible endpoint over the contract database."""
    with start_postgrest(contract_db) as handle:
        yield handle


@pytest.fixture(params=["postgres", "supabase"])
def store(request, contract_db, postgrest):
    """Each adapter in turn, over a database emptied for the test."""
    with psycopg.connect(contract_db, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE instancia_sofia.campaigns, instancia_sofia.leads_activos, "
            "instancia_sofia.instancias_inputs, instancia_sofia.api_keys, instancia_sofia.api_users, "
            "instancia_sofia.audit_log, instancia_sofia.template_statuses, instancia_sofia.whatsapp_signals, "
            "instancia_sofia.sender_numbers, instancia_sofia.suppressions, instancia_sofia.portfolios CASCADE"
        )
    s = PostgresStore(contract_db) if request.param == "postgres" else SupabaseStore(postgrest.url, DUMMY_KEY)
    s.upsert_sender("ventas", "111", "secret-token", 50)
    yield s
    s.close()


def _campaign(**overrides) -> dict:
    """A campaign definition as the API builds it."""
    return {
        "id": "promo",
        "title": "Promo",
        "template": "promo_enero",
        "language": "es",
        "buzon": "ventas",
        "batch_size": 2,
        "chunk_size": 1,
        **overrides,
    }


LEADS = [{"phone": f"58414000000{i}", "parameters": [f"Cliente {i}"]} for i in range(5)]


def test_senders_round_trip_and_listing_hides_tokens(store):
    sender = store.get_sender("ventas")
    assert (sender.phone_number_id, sender.access_token, sender.messages_per_second) == ("111", "secret-token", 50)
    assert "secret-token" not in repr(sender)
    store.upsert_sender("ventas", "222", "new-token")
    assert store.get_sender("ventas").phone_number_id == "222"
    assert store.get_sender("nadie") is None
    assert store.list_senders() == [
        {"buzon": "ventas", "phone_number_id": "222", "messages_per_second": None, "waba_id": None}
    ]


def test_a_sender_keeps_its_waba_id_and_a_campaign_its_template_plan(store):
    store.upsert_sender("ventas", "111", "secret-token", 50, "102290129340398")
    assert store.get_sender("ventas").waba_id == "102290129340398"
    assert store.list_senders()[0]["waba_id"] == "102290129340398"
    plan = {
        "header": {"type": "image", "value": None, "column": "encabezado", "filename": None, "filename_column": None},
        "buttons": [{"index": 0, "sub_type": "url", "value": "abc", "column": None}],
        "columns": ["encabezado"],
        "body_count": 1,
    }
    store.create_campaign(_campaign(template_plan=plan), LEADS[:1])
    store.create_campaign(_campaign(id="simple"), LEADS[:1])
    assert store.get_campaign("promo")["template_plan"] == plan
    assert store.get_campaign("simple")["template_plan"] is None
    # Registering the buzón again without the id forgets it (the command replaces the whole row).
    store.upsert_sender("ventas", "111", "secret-token", 50)
    assert store.get_sender("ventas").waba_id is None


def test_campaign_ids_are_unique_and_idempotency_keys_return_the_first(store):
    assert store.create_campaign(_campaign(idempotency_key="k"), LEADS) == {"id": "promo", "total": 5, "created": True}
    assert store.create_campaign(_campaign(idempotency_key="k"), LEADS[:1]) == {
        "id": "promo",
        "total": 5,
        "created": False,
    }
    assert store.create_campaign(_campaign(), LEADS[:2])["id"] == "promo-2"
    row = store.get_campaign("promo")
    assert (row["status"], row["total"], row["buzon"]) == ("queued", 5, "ventas")
    campaigns, total = store.list_campaigns(1, 0)
    assert total == 2 and [c["id"] for c in campaigns] == ["promo-2"]


def test_recipients_can_come_from_a_one_pass_stream_that_may_fail_half_way(store):
    def leads(fail_after: int | None = None):
        for i, lead in enumerate(LEADS):
            if i == fail_after:
                raise ValueError("row 4 is unreadable")
            yield lead

    with pytest.raises(ValueError, match="row 4"):
        store.create_campaign(_campaign(), leads(fail_after=3), lambda: {"rejected_rows": []})
    assert store.get_campaign("promo") is None and store.list_campaigns(10, 0)[1] == 0

    rejected = [{"fila": 7, "valor": "58***12", "motivo": "número demasiado corto"}]
    assert store.create_campaign(_campaign(), leads(), lambda: {"rejected_rows": rejected}) == {
        "id": "promo",
        "total": 5,
        "created": True,
    }
    row = store.get_campaign("promo")
    assert row["total"] == 5 and row["rejected_count"] == 1
    assert [m.phone for m in store.claim_messages("promo", 1, 10, "w1")] == [lead["phone"] for lead in LEADS]

    with pytest.raises(StoreError):
        store.create_campaign(_campaign(), iter([]))
    assert store.list_campaigns(10, 0)[1] == 1


def _many_leads(n: int):
    """n recipients with named parameters that need escaping in JSON (quotes, backslashes, accents)."""
    for i in range(n):
        yield {"phone": f"58414{i:07d}", "parameters": {"nombre": f'Ñandú "{i}" \\ {i % 7}'}}


def test_a_large_upload_is_numbered_in_file_order_across_blocks(store):
    assert store.create_campaign(_campaign(), _many_leads(12_001), lambda: {"rejected_rows": []}) == {
        "id": "promo",
        "total": 12_001,
        "created": True,
    }
    page = store.list_recipients("promo", None, 3, 11_998)
    assert [(r["seq"], r["phone"]) for r in page["recipients"]] == [
        (11_999, "584140011998"),
        (12_000, "584140011999"),
        (12_001, "584140012000"),
    ]
    claimed = store.claim_messages("promo", 5_000, 5_001, "w")
    assert [m.parameters for m in claimed] == [{"nombre": 'Ñandú "4999" \\ 1'}, {"nombre": 'Ñandú "5000" \\ 2'}]


def test_the_export_reads_every_recipient_in_keyset_pages(store):
    store.create_campaign(_campaign(), _many_leads(12), lambda: {"rejected_rows": []})
    claimed = store.claim_messages("promo", 1, 3, "w2")
    store.record_outcomes(
        [{"id": m.id, "status": "sent", "wamid": f"wamid.{m.seq}", "owner": "w2"} for m in claimed[:2]]
        + [{"id": claimed[2].id, "status": "failed", "error_code": 131026, "error_detail": "x", "owner": "w2"}]
    )
    page = store.export_page("promo", None, 0, 5)
    assert [r["seq"] for r in page] == [1, 2, 3, 4, 5]
    assert (page[0]["status"], page[0]["wamid"], page[0]["attempts"]) == ("sent", "wamid.1", 1)
    assert len(page[0]["sent_at"]) == 19 and page[0]["delivered_at"] is None
    assert (page[2]["status"], page[2]["error_code"], page[2]["error_detail"]) == ("failed", 131026, "x")
    assert [r["seq"] for r in store.export_page("promo", None, 10, 5)] == [11, 12]
    assert store.export_page("promo", None, 12, 5) == []
    assert [r["seq"] for r in store.iter_recipients("promo", page_size=5)] == list(range(1, 13))
    assert [r["seq"] for r in store.iter_recipients("promo", "pending", page_size=4)] == list(range(4, 13))
    assert list(store.iter_recipients("nadie")) == []


def test_an_upload_rejected_after_several_blocks_stores_nothing(store):
    def leads():
        for i, lead in enumerate(_many_leads(12_001)):
            if i == 11_000:
                raise ValueError("row 11002 is unreadable")
            yield lead

    with pytest.raises(ValueError, match="row 11002"):
        store.create_campaign(_campaign(), leads(), lambda: {"rejected_rows": []})
    assert store.list_campaigns(10, 0) == ([], 0)
    assert store.list_recipients("promo", None, 1, 0)["total"] == 0


def test_claims_are_exclusive_and_outcomes_apply_once(store):
    store.create_campaign(_campaign(), LEADS)
    claimed = store.claim_messages("promo", 1, 3, "worker-a")
    assert [m.seq for m in claimed] == [1, 2, 3] and claimed[0].parameters == ["Cliente 0"]
    assert store.claim_messages("promo", 1, 3, "worker-b") == []
    outcomes = [
        {"id": claimed[0].id, "status": "sent", "wamid": "wamid.A"},
        {"id": claimed[1].id, "status": "failed", "error_code": 131026, "error_detail": "x"},
        {"id": claimed[2].id, "status": "pending"},
    ]
    assert store.record_outcomes(outcomes) == {
        "moved": {"sent": 1, "failed": 1, "pending": 1},
        "errors": {"131026": {"count": 1, "detail": "x"}},
    }
    assert store.record_outcomes(outcomes) == {"moved": {}, "errors": {}}
    assert store.campaign_counts("promo") == {
        "pending": 3,
        "sending": 0,
        "sent": 1,
        "failed": 1,
        "cancelled": 0,
        "unknown": 0,
        "suppressed": 0,
        "deferred": 0,
    }
    assert store.pending_batches("promo", 2) == [2, 3]


def test_status_transitions_and_cancel(store):
    store.create_campaign(_campaign(), LEADS)
    assert store.set_campaign_status("promo", "running") == {"changed": True, "status": "running", "version": 1}
    assert store.set_campaign_status("promo", "running") == {"changed": False, "status": "running", "version": 1}
    assert store.set_campaign_status("promo", "paused", "motivo") == {"changed": True, "status": "paused", "version": 2}
    assert store.get_campaign("promo")["status_reason"] == "motivo"
    store.claim_messages("promo", 1, 1, "worker-a")
    assert store.set_campaign_status("promo", "cancelled")["changed"] is True
    assert store.cancel_pending("promo") == 4
    assert store.set_campaign_status("promo", "running") == {"changed": False, "status": "cancelled", "version": 3}
    assert store.get_campaign("promo")["finished_at"] is not None
    assert store.set_campaign_status("no-existe", "running") == {"changed": False, "status": None, "version": None}


def test_delete_removes_the_recipients_too(store):
    store.create_campaign(_campaign(), LEADS)
    assert store.delete_campaign("promo") is True
    assert store.get_campaign("promo") is None and store.campaign_counts("promo")["pending"] == 0


def test_a_campaign_for_an_unknown_buzon_is_refused(store):
    with pytest.raises(StoreError):
        store.create_campaign(_campaign(buzon="nadie"), LEADS)
    assert store.list_campaigns(10, 0) == ([], 0)


def test_ping(store):
    assert store.ping() is True


def test_a_dead_workers_claims_become_unknown_or_pending(store):
    store.create_campaign(_campaign(), LEADS)
    mine = store.claim_messages("promo", 1, 3, "dead-worker")
    store.claim_messages("promo", 4, 4, "live-worker")
    assert set(store.claim_owners("promo")) == {"dead-worker", "live-worker"}
    assert store.sending_batches("promo", 2) == [1, 2]
    moved = store.recover_claims("promo", "dead-worker", [mine[0].id])
    assert sorted(moved.pop("ids")) == sorted(m.id for m in mine)
    assert moved == {"unknown": 1, "pending": 2, "sent": 0, "failed": 0, "errors": {}}
    assert store.campaign_counts("promo") == {
        "pending": 3,
        "sending": 1,
        "sent": 0,
        "failed": 0,
        "cancelled": 0,
        "unknown": 1,
        "suppressed": 0,
        "deferred": 0,
    }
    again = store.recover_claims("promo", "dead-worker", [mine[0].id])
    assert (again["ids"], again["unknown"], again["pending"]) == ([], 0, 0)
    unknown = store.list_recipients("promo", "unknown", 10, 0)
    assert unknown["total"] == 1 and unknown["recipients"][0]["phone"] == LEADS[0]["phone"]


def test_what_whatsapp_reported_settles_a_dead_workers_claims_and_lost_marks_mean_unknown(store):
    store.create_campaign(_campaign(), LEADS)
    mine = store.claim_messages("promo", 1, 4, "dead-worker")
    callback = [f"promo/{m.id}" for m in mine]
    store.apply_statuses(
        [
            {"wamid": "wamid.A", "status": "delivered", "ts": 1_798_000_000, "callback": callback[0]},
            {
                "wamid": "wamid.B",
                "status": "failed",
                "ts": 1_798_000_000,
                "callback": callback[1],
                "error_code": 131026,
            },
        ]
    )
    # Its marks were lost (None): whatever WhatsApp did not report on may have been sent.
    moved = store.recover_claims("promo", "dead-worker", None)
    assert (moved["sent"], moved["failed"], moved["unknown"], moved["pending"]) == (1, 1, 2, 0)
    assert moved["errors"]["131026"]["count"] == 1
    counts = store.campaign_counts("promo")
    assert (counts["sent"], counts["failed"], counts["unknown"], counts["sending"]) == (1, 1, 2, 0)
    assert store.list_recipients("promo", "sent", 10, 0)["recipients"][0]["wamid"] == "wamid.A"


def test_unknown_and_failed_recipients_can_be_requeued(store):
    store.create_campaign(_campaign(), LEADS)
    claimed = store.claim_messages("promo", 1, 3, "w")
    store.record_outcomes(
        [
            {"id": claimed[0].id, "status": "failed", "error_code": 131026},
            {"id": claimed[1].id, "status": "unknown"},
            {"id": claimed[2].id, "status": "sent", "wamid": "w"},
        ]
    )
    assert store.failure_breakdown("promo") == {"131026": {"count": 1, "detail": None}}
    assert store.requeue_recipients("promo", ["unknown"]) == {"unknown": 1}
    assert store.requeue_recipients("promo", ["unknown", "failed"]) == {"failed": 1}
    assert store.campaign_counts("promo")["pending"] == 4
    assert store.open_campaigns() == ["promo"]


def _sent(store, n: int = 3) -> list:
    """A campaign whose first n recipients were sent with wamids w0, w1, ..."""
    store.create_campaign(_campaign(), LEADS)
    claimed = store.claim_messages("promo", 1, n, "w")
    store.record_outcomes([{"id": m.id, "status": "sent", "wamid": f"w{i}"} for i, m in enumerate(claimed)])
    return claimed


def _status(wamid, status, ts, **extra) -> dict:
    """One webhook status as the worker passes it to the store."""
    return {
        "wamid": wamid,
        "status": status,
        "ts": ts,
        "callback": None,
        "error_code": None,
        "error_detail": None,
        **extra,
    }


def test_a_batch_folds_each_messages_statuses_as_if_applied_in_order(store):
    """One batch holding several statuses of a message ends where applying them one by one would."""
    _sent(store, 4)
    result = store.apply_statuses(
        [
            _status("w0", "failed", 100, error_code=131026, error_detail="gone"),
            _status("w0", "delivered", 105),  # a later delivered overrules the failure
            _status("w1", "read", 110),
            _status("w1", "sent", 100),
            _status("w1", "delivered", 104),
            _status("w1", "delivered", 104),  # Meta's repeat
            _status("w2", "delivered", 100),
            _status("w2", "failed", 101, error_code=131026),  # older news than delivered: ignored
            _status("w3", "failed", 100, error_code=131049, error_detail="ecosystem"),
        ]
    )
    assert result["deltas"] == {
        "promo": {"delivered": 3, "read": 1, "sent": -1, "failed": 1, "e:131049": 1},
    }
    assert result["orphans"] == 0
    rows = {r["wamid"]: r for r in store.list_recipients("promo", None, 10, 0)["recipients"]}
    assert (rows["w0"]["status"], rows["w0"]["delivery_status"], rows["w0"]["error_code"]) == (
        "sent",
        "delivered",
        None,
    )
    assert (rows["w1"]["status"], rows["w1"]["delivery_status"]) == ("sent", "read")
    assert rows["w1"]["delivered_at"] < rows["w1"]["read_at"]
    assert (rows["w2"]["status"], rows["w2"]["delivery_status"]) == ("sent", "delivered")
    assert (rows["w3"]["status"], rows["w3"]["delivery_status"], rows["w3"]["error_code"]) == (
        "failed",
        "failed",
        131049,
    )
    assert store.apply_statuses([_status("w1", "read", 110), _status("w0", "sent", 90)])["applied"] == 0


def test_statuses_apply_forward_only_and_idempotently(store):
    _sent(store)
    batch = [
        _status("w0", "sent", 100),
        _status("w0", "delivered", 101),
        _status("w0", "read", 102),
        _status("w1", "read", 103),
        _status("w1", "delivered", 101),
    ]
    result = store.apply_statuses(batch)
    assert result["deltas"] == {"promo": {"delivered": 2, "read": 2}}
    assert store.apply_statuses(batch) == {"deltas": {}, "applied": 0, "orphans": 0}
    late = store.apply_statuses([_status("w1", "delivered", 200), _status("w1", "sent", 201)])
    assert late["applied"] == 0, "older news than 'read' changes nothing"
    rows = store.list_recipients("promo", None, 10, 0)["recipients"]
    assert [r["delivery_status"] for r in rows[:3]] == ["read", "read", None]
    assert rows[0]["read_at"] is not None and rows[0]["delivered_at"] is not None
    assert store.delivery_counts("promo")["delivered"] == 2


def test_pricing_is_kept_once_and_billable_messages_counted_by_category_and_prefix(store):
    _sent(store)
    priced = {"pricing_category": "marketing", "pricing_type": "regular", "pricing_model": "PMP", "billable": True}
    free = {**priced, "pricing_category": "service", "pricing_type": "free_customer_service", "billable": False}
    batch = [_status("w0", "sent", 100, **priced), _status("w1", "sent", 100, **free)]
    assert store.apply_statuses(batch)["deltas"] == {"promo": {"b:marketing:584": 1}}
    # A repeat, and a later status with the same pricing, count nothing more; a late "sent" still prices w2.
    assert store.apply_statuses(batch)["deltas"] == {}
    later = [
        _status("w0", "delivered", 101, **priced),
        _status("w2", "delivered", 101),
        _status("w2", "sent", 100, **priced),
    ]
    assert store.apply_statuses(later)["deltas"] == {"promo": {"delivered": 2, "b:marketing:584": 1}}
    rows = store.list_recipients("promo", None, 10, 0)["recipients"]
    assert [(r["pricing_category"], r["billable"]) for r in rows[:3]] == [
        ("marketing", True),
        ("service", False),
        ("marketing", True),
    ]
    counts = store.delivery_counts("promo")
    assert counts["b:marketing:584"] == 2 and counts["held"] == 0


def test_held_send_answers_are_kept_on_the_row_and_counted(store):
    store.create_campaign(_campaign(), LEADS)
    claimed = store.claim_messages("promo", 1, 3, "w")
    outcomes = [
        {"id": claimed[0].id, "status": "sent", "wamid": "w0", "message_status": "held_for_quality_assessment"},
        {"id": claimed[1].id, "status": "sent", "wamid": "w1", "message_status": "paused"},
        {"id": claimed[2].id, "status": "sent", "wamid": "w2"},
    ]
    assert store.record_outcomes(outcomes) == {"held": 2, "moved": {"sent": 3}, "errors": {}}
    assert store.record_outcomes(outcomes) == {"moved": {}, "errors": {}}
    rows = store.list_recipients("promo", None, 3, 0)["recipients"]
    assert [r["message_status"] for r in rows] == ["held_for_quality_assessment", "paused", None]
    assert store.delivery_counts("promo")["held"] == 2


def test_template_and_quality_signals_keep_the_latest_and_name_the_campaigns_to_pause(store):
    store.create_campaign(_campaign(), LEADS)
    store.create_campaign(_campaign(id="ingles", language="en_US"), LEADS)
    store.set_campaign_status("promo", "running")
    paused = {"kind": "template", "template": "promo_enero", "language": "es", "template_id": "9", "event": "PAUSED"}
    result = store.apply_signals([{**paused, "ts": 100}])
    assert result["recorded"] == 1
    assert [(p["campaign_id"], p["kind"], p["event"]) for p in result["pause"]] == [("promo", "template", "PAUSED")]
    assert store.template_status("promo_enero", "es")["status"] == "PAUSED"
    assert store.template_status("promo_enero", "en_US") is None
    assert store.apply_signals([{**paused, "ts": 100}]) == {"recorded": 0, "pause": []}, "a repeat is no news"
    store.apply_signals([{**paused, "event": "APPROVED", "ts": 200}, {**paused, "ts": 150}])
    assert store.template_status("promo_enero", "es")["status"] == "APPROVED", "older news never wins"

    flagged = {"kind": "quality", "subject": "15550001111", "event": "FLAGGED", "detail": {"current_limit": "TIER_2K"}}
    number = {"kind": "number", "phone_number_id": "111", "display": "15550001111", "waba_id": "w1"}
    result = store.apply_signals([{**flagged, "ts": 300, "pause": True}, number])
    # The number is learnt first in the batch; queued campaigns of the number are paused too.
    assert sorted(p["campaign_id"] for p in result["pause"]) == ["ingles", "promo"]
    overview = store.signals_overview()
    [ventas] = overview["buzones"]
    assert (ventas["buzon"], ventas["display_phone_number"], ventas["calidad"]["evento"]) == (
        "ventas",
        "15550001111",
        "FLAGGED",
    )
    assert ventas["calidad"]["detalle"] == {"current_limit": "TIER_2K"}
    assert [t["estado"] for t in overview["plantillas"]] == ["APPROVED"]
    store.apply_signals([{"kind": "alert", "subject": "w1", "event": "OBA_APPROVED", "detail": {}, "ts": 400}])
    assert [(a["tipo"], a["evento"]) for a in store.signals_overview()["cuentas"]] == [("alert", "OBA_APPROVED")]


def test_a_failed_status_after_sent_counts_as_a_failure(store):
    _sent(store)
    result = store.apply_statuses([_status("w2", "failed", 100, error_code=131026, error_detail="undeliverable")])
    assert result["deltas"] == {"promo": {"sent": -1, "failed": 1, "e:131026": 1}}
    counts = store.campaign_counts("promo")
    assert (counts["sent"], counts["failed"]) == (2, 1)
    assert store.failure_breakdown("promo") == {"131026": {"count": 1, "detail": "undeliverable"}}
    overruled = store.apply_statuses([_status("w2", "delivered", 101)])
    assert overruled["deltas"] == {"promo": {"delivered": 1, "sent": 1, "failed": -1, "e:131026": -1}}


def test_unknown_messages_are_settled_through_their_callback_data(store):
    store.create_campaign(_campaign(), LEADS)
    [message] = store.claim_messages("promo", 1, 1, "w")
    store.record_outcomes([{"id": message.id, "status": "unknown"}])
    result = store.apply_statuses([_status("wX", "delivered", 100, callback=f"promo/{message.id}")])
    assert result["deltas"] == {"promo": {"delivered": 1, "unknown": -1, "sent": 1}}
    row = store.list_recipients("promo", "sent", 10, 0)["recipients"][0]
    assert row["wamid"] == "wX" and row["delivery_status"] == "delivered"


def test_a_failure_reported_before_our_own_result_wins(store):
    store.create_campaign(_campaign(), LEADS)
    [message] = store.claim_messages("promo", 1, 1, "w")
    store.apply_statuses([_status("wY", "failed", 100, callback=f"promo/{message.id}", error_code=131049)])
    result = store.record_outcomes([{"id": message.id, "status": "sent", "wamid": "wY"}])
    assert result["moved"] == {"failed": 1}
    assert store.list_recipients("promo", "failed", 10, 0)["recipients"][0]["error_code"] == 131049


def test_statuses_for_unknown_messages_wait_for_their_wamid(store):
    store.create_campaign(_campaign(), LEADS)
    assert store.apply_statuses([_status("wLATE", "delivered", 100)])["orphans"] == 1
    assert store.rematch_orphans()["applied"] == 0
    [message] = store.claim_messages("promo", 1, 1, "w")
    store.record_outcomes([{"id": message.id, "status": "sent", "wamid": "wLATE"}])
    assert store.rematch_orphans()["deltas"] == {"promo": {"delivered": 1}}
    assert store.rematch_orphans()["applied"] == 0


def test_late_results_of_a_worker_taken_for_dead_do_not_overwrite_the_new_claim(store):
    store.create_campaign(_campaign(), LEADS)
    [message] = store.claim_messages("promo", 1, 1, "old-worker")
    store.recover_claims("promo", "old-worker", [])
    store.claim_messages("promo", 1, 1, "new-worker")
    late = store.record_outcomes([{"id": message.id, "status": "pending", "owner": "old-worker"}])
    assert late["moved"] == {}
    mine = store.record_outcomes([{"id": message.id, "status": "sent", "wamid": "w", "owner": "new-worker"}])
    assert mine["moved"] == {"sent": 1}


def test_api_keys_are_found_by_hash_until_revoked_and_never_show_the_hash(store):
    row = store.create_api_key("crm", "hash-1", "operator", ["ventas"])
    assert (row["name"], row["role"], row["buzones"], row["revoked_at"]) == ("crm", "operator", ["ventas"], None)
    assert "key_hash" not in row
    used = store.use_api_key("hash-1")
    assert used["name"] == "crm" and used["last_used_at"] is not None
    assert store.use_api_key("hash-1")["last_used_at"] == used["last_used_at"], "written at most once a minute"
    assert store.use_api_key("hash-2") is None
    assert [k["name"] for k in store.list_api_keys()] == ["crm"] and "key_hash" not in store.list_api_keys()[0]
    assert store.revoke_api_key("crm") is True and store.revoke_api_key("crm") is False
    assert store.use_api_key("hash-1") is None
    with pytest.raises(StoreError):
        store.create_api_key("crm", "hash-3", "operator")


def test_user_roles_round_trip(store):
    assert store.get_api_user("u-1") is None
    store.upsert_api_user("u-1", "viewer", None, "ana@example.test")
    store.upsert_api_user("u-1", "admin", ["ventas"])
    row = store.get_api_user("u-1")
    assert (row["role"], row["buzones"], row["email"]) == ("admin", ["ventas"], "ana@example.test")


def test_campaigns_remember_their_creator_and_list_by_buzon(store):
    store.upsert_sender("soporte", "333", "t")
    store.create_campaign(_campaign(created_by="ana@example.test"), LEADS)
    store.create_campaign(_campaign(id="otra", buzon="soporte"), LEADS[:1])
    assert store.get_campaign("promo")["created_by"] == "ana@example.test"
    assert store.get_campaign("otra")["created_by"] is None
    campaigns, total = store.list_campaigns(10, 0, ["soporte"])
    assert total == 1 and [c["id"] for c in campaigns] == ["otra"]
    assert store.list_campaigns(10, 0, [])[1] == 0
    assert store.list_campaigns(10, 0)[1] == 2


def test_audit_entries_are_listed_newest_first_with_filters(store):
    first = store.record_audit(
        {
            "actor": "crm",
            "actor_kind": "key",
            "action": "create",
            "campaign_id": "promo",
            "status_code": 201,
            "outcome": "ok",
            "ip": "10.0.0.1",
            "details": {"n": 1},
        }
    )
    store.record_audit({"actor_kind": "anonymous", "action": "access", "status_code": 401, "outcome": "refused"})
    entries, total = store.list_audit(None, None, None, 10, 0)
    assert total == 2 and [e["action"] for e in entries] == ["access", "create"]
    entries, total = store.list_audit("promo", None, None, 10, 0)
    assert total == 1 and entries[0]["id"] == first and entries[0]["details"] == {"n": 1}
    assert store.list_audit(None, "2999-01-01T00:00:00+00:00", None, 10, 0) == ([], 0)
    assert store.list_audit(None, None, "2000-01-01T00:00:00+00:00", 10, 0) == ([], 0)
    assert len(store.list_audit(None, None, None, 1, 1)[0]) == 1


def test_a_scheduled_campaign_is_woken_once_when_due_and_can_be_rescheduled(store):
    from datetime import UTC, datetime, timedelta

    soon = datetime.now(UTC) + timedelta(seconds=1)
    row = store.create_campaign(
        _campaign(scheduled_for=soon.isoformat(), time_zone="America/Bogota", send_window="08:00-20:00"), LEADS
    )
    campaign = store.get_campaign(row["id"])
    assert (campaign["status"], campaign["time_zone"], campaign["send_window"]) == (
        "scheduled",
        "America/Bogota",
        "08:00-20:00",
    )
    assert "promo" in store.open_campaigns() and store.due_campaigns() == []
    later = datetime.now(UTC) + timedelta(hours=1)
    assert store.reschedule_campaign("promo", later.isoformat(), "Programada")["changed"]
    assert datetime.fromisoformat(store.get_campaign("promo")["resume_at"]) == later
    assert not store.wake_campaign("promo")["changed"]  # not due
    past = datetime.now(UTC) - timedelta(seconds=1)
    store.reschedule_campaign("promo", past.isoformat(), "Programada")
    assert store.due_campaigns() == ["promo"]
    first, second = store.wake_campaign("promo"), store.wake_campaign("promo")
    assert (first["changed"], first["status"], second["changed"]) == (True, "running", False)
    assert not store.reschedule_campaign("promo", later.isoformat(), "x")["changed"]  # it has started


def test_a_waiting_campaign_keeps_its_latest_reason_and_time_and_wakes_then(store):
    from datetime import UTC, datetime, timedelta

    store.create_campaign(_campaign(), LEADS)
    store.set_campaign_status("promo", "running")
    until = datetime.now(UTC) + timedelta(minutes=5)
    waited = store.wait_campaign("promo", "Fuera del horario", until.isoformat())
    assert (waited["changed"], waited["status"]) == (True, "waiting")
    assert not store.wait_campaign("promo", "Fuera del horario", until.isoformat())["changed"]  # the same: no change
    assert store.wait_campaign("promo", "Límite diario", until.isoformat())["changed"]
    assert store.get_campaign("promo")["status_reason"] == "Límite diario"
    assert store.set_campaign_status("promo", "paused")["changed"]
    assert store.get_campaign("promo")["resume_at"] is None
    store.set_campaign_status("promo", "running")
    store.wait_campaign("promo", "ya", (datetime.now(UTC) - timedelta(seconds=1)).isoformat())
    assert store.wake_campaign("promo")["changed"]


def test_portfolios_give_their_buzones_a_limit_that_capability_updates_change(store):
    from datetime import UTC, datetime, timedelta

    assert store.get_sender("ventas").portfolio_id is None
    store.upsert_portfolio("pf", 250, ["waba-1"])
    assert store.set_sender_portfolio("ventas", "pf") and not store.set_sender_portfolio("nadie", "pf")
    sender = store.get_sender("ventas")
    assert (sender.portfolio_id, sender.messaging_limit) == ("pf", 250)
    store.create_campaign(_campaign(), LEADS)
    store.set_campaign_status("promo", "running")
    store.wait_campaign("promo", "Límite diario", (datetime.now(UTC) + timedelta(hours=20)).isoformat())
    changed = store.apply_capability_updates([{"waba_id": "waba-1", "limit": 2000}, {"waba_id": "other", "limit": 5}])
    assert changed == {"changed": [{"id": "pf", "messaging_limit": 2000}]}
    assert store.due_campaigns() == ["promo"]  # a raised limit lets it try again now
    assert store.get_sender("ventas").messaging_limit == 2000
    store.apply_capability_updates([{"waba_id": "waba-1", "limit": None}])
    [listed] = store.list_portfolios()
    assert (listed["messaging_limit"], listed["limit_source"], listed["buzones"]) == (None, "webhook", ["ventas"])
    claimed = store.claim_messages("promo", 1, 2, "w1")
    store.record_outcomes([{"id": m.id, "status": "sent", "wamid": f"wamid.{m.id}", "owner": "w1"} for m in claimed])
    recent = store.portfolio_recent_recipients("pf", 86400)
    assert sorted(phone for phone, _ in recent) == sorted(m.phone for m in claimed)


def test_opt_outs_apply_in_event_order_and_hold_at_claim_time(store):
    store.create_campaign(_campaign(), LEADS)
    events = [
        {"phone_number_id": "111", "phone": LEADS[1]["phone"], "action": "stop", "ts": 100, "source": "keyword"},
        {
            "phone_number_id": "111",
            "phone": LEADS[2]["phone"],
            "action": "resume",
            "ts": 200,
            "source": "user_preferences",
        },
        {
            "phone_number_id": "111",
            "phone": LEADS[2]["phone"],
            "action": "stop",
            "ts": 150,
            "source": "user_preferences",
        },
        {"phone_number_id": "999", "phone": LEADS[3]["phone"], "action": "stop", "ts": 100, "source": "keyword"},
    ]
    # Oldest first: the stop of t=150 then the resume of t=200 (listed in the other order) leave LEADS[2] free.
    assert store.apply_optouts(events, False) == {"changed": 3, "ignored": 0, "unmatched": 1}
    assert store.apply_optouts(events, False)["changed"] == 0  # a repeat changes nothing
    older = [{**events[2], "ts": 190}]  # a stop older than the resume that lifted it, arriving late
    assert store.apply_optouts(older, False) == {"changed": 0, "ignored": 1, "unmatched": 0}
    assert store.suppressed_phones("ventas") == {LEADS[1]["phone"]}
    claimed = store.claim_messages("promo", 1, 5, "w1")
    assert [m.suppressed for m in claimed] == [False, True, False, False, False]
    outcomes = [{"id": m.id, "status": "suppressed" if m.suppressed else "sent", "owner": "w1"} for m in claimed]
    assert store.record_outcomes(outcomes)["moved"] == {"sent": 4, "suppressed": 1}
    entries, total = store.list_suppressions(None, None, None, 10, 0)
    assert total == 1 and entries[0]["source"] == "keyword" and entries[0]["buzon"] == "ventas"
    actions = [(e["action"], e["details"]["telefono"]) for e in store.list_audit(None, None, None, 10, 0)[0]]
    assert sorted(actions) == sorted(
        [("optout.add", LEADS[1]["phone"]), ("optout.add", LEADS[2]["phone"]), ("optout.lift", LEADS[2]["phone"])]
    )


def test_manual_opt_outs_for_all_buzones_are_added_listed_and_lifted(store):
    assert store.add_suppression("*", "584140000001", "pidió", "ana") is True
    assert store.add_suppression("*", "584140000001", None, "ana") is False
    assert store.add_suppression("ventas", "584140000002", None, "ana") is True
    assert store.suppressed_phones("ventas") == {"584140000001", "584140000002"}
    assert store.suppressed_phones("otro") == {"584140000001"}
    assert store.list_suppressions(["otro"], None, None, 10, 0)[1] == 1
    assert store.list_suppressions(None, "ventas", None, 10, 0)[1] == 1
    assert store.lift_suppression("584140000001", None, ["ventas"], "ana") == []  # '*' is not the key's to lift
    assert store.lift_suppression("584140000001", None, None, "ana") == ["*"]
    assert store.suppressed_phones("ventas") == {"584140000002"}


def test_deferred_recipients_wait_are_released_once_and_fail_the_second_time(store):
    store.create_campaign(_campaign(), LEADS)
    store.set_campaign_status("promo", "running")
    claimed = store.claim_messages("promo", 1, 2, "w1")
    past = 1_000_000_000.0
    deferred = [
        {"id": m.id, "status": "deferred", "error_code": 131049, "retry_at": past, "owner": "w1"} for m in claimed
    ]
    assert store.record_outcomes(deferred)["moved"] == {"deferred": 2}
    assert store.campaign_counts("promo")["deferred"] == 2
    assert store.deferred_summary("promo")["deferred"] == 2
    assert store.release_deferred() == {"promo": 2}
    assert store.release_deferred() == {}
    again = store.claim_messages("promo", 1, 2, "w2")
    second = [{"id": m.id, "status": "deferred", "error_code": 131049, "retry_at": past, "owner": "w2"} for m in again]
    assert store.record_outcomes(second)["moved"] == {"failed": 2}
    assert store.cancel_pending("promo") == 3


def test_a_message_reported_failed_for_the_marketing_limit_is_deferred_once(store):
    store.create_campaign(_campaign(), LEADS[:2])
    store.set_campaign_status("promo", "running")
    claimed = store.claim_messages("promo", 1, 2, "w1")
    store.record_outcomes([{"id": m.id, "status": "sent", "wamid": f"w{m.seq}", "owner": "w1"} for m in claimed])
    failed = {"wamid": "w1", "status": "failed", "ts": 1_800_000_000, "callback": None, "error_code": 131049}
    store.apply_statuses([{**failed, "error_detail": "limit"}])
    assert store.defer_reported(["w1", "w2", "nadie"], 1_000_000_000.0) == {"promo": 1}
    assert store.defer_reported(["w1"], 1_000_000_000.0) == {}
    assert store.campaign_counts("promo")["deferred"] == 1
    assert store.release_deferred() == {"promo": 1}
    [row] = store.list_recipients("promo", "pending", 10, 0)["recipients"]
    assert (row["wamid"], row["delivery_status"]) == (None, None)  # sent again as a new message
