"""Every route, in process through `app.test_client()`, with the test playing the worker."""

from __future__ import annotations

import hashlib
import hmac
import io
import json

import pytest

from tests.conftest import make_csv
from tests.fast.conftest import APP_SECRET

FORM = {"titulo_campana": "Rutas", "plantilla": "promo_enero", "buzon": "ventas", "idioma": "es"}


def upload(client, csv: bytes, **fields):
    """POST crear-campana as multipart, as the front end does."""
    data = {**FORM, **fields, "archivo_csv": (io.BytesIO(csv), "contactos.csv", "text/csv")}
    return client.post("/api/crear-campana", data=data, content_type="multipart/form-data")


def test_upload_then_status_list_recipients_and_completion(client, app, queue, fast_sandbox):
    created = upload(client, make_csv(25))
    assert created.status_code == 201, created.json
    body = created.json
    assert (body["success"], body["campaign_id"], body["total_messages"]) == (True, "rutas", 25)
    status = client.get("/api/estado-cola/rutas").json
    assert (status["status"], status["pending"], status["progress"]) == ("running", 25, 0.0)

    queue.run_all(app.extensions["campaigns"])
    status = client.get("/api/estado-cola/rutas").json
    assert (status["status"], status["sent"], status["pending"], status["progress"]) == ("completed", 25, 0, 100.0)
    listed = client.get("/api/listar-campanas").json
    assert [c["id"] for c in listed["campaigns"]] == ["rutas"] and listed["total_campaigns"] == 1
    recipients = client.get("/api/destinatarios/rutas?estado=sent&por_pagina=10").json
    assert recipients["total"] == 25 and len(recipients["destinatarios"]) == 10
    assert len(fast_sandbox.messages()) == 25


def test_the_same_idempotency_key_creates_one_campaign(client, queue):
    headers = {"Idempotency-Key": "clave-1"}
    data = lambda: {**FORM, "archivo_csv": (io.BytesIO(make_csv(5)), "c.csv", "text/csv")}  # noqa: E731
    first = client.post("/api/crear-campana", data=data(), headers=headers, content_type="multipart/form-data")
    again = client.post("/api/crear-campana", data=data(), headers=headers, content_type="multipart/form-data")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json["duplicate_request"] is True and again.json["campaign_id"] == first.json["campaign_id"]
    assert len(queue.batches) == 1


def test_actions_answer_with_the_new_status_or_a_409_saying_why(client, app, queue):
    upload(client, make_csv(30), titulo_campana="Acciones")
    paused = client.post("/api/pausar-campana/acciones")
    assert (paused.status_code, paused.json["status"]) == (200, "paused")
    again = client.post("/api/pausar-campana/acciones")
    assert again.status_code == 409 and "no se puede pausar" in again.json["message"]
    resumed = client.post("/api/reanudar-campana/acciones")
    assert (resumed.status_code, resumed.json["status"]) == (200, "running")
    cancelled = client.post("/api/cancelar-campana/acciones")
    assert cancelled.status_code == 200 and "30 mensajes" in cancelled.json["message"]
    retried = client.post("/api/reintentar-campana/acciones", json={"estados": ["failed"]})
    assert retried.status_code == 409 and "cancelada" in retried.json["message"]


def test_retry_of_failed_recipients_reports_how_many(client, app, queue, fast_sandbox):
    fast_sandbox.configure(recipient_errors={"584141000001": 131026, "584141000002": 131026})
    upload(client, make_csv(6), titulo_campana="Fallidos")
    queue.run_all(app.extensions["campaigns"])
    assert client.get("/api/estado-cola/fallidos").json["failed"] == 2
    fast_sandbox.configure(recipient_errors={})
    retried = client.post("/api/reintentar-campana/fallidos", json={"estados": ["failed"]})
    assert (retried.status_code, retried.json["reencolados"]) == (200, 2)
    queue.run_all(app.extensions["campaigns"])
    assert client.get("/api/estado-cola/fallidos").json["sent"] == 6


@pytest.mark.parametrize("path", ["/api/estado-cola/nadie", "/api/destinatarios/nadie"])
def test_unknown_campaigns_get_a_404_that_says_so(client, path):
    response = client.get(path)
    assert response.status_code == 404 and "No existe la campaña" in response.json["message"]


@pytest.mark.parametrize("action", ["pausar", "reanudar", "cancelar", "reintentar"])
def test_actions_on_unknown_campaigns_get_a_404(client, action):
    response = client.post(f"/api/{action}-campana/nadie", json={"estados": ["failed"]})
    assert response.status_code == 404 and response.json["success"] is False


def test_bad_fields_get_a_422_naming_them(client):
    response = upload(client, make_csv(2), idioma="espanol", plantilla="Promo!")
    assert response.status_code == 422
    assert set(response.json["details"]["fields"]) == {"idioma", "plantilla"}


def test_system_status_reports_the_queue(client):
    body = client.get("/api/estado-sistema").json
    assert body["success"] is True and body["redis_connected"] is True and body["database_connected"] is True
    assert body["instance_id"] == "fast" and body["batch_size"] == 10


def test_webhook_handshake_and_signed_notifications(client, app, queue):
    ok = client.get("/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=verify-fast&hub.challenge=42")
    assert (ok.status_code, ok.text) == (200, "42")
    assert client.get("/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=x&hub.challenge=1").status_code == 403

    body = json.dumps({"object": "whatsapp_business_account", "entry": []}).encode()
    signature = "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    accepted = client.post(
        "/webhooks/whatsapp", data=body, headers={"X-Hub-Signature-256": signature}, content_type="application/json"
    )
    assert accepted.status_code == 200
    refused = client.post(
        "/webhooks/whatsapp", data=body, headers={"X-Hub-Signature-256": "sha256=00"}, content_type="application/json"
    )
    assert refused.status_code == 401
    assert app.extensions["campaigns"].inbox.size() == 1  # only the signed body was kept
    again = client.post(
        "/webhooks/whatsapp", data=body, headers={"X-Hub-Signature-256": signature}, content_type="application/json"
    )
    assert again.status_code == 200
    assert queue.webhook_drains == 1  # one drain task for the burst, not one per notification


def test_the_openapi_document_lists_every_route(client):
    spec = client.get("/api/openapi.json").json
    for path in ("/api/crear-campana", "/api/estado-cola/{campaign_id}", "/api/listar-campanas", "/api/estado-sistema"):
        assert path in spec["paths"]


def test_an_unknown_route_answers_json(client):
    response = client.get("/api/no-existe")
    assert response.status_code == 404 and response.json["success"] is False
