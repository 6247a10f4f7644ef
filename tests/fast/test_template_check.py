"""Template checks and rich templates through crear-campana / validar-campana, in process.

The app reads the template from the sandbox's Graph API listing (the buzón's WABA id), over real HTTP, with
the real Redis as its cache and the real PostgreSQL; the sent messages are read back from the sandbox's log.
"""

from __future__ import annotations

import io
import json
from dataclasses import replace

import psycopg
import pytest

from tests.conftest import SENDERS
from tests.support.templates import TEMPLATES, WABA_ID
from webapi import create_app

FORM = {"titulo_campana": "Plantillas", "buzon": "ventas", "idioma": "es"}
PNID, TOKEN, MPS = SENDERS["ventas"]


def post(client, path: str, csv: bytes, **fields):
    """POST a CSV as multipart, as the console does."""
    data = {**FORM, **fields, "archivo_csv": (io.BytesIO(csv), "contactos.csv", "text/csv")}
    return client.post(path, data=data, content_type="multipart/form-data")


def campaign_count(settings) -> int:
    with psycopg.connect(settings.database_url) as conn:
        return conn.execute("SELECT count(*) FROM instancia_sofia.campaigns").fetchone()[0]


@pytest.fixture
def catalogue(fast_sandbox, clean_slate):
    """The sandbox lists (and checks sends against) the rich catalogue."""
    fast_sandbox.configure(templates=TEMPLATES)
    return fast_sandbox


@pytest.fixture
def waba(fast_settings, senders, catalogue):
    """The buzón 'ventas' with its WABA id for the test, as it was afterwards."""
    from tasks.store.postgres import PostgresStore

    store = PostgresStore(fast_settings.database_url)
    store.upsert_sender("ventas", PNID, TOKEN, MPS, WABA_ID)
    yield WABA_ID
    store.upsert_sender("ventas", PNID, TOKEN, MPS)
    store.close()


def test_the_answer_says_the_templates_category_and_quality(client, waba, catalogue):
    answer = post(client, "/api/validar-campana", b"telefono,codigo\n584141000000,1234\n", plantilla="clave")
    assert answer.status_code == 200, answer.json
    info = answer.json["plantilla_whatsapp"]
    assert {k: info[k] for k in ("verificada", "nombre", "idioma", "estado", "categoria", "calidad")} == {
        "verificada": True,
        "nombre": "clave",
        "idioma": "es",
        "estado": "APPROVED",
        "categoria": "authentication",
        "calidad": "GREEN",
    }
    assert info["id"]
    assert not any("WABA" in n for n in answer.json["notas"])

    csv = b"telefono,nombre,plan,encabezado,boton_0_url\n584141000000,Ana,300,https://cdn.example.com/a.png,A1\n"
    created = post(client, "/api/crear-campana", csv, plantilla="oferta_imagen")
    assert created.status_code == 201, created.json
    assert (created.json["plantilla_whatsapp"]["categoria"], created.json["plantilla_whatsapp"]["calidad"]) == (
        "marketing",
        "YELLOW",
    )
    assert any("calidad de la plantilla es YELLOW" in n for n in created.json["notas"])


def test_without_a_waba_id_the_check_is_skipped_with_a_note(client, catalogue):
    answer = post(client, "/api/validar-campana", b"telefono,nombre\n584141000000,Ana\n", plantilla="no_existe")
    assert answer.status_code == 200, answer.json
    assert answer.json["plantilla_whatsapp"]["verificada"] is False
    assert answer.json["plantilla_whatsapp"]["categoria"] is None
    assert any("no tiene WABA id" in n for n in answer.json["notas"])
    assert catalogue.stats()["template_listings"] == 0


CSV_CLAVE = b"telefono,codigo\n584141000000,1234\n"
CSV_OFERTA = b"telefono,nombre,plan\n584141000000,Ana,300\n"
CSV_OFERTA_HEADER = b"telefono,nombre,plan,encabezado\n584141000000,Ana,300,https://cdn.example.com/a.png\n"


@pytest.mark.parametrize(
    ("csv", "fields", "expected"),
    [
        (CSV_CLAVE, {"plantilla": "no_existe"}, "La plantilla 'no_existe' no existe en la cuenta"),
        (CSV_OFERTA, {"plantilla": "oferta_imagen", "idioma": "pt_BR"}, "Idiomas disponibles: en, es"),
        (CSV_CLAVE, {"plantilla": "pausada"}, "está en estado PAUSED"),
        (CSV_CLAVE, {"plantilla": "deshabilitada"}, "está en estado DISABLED"),
        (CSV_CLAVE, {"plantilla": "pendiente"}, "espere a que WhatsApp la apruebe"),
        (CSV_OFERTA, {"plantilla": "clave"}, "espera 1 parámetros en el cuerpo ({{1}}) y el archivo trae 2"),
        (b"telefono,numero\n584141000000,F-1\n", {"plantilla": "factura"}, "usa parámetros con nombre ({{numero}})"),
        (
            b"telefono,num\n584141000000,F-1\n",
            {"plantilla": "factura", "parametros_nombrados": "true", "encabezado_valor": "https://x.example.com/f"},
            "faltan numero; sobran num",
        ),
        (CSV_OFERTA, {"plantilla": "oferta_imagen"}, "necesita un encabezado de tipo imagen"),
        (CSV_OFERTA_HEADER, {"plantilla": "oferta_imagen"}, "el final de la URL del botón 0"),
        (CSV_CLAVE, {"plantilla": "clave", "encabezado_valor": "Hola"}, "no tiene encabezado variable"),
        (
            CSV_OFERTA_HEADER,
            {
                "plantilla": "oferta_imagen",
                "encabezado_tipo": "video",
                "botones": '[{"indice":0,"tipo":"url","valor":"x"}]',
            },
            "es de tipo imagen, no video",
        ),
        (
            CSV_OFERTA_HEADER,
            {"plantilla": "oferta_imagen", "botones": '[{"indice":0,"tipo":"respuesta_rapida","valor":"x"}]'},
            "El botón 0 de la plantilla es de tipo URL",
        ),
        (
            CSV_OFERTA_HEADER,
            {
                "plantilla": "oferta_imagen",
                "botones": '[{"indice":0,"tipo":"url","valor":"x"},{"indice":4,"tipo":"url","valor":"y"}]',
            },
            "tiene 2 botones (índices desde 0): no hay botón 4",
        ),
    ],
)
def test_uploads_whatsapp_would_refuse_are_refused_before_anything_is_stored(
    client, fast_settings, waba, queue, csv, fields, expected
):
    for path in ("/api/validar-campana", "/api/crear-campana"):
        answer = post(client, path, csv, **fields)
        assert answer.status_code == 422, answer.json
        assert expected in answer.json["message"]
    assert campaign_count(fast_settings) == 0 and not queue.batches


def test_a_listing_whatsapp_refuses_says_to_fix_the_buzon(client, fast_settings, waba, catalogue):
    catalogue.configure(forced_errors={WABA_ID: 190})
    answer = post(client, "/api/crear-campana", CSV_CLAVE, plantilla="clave")
    assert answer.status_code == 422
    assert "error 190" in answer.json["message"] and "token o el WABA id del buzón" in answer.json["message"]
    assert TOKEN not in json.dumps(answer.json)
    assert campaign_count(fast_settings) == 0


def test_an_unknown_waba_id_is_refused_too(client, fast_settings, senders, catalogue):
    from tasks.store.postgres import PostgresStore

    store = PostgresStore(fast_settings.database_url)
    store.upsert_sender("ventas", PNID, TOKEN, MPS, "999")
    try:
        answer = post(client, "/api/validar-campana", CSV_CLAVE, plantilla="clave")
    finally:
        store.upsert_sender("ventas", PNID, TOKEN, MPS)
        store.close()
    assert answer.status_code == 422 and "error 100" in answer.json["message"]


def test_a_listing_that_is_down_leaves_a_note_and_the_campaign_goes_on(client, fast_settings, waba, catalogue):
    catalogue.configure(down=True)
    answer = post(client, "/api/crear-campana", CSV_CLAVE, plantilla="clave")
    assert answer.status_code == 201, answer.json
    assert answer.json["plantilla_whatsapp"]["verificada"] is False
    assert any("no se pudo comprobar" in n and "HTTP 503" in n for n in answer.json["notas"])


def test_a_listing_that_times_out_leaves_a_note_not_an_error(fast_settings, queue, fast_keys, waba, catalogue):
    settings = replace(fast_settings, template_check_timeout_s=0.3)
    app = create_app({"TESTING": True}, settings=settings, queue=queue)
    client = app.test_client()
    client.environ_base["HTTP_X_API_KEY"] = fast_keys["operator"]
    catalogue.configure(latency_min_ms=1500, latency_max_ms=1500)
    try:
        answer = post(client, "/api/validar-campana", CSV_CLAVE, plantilla="clave")
    finally:
        app.extensions["campaigns"].close()
    assert answer.status_code == 200, answer.json
    assert any("no respondió en 0.3 s" in n for n in answer.json["notas"])


def test_the_listing_is_cached_briefly_without_the_token(client, fast_redis, waba, catalogue):
    for _ in range(3):
        assert post(client, "/api/validar-campana", CSV_CLAVE, plantilla="clave").status_code == 200
    assert catalogue.stats()["template_listings"] == 1
    cached = fast_redis.keys("wcq:templates:*")
    assert cached == [f"wcq:templates:{WABA_ID}:clave"]
    assert 0 < fast_redis.ttl(cached[0]) <= 60
    assert TOKEN not in fast_redis.get(cached[0])
    assert all(TOKEN not in k for k in fast_redis.keys("*"))


def sent_components(sandbox) -> dict[str, list]:
    """What the sandbox received, per recipient: the template's components."""
    return {m["to"]: m["components"] for m in sandbox.messages()}


def test_a_rich_campaign_sends_the_components_the_cloud_api_documents(app, client, queue, waba, catalogue):
    csv = (
        b"telefono,nombre,plan,encabezado,boton_0_url\n"
        b"584141000000,Ana,300,https://cdn.example.com/a.png,A1\n"
        b"584141000001,Beto,500,http://cdn.example.com/b.png,B2\n"
        b"584141000002,Carla,100,https://cdn.example.com/c.png,C3\n"
    )
    buttons = json.dumps([{"indice": 1, "tipo": "respuesta_rapida", "valor": "NO_INTERESA"}])
    answer = post(client, "/api/crear-campana", csv, plantilla="oferta_imagen", botones=buttons)
    assert answer.status_code == 201, answer.json
    assert answer.json["total_messages"] == 2
    [rejected] = answer.json["rechazados"]
    assert rejected["fila"] == 3 and "el enlace de 'encabezado' no es una dirección https://" in rejected["motivo"]
    queue.run_all(app.extensions["campaigns"])

    def expected(name: str, plan: str, link: str, suffix: str) -> list[dict]:
        return [
            {"type": "header", "parameters": [{"type": "image", "image": {"link": link}}]},
            {"type": "body", "parameters": [{"type": "text", "text": name}, {"type": "text", "text": plan}]},
            {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": suffix}]},
            {
                "type": "button",
                "sub_type": "quick_reply",
                "index": "1",
                "parameters": [{"type": "payload", "payload": "NO_INTERESA"}],
            },
        ]

    assert sent_components(catalogue) == {
        "584141000000": expected("Ana", "300", "https://cdn.example.com/a.png", "A1"),
        "584141000002": expected("Carla", "100", "https://cdn.example.com/c.png", "C3"),
    }
    assert catalogue.stats()["accepted"] == 2 and catalogue.stats()["rejected"] == {}


def test_a_campaign_wide_document_header_with_a_filename_and_named_body(app, client, queue, catalogue):
    csv = b"telefono,numero\n584141000000,F-1\n584141000001,F-2\n"
    fields = {
        "plantilla": "factura",
        "parametros_nombrados": "true",
        "encabezado_valor": "https://cdn.example.com/factura.pdf",
        "encabezado_nombre_archivo": "Factura.pdf",
    }
    # Without a WABA id nothing says what the header is: the request must.
    refused = post(client, "/api/crear-campana", csv, **fields)
    assert refused.status_code == 422 and "Indique encabezado_tipo" in refused.json["message"]
    answer = post(client, "/api/crear-campana", csv, encabezado_tipo="documento", **fields)
    assert answer.status_code == 201, answer.json
    queue.run_all(app.extensions["campaigns"])
    header = {
        "type": "header",
        "parameters": [
            {
                "type": "document",
                "document": {"link": "https://cdn.example.com/factura.pdf", "filename": "Factura.pdf"},
            }
        ],
    }
    assert sent_components(catalogue) == {
        f"58414100000{i}": [
            header,
            {"type": "body", "parameters": [{"type": "text", "text": f"F-{i + 1}", "parameter_name": "numero"}]},
        ]
        for i in range(2)
    }


def test_a_text_header_per_row_and_the_preview_shows_header_and_buttons(app, client, queue, waba, catalogue):
    csv = b"telefono,encabezado,cita\n584141000000,Ana,lunes\n584141000001,,martes\n"
    preview = post(client, "/api/validar-campana", csv, plantilla="aviso")
    assert preview.status_code == 200, preview.json
    assert preview.json["columnas_parametros"] == [
        {"parametro": "{{1}}", "columna": "cita"},
        {"parametro": "encabezado", "columna": "encabezado"},
    ]
    assert preview.json["filas"][0]["parametros"][1] == {
        "parametro": "encabezado",
        "columna": "encabezado",
        "valor": "Ana",
    }
    assert [r["fila"] for r in preview.json["rechazados"]] == [3]  # an empty header cell
    created = post(client, "/api/crear-campana", csv, plantilla="aviso")
    assert created.status_code == 201, created.json
    queue.run_all(app.extensions["campaigns"])
    assert sent_components(catalogue) == {
        "584141000000": [
            {"type": "header", "parameters": [{"type": "text", "text": "Ana"}]},
            {"type": "body", "parameters": [{"type": "text", "text": "lunes"}]},
        ]
    }


def test_the_json_body_takes_the_same_fields(client, waba, catalogue):
    body = {
        **FORM,
        "plantilla": "oferta_imagen",
        "encabezado_valor": "https://cdn.example.com/todos.png",
        "botones": [{"indice": 0, "tipo": "url", "valor": "VERANO"}],
        "contactos": [{"telefono": "584141000000", "nombre": "Ana", "plan": "300"}],
    }
    answer = client.post("/api/validar-campana", json=body)
    assert answer.status_code == 200, answer.json
    assert answer.json["plantilla_whatsapp"]["verificada"] is True
    bad = client.post("/api/validar-campana", json={**body, "botones": [{"indice": "cero", "tipo": "url"}]})
    assert bad.status_code in (400, 422) and "'botones'" in json.dumps(bad.json, ensure_ascii=False)


def test_a_document_per_row_with_an_optional_filename_column(app, client, queue, waba, catalogue):
    csv = (
        b"telefono,numero,encabezado,encabezado_nombre_archivo\n"
        b"584141000000,F-1,https://cdn.example.com/1.pdf,Factura 1.pdf\n"
        b"584141000001,F-2,https://cdn.example.com/2.pdf,\n"
    )
    answer = post(client, "/api/crear-campana", csv, plantilla="factura", parametros_nombrados="true")
    assert answer.status_code == 201, answer.json
    assert answer.json["total_rechazados"] == 0
    queue.run_all(app.extensions["campaigns"])
    sent = sent_components(catalogue)
    assert sent["584141000000"][0]["parameters"] == [
        {"type": "document", "document": {"link": "https://cdn.example.com/1.pdf", "filename": "Factura 1.pdf"}}
    ]
    assert sent["584141000001"][0]["parameters"] == [
        {"type": "document", "document": {"link": "https://cdn.example.com/2.pdf"}}
    ]
    assert sent["584141000001"][1] == {
        "type": "body",
        "parameters": [{"type": "text", "text": "F-2", "parameter_name": "numero"}],
    }
