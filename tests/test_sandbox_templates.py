"""The sandbox's template listing and its send-time checks of rich templates, over HTTP to a real sandbox process."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import requests

from sandbox.process import SandboxHandle, start_sandbox
from tests.support.templates import TEMPLATES, WABA_ID

PHONE = "1000001"
TOKEN = "good-token"
RECIPIENT = "584141234567"
LISTING_FIELDS = "name,language,status,category,components,quality_score"


@pytest.fixture(scope="module")
def sandbox() -> SandboxHandle:
    """One sandbox process with the rich catalogue."""
    with start_sandbox(tokens={PHONE: TOKEN}, templates=TEMPLATES) as handle:
        yield handle


@pytest.fixture(autouse=True)
def clean(sandbox: SandboxHandle) -> None:
    """Every test starts from the startup options and an empty log."""
    sandbox.reset(config=True)


def listing(sandbox: SandboxHandle, waba: str = WABA_ID, token: str = TOKEN, **params: Any) -> requests.Response:
    """GET the WABA's template listing like the API does."""
    return requests.get(
        f"{sandbox.url}/v21.0/{waba}/message_templates",
        params=params,
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )


def send(sandbox: SandboxHandle, name: str, components: list[dict[str, Any]]) -> requests.Response:
    """POST one template message with these components."""
    body = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": RECIPIENT,
        "type": "template",
        "template": {"name": name, "language": {"code": "es"}, "components": components},
    }
    return requests.post(sandbox.message_url(PHONE), json=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)


def body(*texts: str) -> dict[str, Any]:
    return {"type": "body", "parameters": [{"type": "text", "text": t} for t in texts]}


def image(link: str = "https://cdn.example.com/promo.png") -> dict[str, Any]:
    return {"type": "header", "parameters": [{"type": "image", "image": {"link": link}}]}


def url_button(index: Any = "0", suffix: str = "abc123") -> dict[str, Any]:
    return {"type": "button", "sub_type": "url", "index": index, "parameters": [{"type": "text", "text": suffix}]}


def quick_reply(index: Any = "1", payload: str = "BAJA") -> dict[str, Any]:
    return {
        "type": "button",
        "sub_type": "quick_reply",
        "index": index,
        "parameters": [{"type": "payload", "payload": payload}],
    }


def code_of(response: requests.Response) -> int:
    """error.code of a Graph error answer."""
    assert response.status_code != 200, response.text
    return response.json()["error"]["code"]


def test_listing_shows_each_language_with_status_category_quality_and_components(sandbox: SandboxHandle) -> None:
    answer = listing(sandbox, name="oferta_imagen", fields=LISTING_FIELDS)
    assert answer.status_code == 200
    items = {item["language"]: item for item in answer.json()["data"]}
    assert set(items) == {"es", "en"}
    es = items["es"]
    assert (es["name"], es["status"], es["category"], es["quality_score"]["score"]) == (
        "oferta_imagen",
        "APPROVED",
        "MARKETING",
        "YELLOW",
    )
    assert [c["type"] for c in es["components"]] == ["HEADER", "BODY", "FOOTER", "BUTTONS"]
    assert es["id"] and set(es) == {"id", *LISTING_FIELDS.split(",")}
    # A shorthand entry is listed as an approved body-only template with its placeholders.
    assert items["en"]["status"] == "APPROVED"
    assert items["en"]["components"][0]["text"].count("{{") == 2


def test_listing_filters_fields_and_pages(sandbox: SandboxHandle) -> None:
    only = listing(sandbox, name="factura", fields="name,status").json()["data"]
    assert [set(i) for i in only] == [{"id", "name", "status"}]
    seen, params = [], {"limit": 3, "fields": "name,language"}
    for _ in range(10):
        page = listing(sandbox, **params).json()
        seen += [(i["name"], i["language"]) for i in page["data"]]
        if "next" not in page.get("paging", {}):
            break
        params["after"] = page["paging"]["cursors"]["after"]
    assert sorted(seen) == sorted((n, lang) for n, langs in TEMPLATES.items() for lang in langs)
    assert listing(sandbox, name="no_existe").json() == {"data": []}
    assert sandbox.stats()["template_listings"] >= 3


@pytest.mark.parametrize(
    ("change", "expected_code", "expected_status"),
    [
        ({"waba": "999"}, 100, 400),
        ({"token": "wrong"}, 190, 401),
    ],
)
def test_listing_refuses_an_unknown_waba_and_a_wrong_token(
    sandbox: SandboxHandle, change: dict, expected_code: int, expected_status: int
) -> None:
    answer = listing(sandbox, **change)
    assert answer.status_code == expected_status and code_of(answer) == expected_code


def test_listing_answers_outages_and_forced_errors_like_graph(sandbox: SandboxHandle) -> None:
    sandbox.configure(down=True)
    answer = listing(sandbox, name="factura")
    assert (answer.status_code, code_of(answer)) == (503, 2)
    sandbox.configure(down=False, forced_errors={WABA_ID: 80007})
    assert code_of(listing(sandbox, name="factura")) == 80007


def test_a_rich_template_send_is_accepted_and_logged_with_its_components(sandbox: SandboxHandle) -> None:
    components = [image(), body("Ana", "300 Mbps"), url_button(), quick_reply()]
    assert send(sandbox, "oferta_imagen", components).status_code == 200
    [logged] = sandbox.messages()
    assert logged["components"] == components
    assert logged["parameters"] == [{"text": "Ana"}, {"text": "300 Mbps"}]
    # The quick reply is optional; a numeric index is accepted like the string one.
    assert send(sandbox, "oferta_imagen", [image(), body("Ana", "300"), url_button(0)]).status_code == 200


def test_document_and_text_headers(sandbox: SandboxHandle) -> None:
    document = {
        "type": "header",
        "parameters": [
            {"type": "document", "document": {"link": "https://cdn.example.com/f.pdf", "filename": "Factura.pdf"}}
        ],
    }
    named = {"type": "body", "parameters": [{"type": "text", "text": "F-1", "parameter_name": "numero"}]}
    assert send(sandbox, "factura", [document, named]).status_code == 200
    text_header = {"type": "header", "parameters": [{"type": "text", "text": "Ana"}]}
    assert send(sandbox, "aviso", [text_header, body("lunes")]).status_code == 200
    assert code_of(send(sandbox, "aviso", [body("lunes")])) == 132000


@pytest.mark.parametrize(
    ("name", "components", "expected"),
    [
        ("pausada", [body("Ana")], 132015),
        ("deshabilitada", [body("Ana")], 132016),
        ("pendiente", [body("Ana")], 132001),
        ("no_existe", [body("Ana")], 132001),
        # The image header is required, and must be an image.
        ("oferta_imagen", [body("Ana", "300"), url_button()], 132000),
        (
            "oferta_imagen",
            [
                {"type": "header", "parameters": [{"type": "video", "video": {"link": "https://x.example.com/v"}}]},
                body("Ana", "300"),
                url_button(),
            ],
            132012,
        ),
        # The URL button's variable must be filled; a button only takes its own kind of parameter.
        ("oferta_imagen", [image(), body("Ana", "300")], 132000),
        ("oferta_imagen", [image(), body("Ana", "300"), quick_reply("0"), quick_reply("1")], 132012),
        ("oferta_imagen", [image(), body("Ana", "300"), url_button(), url_button("1")], 132012),
        ("oferta_imagen", [image(), body("Ana", "300"), url_button(), quick_reply("2")], 132000),
        ("oferta_imagen", [image(), body("Ana"), url_button()], 132000),
        # A header on a template without one.
        ("clave", [image(), body("1234")], 132000),
        # Shapes the Cloud API refuses whatever the template.
        ("oferta_imagen", [image("ftp://x"), body("Ana", "300"), url_button()], 131009),
        ("oferta_imagen", [{"type": "header", "parameters": [{"type": "image", "image": {}}]}], 131008),
        ("oferta_imagen", [image(), body("Ana", "300"), {"type": "button", "sub_type": "url"}], 131008),
    ],
)
def test_sends_that_do_not_fit_the_template_get_the_cloud_api_codes(
    sandbox: SandboxHandle, name: str, components: list, expected: int
) -> None:
    assert code_of(send(sandbox, name, copy.deepcopy(components))) == expected
    assert sandbox.messages() == []
