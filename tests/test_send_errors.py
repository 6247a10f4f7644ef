"""WhatsApp errors handled by their code, as an operator sees them in estado-cola."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.conftest import SENDERS, make_csv, status, upload, wait_for, wait_status

pytestmark = pytest.mark.usefixtures("worker", "clean")


def phones(n: int, start: int = 4141000000) -> list[str]:
    """The E.164 numbers make_csv generates."""
    return [f"58{start + i}" for i in range(n)]


def test_undeliverable_numbers_fail_with_their_code_and_retry_sends_them(api, sandbox):
    bad = phones(30)[::3]  # 10 of 30
    sandbox.configure(recipient_errors={p: 131026 for p in bad})
    assert upload(api, make_csv(30), title="Algunos malos").status_code == 201
    final = wait_status(api, "algunos-malos", {"completed"})
    assert (final["sent"], final["failed"], final["progress"]) == (20, 10, 100.0)
    [group] = final["errores"]
    assert group["codigo"] == "131026" and group["cantidad"] == 10
    assert "no puede recibir" in group["descripcion"]
    failed = api.get("/api/destinatarios/algunos-malos", params={"estado": "failed"}).json()
    assert sorted(r["phone"] for r in failed["destinatarios"]) == sorted(bad)
    assert {r["error_code"] for r in failed["destinatarios"]} == {131026}

    sandbox.configure(recipient_errors={})
    response = api.post("/api/reintentar-campana/algunos-malos", json={"estados": ["failed"]})
    assert response.status_code == 200 and response.json()["reencolados"] == 10
    again = wait_status(api, "algunos-malos", {"completed"})
    assert (again["sent"], again["failed"], again["errores"]) == (30, 0, [])
    assert set(Counter(m["to"] for m in sandbox.messages()).values()) == {1}


def test_a_high_error_rate_pauses_the_campaign(api, sandbox):
    # Four times what the first batches in flight hold (5 x 100), so the pause lands with recipients left.
    numbers = phones(2000)
    sandbox.configure(recipient_errors={p: 131026 for i, p in enumerate(numbers) if i % 10 < 7})
    upload(api, make_csv(2000), title="Lista vieja", buzon="soporte")
    paused = wait_status(api, "lista-vieja", {"paused"}, timeout=30)
    assert "Pausa automática" in paused["motivo"] and paused["pending"] > 0
    assert paused["errores"][0]["codigo"] == "131026"


def test_throttling_from_whatsapp_slows_down_and_never_fails_a_message(api, sandbox):
    pnid = SENDERS["lento"][0]
    sandbox.configure(mps={pnid: 15})  # another system uses the number: WhatsApp allows less than we think
    upload(api, make_csv(150), title="Estrangulada", buzon="lento")
    final = wait_status(api, "estrangulada", {"completed"}, timeout=90)
    assert (final["sent"], final["failed"]) == (150, 0)
    assert sandbox.stats()["by_phone_number_id"][pnid]["rejected"].get("130429", 0) > 0
    assert final["retries"] > 0
    assert set(Counter(m["to"] for m in sandbox.messages()).values()) == {1}


def test_messages_without_an_answer_become_unknown_and_are_not_resent(api, sandbox):
    sandbox.configure(timeout_share=0.1, timeout_hold_s=5, timeout_accepts=True)
    upload(api, make_csv(200), title="Sin respuesta")
    final = wait_status(api, "sin-respuesta", {"completed"}, timeout=90)
    assert final["unknown"] > 0 and final["sent"] + final["unknown"] == 200
    assert set(Counter(m["to"] for m in sandbox.messages()).values()) == {1}, "never resent blindly"
    unknown = api.get("/api/destinatarios/sin-respuesta", params={"estado": "unknown"}).json()
    assert unknown["total"] == final["unknown"]
    assert all("puede haberse entregado" in r["error_detail"] for r in unknown["destinatarios"])

    sandbox.configure(timeout_share=0)
    assert api.post("/api/reintentar-campana/sin-respuesta").json()["reencolados"] == final["unknown"]
    again = wait_status(api, "sin-respuesta", {"completed"})
    assert (again["sent"], again["unknown"]) == (200, 0)


def test_queue_status_shows_rate_and_eta_while_sending(api):
    upload(api, make_csv(400), title="Con eta", buzon="lento")
    running = wait_for(
        lambda: (s := status(api, "con-eta"))["messages_per_second"] > 0 and s, 20, message="a measured rate"
    )
    assert running["status"] == "running" and running["eta_seconds"] > 0
    assert 20 <= running["messages_per_second"] <= 45, "close to the buzón's 40 msg/s"
    assert api.post("/api/reintentar-campana/con-eta").status_code == 409, "nothing unknown to retry yet"
    api.post("/api/cancelar-campana/con-eta")
