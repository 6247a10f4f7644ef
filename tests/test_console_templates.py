"""The console's prepare step shows the template as WhatsApp lists it (category, quality) and the notes.

A real browser (Debian's Chromium through Playwright) against a real API process, whose template check reads
the sandbox's Graph API listing; no worker is needed, since nothing is launched.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import SENDERS
from tests.support.templates import TEMPLATES, WABA_ID
from tests.test_console import CHROMIUM, CHROMIUM_ARGS

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Chromium is not installed (apt-get install chromium)"
)


@pytest.fixture
def ventas_with_waba(store, sandbox):
    """'ventas' carries the sandbox's WABA id for the test; the sandbox lists the rich catalogue."""
    pnid, token, mps = SENDERS["ventas"]
    sandbox.configure(templates=TEMPLATES)
    store.upsert_sender("ventas", pnid, token, mps, WABA_ID)
    yield
    store.upsert_sender("ventas", pnid, token, mps)
    sandbox.reset(config=True)


def test_the_prepare_step_shows_category_quality_and_notes(make_stack, clean, api_keys, ventas_with_waba):
    stack = make_stack()
    expect = playwright_api.expect
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="es-ES")
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            page.goto(stack.api.url + "/")
            page.locator("#clave").fill(api_keys["operator"])
            page.keyboard.press("Enter")
            expect(page.get_by_test_id("rol")).to_contain_text("operator")
            page.get_by_label("Título").fill("Consola plantillas")
            page.get_by_label("Buzón").select_option("ventas")
            page.get_by_label("Plantilla").fill("oferta_imagen")
            csv = (
                b"telefono,nombre,plan,encabezado,boton_0_url\n584141000000,Ana,300,https://cdn.example.com/a.png,A1\n"
            )
            page.get_by_label("Archivo CSV de contactos").set_input_files(
                {"name": "contactos.csv", "mimeType": "text/csv", "buffer": csv}
            )
            expect(page.get_by_test_id("plantilla-whatsapp")).to_have_text("Marketing · calidad media (YELLOW)")
            expect(page.locator("#rev-notas")).to_contain_text("La calidad de la plantilla es YELLOW")
            expect(page.locator("#rev-filas thead")).to_contain_text("botón 0 (url)")

            # A buzón without a WABA id: the header column needs its type, which nothing tells.
            page.get_by_label("Buzón").select_option("lento")
            expect(page.get_by_role("alert")).to_contain_text("Indique encabezado_tipo")
            # A body-only file: not checked, and the note says how to have it checked.
            page.get_by_label("Archivo CSV de contactos").set_input_files(
                {
                    "name": "simple.csv",
                    "mimeType": "text/csv",
                    "buffer": b"telefono,nombre,plan\n584141000000,Ana,300\n",
                }
            )
            expect(page.get_by_test_id("plantilla-whatsapp")).to_have_text("sin comprobar (ver notas)")
            expect(page.locator("#rev-notas")).to_contain_text("no tiene WABA id")
        finally:
            context.close()
            browser.close()
    assert errors == []
