"""Meta's warnings end to end: the sandbox posts them, the API queues them, a worker acts on them.

Template status and quality notifications pause campaigns; held send answers and per-message pricing are
counted in estado-cola, with the running cost from a rate card; estado-sistema shows each buzón's quality.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import requests

from tests.conftest import APP_SECRET, SENDERS, make_csv, status, upload, wait_for, wait_status
from tests.test_resilience import assert_each_recipient_at_most_once

pytestmark = pytest.mark.usefixtures("clean")

LENTO = SENDERS["lento"][0]  # 40 msg/s: a campaign of 300 runs for about 8 s
LENTO_DISPLAY = "15550003333"


@pytest.fixture(autouse=True)
def no_signals(store):
    """No template status, signal or learned number from an earlier test."""
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        conn.execute(
            "TRUNCATE instancia_sofia.template_statuses, instancia_sofia.whatsapp_signals, "
            "instancia_sofia.sender_numbers"
        )


def hooks_to(sandbox, stack, **options) -> None:
    """Make the sandbox post its notifications to the stack's API."""
    sandbox.configure(webhook_url=stack.api.url + "/webhooks/whatsapp", app_secret=APP_SECRET, **options)


def sender_signals(api, buzon: str) -> dict:
    """What estado-sistema shows for one buzón."""
    answer = api.get("/api/estado-sistema")
    assert answer.status_code == 200, answer.text
    return next(b for b in answer.json()["buzones"] if b["buzon"] == buzon)


def test_a_template_paused_by_whatsapp_pauses_its_campaign_until_approved(make_stack, sandbox):
    stack = make_stack()
    hooks_to(sandbox, stack, webhook_delay_ms=[20, 50])
    stack.start_worker("w")
    assert upload(stack.api, make_csv(300), title="Plantilla pausada", buzon="lento").status_code == 201
    wait_for(lambda: status(stack.api, "plantilla-pausada")["sent"] >= 40, 30, message="the campaign sending")

    posted = sandbox.signal("template-status", template="promo_enero", language="es", event="PAUSED")
    assert posted["http_status"] == 200
    [entry] = posted["body"]["entry"]
    assert entry["changes"][0]["field"] == "message_template_status_update"
    assert entry["changes"][0]["value"]["message_template_name"] == "promo_enero"
    paused = wait_status(stack.api, "plantilla-pausada", {"paused"}, timeout=20)
    assert "plantilla" in paused["motivo"] and paused["pending"] > 0
    # WhatsApp refuses the paused template meanwhile, as the Cloud API does.
    refused = requests.post(
        sandbox.message_url(LENTO),
        json={
            "messaging_product": "whatsapp",
            "to": "584149999999",
            "type": "template",
            "template": {"name": "promo_enero", "language": {"code": "es"}},
        },
        headers={"Authorization": f"Bearer {SENDERS['lento'][1]}"},
        timeout=10,
    )
    assert refused.json()["error"]["code"] == 132015

    denied = stack.api.post("/api/reanudar-campana/plantilla-pausada")
    assert denied.status_code == 409 and "está pausada" in denied.json()["message"]
    assert (
        sandbox.signal("template-status", template="promo_enero", language="es", event="APPROVED")["http_status"] == 200
    )
    wait_for(
        lambda: stack.api.post("/api/reanudar-campana/plantilla-pausada").status_code == 200,
        20,
        message="the resume accepted once the approval is applied",
    )
    done = wait_status(stack.api, "plantilla-pausada", {"completed"}, timeout=60)
    assert done["sent"] + done["failed"] == 300
    assert len(assert_each_recipient_at_most_once(sandbox, LENTO)) == done["sent"]


def test_a_refused_send_blocks_the_resume_before_the_notification_arrives(make_stack, sandbox):
    """WhatsApp refuses the paused template (132015) before its notification reaches us, or with none at all."""
    stack = make_stack()
    stack.start_worker("w")
    assert upload(stack.api, make_csv(300), title="Rechazada", buzon="lento").status_code == 201
    later = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    assert upload(stack.api, make_csv(50), title="Programada", buzon="lento", programar_para=later).status_code == 201
    wait_for(lambda: status(stack.api, "rechazada")["sent"] >= 40, 30, message="the campaign sending")

    sandbox.configure(template_statuses={"promo_enero:es": "PAUSED"})  # no notification is posted
    paused = wait_status(stack.api, "rechazada", {"paused"}, timeout=20)
    assert "132015" in paused["motivo"] and paused["pending"] > 0
    # The template's other open campaigns pause too, as the notification would have paused them.
    scheduled = wait_status(stack.api, "programada", {"paused"}, timeout=20)
    assert "pausó la plantilla 'promo_enero'" in scheduled["motivo"]
    [shown] = stack.api.get("/api/estado-sistema").json()["plantillas"]
    assert (shown["plantilla"], shown["estado"]) == ("promo_enero", "PAUSED") and "132015" in shown["motivo"]
    denied = stack.api.post("/api/reanudar-campana/rechazada")
    assert denied.status_code == 409 and "está pausada" in denied.json()["message"], denied.text

    hooks_to(sandbox, stack)
    approved = sandbox.signal("template-status", template="promo_enero", language="es", event="APPROVED")
    assert approved["http_status"] == 200
    wait_for(
        lambda: stack.api.post("/api/reanudar-campana/rechazada").status_code == 200,
        20,
        message="the resume accepted once the approval is applied",
    )
    done = wait_status(stack.api, "rechazada", {"completed"}, timeout=60)
    assert done["sent"] == 300
    assert len(assert_each_recipient_at_most_once(sandbox, LENTO)) == 300


def test_a_flagged_number_pauses_its_campaigns_and_estado_sistema_shows_its_quality(make_stack, sandbox):
    stack = make_stack()
    hooks_to(sandbox, stack, webhook_delay_ms=[20, 50], display_phone_numbers={LENTO: LENTO_DISPLAY})
    stack.start_worker("w")
    assert upload(stack.api, make_csv(300), title="Calidad", buzon="lento").status_code == 201
    # The number's display digits are learnt from its status notifications.
    wait_for(
        lambda: sender_signals(stack.api, "lento")["display_phone_number"] == LENTO_DISPLAY,
        30,
        message="the display number learnt from the status notifications",
    )
    assert (
        sandbox.signal("quality", phone_number_id=LENTO, event="FLAGGED", current_limit="TIER_2K")["http_status"] == 200
    )
    paused = wait_status(stack.api, "calidad", {"paused"}, timeout=20)
    assert f"calidad del número {LENTO_DISPLAY}" in paused["motivo"]
    shown = sender_signals(stack.api, "lento")
    assert shown["calidad"]["evento"] == "FLAGGED" and shown["calidad"]["detalle"]["current_limit"] == "TIER_2K"
    warnings = stack.api.get("/api/estado-sistema").json()["advertencias"]
    assert any("buzón 'lento'" in w for w in warnings)

    sandbox.signal(
        "account-alert",
        entity_type="PHONE_NUMBER",
        entity_id=LENTO,
        alert_type="PHONE_NUMBER_QUALITY_LOW",
        alert_severity="CRITICAL",
    )
    sandbox.signal("account-alert", alert_type="OBA_APPROVED", alert_severity="INFORMATIONAL")
    wait_for(
        lambda: (sender_signals(stack.api, "lento")["alerta"] or {}).get("evento") == "PHONE_NUMBER_QUALITY_LOW",
        20,
        message="the number's alert shown",
    )
    accounts = stack.api.get("/api/estado-sistema").json()["alertas_cuenta"]
    assert [(a["tipo"], a["evento"]) for a in accounts] == [("alert", "OBA_APPROVED")]
    # Resuming is the operator's call (the quality pause does not block it).
    assert stack.api.post("/api/reanudar-campana/calidad").status_code == 200
    wait_status(stack.api, "calidad", {"completed"}, timeout=60)
    assert_each_recipient_at_most_once(sandbox, LENTO)


RATE_CARD = "categoria,codigo_pais,precio,moneda\nutility,58,0.0085,USD\nmarketing,*,0.06,USD\n"


def test_held_answers_pricing_and_the_running_cost(make_stack, sandbox, tmp_path):
    card = tmp_path / "tarifas.csv"
    card.write_text(RATE_CARD)
    stack = make_stack(RATE_CARD_FILE=str(card))
    held = {f"58{4141000000 + i}": "held_for_quality_assessment" for i in range(3)}
    hooks_to(
        sandbox,
        stack,
        webhook_delay_ms=[10, 30],
        held_recipients=held,
        template_categories={"promo_enero": "utility"},
        delivered_share=1.0,
    )
    csv = make_csv(60)
    checked = stack.api.post(
        "/api/validar-campana",
        data={"titulo_campana": "Costos", "plantilla": "promo_enero", "buzon": "ventas", "categoria": "utility"},
        files={"archivo_csv": ("c.csv", csv, "text/csv")},
    )
    assert checked.status_code == 200, checked.text
    assert checked.json()["costo_estimado"]["total"] == pytest.approx(60 * 0.0085)
    stack.start_worker("w")
    assert upload(stack.api, csv, title="Costos").status_code == 201
    wait_status(stack.api, "costos", {"completed"}, timeout=60)
    sandbox.flush_webhooks()
    final = wait_for(
        lambda: (s := status(stack.api, "costos"))["total_facturables"] == 60 and s["delivered"] == 60 and s,
        30,
        message="every message's pricing and delivery applied",
    )
    assert final["held"] == 3 and final["sent"] == 60
    assert final["facturables"] == {"utility": 60}
    assert final["costo"] == {"total": pytest.approx(60 * 0.0085), "moneda": "USD", "sin_tarifa": 0}
    rows = stack.api.get("/api/destinatarios/costos?por_pagina=100").json()["destinatarios"]
    held_rows = [r for r in rows if r["phone"] in held]
    assert {r["message_status"] for r in held_rows} == {"held_for_quality_assessment"}
    assert all(r["delivery_status"] in ("delivered", "read") for r in held_rows), "their webhooks settled them"
    assert {(r["pricing_category"], r["pricing_type"], r["billable"]) for r in rows} == {("utility", "regular", True)}
