"""The console's campaign page shows held messages, billable messages by category and the running cost."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import APP_SECRET, make_csv, upload, wait_status
from tests.test_console import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, ConsolePage, playwright_api

pytestmark = [
    pytest.mark.usefixtures("clean"),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium is not installed (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module."""
    with playwright_api.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def test_the_campaign_page_shows_held_billable_and_cost(browser, make_stack, sandbox, api_keys, tmp_path):
    card = tmp_path / "tarifas.csv"
    card.write_text("categoria,codigo_pais,precio,moneda\nmarketing,58,0.05,USD\n")
    stack = make_stack(RATE_CARD_FILE=str(card))
    sandbox.configure(
        webhook_url=stack.api.url + "/webhooks/whatsapp",
        app_secret=APP_SECRET,
        webhook_delay_ms=[10, 30],
        held_recipients={"584141000000": "held_for_quality_assessment", "584141000001": "paused"},
    )
    stack.start_worker("w")
    assert upload(stack.api, make_csv(40), title="Costos consola").status_code == 201
    wait_status(stack.api, "costos-consola", {"completed"}, timeout=60)
    sandbox.flush_webhooks()

    folder = ARTIFACTS / "signals"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    view = ConsolePage(browser, 1280, folder)
    page, expect = view.page, playwright_api.expect
    try:
        view.sign_in_with_key(stack.api.url + "/", api_keys["operator"], "tests-operator")
        page.goto(stack.api.url + "/#/campana/costos-consola")
        expect(page.get_by_test_id("retenidos")).to_contain_text("2")
        expect(page.get_by_test_id("facturables")).to_contain_text("40", timeout=20_000)
        expect(page.get_by_test_id("facturables")).to_contain_text("marketing: 40")
        expect(page.get_by_test_id("costo")).to_have_text("2 USD")
        view.fits()
        view.shot("costos")
        assert view.unexpected_errors() == []
    finally:
        view.context.close()
