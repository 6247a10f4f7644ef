"""Meta's warnings in process: template status, quality and account notifications, held answers, pricing, costs."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
from dataclasses import replace

import psycopg
import pytest

from tasks.runtime import build_runtime
from tasks.sending import decode_answer, encode_answer
from tests.conftest import SENDERS, make_csv
from tests.fast.conftest import APP_SECRET
from tests.fast.helpers import live, new_campaign
from webapi import create_app
from webapi.apikeys import create_key

WABA = "102290129340398"
VENTAS_PNID = SENDERS["ventas"][0]
VENTAS_DISPLAY = "15550001111"
FORM = {"titulo_campana": "Costos", "plantilla": "promo_enero", "buzon": "ventas", "idioma": "es"}


@pytest.fixture(autouse=True)
def no_signals(fast_settings, clean_slate):
    """Every test starts with no template status, signal or learned display number."""
    with psycopg.connect(fast_settings.database_url, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE instancia_sofia.template_statuses, instancia_sofia.whatsapp_signals, "
            "instancia_sofia.sender_numbers, instancia_sofia.webhook_orphans"
        )


def change(field: str, value: dict, ts: int = 1_798_000_000) -> bytes:
    """A notification body with one change of `field`, as Meta posts account-level notifications."""
    body = {
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA, "time": ts, "changes": [{"field": field, "value": value}]}],
    }
    return json.dumps(body).encode()


def statuses(*items: dict, pnid: str = VENTAS_PNID, display: str = VENTAS_DISPLAY) -> bytes:
    """A status notification of one sender number."""
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": display, "phone_number_id": pnid},
        "statuses": list(items),
    }
    return change("messages", value)


def status(wamid: str, name: str, ts: int = 1_798_000_000, **extra) -> dict:
    """One status of a notification."""
    return {"id": wamid, "status": name, "timestamp": str(ts), "recipient_id": "584141000000", **extra}


def template_event(event: str, template: str = "promo_enero", language: str = "es", ts: int = 1_798_000_000) -> bytes:
    """A message_template_status_update notification."""
    value = {
        "event": event,
        "message_template_id": 594425479261596,
        "message_template_name": template,
        "message_template_language": language,
        "reason": "NONE",
    }
    return change("message_template_status_update", value, ts)


def post_hook(client, body: bytes):
    """POST a notification to the intake, signed as Meta signs it."""
    signature = "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    response = client.post(
        "/webhooks/whatsapp", data=body, headers={"X-Hub-Signature-256": signature, "Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.data


def pricing(category: str = "marketing", kind: str = "regular") -> dict:
    """A status's per-message pricing."""
    return {"billable": kind == "regular", "pricing_model": "PMP", "category": category, "type": kind}


# --- template status ---------------------------------------------------------------------------------------------


def test_a_paused_template_pauses_its_campaigns_and_resume_waits_for_approval(app, client, queue):
    rt = app.extensions["campaigns"]
    new_campaign(rt, "corre", 20)
    new_campaign(rt, "en-cola", 20, start=False)
    rt.pipeline.start("en-cola")
    new_campaign(rt, "otra-plantilla", 20, template="bienvenida")
    queue.run_next(rt)  # "corre" has sent a batch
    post_hook(client, template_event("PAUSED"))
    rt.webhooks.process_inbox()

    for campaign_id in ("corre", "en-cola"):
        state = client.get(f"/api/estado-cola/{campaign_id}").json
        assert state["status"] == "paused"
        assert "WhatsApp pausó la plantilla 'promo_enero' (es)" in state["motivo"]
    assert client.get("/api/estado-cola/otra-plantilla").json["status"] == "running"

    refused = client.post("/api/reanudar-campana/corre")
    assert refused.status_code == 409
    assert "la plantilla 'promo_enero' (es) está pausada" in refused.json["message"]
    assert "APPROVED" in refused.json["message"]
    assert client.get("/api/estado-cola/corre").json["status"] == "paused"

    # Meta re-sends the same notification: nothing changes. An older one after the approval is ignored too.
    post_hook(client, template_event("APPROVED", ts=1_798_000_100))
    post_hook(client, template_event("PAUSED"))
    rt.webhooks.process_inbox()
    resumed = client.post("/api/reanudar-campana/corre")
    assert (resumed.status_code, resumed.json["status"]) == (200, "running")
    queue.run_all(rt)
    assert client.get("/api/estado-cola/corre").json["status"] == "completed"
    templates = client.get("/api/estado-sistema").json["plantillas"]
    assert [(t["plantilla"], t["idioma"], t["estado"]) for t in templates] == [("promo_enero", "es", "APPROVED")]


def test_a_disabled_template_of_another_language_leaves_the_campaign_alone(rt, queue):
    new_campaign(rt, "en-espanol", 10)
    rt.inbox.push(template_event("DISABLED", language="en_US"))
    rt.webhooks.process_inbox()
    assert live(rt, "en-espanol")["status"] == "running"
    rt.inbox.push(template_event("DISABLED", language="es", ts=1_798_000_010))
    rt.webhooks.process_inbox()
    state = live(rt, "en-espanol")
    assert state["status"] == "paused" and "deshabilitó la plantilla 'promo_enero' (es)" in state["reason"]


# --- held send answers ---------------------------------------------------------------------------------------------


def test_held_send_answers_are_recorded_counted_and_settled_by_their_webhooks(app, client, queue, fast_sandbox):
    rt = app.extensions["campaigns"]
    phones = new_campaign(rt, "retenidos", 12)
    fast_sandbox.configure(
        held_recipients={phones[0]: "held_for_quality_assessment", phones[1]: "paused"},
    )
    queue.run_all(rt)
    state = client.get("/api/estado-cola/retenidos").json
    assert (state["status"], state["sent"], state["held"]) == ("completed", 12, 2)
    rows = {r["phone"]: r for r in client.get("/api/destinatarios/retenidos?por_pagina=50").json["destinatarios"]}
    assert rows[phones[0]]["message_status"] == "held_for_quality_assessment"
    assert rows[phones[1]]["message_status"] == "paused"
    assert {rows[p]["message_status"] for p in phones[2:]} == {None}

    # WhatsApp delivers one held message later and drops the other: their statuses settle them as usual.
    post_hook(client, statuses(status(rows[phones[0]]["wamid"], "delivered")))
    failed = status(
        rows[phones[1]]["wamid"], "failed", errors=[{"code": 131026, "title": "Not delivered", "error_data": {}}]
    )
    post_hook(client, statuses(failed))
    rt.webhooks.process_inbox()
    state = client.get("/api/estado-cola/retenidos").json
    assert (state["delivered"], state["failed"], state["sent"], state["held"]) == (1, 1, 11, 2)

    # The counter is rebuilt from the rows when Redis loses the campaign.
    rt.redis.delete("wcq:campaign:retenidos")
    assert client.get("/api/estado-cola/retenidos").json["held"] == 2


# --- quality and account notifications ------------------------------------------------------------------------------


def quality(event: str, ts: int = 1_798_000_000, display: str = VENTAS_DISPLAY) -> bytes:
    """A phone_number_quality_update notification."""
    value = {"display_phone_number": display, "event": event, "current_limit": "TIER_10K"}
    return change("phone_number_quality_update", value, ts)


def test_a_flagged_number_pauses_its_campaigns_and_shows_in_estado_sistema(app, client, queue):
    rt = app.extensions["campaigns"]
    new_campaign(rt, "ventas-1", 20)
    new_campaign(rt, "soporte-1", 20, buzon="soporte")
    queue.run_next(rt)
    wamid = rt.store.list_recipients("ventas-1", "sent", 1, 0)["recipients"][0]["wamid"]
    post_hook(client, statuses(status(wamid, "delivered")))  # its metadata tells the number's display digits
    post_hook(client, quality("FLAGGED", ts=1_798_000_050))
    rt.webhooks.process_inbox()

    state = client.get("/api/estado-cola/ventas-1").json
    assert state["status"] == "paused" and "calidad del número 15550001111" in state["motivo"]
    assert client.get("/api/estado-cola/soporte-1").json["status"] == "running"
    system = client.get("/api/estado-sistema").json
    ventas = next(b for b in system["buzones"] if b["buzon"] == "ventas")
    assert ventas["display_phone_number"] == VENTAS_DISPLAY and ventas["phone_number_id"] == VENTAS_PNID
    assert ventas["calidad"]["evento"] == "FLAGGED" and ventas["calidad"]["detalle"]["current_limit"] == "TIER_10K"
    assert ventas["calidad"]["fecha"].startswith("2026-12-23")
    assert any("buzón 'ventas'" in w and "FLAGGED" in w for w in system["advertencias"])

    # Unflagged: the warning goes, and the operator can resume.
    post_hook(client, quality("UNFLAGGED", ts=1_798_000_090))
    rt.webhooks.process_inbox()
    system = client.get("/api/estado-sistema").json
    assert not any("FLAGGED" in w for w in system["advertencias"])
    assert client.post("/api/reanudar-campana/ventas-1").status_code == 200


def test_pause_on_low_quality_off_records_without_pausing(fast_settings, queue, clean_slate):
    rt = build_runtime(replace(fast_settings, pause_on_low_quality=False), queue)
    try:
        new_campaign(rt, "sigue", 10)
        rt.inbox.push(statuses())
        rt.inbox.push(quality("FLAGGED", ts=1_798_000_050))
        rt.webhooks.process_inbox()
        assert live(rt, "sigue")["status"] == "running"
        [ventas] = [b for b in rt.store.signals_overview()["buzones"] if b["buzon"] == "ventas"]
        assert ventas["calidad"]["evento"] == "FLAGGED"
    finally:
        rt.close()


def test_account_alerts_and_updates_are_shown_per_buzon_and_per_account(client, app):
    rt = app.extensions["campaigns"]
    post_hook(client, statuses())
    alert = {
        "entity_type": "PHONE_NUMBER",
        "entity_id": VENTAS_PNID,
        "alert_info": {
            "alert_severity": "CRITICAL",
            "alert_status": "ACTIVE",
            "alert_type": "PHONE_NUMBER_RESTRICTED",
            "alert_description": "Messaging restricted",
        },
    }
    post_hook(client, change("account_alerts", alert, 1_798_000_010))
    waba_alert = {
        **alert,
        "entity_type": "WABA",
        "entity_id": WABA,
        "alert_info": {**alert["alert_info"], "alert_type": "OBA_APPROVED"},
    }
    post_hook(client, change("account_alerts", waba_alert, 1_798_000_020))
    post_hook(
        client,
        change("account_update", {"phone_number": "+1 555-000-1111", "event": "ACCOUNT_RESTRICTION"}, 1_798_000_030),
    )
    rt.webhooks.process_inbox()
    system = client.get("/api/estado-sistema").json
    ventas = next(b for b in system["buzones"] if b["buzon"] == "ventas")
    assert ventas["alerta"]["evento"] == "PHONE_NUMBER_RESTRICTED"
    assert ventas["alerta"]["detalle"]["alert_severity"] == "CRITICAL"
    assert ventas["cuenta"]["evento"] == "ACCOUNT_RESTRICTION"
    assert [(a["tipo"], a["id"], a["evento"]) for a in system["alertas_cuenta"]] == [("alert", WABA, "OBA_APPROVED")]
    soporte = next(b for b in system["buzones"] if b["buzon"] == "soporte")
    assert (soporte["calidad"], soporte["alerta"], soporte["cuenta"]) == (None, None, None)


# --- pricing ------------------------------------------------------------------------------------------------------


def test_pricing_is_kept_per_recipient_and_billable_messages_counted_once_by_category(app, client, queue):
    rt = app.extensions["campaigns"]
    new_campaign(rt, "precios", 6)
    queue.run_all(rt)
    wamids = [r["wamid"] for r in rt.store.list_recipients("precios", "sent", 10, 0)["recipients"]]
    body = statuses(
        *(status(w, "sent", pricing=pricing()) for w in wamids[:4]),
        status(wamids[4], "sent", pricing=pricing("utility")),
        status(wamids[5], "sent", pricing=pricing("service", "free_customer_service")),
    )
    post_hook(client, body)
    post_hook(client, body)  # Meta re-sends a notification
    # Delivered carries the same pricing; a read after a delivered (no pricing) changes nothing either.
    post_hook(client, statuses(*(status(w, "delivered", 1_798_000_010, pricing=pricing()) for w in wamids[:4])))
    rt.webhooks.process_inbox()
    state = client.get("/api/estado-cola/precios").json
    assert state["facturables"] == {"marketing": 4, "utility": 1}
    assert state["total_facturables"] == 5 and state["costo"] is None
    assert state["delivered"] == 4
    rows = {r["wamid"]: r for r in client.get("/api/destinatarios/precios?por_pagina=10").json["destinatarios"]}
    assert (rows[wamids[0]]["pricing_category"], rows[wamids[0]]["pricing_type"], rows[wamids[0]]["billable"]) == (
        "marketing",
        "regular",
        True,
    )
    assert rows[wamids[5]]["billable"] is False
    rt.redis.delete("wcq:campaign:precios")  # rebuilt from the rows
    assert client.get("/api/estado-cola/precios").json["facturables"] == {"marketing": 4, "utility": 1}


def test_a_status_with_only_the_older_conversation_object_still_counts(rt, queue):
    new_campaign(rt, "conversacion", 3)
    queue.run_all(rt)
    wamid = rt.store.list_recipients("conversacion", "sent", 1, 0)["recipients"][0]["wamid"]
    rt.inbox.push(statuses(status(wamid, "sent", conversation={"id": "c1", "origin": {"type": "marketing"}})))
    rt.webhooks.process_inbox()
    assert live(rt, "conversacion")["b:marketing:584"] == 1


def test_pricing_of_a_status_that_arrived_before_its_message_is_kept(rt, queue):
    new_campaign(rt, "adelantada", 5)
    campaign_id, _, outcomes = queue.send_unrecorded(rt)
    rt.inbox.push(statuses(status(outcomes[0]["wamid"], "sent", pricing=pricing("utility"))))
    assert rt.webhooks.process_inbox()["orphans"] == 1
    rt.sender.record(campaign_id, rt.owner, outcomes)
    rt.webhooks.process_inbox()
    assert live(rt, "adelantada")["b:utility:584"] == 1


# --- rate card ------------------------------------------------------------------------------------------------------


RATE_CARD_CSV = (
    "categoria,codigo_pais,precio,moneda\nmarketing,58,0.05,USD\nmarketing,57,0.02,USD\nutility,58,0.01,USD\n"
)


@pytest.fixture
def priced_app(fast_settings, queue, clean_slate, tmp_path):
    """The app with a rate card file."""
    card = tmp_path / "tarifas.csv"
    card.write_text(RATE_CARD_CSV)
    application = create_app({"TESTING": True}, settings=replace(fast_settings, rate_card_file=str(card)), queue=queue)
    yield application, card
    application.extensions["campaigns"].close()


def validate(client, csv: bytes, **fields):
    """POST validar-campana as multipart."""
    data = {**FORM, **fields, "archivo_csv": (io.BytesIO(csv), "c.csv", "text/csv")}
    return client.post("/api/validar-campana", data=data, content_type="multipart/form-data")


def test_validar_campana_estimates_the_cost_per_country_and_says_which_category(priced_app, fast_keys):
    app, card = priced_app
    client = app.test_client()
    client.environ_base["HTTP_X_API_KEY"] = fast_keys["operator"]
    csv = make_csv(4) + b"+573001234567,Ana,Plan 1\n+14155550123,Bob,Plan 2\n"
    answer = validate(client, csv)
    assert answer.status_code == 200, answer.json
    cost = answer.json["costo_estimado"]
    assert (cost["categoria"], cost["moneda"], cost["total"]) == ("marketing", "USD", 0.22)
    assert [(c["codigo_pais"], c["destinatarios"], c["subtotal"]) for c in cost["por_pais"]] == [
        ("58", 4, 0.2),
        ("57", 1, 0.02),
    ]
    assert cost["sin_tarifa"] == {"1": 1}
    notes = " ".join(answer.json["notas"])
    assert "supone la categoría 'marketing'" in notes and "+1" in notes

    utility = validate(client, make_csv(3), categoria="utility").json
    assert utility["costo_estimado"]["total"] == 0.03
    assert any("indicada en el campo 'categoria'" in n for n in utility["notas"])
    wrong = validate(client, make_csv(3), categoria="promociones")
    assert wrong.status_code == 422 and set(wrong.json["details"]["fields"]) == {"categoria"}

    card.write_text("categoria,precio\nmarketing,1\n")
    broken = validate(client, make_csv(3)).json
    assert broken["costo_estimado"] is None
    assert any("RATE_CARD_FILE" in n and "codigo_pais" in n for n in broken["notas"])
    assert any("RATE_CARD_FILE" in w for w in client.get("/api/estado-sistema").json["advertencias"])


def test_estado_cola_shows_the_running_cost_of_billable_messages(priced_app, fast_keys, queue):
    app, card = priced_app
    rt = app.extensions["campaigns"]
    client = app.test_client()
    client.environ_base["HTTP_X_API_KEY"] = fast_keys["operator"]
    new_campaign(rt, "gasto", 5)
    queue.run_all(rt)
    wamids = [r["wamid"] for r in rt.store.list_recipients("gasto", "sent", 10, 0)["recipients"]]
    rt.inbox.push(statuses(*(status(w, "sent", pricing=pricing()) for w in wamids[:3])))
    rt.inbox.push(statuses(status(wamids[3], "sent", pricing=pricing("authentication"))))
    rt.webhooks.process_inbox()
    state = client.get("/api/estado-cola/gasto").json
    assert state["costo"] == {"total": 0.15, "moneda": "USD", "sin_tarifa": 1}
    card.write_text(json.dumps({"moneda": "EUR", "tarifas": {"marketing": {"*": 0.1}, "authentication": {"58": 0.5}}}))
    json_card = card.with_suffix(".json")
    card.rename(json_card)
    other = create_app({"TESTING": True}, settings=replace(rt.settings, rate_card_file=str(json_card)), queue=queue)
    try:
        other_client = other.test_client()
        other_client.environ_base["HTTP_X_API_KEY"] = fast_keys["operator"]
        assert other_client.get("/api/estado-cola/gasto").json["costo"] == {
            "total": 0.8,
            "moneda": "EUR",
            "sin_tarifa": 0,
        }
    finally:
        other.extensions["campaigns"].close()


def test_a_held_answer_is_kept_whole_for_crash_recovery():
    # What a worker keeps in Redis until the store has its outcomes: recovery must not lose the hold.
    outcome = {"id": 7, "status": "sent", "wamid": "wamid.X", "retries": 1, "message_status": "paused", "owner": "w"}
    assert decode_answer(7, encode_answer(outcome), "w") == outcome
    plain = {"id": 8, "status": "sent", "wamid": "wamid.Y", "retries": 0}
    assert encode_answer(plain) == "0 wamid.Y", "an accepted send keeps its compact form"


def test_a_caller_limited_to_some_buzones_sees_only_their_numbers(app, client):
    rt = app.extensions["campaigns"]
    key = create_key(rt.store, "solo-soporte", "viewer", ["soporte"])[0]
    post_hook(client, statuses())
    post_hook(client, change("account_alerts", {"entity_type": "WABA", "entity_id": WABA, "alert_info": {}}))
    rt.webhooks.process_inbox()
    try:
        scoped = client.get("/api/estado-sistema", headers={"X-API-Key": key}).json
        assert [b["buzon"] for b in scoped["buzones"]] == ["soporte"] and scoped["alertas_cuenta"] == []
        assert len(client.get("/api/estado-sistema").json["alertas_cuenta"]) == 1
    finally:
        rt.store.revoke_api_key("solo-soporte")
