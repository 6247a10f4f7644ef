"""GET /metrics in process: the families after a campaign, the token that guards them, nothing personal in them."""

from __future__ import annotations

import hashlib
import hmac
import io
from dataclasses import replace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import make_csv
from tests.fast.conftest import APP_SECRET
from tests.fast.test_webhook_applier import notification, status
from webapi import create_app

TOKEN = "metricas-de-prueba"
FAMILIES = {
    "wcq_messages": "counter",
    "wcq_send_request_seconds": "histogram",
    "wcq_rate_limiter_wait_seconds": "histogram",
    "wcq_throttled_answers": "counter",
    "wcq_webhook_statuses": "counter",
    "wcq_webhook_bodies_drained": "counter",
    "wcq_webhook_notifications_received": "counter",
    "wcq_uploads": "counter",
    "wcq_upload_rows": "counter",
    "wcq_redis_up": "gauge",
    "wcq_queue_depth": "gauge",
    "wcq_active_campaigns": "gauge",
    "wcq_batches_in_flight": "gauge",
    "wcq_webhook_inbox_depth": "gauge",
}


@pytest.fixture
def metrics_app(fast_settings, queue, clean_slate):
    """The app with METRICS_TOKEN set."""
    application = create_app({"TESTING": True}, settings=replace(fast_settings, metrics_token=TOKEN), queue=queue)
    yield application
    application.extensions["campaigns"].close()


@pytest.fixture
def metrics_client(metrics_app, fast_keys):
    """An operator's test client of that app."""
    client = metrics_app.test_client()
    client.environ_base["HTTP_X_API_KEY"] = fast_keys["operator"]
    return client


def scrape(client) -> tuple[str, dict]:
    """The /metrics text and its samples by (name, sorted labels)."""
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.text
    assert response.mimetype == "text/plain"
    text = response.text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return text, samples


def value(samples: dict, name: str, **labels: str) -> float:
    """One sample's value, 0 when the series does not exist yet."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def signed_post(client, body: bytes, secret: str = APP_SECRET):
    """POST a notification body with its signature."""
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return client.post(
        "/webhooks/whatsapp", data=body, headers={"X-Hub-Signature-256": signature}, content_type="application/json"
    )


def test_the_families_after_a_campaign_with_failures_and_notifications(
    metrics_client, metrics_app, queue, fast_sandbox, fast_keys, senders
):
    rt = metrics_app.extensions["campaigns"]
    _, before = scrape(metrics_client)
    fast_sandbox.configure(recipient_errors={"584141000003": 131026})
    csv = make_csv(24) + b"123\n"  # one row rejected
    form = {"titulo_campana": "Metricas", "plantilla": "promo_enero", "buzon": "ventas", "idioma": "es"}
    created = metrics_client.post(
        "/api/crear-campana",
        data={**form, "archivo_csv": (io.BytesIO(csv), "c.csv", "text/csv")},
        content_type="multipart/form-data",
    )
    assert created.status_code == 201, created.json
    _, queued = scrape(metrics_client)
    assert value(queued, "wcq_batches_in_flight") >= 1 and value(queued, "wcq_active_campaigns") >= 1
    queue.run_all(rt)

    wamid = rt.store.list_recipients("metricas", "sent", 1, 0)["recipients"][0]["wamid"]
    assert signed_post(metrics_client, notification(status(wamid, "delivered"))).status_code == 200
    assert signed_post(metrics_client, notification(status(wamid, "read")), secret="otro").status_code == 401
    _, waiting = scrape(metrics_client)
    assert value(waiting, "wcq_webhook_inbox_depth") == 1
    rt.webhooks.process_inbox()

    text, after = scrape(metrics_client)
    found = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert FAMILIES.items() <= found.items()

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("wcq_messages_total", outcome="sent", error_code="") == 23
    assert delta("wcq_messages_total", outcome="failed", error_code="131026") == 1
    assert delta("wcq_send_request_seconds_count") == 24
    assert delta("wcq_rate_limiter_wait_seconds_count") == 24
    assert delta("wcq_uploads_total", result="created") == 1
    assert delta("wcq_upload_rows_total", result="accepted") == 24
    assert delta("wcq_upload_rows_total", result="rejected") == 1
    assert delta("wcq_webhook_notifications_received_total", result="accepted") == 1
    assert delta("wcq_webhook_notifications_received_total", result="bad_signature") == 1
    assert delta("wcq_webhook_statuses_total", result="applied") == 1
    assert delta("wcq_webhook_bodies_drained_total") == 1
    assert value(after, "wcq_redis_up") == 1 and value(after, "wcq_batches_in_flight") == 0
    assert value(after, "wcq_queue_depth") == 0 and value(after, "wcq_webhook_inbox_depth") == 0

    # Nothing personal or secret: no phone number (whole or in part), wamid, token, key or campaign id.
    for secret in [*fast_keys.values(), *(token for _, token, _ in senders.values()), wamid, "metricas", APP_SECRET]:
        assert secret not in text
    assert "5841410" not in text and TOKEN not in text


def test_metrics_need_the_token_and_are_off_without_one(metrics_client, client):
    assert metrics_client.get("/metrics").status_code == 401
    wrong = metrics_client.get("/metrics", headers={"Authorization": "Bearer otra-cosa"})
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"].startswith("Bearer")
    assert wrong.json["success"] is False and "METRICS_TOKEN" in wrong.json["message"]
    # An API key is not the metrics token.
    assert metrics_client.get("/metrics", headers={"Authorization": "Bearer wcq_x"}).status_code == 401
    off = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert off.status_code == 404 and off.json == client.get("/no-existe").json


def test_the_send_loops_histogram_reads_as_prometheus_clients_own():
    """The send loop's lighter histogram exposes what prometheus_client's Histogram would for the same
    observations: every bucket's cumulative count (an observation on a bound counts in that bucket), the
    count and the sum."""
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from tasks.metrics import SendHistogram

    buckets = (0.001, 0.025, 0.1, 1.0, 20.0)
    observed = [0.0, 0.001, 0.0010001, 0.025, 0.07, 0.1, 0.5, 1.0, 19.99, 20.0, 20.5, 600.0]
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("wcq_demo_seconds", "Demo.", buckets=buckets, registry=theirs)
    light = SendHistogram("wcq_demo_seconds", "Demo.", buckets, registry=ours)
    for amount in observed:
        reference.observe(amount)
        light.observe(amount)

    def lines(registry) -> list[str]:
        return [line for line in generate_latest(registry).decode().splitlines() if "_created" not in line]

    assert lines(ours) == lines(theirs)
    assert 'wcq_demo_seconds_bucket{le="0.025"} 4.0' in lines(ours)
