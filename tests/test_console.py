"""The web console in a real browser (Debian's Chromium through Playwright) against a real stack.

An operator signs in with an API key, prepares a CSV with bad rows and sees them listed with their reasons,
launches it (a double click creates one campaign), watches it reach 100 %, pauses and resumes it, at a
desktop and a phone width; cancels a running campaign and retries failed and unknown recipients until they are
sent; signs in with email and password through Supabase Auth (a stand-in of its token endpoints,
tests/support/supabase_auth.py), keeps working across token refreshes and signs out; and does it all with the
keyboard alone. Any console error or page error fails the test. One browser and one stack serve the module.
Screenshots are kept under tests/artifacts/console/.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import (
    APP_SECRET,
    ROOT,
    SENDERS,
    TEST_STACK_REDIS_URL,
    Stack,
    make_csv,
    store_rows,
    upload,
    wait_for,
)
from tests.support.supabase_auth import SupabaseAuthStandIn, User

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
ANON_KEY = "anon-key-of-the-test-project"
OPERATOR = User("ana.operadora@example.test", "clave-correcta-1", {"wcq_role": "operator"})
# Access tokens live 8 s, so a test sees the console renew them (at three quarters of their life).
TOKEN_LIFETIME_S = 8

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


@pytest.fixture(scope="module")
def supabase_auth():
    """Supabase Auth's token endpoints (ES256 tokens, keys published as JWKS), as a real HTTP server."""
    auth = SupabaseAuthStandIn([OPERATOR], ANON_KEY, lifetime_s=TOKEN_LIFETIME_S).start()
    yield auth
    auth.stop()


@pytest.fixture(scope="module")
def console_stack(service_env, api_keys, supabase_auth, tmp_path_factory):
    """API, beat and one gevent worker for the whole module, with email sign-in through the stand-in.

    A 1 s send timeout lets the sandbox's held requests turn into unknown recipients quickly.
    """
    import redis

    redis.Redis.from_url(TEST_STACK_REDIS_URL).flushdb()
    stack = Stack(
        service_env,
        TEST_STACK_REDIS_URL,
        tmp_path_factory.mktemp("console"),
        api_keys["operator"],
        SUPABASE_URL=supabase_auth.url,
        SUPABASE_ANON_KEY=ANON_KEY,
        HTTP_TIMEOUT_S="1",
    )
    try:
        stack.start_worker("console")
    except Exception:
        stack.stop()
        raise
    yield stack
    stack.stop()


@pytest.fixture
def stack(console_stack, clean):
    """The module's stack, with no campaigns and an empty sandbox log."""
    keys = list(console_stack.redis.scan_iter(match="wcq:campaign*"))
    if keys:
        console_stack.redis.delete(*keys)
    return console_stack


# Whether the focused element shows a focus ring a sighted keyboard user can see.
FOCUS_STATE = """() => {
  const el = document.activeElement;
  const style = getComputedStyle(el);
  const ring = style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2;
  const box = el.getBoundingClientRect();
  return {tag: el.tagName, id: el.id, text: (el.textContent || "").trim().slice(0, 40),
          visible: ring && box.width > 0 && box.height > 0};
}"""


class ConsolePage:
    """A browser page that records console errors and saves numbered screenshots."""

    def __init__(self, browser, width: int, folder: Path):
        self.context = browser.new_context(viewport={"width": width, "height": 800}, locale="es-ES")
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.allowed: list[str] = []
        self.refused: list[str] = []  # every answer of 400 or more, with its request, to say which one failed
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on(
            "response",
            lambda r: r.status >= 400 and self.refused.append(f"{r.request.method} {r.url} -> {r.status}"),
        )
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.folder = folder
        self.shots = 0

    def allow(self, pattern: str) -> None:
        """Accept console errors matching `pattern` (the browser's own line for an answer the test provokes)."""
        self.allowed.append(pattern)

    def unexpected_errors(self) -> list[str]:
        return [e for e in self.errors if not any(re.search(p, e) for p in self.allowed)]

    def shot(self, name: str) -> None:
        self.shots += 1
        self.page.screenshot(path=str(self.folder / f"{self.shots:02d}-{name}.png"), full_page=True)

    def fits(self) -> None:
        """Nothing wider than the window: no sideways scrolling of the whole page."""
        overflow = self.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page is {overflow}px wider than the window"

    def sign_in_with_key(self, url: str, key: str, name: str) -> None:
        self.page.goto(url)
        self.page.get_by_label("Clave de API").fill(key)
        self.page.get_by_role("button", name="Entrar con la clave").click()
        playwright_api.expect(self.page.get_by_test_id("usuario")).to_have_text(name)

    def tab_to(self, selector: str, *, limit: int = 40, backwards: bool = False) -> None:
        """Press Tab until the element matching `selector` has the focus; every stop must show its focus."""
        for _ in range(limit):
            self.page.keyboard.press("Shift+Tab" if backwards else "Tab")
            focus = self.page.evaluate(FOCUS_STATE)
            assert focus["visible"], f"no visible focus on {focus}"
            if self.page.evaluate("s => document.activeElement.matches(s)", selector):
                return
        raise AssertionError(f"{selector} not reached with {limit} presses of Tab")

    def focus_is_visible(self) -> None:
        focus = self.page.evaluate(FOCUS_STATE)
        assert focus["visible"], f"no visible focus on {focus}"


@pytest.fixture
def pages(browser, request):
    """Open console pages (one browser context each); closing them fails the test on any console error."""
    opened: list[ConsolePage] = []
    folder = ARTIFACTS / re.sub(r"[^a-z0-9]+", "-", request.node.name.removeprefix("test_").lower()).strip("-")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)

    def open_page(width: int = 1280) -> ConsolePage:
        view = ConsolePage(browser, width, folder)
        opened.append(view)
        return view

    yield open_page
    for view in opened:
        view.context.close()
    errors = [e for view in opened for e in view.unexpected_errors()]
    assert not errors, f"console errors: {errors}; answers of 400 or more: {[r for v in opened for r in v.refused]}"


@pytest.mark.parametrize("width", [1280, 360])
def test_operator_prepares_launches_watches_pauses_and_resumes(pages, stack, sandbox, api_keys, width):
    view = pages(width)
    page, expect = view.page, playwright_api.expect
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

    # WhatsApp reports every message delivered and about half of them read.
    sandbox.configure(
        webhook_url=stack.api.url + "/webhooks/whatsapp",
        app_secret=APP_SECRET,
        delivered_share=1.0,
        read_share=0.5,
        webhook_delay_ms=[20, 200],
    )

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
    expect(page.locator("#c-entregados")).to_have_text("400 100 %", timeout=30_000)
    count, share, _ = page.locator("#c-leidos").inner_text().split()  # "201 50,3 %"
    assert 100 < int(count) < 300 and abs(float(share.replace(",", ".")) - int(count) / 4) <= 0.1, (count, share)
    expect(page.get_by_role("button", name="Pausar")).to_be_disabled()
    view.fits()
    view.shot("completada")

    # Export: the browser saves the results CSV (fetched with the operator's key), one line per recipient.
    with page.expect_download() as download_info:
        page.get_by_test_id("exportar").click()
    download = download_info.value
    assert download.suggested_filename == f"{campaign_id}-resultados.csv"
    exported = Path(download.path()).read_text(encoding="utf-8")
    assert exported.startswith("\ufeff")  # Excel reads the accents right
    rows = list(csv.reader(io.StringIO(exported.removeprefix("\ufeff"))))
    assert rows[0][:3] == ["n", "teléfono", "estado"], rows[0]
    assert len(rows) == 401 and rows[1][1] == "584141000000", rows[:2]
    assert {row[2] for row in rows[1:]} == {"sent"}

    # The list shows it, with its creator.
    page.get_by_role("link", name="Campañas", exact=True).click()
    row = page.locator("#lista tbody tr").first
    expect(row).to_contain_text(title)
    expect(row).to_contain_text("completada")
    expect(row).to_contain_text("tests-operator")
    view.fits()
    view.shot("lista")


def _count(page, element_id: str) -> int | None:
    """A figure of the campaign page (its first word, the count before the share); None until the page has
    shown its first figures."""
    words = page.locator(f"#{element_id}").inner_text().split()
    return int(words[0].replace(".", "")) if words else None


def _upload(stack, rows: int, start: int, title: str, buzon: str) -> str:
    created = upload(stack.api, make_csv(rows, start=start), title=title, buzon=buzon)
    assert created.status_code == 201, created.text
    return created.json()["campaign_id"]


def _confirm(view: ConsolePage, button: str, title: str, *, warning: str | None = None) -> None:
    """Click an action, see its confirmation (with its warning, or none), screenshot it and confirm."""
    page, expect = view.page, playwright_api.expect
    page.get_by_role("button", name=button, exact=True).click()
    dialog = page.locator("#confirmar")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#confirmar-titulo")).to_have_text(title)
    if warning:
        expect(dialog.locator("#confirmar-advertencia")).to_contain_text(warning)
    else:
        expect(dialog.locator("#confirmar-advertencia")).to_be_hidden()
    view.shot("confirmar-" + re.sub(r"[^a-z]+", "-", button.lower()))
    dialog.get_by_role("button", name="Confirmar").click()
    expect(dialog).to_be_hidden()


def test_operator_retries_failed_and_unknown_recipients_and_cancels(pages, stack, sandbox, api_keys):
    view = pages(1280)
    page, expect = view.page, playwright_api.expect
    view.sign_in_with_key(stack.api.url + "/", api_keys["operator"], "tests-operator")

    # Three recipients WhatsApp refuses (131026): the campaign completes with them failed.
    refused = ["584142000003", "584142000007", "584142000011"]
    sandbox.configure(recipient_errors={number: 131026 for number in refused})
    campaign_id = _upload(stack, 20, 4142000000, "Reintento fallidos", "ventas")
    page.goto(f"{stack.api.url}/#/campana/{campaign_id}")
    expect(page.get_by_test_id("estado")).to_have_text("completada", timeout=30_000)
    expect(page.locator("#c-fallidos")).to_have_text(re.compile(r"^3 "))
    expect(page.locator("#c-errores-tabla")).to_contain_text("no puede recibir el mensaje")
    expect(page.get_by_role("button", name="Reintentar desconocidos")).to_be_disabled()
    view.shot("fallidos")

    # They can receive it now; retrying sends them, once each.
    sandbox.configure(recipient_errors={})
    _confirm(view, "Reintentar fallidos", "Reintentar los fallidos")
    expect(page.locator("#c-resultado")).to_have_text("3 mensajes vuelven a la cola (3 fallidos).")
    expect(page.get_by_test_id("enviados")).to_have_text(re.compile(r"^20 "), timeout=30_000)
    expect(page.locator("#c-fallidos")).to_have_text(re.compile(r"^0 "))
    expect(page.get_by_test_id("estado")).to_have_text("completada")
    assert {status for _, status, _, _ in store_rows(campaign_id)} == {"sent"}
    accepted = [m["wa_id"] for m in sandbox.messages(SENDERS["ventas"][0])]
    assert sorted(accepted) == sorted(set(accepted)) and set(refused) <= set(accepted)
    view.shot("fallidos-enviados")

    # Requests WhatsApp never answers in time: nobody knows whether they arrived, so they end unknown.
    sandbox.configure(timeout_share=1.0, timeout_hold_s=2.0)
    campaign_id = _upload(stack, 4, 4142100000, "Reintento desconocidos", "soporte")
    page.goto(f"{stack.api.url}/#/campana/{campaign_id}")
    expect(page.locator("#c-desconocidos")).to_have_text(re.compile(r"^4 "), timeout=30_000)
    expect(page.get_by_test_id("estado")).to_have_text("completada")
    sandbox.configure(timeout_share=0.0)
    _confirm(view, "Reintentar desconocidos", "Reintentar los desconocidos", warning="lo reciba dos veces")
    expect(page.locator("#c-resultado")).to_have_text("4 mensajes vuelven a la cola (4 desconocidos).")
    expect(page.get_by_test_id("enviados")).to_have_text(re.compile(r"^4 "), timeout=30_000)
    expect(page.locator("#c-desconocidos")).to_have_text(re.compile(r"^0 "))
    assert {status for _, status, _, _ in store_rows(campaign_id)} == {"sent"}
    view.shot("desconocidos-enviados")

    # Cancel a running campaign: what was not sent yet never is.
    campaign_id = _upload(stack, 400, 4142200000, "Cancelada", "lento")
    page.goto(f"{stack.api.url}/#/campana/{campaign_id}")
    wait_for(lambda: (_count(page, "c-enviados") or 0) > 0, 30, message="sends")
    _confirm(view, "Cancelar", "Cancelar la campaña")
    expect(page.locator("#c-resultado")).to_contain_text("Campaña cancelada")
    expect(page.get_by_test_id("estado")).to_have_text("cancelada")
    for name in ("Pausar", "Reanudar", "Cancelar", "Reintentar fallidos", "Reintentar desconocidos"):
        expect(page.get_by_role("button", name=name, exact=True)).to_be_disabled()
    page.wait_for_timeout(2000)  # anything still going out would show up now
    sent = _count(page, "c-enviados")
    assert 0 < sent < 400
    assert len(sandbox.messages(SENDERS["lento"][0])) == sent
    view.fits()
    view.shot("cancelada")


def test_email_sign_in_renews_the_session_and_signs_out(pages, stack, supabase_auth):
    campaign_id = _upload(stack, 3, 4143000000, "Sesion con correo", "ventas")
    view = pages(1280)
    page, expect = view.page, playwright_api.expect
    calls: list[tuple[float, str, int]] = []  # (when sent, bearer token, status) of every /api call

    def record(response) -> None:
        if "/api/" in response.url:
            request = response.request
            calls.append(
                (request.timing["startTime"] / 1000, request.headers.get("authorization", ""), response.status)
            )

    page.on("response", record)
    seen = len(supabase_auth.grants)
    page.goto(f"{stack.api.url}/#/campana/{campaign_id}")
    form = page.locator("#form-email")
    form.get_by_label("Correo electrónico").fill(OPERATOR.email)
    form.get_by_label("Contraseña").fill(OPERATOR.password)
    form.get_by_role("button", name="Entrar", exact=True).click()
    expect(page.get_by_test_id("usuario")).to_have_text(OPERATOR.email)
    expect(page.get_by_test_id("rol")).to_have_text("operador (operator)")
    expect(page.get_by_test_id("estado")).to_have_text("completada", timeout=30_000)
    view.shot("sesion-correo")

    # The page polls the campaign every 1.5 s; the first token expires after 8 s, and it goes on working.
    (first,) = [g for g in supabase_auth.grants[seen:] if g.grant_type == "password"]

    def refreshes():
        return [g for g in supabase_auth.grants[seen:] if g.grant_type == "refresh_token" and g.error is None]

    # Waiting in the page lets its events reach the test as they happen.
    while len(refreshes()) < 2 or time.time() < first.expires_at + 2:
        assert time.time() < first.expires_at + 30, "no two refreshes in 30 s"
        page.wait_for_timeout(250)
    later = [(at, token, code) for at, token, code in calls if at > first.expires_at]
    assert later, calls
    renewed = {f"Bearer {g.access_token}" for g in refreshes()}
    assert {token for _, token, _ in later} <= renewed  # never the expired token
    assert {code for _, _, code in later} == {200}
    for at, token, _ in calls:
        assert supabase_auth.claims(token.removeprefix("Bearer "))["exp"] > at  # every token was still valid
    expect(page.get_by_test_id("usuario")).to_have_text(OPERATOR.email)
    expect(page.get_by_test_id("estado")).to_have_text("completada")

    # Sign out: the page forgets the session and Supabase ends it (its refresh token stops working).
    refresh_token = page.evaluate("JSON.parse(sessionStorage.getItem('wcq.consola.credencial')).refresh_token")
    page.get_by_role("button", name="Cerrar sesión").click()
    expect(page.locator("#form-email")).to_be_visible()
    expect(page.get_by_test_id("usuario")).to_be_hidden()
    wait_for(lambda: OPERATOR.id in supabase_auth.logouts, 10, message="the sign-out at Supabase Auth")
    answer = requests.post(
        f"{supabase_auth.url}/auth/v1/token?grant_type=refresh_token",
        json={"refresh_token": refresh_token},
        headers={"apikey": ANON_KEY},
        timeout=5,
    )
    assert answer.status_code == 400, answer.text
    polled = len(calls)
    page.wait_for_timeout(2000)
    assert len(calls) == polled  # no more calls with the old session
    page.reload()
    expect(page.locator("#form-email")).to_be_visible()
    expect(page.get_by_test_id("usuario")).to_be_hidden()
    view.shot("sesion-cerrada")


def test_a_wrong_password_is_refused_in_spanish(pages, stack, supabase_auth):
    view = pages(360)
    view.allow(r"status of 400")  # the browser's own line for Supabase's answer to a wrong password
    page, expect = view.page, playwright_api.expect
    page.goto(stack.api.url + "/")
    form = page.locator("#form-email")
    form.get_by_label("Correo electrónico").fill(OPERATOR.email)
    form.get_by_label("Contraseña").fill("no-es-la-clave")
    form.get_by_role("button", name="Entrar", exact=True).click()
    expect(page.locator("#aviso")).to_have_text("Correo o contraseña incorrectos. Revíselos e intente de nuevo.")
    assert supabase_auth.grants[-1].error == "invalid_credentials"
    expect(page.locator("#app")).to_be_hidden()
    expect(form.get_by_label("Contraseña")).to_be_focused()
    view.fits()
    view.shot("clave-incorrecta")
    # The right one gets in.
    page.keyboard.type(OPERATOR.password)
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("usuario")).to_have_text(OPERATOR.email)
    expect(page.locator("#aviso")).to_be_hidden()


def test_keyboard_alone_signs_in_prepares_launches_pauses_and_cancels(pages, stack, sandbox, supabase_auth):
    view = pages(1280)
    page, keyboard, expect = view.page, view.page.keyboard, playwright_api.expect
    page.goto(stack.api.url + "/")
    expect(page.locator("#clave")).to_be_focused()
    view.tab_to("#email")
    keyboard.type(OPERATOR.email)
    view.tab_to("#password")
    keyboard.type(OPERATOR.password)
    keyboard.press("Enter")
    expect(page.get_by_test_id("usuario")).to_have_text(OPERATOR.email)
    expect(page.locator("#buzon option[value=lento]")).to_have_count(1)

    # Prepare: title, buzón (type-ahead in the list), template, language; the file through its input.
    view.tab_to("#titulo")
    keyboard.type("Con teclado")
    view.tab_to("#buzon")
    keyboard.type("lento")
    expect(page.locator("#buzon")).to_have_value("lento")
    view.tab_to("#plantilla")
    keyboard.type("promo_enero")
    view.tab_to("#idioma")
    keyboard.press("Control+A")
    keyboard.type("es_MX")
    page.locator("#archivo").set_input_files({"name": "contactos.csv", "mimeType": "text/csv", "buffer": CSV})
    expect(page.get_by_test_id("total-validos")).to_have_text("400")
    view.shot("teclado-revision")

    # Launch with Enter on the button.
    view.tab_to("#lanzar")
    keyboard.press("Enter")
    expect(page).to_have_url(re.compile("#/campana/con-teclado$"))
    pause = page.locator('[data-accion="pausar"]')
    expect(pause).to_be_enabled()
    wait_for(lambda: (_count(page, "c-enviados") or 0) > 0, 30, message="sends")

    # Space opens the confirmation with the focus on "Volver"; Escape closes it and nothing happens.
    view.tab_to('[data-accion="pausar"]')
    keyboard.press("Space")
    dialog = page.locator("#confirmar")
    expect(dialog).to_be_visible()
    expect(page.locator("#confirmar-no")).to_be_focused()
    view.focus_is_visible()
    view.shot("teclado-confirmar")
    keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(pause).to_be_focused()
    expect(page.locator("#c-resultado")).to_be_hidden()
    expect(page.get_by_test_id("estado")).to_have_text("enviando")

    # Enter, Tab to "Confirmar", Enter: paused.
    keyboard.press("Enter")
    expect(dialog).to_be_visible()
    view.tab_to("#confirmar-si")
    keyboard.press("Enter")
    expect(page.locator("#c-resultado")).to_contain_text("Campaña pausada")
    expect(page.get_by_test_id("estado")).to_have_text("pausada")

    # Then cancelled, with Space this time.
    view.tab_to('[data-accion="cancelar"]')
    keyboard.press("Space")
    view.tab_to("#confirmar-si")
    keyboard.press("Space")
    expect(page.locator("#c-resultado")).to_contain_text("Campaña cancelada")
    expect(page.get_by_test_id("estado")).to_have_text("cancelada")
    view.shot("teclado-cancelada")
    sent = sandbox.messages(SENDERS["lento"][0])
    assert 0 < len(sent) < 400
    assert {(m["template"], m["language"]) for m in sent} == {("promo_enero", "es_MX")}


def test_a_campaign_whatsapp_stops_shows_why_and_resumes(pages, stack, sandbox, api_keys):
    view = pages(360)
    page, expect = view.page, playwright_api.expect
    view.sign_in_with_key(stack.api.url + "/", api_keys["operator"], "tests-operator")
    # WhatsApp answers that the business account is locked: the campaign pauses with the reason in Spanish.
    pnid = SENDERS["malo"][0]
    sandbox.configure(forced_errors={pnid: 131031})
    campaign_id = _upload(stack, 30, 4144000000, "Cuenta bloqueada", "malo")
    page.goto(f"{stack.api.url}/#/campana/{campaign_id}")
    expect(page.get_by_test_id("estado")).to_have_text("pausada", timeout=30_000)
    expect(page.get_by_test_id("motivo")).to_have_text(
        "Motivo: La cuenta de WhatsApp Business está bloqueada (131031)."
    )
    view.fits()
    view.shot("pausada-por-whatsapp")

    # Once the account is fixed the operator resumes it and every message goes out.
    sandbox.configure(forced_errors={})
    _confirm(view, "Reanudar", "Reanudar la campaña")
    expect(page.locator("#c-resultado")).to_contain_text("Campaña reanudada")
    expect(page.get_by_test_id("estado")).to_have_text("completada", timeout=30_000)
    expect(page.get_by_test_id("enviados")).to_have_text(re.compile(r"^30 "))
    expect(page.get_by_test_id("motivo")).to_be_hidden()
    assert len(sandbox.messages(pnid)) == 30


def test_an_expired_session_is_renewed_when_the_api_refuses_it(pages, stack, supabase_auth):
    view = pages(1280)
    view.allow(r"status of 401")  # the browser's own line for the API's answer to the expired token
    page, expect = view.page, playwright_api.expect
    answers: list[tuple[str, int]] = []
    page.on(
        "response",
        lambda r: r.url.endswith("/api/yo") and answers.append((r.request.headers["authorization"], r.status)),
    )
    seen = len(supabase_auth.grants)
    supabase_auth.expired_sessions = 1  # as if the laptop slept past the token's expiry and its refresh
    page.goto(stack.api.url + "/")
    form = page.locator("#form-email")
    form.get_by_label("Correo electrónico").fill(OPERATOR.email)
    form.get_by_label("Contraseña").fill(OPERATOR.password)
    form.get_by_role("button", name="Entrar", exact=True).click()
    expect(page.get_by_test_id("usuario")).to_have_text(OPERATOR.email)
    expect(page.locator("#aviso")).to_be_hidden()
    password, refresh = supabase_auth.grants[seen : seen + 2]
    assert (password.grant_type, refresh.grant_type, refresh.error) == ("password", "refresh_token", None)
    assert answers == [(f"Bearer {password.access_token}", 401), (f"Bearer {refresh.access_token}", 200)]


def test_scheduled_and_waiting_campaigns_show_until_when(pages, stack, api_keys):
    from datetime import UTC, datetime, timedelta

    from tests.conftest import upload

    at = datetime.now(UTC) + timedelta(hours=2)
    assert upload(stack.api, make_csv(5), title="Mañana", programar_para=at.isoformat()).status_code == 201
    closed = (datetime.now(UTC) + timedelta(hours=3)).strftime("%H:%M")
    opens = (datetime.now(UTC) + timedelta(hours=1)).strftime("%H:%M")
    waiting = upload(
        stack.api, make_csv(5, start=4142000000), title="Noche", horario_envio=f"{opens}-{closed}", zona_horaria="UTC"
    )
    assert waiting.json()["status"] == "waiting", waiting.text
    view = pages(1280)
    page, expect = view.page, playwright_api.expect
    view.sign_in_with_key(stack.api.url + "/", api_keys["operator"], "tests-operator")
    page.get_by_role("link", name="Campañas", exact=True).click()
    rows = page.locator("#lista tbody tr")
    expect(rows.filter(has_text="Mañana")).to_contain_text("programada")
    expect(rows.filter(has_text="Mañana")).to_contain_text("Programada para el")
    expect(rows.filter(has_text="Noche")).to_contain_text("en espera")
    expect(rows.filter(has_text="Noche")).to_contain_text("Fuera del horario de envío")
    view.fits()
    view.shot("lista")
    page.get_by_role("link", name="Mañana").click()
    expect(page.get_by_test_id("estado")).to_have_text("programada")
    expect(page.get_by_test_id("motivo")).to_contain_text("Programada para el")
    expect(page.get_by_role("button", name="Cancelar")).to_be_enabled()
    view.shot("programada")


def _prepare_on_lento(page, title: str, fields: dict[str, str]) -> None:
    """Fill the form for promo_enero on the slow number, with the fields given by label, then drop 5 contacts."""
    page.get_by_label("Título").fill(title)
    page.get_by_label("Buzón").select_option("lento")
    page.get_by_label("Plantilla").fill("promo_enero")
    for label, value in fields.items():
        page.get_by_label(label).fill(value)
    page.get_by_label("Archivo CSV de contactos").set_input_files(
        {"name": "contactos.csv", "mimeType": "text/csv", "buffer": make_csv(5)}
    )


def test_an_operator_schedules_a_campaign_with_quiet_hours_from_the_form(pages, stack, api_keys):
    from datetime import UTC, datetime, timedelta

    start = (datetime.now(UTC) + timedelta(hours=2)).replace(second=0, microsecond=0)
    view = pages(360)
    page, expect = view.page, playwright_api.expect
    view.sign_in_with_key(stack.api.url + "/", api_keys["operator"], "tests-operator")
    _prepare_on_lento(
        page,
        "Programada desde la consola",
        {
            "Zona horaria (opcional)": "UTC",
            "Empezar el (opcional)": start.strftime("%Y-%m-%dT%H:%M"),
            "Horario de envío (opcional)": "08:00-20:00",
        },
    )
    expect(page.get_by_test_id("total-validos")).to_have_text("5")
    expect(page.get_by_test_id("inicio")).to_contain_text(f"{start.hour}:{start:%M} (UTC)")
    expect(page.get_by_test_id("horario")).to_have_text("08:00-20:00 (UTC)")
    expect(page.get_by_test_id("dias-estimados")).to_have_text("1")
    # A changed window is checked again before launch.
    page.get_by_label("Horario de envío (opcional)").fill("09:00-18:00")
    page.get_by_label("Horario de envío (opcional)").press("Tab")
    expect(page.get_by_test_id("horario")).to_have_text("09:00-18:00 (UTC)")
    view.fits()
    view.shot("programar")

    page.get_by_role("button", name="Lanzar campaña").click()
    expect(page).to_have_url(re.compile("#/campana/programada-desde-la-consola$"))
    expect(page.get_by_test_id("estado")).to_have_text("programada")
    expect(page.get_by_test_id("motivo")).to_contain_text("Programada para el")
    state = stack.api.get("/api/estado-cola/programada-desde-la-consola").json()
    assert datetime.fromisoformat(state["programada_para"]) == start
    assert (state["zona_horaria"], state["horario_envio"], state["status"]) == ("UTC", "09:00-18:00", "scheduled")


def test_a_start_time_in_the_past_is_refused_in_the_form_and_nothing_is_created(pages, stack, api_keys):
    view = pages(1280)
    view.allow("status of 422")  # the browser logs validar-campana's refusal, which the page shows
    page, expect = view.page, playwright_api.expect
    view.sign_in_with_key(stack.api.url + "/", api_keys["operator"], "tests-operator")
    _prepare_on_lento(page, "Ayer", {"Empezar el (opcional)": "2020-01-01T10:00"})
    expect(page.locator("#error-campana")).to_be_visible()
    expect(page.locator("#error-campana")).to_contain_text("ya pasó")
    expect(page.get_by_role("button", name="Lanzar campaña")).to_be_disabled()
    assert stack.api.get("/api/listar-campanas").json()["total_campaigns"] == 0
