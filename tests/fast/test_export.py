"""GET /api/campanas/<id>/resultados.csv, in process: content, BOM, separator, formulas, masking and access."""

from __future__ import annotations

import csv
import io
import uuid

import psycopg
import pytest

from tasks import texts
from tasks.errors import describe
from tests.fast.helpers import new_campaign
from webapi import campaigns
from webapi.apikeys import create_key
from webapi.exports import neutralise

PATH = "/api/campanas/{}/resultados.csv"


def rows_of(response, delimiter: str = ",") -> list[list[str]]:
    """The CSV's rows, header first (the BOM checked and dropped)."""
    data = response.get_data()
    assert data.startswith(b"\xef\xbb\xbf")
    return list(csv.reader(io.StringIO(data[3:].decode("utf-8"), newline=""), delimiter=delimiter))


@pytest.fixture
def sent_campaign(app, queue, fast_sandbox):
    """A campaign of 25 recipients sent in process, two of them refused by WhatsApp with 131026."""
    rt = app.extensions["campaigns"]
    fast_sandbox.configure(recipient_errors={"584141000001": 131026, "584141000002": 131026})
    phones = new_campaign(rt, "resultados", 25)
    queue.run_all(rt)
    return phones


def key_for(app, role: str, buzones: list[str] | None = None) -> dict[str, str]:
    """The header of a new API key of `role` (limited to `buzones` if given)."""
    key = create_key(app.extensions["campaigns"].store, f"export-{uuid.uuid4().hex[:8]}", role, buzones)[0]
    return {"X-API-Key": key}


def test_every_recipient_with_status_wamid_error_and_times(client, sent_campaign):
    response = client.get(PATH.format("resultados"))
    assert response.status_code == 200
    assert response.is_streamed
    assert response.mimetype == "text/csv" and response.mimetype_params["charset"] == "utf-8"
    assert response.headers["Content-Disposition"] == 'attachment; filename="resultados-resultados.csv"'
    header, *rows = rows_of(response)
    assert header == list(texts.EXPORT_HEADER)
    assert [r[0] for r in rows] == [str(i) for i in range(1, 26)]
    assert [r[1] for r in rows] == sent_campaign  # an operator sees whole numbers
    by_phone = {r[1]: dict(zip(header, r, strict=True)) for r in rows}
    failed = by_phone["584141000001"]
    assert failed["estado"] == "failed" and failed["código de error"] == "131026"
    assert failed["descripción del error"] == describe(131026) and failed["wamid"] == ""
    sent = by_phone["584141000000"]
    assert sent["estado"] == "sent" and sent["wamid"].startswith("wamid.")
    assert sent["código de error"] == sent["descripción del error"] == ""
    assert sent["intentos"] == "1"
    assert len(sent["enviado (UTC)"]) == 19 and sent["enviado (UTC)"][4] == "-"  # 2026-01-08 10:30:10
    assert sent["entregado (UTC)"] == "" and sent["leído (UTC)"] == ""
    assert response.get_data().count(b"\r\n") == 26


def test_a_semicolon_separator_for_spanish_spreadsheets_and_accents_in_utf8(client, sent_campaign):
    response = client.get(PATH.format("resultados") + "?separador=;")
    assert response.status_code == 200
    data = response.get_data()
    assert data.startswith("\ufeffn;teléfono;estado".encode())
    rows = rows_of(response, ";")
    assert len(rows) == 26 and all(len(r) == len(texts.EXPORT_HEADER) for r in rows)
    # The description of 131026 holds accents and commas: it survives whole, quoted only where needed.
    failed = next(r for r in rows if r[2] == "failed")
    assert failed[5] == describe(131026)
    assert client.get(PATH.format("resultados") + "?separador=punto-y-coma").get_data() == data
    refused = client.get(PATH.format("resultados") + "?separador=|")
    assert refused.status_code == 422 and "separador" in refused.json["details"]["fields"]


def test_only_one_status_when_asked(client, sent_campaign):
    rows = rows_of(client.get(PATH.format("resultados") + "?estado=failed"))[1:]
    assert [r[1] for r in rows] == ["584141000001", "584141000002"]


def test_cells_a_spreadsheet_would_run_get_an_apostrophe(client, app, sent_campaign):
    with psycopg.connect(app.extensions["campaigns"].settings.database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE instancia_sofia.leads_activos SET error_detail = %s WHERE campaign_id = 'resultados' AND seq = 2",
            ('=HYPERLINK("http://x.test","clic")',),
        )
        conn.execute(
            "UPDATE instancia_sofia.leads_activos SET wamid = %s WHERE campaign_id = 'resultados' AND seq = 1",
            ("@SUM(A1)",),
        )
    rows = {r[0]: r for r in rows_of(client.get(PATH.format("resultados")))[1:]}
    assert rows["2"][6] == '\'=HYPERLINK("http://x.test","clic")'
    assert rows["1"][3] == "'@SUM(A1)"
    for cell in ("=1+1", "+1", "-1", "@x", "\tx", "\rx"):
        assert neutralise(cell) == "'" + cell
    assert neutralise("584141000000") == "584141000000" and neutralise(None) == "" and neutralise(3) == "3"


def test_a_viewer_gets_masked_phones_as_in_the_recipient_list(client, app, sent_campaign):
    viewer = key_for(app, "viewer")
    rows = rows_of(client.get(PATH.format("resultados"), headers=viewer))[1:]
    listed = client.get("/api/destinatarios/resultados?por_pagina=100", headers=viewer).json["destinatarios"]
    assert [r[1] for r in rows] == [r["phone"] for r in listed]
    assert all("*" in r[1] and r[1] not in sent_campaign for r in rows)
    assert rows[0][1].endswith(sent_campaign[0][-4:])


def test_a_campaign_the_caller_may_not_see_is_not_found_like_a_missing_one(client, app, sent_campaign):
    other = key_for(app, "operator", ["soporte"])
    hidden = client.get(PATH.format("resultados"), headers=other)
    missing = client.get(PATH.format("nadie"))
    assert hidden.status_code == missing.status_code == 404
    assert hidden.mimetype == "application/json" and "No existe la campaña" in hidden.json["message"]
    assert client.get(PATH.format("nadie"), headers=other).json["details"] == missing.json["details"]
    assert client.get(PATH.format("no%00valido")).status_code == 404
    assert client.get(PATH.format("resultados"), headers={"X-API-Key": "wcq_nope"}).status_code == 401


def test_pages_follow_each_other_without_gaps(client, app, queue, monkeypatch):
    rt = app.extensions["campaigns"]
    phones = new_campaign(rt, "paginas", 23, start=False)
    monkeypatch.setattr(campaigns, "EXPORT_PAGE_SIZE", 5)
    calls = []
    page = rt.store.export_page
    monkeypatch.setattr(rt.store, "export_page", lambda *a: calls.append(a[2]) or page(*a))
    rows = rows_of(client.get(PATH.format("paginas")))[1:]
    assert [r[1] for r in rows] == phones and {r[2] for r in rows} == {"pending"}
    assert calls == [0, 5, 10, 15, 20]


def test_the_route_is_in_the_openapi_document(client):
    spec = client.get("/api/openapi.json").json
    operation = spec["paths"]["/api/campanas/{campaign_id}/resultados.csv"]["get"]
    assert "text/csv" in operation["responses"]["200"]["content"]
    assert {p["name"] for p in operation["parameters"]} >= {"campaign_id", "separador", "estado"}
