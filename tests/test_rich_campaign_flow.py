"""End to end with a rich template: upload checked against the sandbox's listing, gevent workers send headers and
buttons, and every recipient gets exactly its own components."""

from __future__ import annotations

import pytest

from tests.conftest import SENDERS, upload, wait_status
from tests.test_console_templates import ventas_with_waba  # noqa: F401  (a fixture)

pytestmark = pytest.mark.usefixtures("worker", "clean", "ventas_with_waba")


def test_each_recipient_gets_its_header_link_and_url_suffix(api, sandbox):
    rows = [
        f"58414{1000000 + i},Cliente {i},Plan {i % 5},https://cdn.example.com/img/{i}.png,cupon-{i}" for i in range(600)
    ]
    csv = ("telefono,nombre,plan,encabezado,boton_0_url\n" + "\n".join(rows) + "\n").encode()
    response = upload(
        api,
        csv,
        title="Oferta con imagen",
        template="oferta_imagen",
        botones='[{"indice": 1, "tipo": "respuesta_rapida", "valor": "NO_INTERESA"}]',
    )
    assert response.status_code == 201, response.text
    assert response.json()["plantilla_whatsapp"]["categoria"] == "marketing"
    final = wait_status(api, "oferta-con-imagen", {"completed"}, timeout=120)
    assert (final["sent"], final["failed"]) == (600, 0)

    accepted = sandbox.messages(phone_number_id=SENDERS["ventas"][0])
    assert len(accepted) == 600 and sandbox.stats()["rejected"] == {}
    for message in accepted:
        i = int(message["to"][5:]) - 1000000
        assert message["components"] == [
            {
                "type": "header",
                "parameters": [{"type": "image", "image": {"link": f"https://cdn.example.com/img/{i}.png"}}],
            },
            {
                "type": "body",
                "parameters": [{"type": "text", "text": f"Cliente {i}"}, {"type": "text", "text": f"Plan {i % 5}"}],
            },
            {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": f"cupon-{i}"}]},
            {
                "type": "button",
                "sub_type": "quick_reply",
                "index": "1",
                "parameters": [{"type": "payload", "payload": "NO_INTERESA"}],
            },
        ]
