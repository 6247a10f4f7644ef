"""POST /api/validar-campana and GET /api/yo, in process: the validation reads a file as crear-campana does."""

from __future__ import annotations

import io

import psycopg

from tests.conftest import make_csv

FORM = {"titulo_campana": "Revisión", "plantilla": "promo_enero", "buzon": "ventas", "idioma": "es"}
BAD_ROWS = (
    b"telefono,nombre,plan\n"
    b"584141000000,Ana,Oro\n"
    b"12,Beto,Plata\n"  # row 3: too short to be a phone
    b"584141000001,Carla,Bronce\n"
    b"584141000000,Ana otra vez,Oro\n"  # row 5: a duplicate of row 2
    b"584141000002,,Oro\n"  # row 6: an empty parameter
)


def post(client, path: str, csv: bytes, headers: dict | None = None, **fields):
    """POST a CSV as multipart, as the console does."""
    data = {**FORM, **fields, "archivo_csv": (io.BytesIO(csv), "contactos.csv", "text/csv")}
    return client.post(path, data=data, content_type="multipart/form-data", headers=headers or {})


def campaign_count(app) -> int:
    with psycopg.connect(app.extensions["campaigns"].settings.database_url) as conn:
        return conn.execute("SELECT count(*) FROM instancia_sofia.campaigns").fetchone()[0]


def test_validation_shows_what_would_be_sent_and_stores_nothing(client, app, queue, fast_sandbox):
    response = post(client, "/api/validar-campana", BAD_ROWS)
    assert response.status_code == 200, response.json
    body = response.json
    assert body["columna_telefono"] == "telefono"
    assert body["columnas_parametros"] == [
        {"parametro": "{{1}}", "columna": "nombre"},
        {"parametro": "{{2}}", "columna": "plan"},
    ]
    assert (body["total_messages"], body["total_rechazados"]) == (2, 3)
    assert body["filas"][0] == {
        "fila": 2,
        "telefono": "584141000000",
        "parametros": [
            {"parametro": "{{1}}", "columna": "nombre", "valor": "Ana"},
            {"parametro": "{{2}}", "columna": "plan", "valor": "Oro"},
        ],
    }
    assert [r["fila"] for r in body["rechazados"]] == [3, 5, 6]
    assert "duplicado de la fila 2" in body["rechazados"][1]["motivo"]
    assert "vacío" in body["rechazados"][2]["motivo"]
    assert "*" in body["rechazados"][1]["valor"]  # rejected phones are masked, as crear-campana does
    assert "no se guardó ni envió nada" in body["message"]
    assert campaign_count(app) == 0 and len(queue.batches) == 0 and fast_sandbox.messages() == []


def test_validation_and_creation_agree(client):
    validated = post(client, "/api/validar-campana", BAD_ROWS).json
    created = post(client, "/api/crear-campana", BAD_ROWS).json
    assert created["total_messages"] == validated["total_messages"]
    assert created["rechazados"] == validated["rechazados"]
    assert created["notas"] == validated["notas"]


def test_named_parameters_are_shown_by_name_and_only_ten_rows(client):
    body = post(client, "/api/validar-campana", make_csv(25), parametros_nombrados="true").json
    assert body["parametros_nombrados"] is True and body["total_messages"] == 25
    assert len(body["filas"]) == 10
    assert [p["parametro"] for p in body["filas"][0]["parametros"]] == ["nombre", "plan"]


def test_validation_refuses_what_creation_refuses(client, fast_keys):
    no_phone = post(client, "/api/validar-campana", b"nombre,plan\nAna,Oro\n")
    assert no_phone.status_code == 422 and no_phone.json["success"] is False
    unknown = post(client, "/api/validar-campana", make_csv(2), buzon="nadie")
    assert unknown.status_code == 422 and "buzon" in unknown.json["details"]["field"]
    missing = client.post("/api/validar-campana", data=FORM, content_type="multipart/form-data")
    assert missing.status_code == 400
    viewer = post(client, "/api/validar-campana", make_csv(2), headers={"X-API-Key": fast_keys["viewer"]})
    assert viewer.status_code == 403


def test_whoami_says_who_is_calling(client, fast_keys):
    body = client.get("/api/yo").json
    assert body == {
        "success": True,
        "tipo": "key",
        "id": "fast-operator",
        "email": None,
        "nombre": "fast-operator",
        "rol": "operator",
        "buzones": None,
        "puede_operar": True,
    }
    viewer = client.get("/api/yo", headers={"X-API-Key": fast_keys["viewer"]}).json
    assert (viewer["rol"], viewer["puede_operar"]) == ("viewer", False)
    assert client.get("/api/yo", headers={"X-API-Key": "wcq_nope"}).status_code == 401


def test_both_routes_are_in_the_openapi_document(client):
    paths = client.get("/api/openapi.json").json["paths"]
    assert "post" in paths["/api/validar-campana"] and "get" in paths["/api/yo"]
