"""Opt-outs and deferred recipients, in process: the real pipeline, store, Redis and sandbox over HTTP.

What an operator would notice: a number that opted out is never sent to again (not by later batches of a
running campaign, not by a later upload), the list can be read, added to and lifted through /api/bajas,
every change is in the audit log, and a recipient refused for the per-user marketing limit (131049) waits,
is sent once more when its time comes, and keeps the campaign from completing until then.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import time
from dataclasses import replace

import psycopg
import pytest

from tasks.optouts import normalize_reply
from tests.conftest import SENDERS
from tests.fast.conftest import APP_SECRET
from tests.fast.helpers import live, new_campaign, sent_to, stored_statuses

HOOK = "/webhooks/whatsapp"
VENTAS = SENDERS["ventas"][0]
FORM = {"titulo_campana": "Bajas", "plantilla": "promo_enero", "buzon": "ventas", "idioma": "es"}


def notify(client, *changes: tuple[str, dict], pnid: str = VENTAS) -> None:
    """POST a signed notification carrying these (field, value) changes, as WhatsApp does."""
    body = json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "102290129340398",
                    "changes": [
                        {
                            "field": field,
                            "value": {"messaging_product": "whatsapp", "metadata": {"phone_number_id": pnid}, **value},
                        }
                        for field, value in changes
                    ],
                }
            ],
        }
    ).encode()
    signature = "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    response = client.post(HOOK, data=body, headers={"X-Hub-Signature-256": signature}, content_type="application/json")
    assert response.status_code == 200, response.data


def preference(wa_id: str, value: str, ts: int) -> tuple[str, dict]:
    """A user_preferences change (marketing messages stopped or resumed at `ts`)."""
    return (
        "user_preferences",
        {
            "contacts": [{"wa_id": wa_id, "profile": {"name": "Ana"}}],
            "user_preferences": [
                {"wa_id": wa_id, "detail": "x", "category": "marketing_messages", "value": value, "timestamp": ts}
            ],
        },
    )


def reply(wa_id: str, text: str, ts: int = 1_798_000_000) -> tuple[str, dict]:
    """An inbound text message."""
    message = {"from": wa_id, "id": f"wamid.in{ts}", "timestamp": str(ts), "type": "text", "text": {"body": text}}
    return "messages", {"contacts": [{"wa_id": wa_id, "profile": {"name": "Ana"}}], "messages": [message]}


def suppressed(app) -> dict[tuple[str, str], str]:
    """The opt-outs in force: (buzón, phone) -> source."""
    with psycopg.connect(app.extensions["campaigns"].settings.database_url) as conn:
        rows = conn.execute("SELECT buzon, phone, source FROM instancia_sofia.suppressions WHERE active").fetchall()
    return {(b, p): s for b, p, s in rows}


def audit_actions(app) -> list[tuple[str, str, str | None]]:
    """The opt-out entries of the audit log, oldest first: (action, actor_kind, phone)."""
    with psycopg.connect(app.extensions["campaigns"].settings.database_url) as conn:
        rows = conn.execute(
            "SELECT action, actor_kind, details->>'telefono' FROM instancia_sofia.audit_log "
            "WHERE action LIKE 'optout.%' ORDER BY id"
        ).fetchall()
    return [tuple(r) for r in rows]


@pytest.fixture
def audit_clean(app):
    with psycopg.connect(app.extensions["campaigns"].settings.database_url, autocommit=True) as conn:
        conn.execute("TRUNCATE instancia_sofia.audit_log")


@pytest.mark.parametrize(
    ("text", "is_optout"),
    [
        ("BAJA", True),
        ("  baja  ", True),
        ("Bája.", True),
        ("¡STOP!", True),
        ("cancelar", True),
        ("No", True),
        ("no gracias", False),
        ("quiero la baja de precios", False),
        ("", False),
    ],
)
def test_an_opt_out_reply_is_the_whole_message_without_accents_or_case(rt, text, is_optout):
    assert (normalize_reply(text) in rt.webhooks.optouts.keywords) is is_optout


def test_a_number_that_opts_out_mid_campaign_is_skipped_by_the_remaining_batches(app, client, queue):
    rt = app.extensions["campaigns"]
    phones = new_campaign(rt, "a-mitad", 30)  # three batches of ten
    queue.run_next(rt)
    # During the campaign: one recipient stops marketing messages in the app, another replies BAJA.
    notify(client, preference(phones[14], "stop", 1_798_000_000), reply(phones[25], "  Bája "))
    rt.webhooks.process_inbox()
    queue.run_all(rt)
    sent = sent_to_numbers(rt)
    assert phones[14] not in sent and phones[25] not in sent and len(sent) == 28
    state = client.get("/api/estado-cola/a-mitad").json
    assert state["status"] == "completed" and state["progress"] == 100.0 and state["pending"] == 0
    assert (state["sent"], state["suppressed"], state["deferred"]) == (28, 2, 0)
    rows = client.get("/api/destinatarios/a-mitad?estado=suppressed").json["destinatarios"]
    assert [r["phone"] for r in rows] == [phones[14], phones[25]]
    assert all("baja" in r["error_detail"] for r in rows)
    assert suppressed(app) == {("ventas", phones[14]): "user_preferences", ("ventas", phones[25]): "keyword"}


def sent_to_numbers(rt) -> set[str]:
    """The numbers the campaign sent to, from the store."""
    return {r["phone"] for r in rt.store.list_recipients("a-mitad", "sent", 1000, 0)["recipients"]}


def test_a_later_resume_lifts_an_opt_out_and_older_news_never_undo_newer(app, client, audit_clean):
    rt = app.extensions["campaigns"]
    number = "584141000001"
    # Out of order: the resume of t=200 arrives before the stop of t=100; the stop is older news.
    notify(client, preference(number, "resume", 200))
    rt.webhooks.process_inbox()
    notify(client, preference(number, "stop", 100))
    rt.webhooks.process_inbox()
    assert suppressed(app) == {}
    notify(client, preference(number, "stop", 300), preference(number, "resume", 250))
    rt.webhooks.process_inbox()
    assert suppressed(app) == {("ventas", number): "user_preferences"}
    notify(client, preference(number, "resume", 400))
    rt.webhooks.process_inbox()
    assert suppressed(app) == {}
    assert audit_actions(app) == [("optout.add", "whatsapp", number), ("optout.lift", "whatsapp", number)]
    # The same notification delivered twice changes nothing more.
    notify(client, preference(number, "resume", 400))
    rt.webhooks.process_inbox()
    assert len(audit_actions(app)) == 2


def test_a_131050_answer_suppresses_the_number_and_the_next_upload_reports_the_row(app, client, queue, fast_sandbox):
    rt = app.extensions["campaigns"]
    phones = new_campaign(rt, "primera", 10, start=False)
    fast_sandbox.configure(recipient_errors={phones[3]: 131050})
    rt.pipeline.start("primera")
    queue.run_all(rt)
    assert stored_statuses(rt, "primera") == {"sent": 9, "failed": 1}
    assert suppressed(app) == {("ventas", phones[3]): "send_error"}
    assert ("optout.add", "whatsapp", phones[3]) in audit_actions(app)

    csv = ("telefono,nombre\n" + "".join(f"{p},Cliente\n" for p in phones[:5])).encode()
    for path in ("/api/validar-campana", "/api/crear-campana"):
        data = {**FORM, "archivo_csv": (io.BytesIO(csv), "c.csv", "text/csv")}
        body = client.post(path, data=data, content_type="multipart/form-data").json
        assert body["total_messages"] == 4, body
        assert [(r["fila"], r["motivo"]) for r in body["rechazados"]] == [
            (5, "el número se dio de baja y no recibe mensajes de este buzón")
        ]
    # Another buzón's list is its own (OPTOUT_SCOPE=buzon).
    data = {**FORM, "buzon": "soporte", "archivo_csv": (io.BytesIO(csv), "c.csv", "text/csv")}
    assert (
        client.post("/api/validar-campana", data=data, content_type="multipart/form-data").json["total_messages"] == 5
    )


def test_global_scope_puts_automatic_opt_outs_on_every_buzons_list(fast_settings, queue, clean_slate, fast_sandbox):
    from tasks.runtime import build_runtime

    rt = build_runtime(replace(fast_settings, optout_scope="global"), queue)
    try:
        phones = new_campaign(rt, "global", 5, start=False)
        fast_sandbox.configure(recipient_errors={phones[0]: 131050})
        rt.pipeline.start("global")
        queue.run_all(rt)
        assert rt.store.suppressed_phones("soporte") == {phones[0]}
        new_campaign(rt, "otra", 5, buzon="soporte")
        queue.run_all(rt)
        assert stored_statuses(rt, "otra") == {"sent": 4, "suppressed": 1}
    finally:
        rt.close()


def test_bajas_lists_adds_and_lifts_with_masking_and_audit(app, client, fast_keys, audit_clean):
    viewer = {"X-API-Key": fast_keys["viewer"]}
    added = client.post("/api/bajas", json={"telefono": "+58 414 100 0009", "buzon": "ventas", "motivo": "pidió"})
    assert added.status_code == 201 and added.json["telefono"] == "584141000009", added.json
    assert client.post("/api/bajas", json={"telefono": "584141000009", "buzon": "ventas"}).status_code == 200
    assert client.post("/api/bajas", json={"telefono": "04141000010"}).json["buzon"] == "*"  # every buzón

    listed = client.get("/api/bajas").json
    assert listed["total"] == 2
    assert {(b["telefono"], b["buzon"], b["origen"]) for b in listed["bajas"]} == {
        ("584141000009", "ventas", "manual"),
        ("584141000010", "*", "manual"),
    }
    masked = client.get("/api/bajas", headers=viewer).json["bajas"]
    assert all("*" in b["telefono"] and "584141" not in b["telefono"] for b in masked)
    assert client.post("/api/bajas", json={"telefono": "584141000011"}, headers=viewer).status_code == 403
    assert client.get("/api/bajas?telefono=584141000010").json["total"] == 1

    bad = client.post("/api/bajas", json={"telefono": "12"})
    assert bad.status_code == 422 and "no es válido" in bad.json["message"]
    unknown = client.post("/api/bajas", json={"telefono": "584141000011", "buzon": "nadie"})
    assert unknown.status_code == 422 and "nadie" in unknown.json["message"]

    lifted = client.delete("/api/bajas?telefono=584141000009")
    assert lifted.status_code == 200 and lifted.json["buzones"] == ["ventas"]
    again = client.delete("/api/bajas?telefono=584141000009")
    assert again.status_code == 404 and "no tiene una baja vigente" in again.json["message"]
    assert client.get("/api/bajas").json["total"] == 1

    audit = client.get("/api/auditoria", headers={"X-API-Key": fast_keys["admin"]}).json["entradas"]
    optouts = [(e["action"], e["details"].get("telefono"), e["status_code"]) for e in reversed(audit)]
    assert optouts[:3] == [
        ("optout.add", "584141000009", 201),
        ("optout.add", "584141000009", 200),
        ("optout.add", "584141000010", 201),
    ]
    assert ("optout.add", None, 403) in optouts and ("optout.add", None, 422) in optouts
    assert ("optout.lift", "584141000009", 200) in optouts and ("optout.lift", "584141000009", 404) in optouts


def test_a_key_limited_to_some_buzones_manages_only_their_opt_outs(app, client, fast_settings):
    from tasks.store.postgres import PostgresStore
    from webapi.apikeys import create_key

    store = PostgresStore(fast_settings.database_url)
    key = create_key(store, f"solo-ventas-{time.time_ns()}", "operator", ["ventas"])[0]
    store.add_suppression("soporte", "584141000020", None, "otro")
    store.close()
    scoped = {"X-API-Key": key}
    assert client.post("/api/bajas", json={"telefono": "584141000021"}, headers=scoped).status_code == 422
    assert client.post("/api/bajas", json={"telefono": "584141000021", "buzon": "*"}, headers=scoped).status_code == 403
    assert (
        client.post("/api/bajas", json={"telefono": "584141000021", "buzon": "soporte"}, headers=scoped).status_code
        == 403
    )
    assert (
        client.post("/api/bajas", json={"telefono": "584141000021", "buzon": "ventas"}, headers=scoped).status_code
        == 201
    )
    assert [b["buzon"] for b in client.get("/api/bajas", headers=scoped).json["bajas"]] == ["ventas"]
    assert client.delete("/api/bajas?telefono=584141000020", headers=scoped).status_code == 404


def deferring(rt, retry_s: float) -> None:
    """Make 131049 answers wait `retry_s` seconds before their retry (MARKETING_LIMIT_RETRY_H in seconds)."""
    policy = rt.sender.policy
    rt.sender.policy = replace(policy, optouts=replace(policy.optouts, marketing_retry_s=retry_s))


def test_a_131049_recipient_waits_then_is_sent_once_more_and_the_campaign_completes(app, client, queue, fast_sandbox):
    rt = app.extensions["campaigns"]
    deferring(rt, 1.0)
    phones = new_campaign(rt, "diferida", 10, start=False)
    fast_sandbox.configure(recipient_errors={phones[2]: 131049})
    rt.pipeline.start("diferida")
    queue.run_all(rt)
    state = client.get("/api/estado-cola/diferida").json
    assert state["status"] == "running" and state["deferred"] == 1 and state["pending"] == 0
    assert state["progress"] == 90.0 and "131049" in state["motivo"]
    row = client.get("/api/destinatarios/diferida?estado=deferred").json["destinatarios"][0]
    assert row["phone"] == phones[2] and row["retry_at"]

    rt.sweeper.sweep()  # not due yet: nothing moves
    assert not queue.batches and live(rt, "diferida")["deferred"] == 1
    fast_sandbox.configure(recipient_errors={})
    time.sleep(1.1)
    assert rt.sweeper.sweep()["deferred_released"] == 1
    queue.run_all(rt)
    state = client.get("/api/estado-cola/diferida").json
    assert (state["status"], state["sent"], state["deferred"], state["progress"]) == ("completed", 10, 0, 100.0)
    assert sent_to(fast_sandbox)[phones[2]] == 1


def test_a_second_131049_fails_the_recipient_and_an_opt_out_meanwhile_is_never_sent(app, client, queue, fast_sandbox):
    rt = app.extensions["campaigns"]
    deferring(rt, 0.5)
    phones = new_campaign(rt, "dos-veces", 10, start=False)
    fast_sandbox.configure(recipient_errors={phones[0]: 131049, phones[1]: 131049})
    rt.pipeline.start("dos-veces")
    queue.run_all(rt)
    assert stored_statuses(rt, "dos-veces") == {"sent": 8, "deferred": 2}
    notify(client, reply(phones[1], "STOP"))  # opts out while it waits
    rt.webhooks.process_inbox()
    time.sleep(0.6)
    rt.sweeper.sweep()
    queue.run_all(rt)
    assert stored_statuses(rt, "dos-veces") == {"sent": 8, "failed": 1, "suppressed": 1}
    assert live(rt, "dos-veces")["status"] == "completed"
    # phones[0] was refused twice (then failed), phones[1] once: never requested again after its opt-out.
    assert fast_sandbox.stats()["rejected"] == {"131049": 3}
    state = client.get("/api/estado-cola/dos-veces").json
    assert [e["codigo"] for e in state["errores"]] == ["131049"]


def test_without_retries_a_131049_fails_at_once(app, client, queue, fast_sandbox):
    rt = app.extensions["campaigns"]
    deferring(rt, 0.0)  # MARKETING_LIMIT_RETRY_H=0
    phones = new_campaign(rt, "sin-reintento", 5, start=False)
    fast_sandbox.configure(recipient_errors={phones[0]: 131049})
    rt.pipeline.start("sin-reintento")
    queue.run_all(rt)
    assert stored_statuses(rt, "sin-reintento") == {"sent": 4, "failed": 1}
    assert live(rt, "sin-reintento")["status"] == "completed"


def test_a_campaign_that_does_not_retry_deferred_fails_them_at_once(app, client, queue, fast_sandbox):
    rt = app.extensions["campaigns"]
    fast_sandbox.configure(recipient_errors={"584141000000": 131049})
    csv = b"telefono,nombre\n584141000000,Ana\n584141000001,Beto\n"
    data = {**FORM, "reintentar_diferidos": "false", "archivo_csv": (io.BytesIO(csv), "c.csv", "text/csv")}
    created = client.post("/api/crear-campana", data=data, content_type="multipart/form-data").json
    queue.run_all(rt)
    assert stored_statuses(rt, created["campaign_id"]) == {"sent": 1, "failed": 1}
    assert client.get(f"/api/estado-cola/{created['campaign_id']}").json["status"] == "completed"


def test_cancelling_a_campaign_that_waits_cancels_its_deferred_recipients(app, client, queue, fast_sandbox):
    rt = app.extensions["campaigns"]
    phones = new_campaign(rt, "espera", 5, start=False)
    fast_sandbox.configure(recipient_errors={phones[4]: 131049})
    rt.pipeline.start("espera")
    queue.run_all(rt)
    assert client.post("/api/cancelar-campana/espera").status_code == 200
    state = client.get("/api/estado-cola/espera").json
    assert (state["status"], state["deferred"], state["cancelled"], state["progress"]) == ("cancelled", 0, 1, 100.0)


def test_a_failed_status_with_131050_suppresses_the_number(app, client, queue):
    rt = app.extensions["campaigns"]
    phones = new_campaign(rt, "estado-131050", 5)
    queue.run_all(rt)
    wamid = rt.store.list_recipients("estado-131050", "sent", 10, 0)["recipients"][0]["wamid"]
    failed = {
        "id": wamid,
        "status": "failed",
        "timestamp": "1798000000",
        "recipient_id": phones[0],
        "errors": [{"code": 131050, "title": "User has stopped marketing messages"}],
    }
    notify(client, ("messages", {"statuses": [failed]}))
    rt.webhooks.process_inbox()
    assert suppressed(app) == {("ventas", phones[0]): "send_error"}
    assert stored_statuses(rt, "estado-131050") == {"sent": 4, "failed": 1}


def test_a_failed_status_with_131049_defers_the_recipient_and_reopens_its_campaign(app, client, queue, fast_sandbox):
    rt = app.extensions["campaigns"]
    rt.webhooks.optouts = replace(rt.webhooks.optouts, marketing_retry_s=0.5)
    phones = new_campaign(rt, "estado-131049", 5)
    queue.run_all(rt)
    assert live(rt, "estado-131049")["status"] == "completed"
    row = rt.store.list_recipients("estado-131049", "sent", 10, 0)["recipients"][2]
    failed = {
        "id": row["wamid"],
        "status": "failed",
        "timestamp": "1798000000",
        "recipient_id": row["phone"],
        "errors": [{"code": 131049, "title": "healthy ecosystem engagement"}],
    }
    notify(client, ("messages", {"statuses": [failed]}))
    rt.webhooks.process_inbox()
    state = client.get("/api/estado-cola/estado-131049").json
    assert (state["status"], state["sent"], state["failed"], state["deferred"]) == ("running", 4, 0, 1)
    assert "131049" in state["motivo"] and state["errores"] == []
    notify(client, ("messages", {"statuses": [failed]}))  # the same notification again changes nothing
    rt.webhooks.process_inbox()
    assert stored_statuses(rt, "estado-131049") == {"sent": 4, "deferred": 1}

    time.sleep(0.6)
    rt.sweeper.sweep()
    queue.run_all(rt)
    state = client.get("/api/estado-cola/estado-131049").json
    assert (state["status"], state["sent"], state["deferred"], state["progress"]) == ("completed", 5, 0, 100.0)
    assert sent_to(fast_sandbox)[phones[2]] == 2  # the first message, refused later, and its one retry
