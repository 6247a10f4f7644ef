"""Opt-outs and deferred recipients end to end: a real gevent worker, beat, the API server and the sandbox's
signed webhooks (user_preferences, an inbound BAJA) arriving while a campaign runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import APP_SECRET, SENDERS, make_csv, status, upload, wait_for, wait_status

pytestmark = pytest.mark.usefixtures("clean")

PNID = SENDERS["lento"][0]  # 40 messages/s: 400 recipients take about ten seconds
TOTAL = 400


def numbers() -> list[str]:
    """The campaign's numbers, as make_csv writes them."""
    return [f"58{4141000000 + i}" for i in range(TOTAL)]


def test_opt_outs_during_a_campaign_and_a_deferred_recipient_end_to_end(make_stack, sandbox, api_keys):
    # 131049 retried after 0.002 h (7.2 s): the campaign has sent everything else by then and must wait.
    stack = make_stack(MARKETING_LIMIT_RETRY_H="0.002")
    phones = numbers()
    limited, stops, replies = phones[390], phones[350], phones[360]
    sandbox.configure(
        webhook_url=stack.api.url + "/webhooks/whatsapp",
        app_secret=APP_SECRET,
        delivered_share=0.0,
        recipient_errors={limited: 131049},
    )
    stack.start_worker("w1")
    assert upload(stack.api, make_csv(TOTAL), title="Bajas en vivo", buzon="lento").status_code == 201
    wait_for(lambda: status(stack.api, "bajas-en-vivo")["sent"] >= 40, 30, message="the campaign under way")
    # While it runs: one recipient stops marketing messages in WhatsApp, another replies "Baja".
    assert sandbox.opt_out(stops, PNID)["webhook"]["status"] == 200
    assert sandbox.inbound(replies, " Baja ", PNID)["webhook"]["status"] == 200

    waiting = wait_for(
        lambda: (s := status(stack.api, "bajas-en-vivo"))["pending"] == 0 and s["deferred"] == 1 and s["motivo"] and s,
        60,
        message="everything but the deferred recipient settled",
    )
    assert waiting["status"] == "running" and "131049" in waiting["motivo"] and waiting["progress"] == 99.8
    sandbox.configure(recipient_errors={})  # its next try is accepted

    done = wait_status(stack.api, "bajas-en-vivo", {"completed"}, timeout=60)
    assert (done["sent"], done["suppressed"], done["deferred"], done["failed"]) == (TOTAL - 2, 2, 0, 0)
    assert done["progress"] == 100.0 and done["motivo"] is None
    accepted = [m["to"] for m in sandbox.messages(PNID)]
    assert stops not in accepted and replies not in accepted
    assert accepted.count(limited) == 1 and len(accepted) == len(set(accepted)) == TOTAL - 2

    listed = stack.api.get("/api/bajas").json()
    assert {(b["telefono"], b["origen"]) for b in listed["bajas"]} == {
        (stops, "user_preferences"),
        (replies, "palabra_clave"),
    }
    audit = stack.api.get("/api/auditoria", headers={"X-API-Key": api_keys["admin"]}).json()["entradas"]
    assert {(e["details"].get("telefono"), e["actor_kind"]) for e in audit if e["action"] == "optout.add"} == {
        (stops, "whatsapp"),
        (replies, "whatsapp"),
    }
    # The next upload of the same list leaves both numbers out, with their rows.
    checked = stack.api.post(
        "/api/validar-campana",
        data={"titulo_campana": "Otra", "plantilla": "promo_enero", "buzon": "lento", "idioma": "es"},
        files={"archivo_csv": ("c.csv", make_csv(TOTAL), "text/csv")},
    ).json()
    assert checked["total_messages"] == TOTAL - 2
    assert sorted(r["fila"] for r in checked["rechazados"]) == [352, 362]


CHROMIUM = "/usr/bin/chromium"


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium is not installed (apt-get install chromium)")
def test_the_console_shows_deferred_and_suppressed_recipients(make_stack, sandbox, api_keys):
    playwright_api = pytest.importorskip("playwright.sync_api")
    stack = make_stack()  # 131049 waits the default 24 h: the campaign keeps waiting for it
    phones = numbers()
    sandbox.configure(recipient_errors={phones[0]: 131049})
    stack.start_worker("w1")
    assert upload(stack.api, make_csv(TOTAL), title="Consola bajas", buzon="lento").status_code == 201
    added = stack.api.post("/api/bajas", json={"telefono": phones[390], "buzon": "lento", "motivo": "llamó"})
    assert added.status_code == 201, added.text
    wait_for(
        lambda: (s := status(stack.api, "consola-bajas"))["pending"] == 0 and s["motivo"],
        60,
        message="everything but the deferred recipient settled",
    )
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(locale="es-ES")
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(stack.api.url + "/")
            page.locator("#clave").fill(api_keys["operator"])
            page.keyboard.press("Enter")
            page.goto(stack.api.url + "/#/campana/consola-bajas")
            expect = playwright_api.expect
            expect(page.get_by_test_id("diferidos")).to_contain_text("1", timeout=15_000)
            expect(page.get_by_test_id("bajas")).to_contain_text("1")
            expect(page.get_by_test_id("enviados")).to_contain_text(str(TOTAL - 2))
            expect(page.locator("#c-motivo")).to_contain_text("131049")
            assert errors == []
        finally:
            browser.close()
