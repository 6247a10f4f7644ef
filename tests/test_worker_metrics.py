"""A real gevent worker serves its own metrics on METRICS_PORT: what it sent in a real campaign shows there."""

from __future__ import annotations

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port, make_csv, upload, wait_for, wait_status


def worker_samples(port: int) -> dict:
    """The worker's samples by (name, sorted labels)."""
    response = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert response.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def test_a_worker_serves_the_messages_it_sent(make_stack, clean, sandbox):
    port = free_port()
    stack = make_stack(METRICS_PORT=str(port))
    stack.start_worker("metricas")
    before = wait_for(lambda: _try(port), 20, message="the worker's metrics port")
    created = upload(stack.api, make_csv(150, start=4149100000), title="Metricas worker")
    assert created.status_code == 201, created.text
    campaign_id = created.json()["campaign_id"]
    final = wait_status(stack.api, campaign_id, {"completed"}, timeout=120)
    assert final["sent"] == 150

    after = worker_samples(port)
    sent_key = ("wcq_messages_total", (("error_code", ""), ("outcome", "sent")))
    assert after.get(sent_key, 0) - before.get(sent_key, 0) == 150
    assert after[("wcq_send_request_seconds_count", ())] >= 150
    assert after[("wcq_rate_limiter_wait_seconds_count", ())] >= 150
    assert ("process_cpu_seconds_total", ()) in after  # the process collector of the default registry
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    assert "58414910" not in text and "token-ventas" not in text and campaign_id not in text


def _try(port: int) -> dict | None:
    """The worker's samples, or None while its port does not answer yet."""
    try:
        return worker_samples(port)
    except requests.ConnectionError:
        return None
