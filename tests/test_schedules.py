"""Scheduled starts and the portfolio's daily limit with real processes: gevent workers, two beats by mistake,
the API over HTTP and the sandbox posting Meta's capability notification."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from tests.conftest import APP_SECRET, SENDERS, Worker, make_csv, status, upload, wait_for, wait_status


def test_two_beats_by_mistake_start_a_scheduled_campaign_once_and_on_time(make_stack, clean, sandbox, tmp_path):
    stack = make_stack()
    stack.start_worker("w1")
    second_beat = Worker(stack.env, "beat-2", log_dir=tmp_path, beat=True)
    try:
        at = datetime.now(UTC) + timedelta(seconds=8)
        response = upload(stack.api, make_csv(300), title="Dos beats", programar_para=at.isoformat())
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "scheduled"
        wait_for(lambda: datetime.now(UTC) >= at - timedelta(seconds=1), 15, 0.1, "a second before the start")
        assert status(stack.api, "dos-beats")["status"] == "scheduled"
        assert sandbox.stats()["accepted"] == 0

        state = wait_status(stack.api, "dos-beats", {"completed"}, timeout=90)
        started = datetime.fromisoformat(state["started_at"])
        assert timedelta(0) <= started - at < timedelta(seconds=4), (started, at)
        assert state["sent"] == 300
        sent = Counter(m["to"] for m in sandbox.messages())
        assert len(sent) == 300 and set(sent.values()) == {1}
        assert stack.workers["w1"].log().count("Campaña dos-beats arranca") == 1
        for beat in (stack.beat, second_beat):  # both beats were asking for it all along
            assert "campaigns.start_due" in beat.log()
    finally:
        second_beat.stop()


def test_the_portfolio_limit_holds_until_meta_raises_it_and_whatsapp_never_refuses(make_stack, clean, store, sandbox):
    pnid = SENDERS["soporte"][0]
    store.upsert_portfolio("pf-e2e", 20, ["waba-e2e"])
    store.set_sender_portfolio("soporte", "pf-e2e")
    stack = make_stack(CREDENTIALS_CACHE_S="1")
    try:
        sandbox.configure(
            portfolios={"pf-e2e": {"limit": 20, "numbers": [pnid], "waba_id": "waba-e2e"}},
            webhook_url=stack.api.url + "/webhooks/whatsapp",
            app_secret=APP_SECRET,
        )
        stack.start_worker("w1")
        csv = make_csv(50)
        validated = stack.api.post(
            "/api/validar-campana",
            data={"titulo_campana": "Cupo", "plantilla": "promo_enero", "buzon": "soporte"},
            files={"archivo_csv": ("c.csv", csv, "text/csv")},
        ).json()
        assert validated["dias_estimados"] == 3 and validated["limite_diario"]["disponibles"] == 20
        created = upload(stack.api, csv, title="Cupo", buzon="soporte")
        assert created.status_code == 201 and created.json()["dias_estimados"] == 3

        state = wait_status(stack.api, "cupo", {"waiting"}, timeout=60)
        time.sleep(1)  # chunks still in flight hand back
        state = status(stack.api, "cupo")
        assert state["status"] == "waiting" and state["sent"] == 20, state
        assert "límite diario del portafolio 'pf-e2e'" in state["motivo"]
        free_at = datetime.fromisoformat(state["reanuda_en"])
        assert timedelta(hours=23) < free_at - datetime.now(UTC) <= timedelta(hours=24)

        answer = sandbox.change_portfolio_limit("pf-e2e", 2000)
        assert answer["webhook_status"] == 200
        wait_status(stack.api, "cupo", {"completed"}, timeout=60)
        sent = Counter(m["to"] for m in sandbox.messages())
        assert len(sent) == 50 and set(sent.values()) == {1}
        assert sandbox.portfolios()["pf-e2e"] == {"limit": 2000, "unique_recipients": 50, "refused": 0}
        assert "131048" not in str(sandbox.stats()["rejected"])
    finally:
        store.set_sender_portfolio("soporte", None)
        sandbox.reset(config=True)


def test_quiet_hours_hold_a_running_campaign_and_beat_resumes_it_at_the_opening(make_stack, clean, sandbox):
    stack = make_stack()
    stack.start_worker("w1")
    caracas = ZoneInfo("America/Caracas")
    now = datetime.now(UTC)
    closes = (now + timedelta(seconds=5)).replace(microsecond=0)
    opens = closes + timedelta(seconds=5)
    # Open now, closed for five seconds from `closes`: 400 messages at 40/s cannot all go out before it.
    window = f"{opens.astimezone(caracas):%H:%M:%S}-{closes.astimezone(caracas):%H:%M:%S}"
    created = upload(stack.api, make_csv(400), title="Franja", buzon="lento", horario_envio=window)
    assert created.status_code == 201 and created.json()["status"] == "running", created.text

    held = wait_status(stack.api, "franja", {"waiting"}, timeout=30)
    assert "Fuera del horario de envío" in held["motivo"] and datetime.fromisoformat(held["reanuda_en"]) == opens
    state = wait_status(stack.api, "franja", {"completed"}, timeout=90)
    assert state["sent"] == 400
    accepted = sandbox.messages()
    sent = Counter(m["to"] for m in accepted)
    assert len(sent) == 400 and set(sent.values()) == {1}
    during = [m for m in accepted if closes.timestamp() + 0.05 <= m["received_at"] < opens.timestamp()]
    assert during == []  # nothing left while the window was closed
    assert any(m["received_at"] >= opens.timestamp() for m in accepted)  # and the rest went out after it opened
