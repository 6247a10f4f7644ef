"""Hostile inputs get a 4xx with a Spanish sentence that says what to fix, never a 500, and store nothing."""

from __future__ import annotations

import io
import json
import threading

import psycopg
import pytest

from tests.conftest import make_csv

FORM = {"titulo_campana": "Hostil", "plantilla": "promo_enero", "buzon": "ventas", "idioma": "es"}
CONTACTS = [{"telefono": "584141234567", "nombre": "Ana"}, {"telefono": "584241234567", "nombre": "Bo"}]
ENGLISH = (
    "Missing data",
    "Not a valid",
    "Length must",
    "Must be one of",
    "Must be greater",
    "Invalid input",
    "Unknown field",
    "may not be null",
    "Internal Server Error",
)


def _nothing_stored(app) -> None:
    """No campaign, no recipient, no live state and no batch queued."""
    rt = app.extensions["campaigns"]
    with psycopg.connect(rt.settings.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM instancia_sofia.campaigns").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM instancia_sofia.leads_activos").fetchone()[0] == 0
    assert list(rt.redis.scan_iter(match="wcq:campaign*")) == []


def _refused(response, status: int | tuple[int, ...], *words: str) -> dict:
    """The answer is the JSON error shape, with the status and the words expected, and no English default."""
    statuses = status if isinstance(status, tuple) else (status,)
    assert response.status_code in statuses, (response.status_code, response.get_data(as_text=True)[:500])
    body = response.json
    assert body["success"] is False and body["message"]
    text = body["message"] + json.dumps(body["details"], ensure_ascii=False)
    for word in words:
        assert word.lower() in text.lower(), text
    for english in ENGLISH:
        assert english.lower() not in text.lower(), text
    return body


def _post_json(client, body) -> object:
    """POST crear-campana with a raw JSON text (lone surrogates survive only as escapes)."""
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post("/api/crear-campana", data=data, content_type="application/json")


JSON_CASES = {
    "NUL in the title": ({**FORM, "titulo_campana": "Pro\x00mo", "contactos": CONTACTS}, "titulo_campana"),
    "NUL in the buzon": ({**FORM, "buzon": "ven\x00tas", "contactos": CONTACTS}, "buzon"),
    "NUL in a contact parameter": (
        {**FORM, "contactos": [CONTACTS[0], {"telefono": "584241234567", "nombre": "B\x00o"}]},
        "contacto 2",
    ),
    "NUL in a contact field name": (
        {**FORM, "contactos": [{"telefono": "584141234567", "nom\x00bre": "Ana"}]},
        "contacto 1",
    ),
    "NUL in the phone column name": (
        {**FORM, "columna_telefono": "tel\x00", "contactos": CONTACTS},
        "columna_telefono",
    ),
    "lone surrogate in the title": (
        '{"titulo_campana": "Promo \\ud800", "plantilla": "promo_enero", '
        '"buzon": "ventas", "contactos": [{"telefono": "584141234567"}]}',
        "titulo_campana",
    ),
    "lone surrogate in a parameter": (
        '{"titulo_campana": "Promo", "plantilla": "promo_enero", "buzon": "ventas",'
        ' "contactos": [{"telefono": "584141234567", "nombre": "A\\udc00"}]}',
        "contacto 1",
    ),
    "title of the wrong type": ({**FORM, "titulo_campana": 5, "contactos": CONTACTS}, "texto"),
    "title too long": ({**FORM, "titulo_campana": "x" * 201, "contactos": CONTACTS}, "200"),
    "missing title": (
        {k: v for k, v in {**FORM, "contactos": CONTACTS}.items() if k != "titulo_campana"},
        "obligatorio",
    ),
    "contacts not a list": ({**FORM, "contactos": "584141234567"}, "lista"),
    "a contact not an object": ({**FORM, "contactos": [CONTACTS[0], 7]}, "contactos"),
    "JSON nested 100,000 levels": ("[" * 100_000 + "]" * 100_000, "JSON"),
    "JSON nested inside a contact": (
        '{"titulo_campana": "Promo", "plantilla": "promo_enero", "buzon": "ventas", '
        '"contactos": [{"telefono": "584141234567", "nombre": ' + "[" * 50_000 + "]" * 50_000 + "}]}",
        "JSON",
    ),
}


@pytest.mark.parametrize("case", JSON_CASES, ids=list(JSON_CASES))
def test_hostile_json_uploads_are_refused_in_spanish(client, app, case):
    body, words = JSON_CASES[case]
    _refused(_post_json(client, body), (400, 422), words)
    _nothing_stored(app)


def test_nul_in_multipart_fields_is_refused(client, app):
    data = {
        **FORM,
        "titulo_campana": "Pro\x00mo",
        "buzon": "ven\x00tas",
        "archivo_csv": (io.BytesIO(make_csv(3)), "c.csv", "text/csv"),
    }
    body = _refused(
        client.post("/api/crear-campana", data=data, content_type="multipart/form-data"), 422, "titulo_campana", "buzon"
    )
    assert "carácter" in json.dumps(body["details"], ensure_ascii=False)
    _nothing_stored(app)


def test_validation_messages_are_spanish(client):
    response = _post_json(
        client, {"plantilla": 3, "buzon": "", "idioma": "es", "contactos": CONTACTS, "parametros_nombrados": "quizas"}
    )
    fields = _refused(response, 422)["details"]["fields"]
    assert fields["titulo_campana"] == ["Falta este campo: es obligatorio."]
    assert "texto" in fields["plantilla"][0]
    assert "entre 1 y 100" in fields["buzon"][0]
    assert "verdadero" in fields["parametros_nombrados"][0].lower()
    retry = client.post("/api/reintentar-campana/nadie", json={"estados": ["todos"]})
    assert "unknown, failed" in _refused(retry, 422)["details"]["fields"]["estados"]["0"][0]


BAD_IDS = ["x%00y", "..%2Fx", "a'b", ";--", "x" * 5000, "%ED%A0%80", "a%20b", "%C3%B1and%C3%BA"]
ROUTES = [
    ("get", "/api/estado-cola/{}"),
    ("get", "/api/destinatarios/{}"),
    ("post", "/api/pausar-campana/{}"),
    ("post", "/api/reanudar-campana/{}"),
    ("post", "/api/cancelar-campana/{}"),
    ("post", "/api/reintentar-campana/{}"),
]


@pytest.mark.parametrize("method, route", ROUTES, ids=[r.split("/")[2] for _, r in ROUTES])
@pytest.mark.parametrize(
    "campaign_id", BAD_IDS, ids=["nul", "dotdot", "quote", "sql", "long", "surrogate", "space", "accents"]
)
def test_malformed_campaign_ids_get_a_404_that_says_what_an_id_looks_like(client, app, method, route, campaign_id):
    upload = {**FORM, "archivo_csv": (io.BytesIO(make_csv(3)), "c.csv", "text/csv")}
    assert client.post("/api/crear-campana", data=upload, content_type="multipart/form-data").status_code == 201
    response = getattr(client, method)(route.format(campaign_id))
    body = _refused(response, 404, "id")
    assert len(response.get_data()) < 1000
    assert client.get("/api/estado-cola/hostil").json["status"] == "running"
    del body


@pytest.mark.parametrize(
    "path, field",
    [
        ("/api/listar-campanas?pagina=107374184", "pagina"),
        ("/api/listar-campanas?pagina=99999999999999999999999", "pagina"),
        ("/api/listar-campanas?por_pagina=100000", "por_pagina"),
        ("/api/listar-campanas?pagina=-1", "pagina"),
        ("/api/listar-campanas?pagina=uno", "pagina"),
        ("/api/destinatarios/hostil?pagina=107374184", "pagina"),
        ("/api/destinatarios/hostil?por_pagina=4294967296", "por_pagina"),
        ("/api/destinatarios/hostil?estado=todos", "estado"),
    ],
)
def test_pages_beyond_the_maximum_get_a_422_naming_the_limit(client, path, field):
    upload = {**FORM, "archivo_csv": (io.BytesIO(make_csv(3)), "c.csv", "text/csv")}
    assert client.post("/api/crear-campana", data=upload, content_type="multipart/form-data").status_code == 201
    body = _refused(client.get(path), 422, field)
    assert list(body["details"]["fields"]) == [field]


def test_the_last_allowed_page_answers_empty(client):
    assert client.get("/api/listar-campanas?pagina=1000000&por_pagina=100").json["campaigns"] == []


def test_a_json_body_over_its_limit_is_refused_before_it_is_read(client, app):
    contacts = [{"telefono": f"58414{i:07d}", "nombre": f"Cliente {i}"} for i in range(150_000)]
    body = json.dumps({**FORM, "contactos": contacts})
    assert len(body) > 5 * 1024 * 1024
    body = _refused(_post_json(client, body), 413, "5 MB", "CSV")
    assert body["details"] == {"max_json_body_mb": 5}
    _nothing_stored(app)


def test_the_json_body_limit_is_a_setting(fast_env):
    from tasks.config import ConfigError, load_settings

    assert load_settings({**fast_env, "MAX_JSON_BODY_MB": "2"}, dotenv=False).max_json_body_bytes == 2 * 1048576
    with pytest.raises(ConfigError, match="MAX_JSON_BODY_MB"):
        load_settings({**fast_env, "MAX_JSON_BODY_MB": "cinco"}, dotenv=False)


def _at_once(app, key: str, n: int, make_request) -> list:
    """Send `n` requests (with API key `key`) from `n` threads released together; returns the responses."""
    barrier, responses = threading.Barrier(n), [None] * n

    def send(i: int) -> None:
        client = app.test_client()
        client.environ_base["HTTP_X_API_KEY"] = key
        barrier.wait()
        responses[i] = make_request(client)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return responses


def _stored_campaigns(app) -> dict[str, tuple[int, int]]:
    """Each stored campaign's declared total and its recipient rows."""
    with psycopg.connect(app.extensions["campaigns"].settings.database_url) as conn:
        return {
            row[0]: (row[1], row[2])
            for row in conn.execute(
                "SELECT c.id, c.total, "
                "(SELECT count(*) FROM instancia_sofia.leads_activos l WHERE l.campaign_id = c.id) "
                "FROM instancia_sofia.campaigns c"
            )
        }


@pytest.mark.parametrize("kind", ["multipart", "json"])
def test_the_same_upload_twice_at_once_with_one_key_makes_one_campaign(app, queue, fast_keys, kind):
    csv, contacts = make_csv(400), [{"telefono": f"58414{i:07d}", "nombre": "Ana"} for i in range(400)]

    def post(client):
        headers = {"Idempotency-Key": f"doble-{kind}"}
        if kind == "json":
            return client.post("/api/crear-campana", json={**FORM, "contactos": contacts}, headers=headers)
        data = {**FORM, "archivo_csv": (io.BytesIO(csv), "c.csv", "text/csv")}
        return client.post("/api/crear-campana", data=data, headers=headers, content_type="multipart/form-data")

    responses = _at_once(app, fast_keys["operator"], 2, post)
    assert [r.status_code for r in responses] == [201, 201], [r.json for r in responses]
    assert sorted(r.json["duplicate_request"] for r in responses) == [False, True]
    assert {r.json["campaign_id"] for r in responses} == {"hostil"}
    assert _stored_campaigns(app) == {"hostil": (400, 400)}


def test_the_same_upload_twice_at_once_without_a_key_makes_two_whole_campaigns(app, queue, fast_keys):
    csv = make_csv(400)

    def post(client):
        data = {**FORM, "archivo_csv": (io.BytesIO(csv), "c.csv", "text/csv")}
        return client.post("/api/crear-campana", data=data, content_type="multipart/form-data")

    responses = _at_once(app, fast_keys["operator"], 2, post)
    assert [r.status_code for r in responses] == [201, 201], [r.json for r in responses]
    assert sorted(r.json["campaign_id"] for r in responses) == ["hostil", "hostil-2"]
    assert _stored_campaigns(app) == {"hostil": (400, 400), "hostil-2": (400, 400)}
