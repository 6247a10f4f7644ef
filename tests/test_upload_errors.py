"""Every bad upload gets a 4xx JSON error that says what to fix, and leaves nothing stored or enqueued."""

from __future__ import annotations

import gzip
import io
import os
import random
import zipfile

import psycopg
import pytest

from tests.conftest import make_csv, store_rows

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
    "file over the size limit": (
        _form(csv=b"telefono,nota\n" + b"584141234567," + b"x" * (1024 * 1024 + 10) + b"\n"),
        413,
        "MB",
    ),
    "phone column named but absent": (_form({"columna_telefono": "celu"}), 422, "celu"),
    # Rows are stored while the file is read: a file that breaks after thousands of good rows is rolled back.
    "unreadable row after 4,999 good ones": (
        _form(csv=make_csv(4999) + b'584141999999,"sin cerrar' + b"x" * 200_000 + b"\n"),
        422,
        "fila 5001",
    ),
}


def _zipped(name: str, data: bytes) -> bytes:
    """A zip archive holding one file."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


_SWALLOWING_QUOTE = b'telefono,nombre\n+584147000000,"Juan\n' + make_csv(999).split(b"\n", 1)[1]
_WIDE = ("telefono," + ",".join(f"p{i}" for i in range(9_999)) + "\n584141234567," + ",".join("x" * 9_999)).encode()

# Hostile or broken files: each gets a 422 whose message says what to fix (and which row), never a 500.
HOSTILE_FILES = {
    "binary file": (random.Random(1).randbytes(50_000), "no es un csv de texto"),
    "gzip file named .csv": (gzip.compress(make_csv(10)), "descomprímalo y suba el csv"),
    "zip file named .csv": (_zipped("contactos.csv", make_csv(10)), "descomprímalo y suba el csv"),
    "utf-16 with a lone surrogate": (
        "telefono,nombre\n584141234567,B".encode("utf-16")
        + "\ud800".encode("utf-16-le", "surrogatepass")
        + "o\n".encode("utf-16-le"),
        "fila 2: hay bytes que no son texto válido en utf-16",
    ),
    "utf-16 without bom cut in the middle of a character": (
        "telefono,nombre\n584141234567,Ana\n".encode("utf-16-le") + b"5",
        "utf-16",
    ),
    "10,000 columns": (_WIDE, "10000 columnas y el máximo es 100"),
    "NUL byte in a cell": (b"telefono,nombre\n584141234567,Ana\n584241234567,B\x00o\n", "fila 3"),
    "escape character in a cell": (b"telefono,nombre\n584141234567,A\x1bna\n", "u+001b"),
    "damaged utf-8": (
        "telefono,nombre\n584141234567,José\n".encode() + b"584241234567,B\xc3o\n",
        "fila 3: hay bytes que no son texto válido en utf-8",
    ),
    "bytes neither utf-8 nor windows-1252": (b"telefono,nombre\n584141234567,A\x81na\n", "windows-1252"),
    "an unclosed quote swallowing 999 rows": (_SWALLOWING_QUOTE, "fila 2: una celda abre comillas"),
    "a parameter over MAX_PARAM_LENGTH": (
        b"telefono,nombre\n584141234567,Ana\n584241234567," + b"b" * 1025 + b"\n",
        "fila 3: la columna 'nombre' tiene 1025 caracteres",
    ),
    # The rows before the broken one are already being stored when it is met: all of it is rolled back.
    "an unclosed quote after 4,999 good rows": (
        make_csv(4999) + b'584141999999,"sin cerrar\n' + make_csv(3, start=4161000000).split(b"\n", 1)[1],
        "fila 5001: una celda abre comillas",
    ),
}


@pytest.mark.parametrize("case", HOSTILE_FILES, ids=list(HOSTILE_FILES))
def test_hostile_file_gets_a_422_that_says_what_to_fix_and_nothing_is_stored(api, redis_client, sandbox, case):
    data, words = HOSTILE_FILES[case]
    response = api.post("/api/crear-campana", **_form(csv=data))
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["success"] is False
    assert words in body["message"].lower(), body["message"]
    _nothing_left(redis_client, sandbox)


def _nothing_left(redis_client, sandbox) -> None:
    """No campaign row, no recipient row, no live state and no message sent."""
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        assert conn.execute("SELECT count(*) FROM instancia_sofia.campaigns").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM instancia_sofia.leads_activos").fetchone()[0] == 0
    # Per-second activity counters of the previous test's campaign may still be written by the worker.
    assert [k for k in redis_client.scan_iter(match="wcq:campaign*") if ":tick:" not in k] == []
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


@pytest.mark.parametrize(
    "body, words",
    [
        ("{not json", "JSON"),
        ('{"titulo_campana": "X", "plantilla": "p", "buzon": "ventas"}', "contactos"),
        ('{"titulo_campana": "X", "plantilla": "p", "buzon": "ventas", "contactos": [{"nombre": "Ana"}]}', "teléfono"),
    ],
)
def test_bad_json_body_is_refused(api, redis_client, sandbox, body, words):
    response = api.post("/api/crear-campana", data=body, headers={"Content-Type": "application/json"})
    assert 400 <= response.status_code < 500
    body = response.json()
    assert body["success"] is False and words.lower() in (body["message"] + str(body["details"])).lower()
    _nothing_left(redis_client, sandbox)


def test_json_contact_list_creates_a_campaign(api):
    body = {
        **GOOD_FIELDS,
        "titulo_campana": "Desde JSON",
        "contactos": [{"telefono": "+58 414-123-4567", "nombre": "Ana"}, {"telefono": "04241234567", "nombre": "Bo"}],
    }
    response = api.post("/api/crear-campana", json=body)
    assert response.status_code == 201, response.text
    assert response.json()["total_messages"] == 2


@pytest.mark.parametrize(
    "path, status",
    [
        ("/api/estado-cola/no-existe", 404),
        ("/api/pausar-campana/no-existe", 404),
        ("/api/no-hay-tal-ruta", 404),
    ],
)
def test_unknown_things_answer_json_errors(api, path, status):
    response = api.post(path) if "campana/" in path else api.get(path)
    assert response.status_code == status
    assert response.json()["success"] is False and response.json()["message"]


def test_openapi_document_lists_the_public_routes(api):
    spec = api.get("/api/openapi.json").json()
    for path in (
        "/api/crear-campana",
        "/api/estado-cola/{campaign_id}",
        "/api/listar-campanas",
        "/api/estado-sistema",
        "/api/pausar-campana/{campaign_id}",
    ):
        assert path in spec["paths"]
    assert "QueueStatus" in spec["components"]["schemas"]
    assert api.get("/api/docs").status_code == 200


# These create campaigns the worker goes on sending, so they come after the tests that expect an empty state.
@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_files_with_and_without_bom_create_the_campaign_with_names_intact(api, codec):
    data = "telefono;nombre\r\n584141234567;José Muñoz\r\n584241234567;Zoë\r\n".encode(codec)
    response = api.post("/api/crear-campana", **_form({"titulo_campana": f"UTF-16 {codec}"}, csv=data))
    assert response.status_code == 201, response.text
    rows = store_rows(response.json()["campaign_id"])
    assert [(phone, params) for phone, _, _, params in rows] == [
        ("584141234567", ["José Muñoz"]),
        ("584241234567", ["Zoë"]),
    ]


def test_json_values_no_database_can_hold_refuse_the_request_naming_the_contact(api, redis_client):
    body = {
        **GOOD_FIELDS,
        "titulo_campana": "JSON hostil",
        "contactos": [
            {"telefono": "584141234567", "nombre": "Ana"},
            {"telefono": "584241234567", "nombre": "B\u0000o"},
            {"telefono": "584161234567", "nombre": "\ud800"},
        ],
    }
    response = api.post("/api/crear-campana", json=body)
    # Like a CSV cell with a NUL, the whole list is refused (nothing half-stored), naming what to fix.
    assert response.status_code == 422, response.text
    assert "contacto 2" in response.json()["details"]["fields"]["contactos"][0]
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        assert conn.execute("SELECT count(*) FROM instancia_sofia.campaigns").fetchone()[0] == 0
    assert list(redis_client.scan_iter(match="wcq:campaign:json-hostil*")) == []
