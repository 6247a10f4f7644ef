"""Who may call the API: keys and roles, buzón scopes, origins and CORS, limits, audit log, headers."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import uuid

import psycopg
import pytest

from tests.conftest import FRONT_END_ORIGIN, ROOT, make_csv, upload, wait_for, wait_status
from webapi import create_app
from webapi.apikeys import create_key, hash_key

HOSTILE_ORIGIN = "https://evil.example.test"

# Every /api route with the least role it needs; ids of campaigns that do not exist are fine: the answer to
# an allowed caller is then 404, never 401/403.
ROUTES = [
    ("GET", "/api/estado-cola/x", "viewer"),
    ("GET", "/api/listar-campanas", "viewer"),
    ("GET", "/api/destinatarios/x", "viewer"),
    ("GET", "/api/estado-sistema", "viewer"),
    ("GET", "/api/buzones", "viewer"),
    ("GET", "/api/yo", "viewer"),
    ("POST", "/api/crear-campana", "operator"),
    ("POST", "/api/validar-campana", "operator"),
    ("POST", "/api/pausar-campana/x", "operator"),
    ("POST", "/api/reanudar-campana/x", "operator"),
    ("POST", "/api/cancelar-campana/x", "operator"),
    ("POST", "/api/reintentar-campana/x", "operator"),
    ("GET", "/api/auditoria", "admin"),
]
RANK = {"viewer": 1, "operator": 2, "admin": 3}


@pytest.fixture(scope="module")
def app(service_env, store):
    """The app in this process, against the test database and Redis."""
    return create_app()


@pytest.fixture
def client(app):
    """A test client of the in-process app."""
    return app.test_client()


@pytest.fixture
def wipe(store):
    """No campaigns and no audit entries at the start of the test."""
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("TRUNCATE instancia_sofia.campaigns, instancia_sofia.leads_activos, instancia_sofia.audit_log")


def key_header(key: str) -> dict:
    """Credentials the way a server-to-server caller sends them."""
    return {"Authorization": f"Bearer {key}"}


def stored_campaign(store, campaign_id: str, buzon: str = "ventas", title: str | None = None) -> None:
    """A campaign in the store (not started), for reads and scope checks."""
    store.create_campaign(
        {
            "id": campaign_id,
            "title": title or campaign_id,
            "template": "promo_enero",
            "language": "es",
            "buzon": buzon,
            "batch_size": 10,
            "chunk_size": 5,
            "created_by": "fixture",
        },
        [{"phone": "584141234567", "parameters": ["Ana"]}, {"phone": "584147654321", "parameters": ["Bo"]}],
    )


def audit_rows(**where) -> list[dict]:
    """Audit entries matching column values, oldest first."""
    sql = "SELECT to_jsonb(a) FROM instancia_sofia.audit_log a"
    if where:
        sql += " WHERE " + " AND ".join(f"{k} = %({k})s" for k in where)
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        return [r[0] for r in conn.execute(sql + " ORDER BY id", where)]


@pytest.mark.parametrize("method, path, _role", ROUTES)
@pytest.mark.parametrize(
    "credentials",
    [{}, {"X-API-Key": "wcq_not-a-key"}, {"Authorization": "Bearer wcq_nope"}, {"Authorization": "Basic dXNlcjpwYXNz"}],
)
def test_every_api_route_needs_a_caller(client, method, path, _role, credentials):
    response = client.open(path, method=method, headers=credentials)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    body = response.get_json()
    assert body["success"] is False and set(body) == {"success", "message", "details"}
    assert (
        "clave" in body["message"].lower()
        or "credencial" in body["message"].lower()
        or "authorization" in body["message"].lower()
    )


@pytest.mark.parametrize("method, path, needed", ROUTES)
@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
def test_roles_allow_and_refuse_each_route(client, api_keys, method, path, needed, role):
    response = client.open(path, method=method, headers=key_header(api_keys[role]))
    if RANK[role] >= RANK[needed]:
        assert response.status_code not in (401, 403), response.get_json()
    else:
        assert response.status_code == 403
        body = response.get_json()
        assert body["details"] == {"role": role, "required_role": needed}
        assert "administrador" in body["message"]


@pytest.mark.parametrize(
    "path",
    [
        "/healthz",
        "/readyz",
        "/api/docs",
        "/api/openapi.json",
        "/api/docs/swagger-ui-bundle.js",
        "/api/docs/swagger-ui.css",
    ],
)
def test_public_routes_need_no_credentials(client, path):
    assert client.get(path).status_code == 200


def test_webhooks_stay_signature_checked_without_credentials(client):
    assert client.post("/webhooks/whatsapp", data=b"{}", headers={"Origin": HOSTILE_ORIGIN}).status_code == 401
    assert (
        client.get(
            "/webhooks/whatsapp",
            query_string={"hub.mode": "subscribe", "hub.verify_token": "verify-me", "hub.challenge": "42"},
        ).data
        == b"42"
    )


def test_readyz_reports_a_dead_redis_with_503(service_env, monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    response = create_app().test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["redis_connected"] is False and response.get_json()["database_connected"] is True


def test_preflight_is_answered_for_the_configured_origin_only(client):
    request_headers = {
        "Origin": FRONT_END_ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
    }
    response = client.options("/api/crear-campana", headers=request_headers)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == FRONT_END_ORIGIN
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    assert {"authorization", "content-type", "idempotency-key"} <= {h.strip() for h in allowed.split(",")}
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "Origin" in response.headers.get("Vary", "")
    assert "Access-Control-Allow-Credentials" not in response.headers

    hostile = client.options("/api/crear-campana", headers={**request_headers, "Origin": HOSTILE_ORIGIN})
    assert "Access-Control-Allow-Origin" not in hostile.headers


def test_reads_from_the_front_end_carry_cors_headers(client, api_keys):
    response = client.get(
        "/api/listar-campanas", headers={"Origin": FRONT_END_ORIGIN, **key_header(api_keys["viewer"])}
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == FRONT_END_ORIGIN
    assert "Origin" in response.headers["Vary"]


def test_no_cors_at_all_when_no_origin_is_configured(service_env, api_keys, monkeypatch):
    monkeypatch.setenv("CORS_ORIGINS", "")
    response = (
        create_app()
        .test_client()
        .options("/api/listar-campanas", headers={"Origin": FRONT_END_ORIGIN, "Access-Control-Request-Method": "GET"})
    )
    assert "Access-Control-Allow-Origin" not in response.headers


def test_a_foreign_page_cannot_create_a_campaign_even_with_a_key(client, api_keys, store, wipe):
    data = {
        "titulo_campana": "Desde otra web",
        "plantilla": "promo_enero",
        "buzon": "ventas",
        "archivo_csv": (io.BytesIO(make_csv(3)), "c.csv"),
    }
    response = client.post(
        "/api/crear-campana",
        data=data,
        content_type="multipart/form-data",
        headers={"Origin": HOSTILE_ORIGIN, **key_header(api_keys["operator"])},
    )
    assert response.status_code == 403
    assert HOSTILE_ORIGIN in response.get_json()["message"] and "CORS_ORIGINS" in response.get_json()["message"]
    assert store.list_campaigns(10, 0) == ([], 0), "nothing was stored"
    [entry] = audit_rows(status_code=403)
    assert entry["action"] == "create" and entry["details"]["origin"] == HOSTILE_ORIGIN


def test_a_simple_form_post_from_a_foreign_page_cannot_cancel(client, api_keys, store, wipe):
    stored_campaign(store, "ajena")
    for headers in ({"Origin": HOSTILE_ORIGIN}, {"Origin": "null", **key_header(api_keys["operator"])}):
        response = client.post("/api/cancelar-campana/ajena", data={"x": "1"}, headers=headers)
        assert response.status_code == 403
    assert store.get_campaign("ajena")["status"] == "queued"
    # The configured front end may.
    allowed = client.post(
        "/api/cancelar-campana/ajena", headers={"Origin": FRONT_END_ORIGIN, **key_header(api_keys["operator"])}
    )
    assert allowed.status_code == 200 and allowed.get_json()["status"] == "cancelled"


def test_a_key_limited_to_one_buzon_sees_and_touches_only_its_campaigns(client, store, wipe):
    key = create_key(store, f"solo-soporte-{uuid.uuid4().hex[:8]}", "operator", ["soporte"])[0]
    stored_campaign(store, "de-ventas", "ventas")
    stored_campaign(store, "de-soporte", "soporte")
    headers = key_header(key)
    listing = client.get("/api/listar-campanas", headers=headers).get_json()
    assert [c["id"] for c in listing["campaigns"]] == ["de-soporte"] and listing["total_campaigns"] == 1
    assert client.get("/api/estado-cola/de-soporte", headers=headers).status_code == 200
    for method, path in [
        ("GET", "/api/estado-cola/de-ventas"),
        ("GET", "/api/destinatarios/de-ventas"),
        ("POST", "/api/pausar-campana/de-ventas"),
        ("POST", "/api/cancelar-campana/de-ventas"),
        ("POST", "/api/reintentar-campana/de-ventas"),
    ]:
        response = client.open(path, method=method, headers=headers)
        assert response.status_code == 404, path
    assert store.get_campaign("de-ventas")["status"] == "queued"
    refused = client.post(
        "/api/crear-campana",
        json={
            "titulo_campana": "x",
            "plantilla": "promo_enero",
            "buzon": "ventas",
            "contactos": [{"telefono": "04141234567"}],
        },
        headers=headers,
    )
    assert refused.status_code == 403 and refused.get_json()["details"]["buzones"] == ["soporte"]
    assert [b["buzon"] for b in client.get("/api/buzones", headers=headers).get_json()["buzones"]] == ["soporte"]


def test_an_unknown_buzon_lists_only_the_buzones_the_caller_may_use(client, store, api_keys):
    key = create_key(store, f"soporte-y-fantasma-{uuid.uuid4().hex[:8]}", "operator", ["soporte", "fantasma"])[0]
    body = {
        "titulo_campana": "x",
        "plantilla": "promo_enero",
        "buzon": "fantasma",
        "contactos": [{"telefono": "04141234567"}],
    }
    response = client.post("/api/crear-campana", json=body, headers=key_header(key))
    assert response.status_code == 422
    assert response.get_json()["details"]["buzones"] == ["soporte"]
    assert "ventas" not in response.get_json()["message"]


def test_viewers_see_masked_phones_and_operators_full_ones(client, store, api_keys, wipe):
    stored_campaign(store, "telefonos")
    viewer = client.get("/api/destinatarios/telefonos", headers=key_header(api_keys["viewer"])).get_json()
    operator = client.get("/api/destinatarios/telefonos", headers=key_header(api_keys["operator"])).get_json()
    assert [r["phone"] for r in operator["destinatarios"]] == ["584141234567", "584147654321"]
    assert [r["phone"] for r in viewer["destinatarios"]] == ["********4567", "********4321"]


def test_the_creator_and_every_action_land_in_the_audit_log(api, api_keys, worker, clean):
    response = upload(api, make_csv(5), title="Auditada")
    assert response.status_code == 201, response.text
    wait_status(api, "auditada", {"completed"}, timeout=60)
    assert api.get("/api/estado-cola/auditada").json()["creado_por"] == "tests-operator"
    [listed] = [c for c in api.get("/api/listar-campanas").json()["campaigns"] if c["id"] == "auditada"]
    assert listed["creado_por"] == "tests-operator" and listed["titulo"] == "Auditada"
    assert api.post("/api/reintentar-campana/auditada").status_code == 409
    api.post("/api/cancelar-campana/auditada", headers={"X-API-Key": api_keys["viewer"]})
    api.get("/api/auditoria", headers={})  # the operator is not an admin

    admin = {"X-API-Key": api_keys["admin"]}
    page = api.get("/api/auditoria", params={"campaign_id": "auditada"}, headers=admin).json()
    actions = [(e["action"], e["status_code"], e["actor"]) for e in reversed(page["entradas"])]
    assert actions == [
        ("create", 201, "tests-operator"),
        ("retry", 409, "tests-operator"),
        ("cancel", 403, "tests-viewer"),
    ]
    create = page["entradas"][-1]
    assert create["buzon"] == "ventas" and create["ip"] == "127.0.0.1" and "python-requests" in create["user_agent"]
    assert create["outcome"] == "ok" and page["entradas"][0]["outcome"] == "refused"

    one = api.get(
        "/api/auditoria", params={"campaign_id": "auditada", "por_pagina": 1, "pagina": 2}, headers=admin
    ).json()
    assert (one["total"], len(one["entradas"]), one["entradas"][0]["action"]) == (3, 1, "retry")
    future = api.get("/api/auditoria", params={"desde": "2199-01-01T00:00:00Z"}, headers=admin).json()
    assert future["total"] == 0
    past = api.get("/api/auditoria", params={"hasta": "2000-01-01T00:00:00Z"}, headers=admin).json()
    assert past["total"] == 0
    everything = api.get("/api/auditoria", params={"por_pagina": 500}, headers=admin).json()["entradas"]
    assert any(
        e["action"] == "access" and e["actor"] == "tests-operator" and e["status_code"] == 403 for e in everything
    ), "the operator's refused read of the audit log"
    assert api.get("/api/auditoria", params={"desde": "ayer"}, headers=admin).status_code == 422


def test_refused_credentials_are_audited_without_an_actor(client, wipe):
    client.post("/api/pausar-campana/x", headers={"User-Agent": "curl/8"})
    [entry] = audit_rows(status_code=401)
    assert (entry["actor"], entry["actor_kind"], entry["action"], entry["user_agent"]) == (
        None,
        "anonymous",
        "pause",
        "curl/8",
    )


def test_limits_answer_429_with_retry_after_per_caller(service_env, store, monkeypatch):
    monkeypatch.setenv("RATE_LIMIT_ACTIONS", "2/minute")
    monkeypatch.setenv("RATE_LIMIT_UPLOADS", "1/minute")
    client = create_app().test_client()
    first, second = (key_header(create_key(store, f"limitada-{uuid.uuid4().hex[:8]}", "operator")[0]) for _ in range(2))
    assert [client.post("/api/pausar-campana/x", headers=first).status_code for _ in range(2)] == [404, 404]
    limited = client.post("/api/cancelar-campana/x", headers=first)
    assert limited.status_code == 429
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    body = limited.get_json()
    assert body["success"] is False and "Espere" in body["message"] and body["details"]["retry_after_s"] > 0
    assert client.post("/api/pausar-campana/x", headers=second).status_code == 404, "another key has its own count"

    assert client.post("/api/crear-campana", json={}, headers=second).status_code == 422
    assert client.post("/api/crear-campana", json={}, headers=second).status_code == 429
    assert all(client.get("/api/estado-cola/x", headers=first).status_code == 404 for _ in range(30)), (
        "status reads are not limited by default"
    )


def test_a_read_limit_once_set_counts_every_read_route_together_per_caller(service_env, store, monkeypatch):
    monkeypatch.setenv("RATE_LIMIT_READS", "3/minute")
    client = create_app().test_client()
    first, second = (key_header(create_key(store, f"lectora-{uuid.uuid4().hex[:8]}", "viewer")[0]) for _ in range(2))
    assert client.get("/api/estado-cola/x", headers=first).status_code == 404
    assert client.get("/api/listar-campanas", headers=first).status_code == 200
    assert client.get("/api/estado-cola/y", headers=first).status_code == 404
    limited = client.get("/api/listar-campanas", headers=first)
    assert limited.status_code == 429 and 0 < int(limited.headers["Retry-After"]) <= 60
    assert "Espere" in limited.get_json()["message"]
    assert client.get("/api/estado-cola/x", headers=first).status_code == 429
    assert client.get("/api/estado-cola/x", headers=second).status_code == 404, "another key has its own count"


def test_a_status_read_gives_the_title_as_typed_and_the_figures_of_a_campaign_not_started(
    client, api_keys, store, wipe
):
    title = 'Campaña “Navidad” 50% \\ "VIP" / ñandú 😀'
    stored_campaign(store, "titulada", title=title)
    for _ in range(2):  # the first read rebuilds the live state from the store, the second reads it from Redis
        body = client.get("/api/estado-cola/titulada", headers=key_header(api_keys["viewer"])).get_json()
        assert (body["titulo"], body["status"], body["total"], body["pending"], body["progress"]) == (
            title,
            "queued",
            2,
            2,
            0.0,
        )
        assert body["errores"] == [] and body["batches_in_flight"] == 0 and body["messages_per_second"] == 0.0


def test_security_headers_on_answers_and_a_strict_csp_on_the_docs(client, api_keys):
    for response in (
        client.get("/api/listar-campanas", headers=key_header(api_keys["viewer"])),
        client.get("/api/nada"),
        client.get("/healthz"),
    ):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    docs = client.get("/api/docs")
    csp = docs.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    page = docs.get_data(as_text=True)
    assert "https://" not in page and "<script>" not in page, "no CDN and no inline script"
    assert client.get("/api/docs/init.js").status_code == 200
    assert client.get("/api/docs/index.html").status_code == 404


def test_gunicorn_as_deployed_sends_no_version(service_env, tmp_path):
    from tests.conftest import free_port

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-k", "gevent", "-w", "1", "-b", f"127.0.0.1:{port}", "webapi:create_app()"],
        cwd=ROOT,
        env=service_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import requests

        deadline = time.monotonic() + 30
        while True:
            try:
                response = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.3)
        assert response.raw.headers.getlist("Server") == ["gunicorn"]
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    finally:
        process.terminate()
        process.wait(20)


def test_openapi_declares_both_schemes_and_the_validators_limits(client):
    spec = client.get("/api/openapi.json").get_json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    assert schemes["apiKeyAuth"]["in"] == "header" and schemes["apiKeyAuth"]["name"] == "X-API-Key"
    assert spec["security"] == [{"bearerAuth": []}, {"apiKeyAuth": []}]
    assert spec["paths"]["/healthz"]["get"]["security"] == []
    assert set(spec["paths"]["/webhooks/whatsapp"]) == {"get", "post"}
    assert spec["paths"]["/webhooks/whatsapp"]["post"]["security"] == []
    form = spec["paths"]["/api/crear-campana"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["properties"]["titulo_campana"]["maxLength"] == 200
    assert form["properties"]["titulo_campana"]["minLength"] == 1
    assert "archivo_csv" in form["required"] and "titulo_campana" in form["required"]
    params = {p["name"]: p["schema"] for p in spec["paths"]["/api/destinatarios/{campaign_id}"]["get"]["parameters"]}
    assert [v for v in params["estado"]["enum"] if v] == [
        "pending",
        "sending",
        "sent",
        "failed",
        "cancelled",
        "unknown",
        "suppressed",
        "deferred",
    ]
    assert (params["por_pagina"]["minimum"], params["por_pagina"]["maximum"]) == (1, 1000)
    assert "401" in spec["paths"]["/api/estado-cola/{campaign_id}"]["get"]["responses"]
    assert "/api/auditoria" in spec["paths"]


def flask_cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    """Run `flask --app webapi ...` as an operator would."""
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "webapi", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_keys_are_created_listed_and_revoked_through_the_cli(service_env, api, store):
    name = f"crm-{uuid.uuid4().hex[:8]}"
    created = flask_cli(service_env, "apikey", "create", name, "--role", "viewer", "--buzon", "ventas")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("wcq_") and len(key) > 40
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        row = conn.execute(
            "SELECT to_jsonb(k)::text, key_hash FROM instancia_sofia.api_keys k WHERE name = %s", (name,)
        ).fetchone()
    assert key not in row[0] and row[1] == hash_key(key)

    assert api.get("/api/listar-campanas", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    first_use = next(k for k in store.list_api_keys() if k["name"] == name)["last_used_at"]
    assert first_use is not None
    assert api.get("/api/buzones", headers={"X-API-Key": key}).status_code == 200
    assert next(k for k in store.list_api_keys() if k["name"] == name)["last_used_at"] == first_use, (
        "written at most once a minute"
    )

    listing = flask_cli(service_env, "apikey", "list")
    line = next(line for line in listing.stdout.splitlines() if line.startswith(name + "\t"))
    assert "\tviewer\tventas\t" in line and "active" in line and "last used never" not in line
    assert key not in listing.stdout and row[1] not in listing.stdout

    duplicate = flask_cli(service_env, "apikey", "create", name, "--role", "viewer")
    assert duplicate.returncode != 0 and "already exists" in duplicate.stderr

    revoked = flask_cli(service_env, "apikey", "revoke", name)
    assert revoked.returncode == 0, revoked.stderr
    revoked_at = time.monotonic()
    wait_for(
        lambda: api.get("/api/listar-campanas", headers={"X-API-Key": key}).status_code == 401,
        5,
        0.1,
        "the revoked key refused",
    )
    assert time.monotonic() - revoked_at <= 2.5, "within API_KEY_CACHE_S (2 s) of the revocation"
    assert flask_cli(service_env, "apikey", "revoke", name).returncode != 0
    changes = [e["action"] for e in audit_rows(actor_kind="cli") if e["details"].get("name") == name]
    assert changes == ["apikey.create", "apikey.revoke"]


def test_auth_disabled_is_announced_by_every_process(service_env):
    run = flask_cli({**service_env, "AUTH_DISABLED": "true"}, "buzon", "list")
    assert run.returncode == 0 and "AUTH_DISABLED=true" in run.stderr
    assert "AUTH_DISABLED" not in flask_cli(service_env, "buzon", "list").stderr


def test_auth_disabled_lets_every_request_through(service_env, monkeypatch):
    monkeypatch.setenv("AUTH_DISABLED", "true")
    assert create_app().test_client().get("/api/auditoria").status_code == 200


def test_a_key_is_looked_up_once_per_cache_period_and_a_revocation_takes_effect_after_it(
    monkeypatch, service_env, store
):
    # A console polling estado-cola every second must not cost a database round trip per read.
    monkeypatch.setenv("API_KEY_CACHE_S", "0.5")
    app = create_app()
    client = app.test_client()
    name = f"poller-{uuid.uuid4().hex[:8]}"
    key = create_key(store, name, "viewer")[0]
    lookups = []
    real = app.extensions["campaigns"].store.use_api_key
    monkeypatch.setattr(app.extensions["campaigns"].store, "use_api_key", lambda h: lookups.append(h) or real(h))
    assert all(client.get("/api/listar-campanas", headers=key_header(key)).status_code == 200 for _ in range(20))
    assert len(lookups) == 1
    store.revoke_api_key(name)
    assert client.get("/api/listar-campanas", headers=key_header(key)).status_code == 200  # still trusted
    time.sleep(0.6)
    refused = client.get("/api/listar-campanas", headers=key_header(key))
    assert refused.status_code == 401 and len(lookups) == 2
    assert client.get("/api/listar-campanas", headers=key_header("wcq_" + "x" * 43)).status_code == 401
    assert client.get("/api/listar-campanas", headers=key_header("wcq_" + "x" * 43)).status_code == 401
    assert len(lookups) == 4, "a wrong key is never cached"
