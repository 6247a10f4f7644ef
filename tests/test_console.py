"""The web console in a real browser (Debian's Chromium through Playwright) against a real stack.

An operator signs in with an API key, prepares a CSV with bad rows and sees them listed with their reasons,
launches it (a double click creates one campaign), watches it reach 100 %, pauses and resumes it, at a
desktop and a phone width. Any console error fails the test. Screenshots are kept under tests/artifacts/console/.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT, make_csv, wait_for

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = ROOT / "tests" / "artifacts" / "console"
# 400 good rows on the slow number (40 msg/s: about 10 s of sending, time to pause), then three bad ones.
BAD_ROWS = b"12,Corto,Plan 1\n584141000000,Repetido,Plan 2\n584141000001,,Plan 3\n"
CSV = make_csv(400) + BAD_ROWS

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Chromium is not installed (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module."""
    with playwright_api.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


class Page:
    """A browser page that records console errors and saves numbered screenshots."""

    def __init__(self, browser, width: int, folder: Path):
        self.context = browser.new_context(viewport={"width": width, "height": 800}, locale="es-ES")
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.folder = folder
        self.shots = 0

    def shot(self, name: str) -> None:
        self.shots += 1
        self.page.screenshot(path=str(self.folder / f"{self.shots:02d}-{name}.png"), full_page=True)

    def fits(self) -> None:
        """Nothing wider than the window: no sideways scrolling of the whole page."""
        overflow = self.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page is {overflow}px wider than the window"


@pytest.mark.parametrize("width", [1280, 360])
def test_operator_prepares_launches_watches_pauses_and_resumes(browser, make_stack, clean, api_keys, width):
    stack = make_stack()
    stack.start_worker("console")
    folder = ARTIFACTS / str(width)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    view = Page(browser, width, folder)
    page, expect = view.page, playwright_api.expect
    try:
        page.goto(stack.api.url + "/")
        # Sign in with the keyboard: the key field has the focus, Enter submits.
        expect(page.locator("#clave")).to_be_focused()
        page.keyboard.type(api_keys["operator"])
        page.keyboard.press("Enter")
        expect(page.get_by_test_id("usuario")).to_have_text("tests-operator")
        expect(page.get_by_test_id("rol")).to_contain_text("operator")
        view.shot("sesion")

        # Prepare: the file is checked by validar-campana, bad rows listed with their row numbers and reasons.
        title = f"Consola {width}"
        page.get_by_label("Título").fill(title)
        page.get_by_label("Buzón").select_option("lento")
        page.get_by_label("Plantilla").fill("promo_enero")
        page.get_by_label("Archivo CSV de contactos").set_input_files(
            {"name": "contactos.csv", "mimeType": "text/csv", "buffer": CSV}
        )
        expect(page.get_by_test_id("columna-telefono")).to_have_text("telefono")
        expect(page.get_by_test_id("total-validos")).to_have_text("400")
        expect(page.get_by_test_id("total-rechazados")).to_have_text("3")
        rejected = page.locator("#rev-rechazos-tabla tbody tr")
        expect(rejected).to_have_count(3)
        expect(rejected.nth(0)).to_contain_text("402")
        expect(rejected.nth(1)).to_contain_text("duplicado de la fila 2")
        expect(rejected.nth(2)).to_contain_text("vacío")
        expect(page.locator("#rev-filas tbody tr").first).to_contain_text("584141000000")
        expect(page.locator("#rev-filas thead")).to_contain_text("{{1}}")
        assert stack.api.get("/api/listar-campanas").json()["total_campaigns"] == 0
        view.fits()
        view.shot("revision")

        # Launch with a double click: one campaign (the Idempotency-Key of the prepared file).
        page.get_by_role("button", name="Lanzar campaña").dblclick()
        campaign_id = re.sub(r"[^a-z0-9]+", "-", title.lower())
        expect(page).to_have_url(re.compile(f"#/campana/{campaign_id}$"))
        expect(page.get_by_test_id("creado-por")).to_have_text("tests-operator")
        wait_for(lambda: int(page.get_by_test_id("enviados").inner_text().split()[0]) > 0, 30, message="sends")
        listed = stack.api.get("/api/listar-campanas").json()
        assert listed["total_campaigns"] == 1, listed
        view.shot("enviando")

        # Pause, with a confirmation, then resume.
        page.get_by_role("button", name="Pausar").click()
        dialog = page.locator("#confirmar")
        expect(dialog).to_be_visible()
        expect(dialog).to_contain_text("Pausar la campaña")
        view.shot("confirmar-pausa")
        dialog.get_by_role("button", name="Confirmar").click()
        expect(page.locator("#c-resultado")).to_contain_text("Campaña pausada")
        expect(page.get_by_test_id("estado")).to_have_text("pausada")
        expect(page.get_by_role("button", name="Reanudar")).to_be_enabled()
        view.fits()
        view.shot("pausada")
        page.get_by_role("button", name="Reanudar").click()
        dialog.get_by_role("button", name="Confirmar").click()
        expect(page.locator("#c-resultado")).to_contain_text("Campaña reanudada")

        # Watch it to the end: 100 %, every message sent, nothing left to pause.
        expect(page.get_by_test_id("progreso")).to_have_text("100 %", timeout=90_000)
        expect(page.get_by_test_id("estado")).to_have_text("completada", timeout=30_000)
        expect(page.get_by_test_id("enviados")).to_contain_text("400")
        expect(page.get_by_role("button", name="Pausar")).to_be_disabled()
        export = page.get_by_test_id("exportar")
        assert export.get_attribute("href") == f"/api/campanas/{campaign_id}/resultados.csv"
        view.fits()
        view.shot("completada")

        # The list shows it, with its creator.
        page.get_by_role("link", name="Campañas", exact=True).click()
        row = page.locator("#lista tbody tr").first
        expect(row).to_contain_text(title)
        expect(row).to_contain_text("completada")
        expect(row).to_contain_text("tests-operator")
        view.fits()
        view.shot("lista")
        assert view.errors == []
    finally:
        view.context.close()


def test_scheduled_and_waiting_campaigns_show_until_when(browser, make_stack, clean, api_keys):
    from datetime import UTC, datetime, timedelta

    from tests.conftest import upload

    stack = make_stack()
    folder = ARTIFACTS / "espera"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    at = datetime.now(UTC) + timedelta(hours=2)
    assert upload(stack.api, make_csv(5), title="Mañana", programar_para=at.isoformat()).status_code == 201
    closed = (datetime.now(UTC) + timedelta(hours=3)).astimezone().strftime("%H:%M")
    opens = (datetime.now(UTC) + timedelta(hours=1)).astimezone().strftime("%H:%M")
    waiting = upload(
        stack.api, make_csv(5, start=4142000000), title="Noche", horario_envio=f"{opens}-{closed}", zona_horaria="UTC"
    )
    assert waiting.json()["status"] == "waiting", waiting.text
    view = Page(browser, 1280, folder)
    page, expect = view.page, playwright_api.expect
    try:
        page.goto(stack.api.url + "/")
        page.locator("#clave").fill(api_keys["operator"])
        page.keyboard.press("Enter")
        expect(page.get_by_test_id("usuario")).to_have_text("tests-operator")
        page.get_by_role("link", name="Campañas", exact=True).click()
        rows = page.locator("#lista tbody tr")
        expect(rows.filter(has_text="Mañana")).to_contain_text("programada")
        expect(rows.filter(has_text="Mañana")).to_contain_text("Programada para el")
        expect(rows.filter(has_text="Noche")).to_contain_text("en espera")
        expect(rows.filter(has_text="Noche")).to_contain_text("Fuera del horario de envío")
        view.shot("lista")
        page.get_by_role("link", name="Mañana").click()
        expect(page.get_by_test_id("estado")).to_have_text("programada")
        expect(page.get_by_test_id("motivo")).to_contain_text("Programada para el")
        expect(page.get_by_role("button", name="Cancelar")).to_be_enabled()
        view.shot("programada")
        assert view.errors == []
    finally:
        view.context.close()
