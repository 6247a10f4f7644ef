"""Every bad upload gets a 4xx JSON error that says what to fix, and leaves nothing stored or enqueued."""

from __future__ import annotations

import os

import psycopg
import pytest

from tests.conftest import make_csv

pytestmark = pytest.mark.usefixtures("worker", "clean")

GOOD_FIELDS = {"titulo_campana": "Prueba", "plantilla": "promo_enero", "buzon": "ventas", "idioma": "es"}


def _form(fields=None, csv: bytes | None = b"telefono,nombre\n584141234567,Ana\n", drop: str | None = None):
    """Multipart arguments for requests.post."""
    data = {**GOOD_FIELDS, **(fields or {})}
    if drop:
        data.pop(drop)
    files = {"archivo_csv": ("c.csv", csv, "text/csv")} if csv is not None else None
    return {"data": data, "files": files}


CASES = {
    "unknown buzon": (_form({"buzon": "nadie"}), 422, "no está registrado"),
    "no phone column": (_form(csv=b"nombre,plan\nAna,300\n"), 422, "columna de teléfono"),
    "no valid row": (_form(csv=b"telefono,nombre\n123,Ana\nabc,Bo\n"), 422, "ningún"),
    "missing file": (_form(csv=None), 400, "archivo_csv"),
    "missing title": (_form(drop="titulo_campana"), 422, "titulo_campana"),
    "bad template name": (_form({"plantilla": "Promo Enero!"}), 422, "plantilla"),
    "bad language": (_form({"idioma": "espanol"}), 422, "idioma"),
    "too many messages": (_form(csv=make_csv(5001)), 422, "5000"),
    "file over the size limit": (_form(csv=b"telefono,nota\n" + b"584141234567," + b"x" * (1024 * 1024 + 10) + b"\n"),
                                 413, "MB"),
    "phone column named but absent": (_form({"columna_telefono": "celu"}), 422, "celu"),
    # Rows are stored while the file is read: a file that breaks after thousands of good rows is rolled back.
    "unreadable row after 4,999 good ones": (
        _form(csv=make_csv(4999) + b'584141999999,"sin cerrar' + b"x" * 200_000 + b"\n"), 422, "fila 5001"),
}


def _nothing_left(redis_client, sandbox) -> None:
    """No campaign row, no recipient row, no live state and no message sent."""
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        assert conn.execute("SELECT count(*) FROM instancia_sofia.campaigns").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM instancia_sofia.leads_activos").fetchone()[0] == 0
    assert list(redis_client.scan_iter(match="wcq:campaign*")) == []
    assert sandbox.messages() == []


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_upload_is_refused_and_nothing_is_stored(api, redis_client, sandbox, case):
    request, expected_status, words = CASES[case]
    response = api.post("/api/crear-campana", **request)
    assert response.status_code == expected_status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["success"] is False
    assert words.lower() in (body["message"] + str(body["details"])).lower()
    _nothing_left(redis_client, sandbox)


@pytest.mark.parametrize("body, words", [
    ("{not json", "JSON"),
    ('{"titulo_campana": "X", "plantilla": "p", "buzon": "ventas"}', "contactos"),
    ('{"titulo_campana": "X", "plantilla": "p", "buzon": "ventas", "contactos": [{"nombre": "Ana"}]}', "teléfono"),
])
def test_bad_json_body_is_refused(api, redis_client, sandbox, body, words):
    response = api.post("/api/crear-campana", data=body, headers={"Content-Type": "application/json"})
    assert 400 <= response.status_code < 500
    body = response.json()
    assert body["success"] is False and words.lower() in (body["message"] + str(body["details"])).lower()
    _nothing_left(redis_client, sandbox)


def test_json_contact_list_creates_a_campaign(api):
    body = {**GOOD_FIELDS, "titulo_campana": "Desde JSON",
            "contactos": [{"telefono": "+58 414-123-4567", "nombre": "Ana"}, {"telefono": "04241234567", "nombre": "Bo"}]}
    response = api.post("/api/crear-campana", json=body)
    assert response.status_code == 201, response.text
    assert response.json()["total_messages"] == 2


@pytest.mark.parametrize("path, status", [
    ("/api/estado-cola/no-existe", 404), ("/api/pausar-campana/no-existe", 404), ("/api/no-hay-tal-ruta", 404),
])
def test_unknown_things_answer_json_errors(api, path, status):
    response = api.post(path) if "campana/" in path else api.get(path)
    assert response.status_code == status
    assert response.json()["success"] is False and response.json()["message"]


def test_openapi_document_lists_the_public_routes(api):
    spec = api.get("/api/openapi.json").json()
    for path in ("/api/crear-campana", "/api/estado-cola/{campaign_id}", "/api/listar-campanas",
                 "/api/estado-sistema", "/api/pausar-campana/{campaign_id}"):
        assert path in spec["paths"]
    assert "QueueStatus" in spec["components"]["schemas"]
    assert api.get("/api/docs").status_code == 200
