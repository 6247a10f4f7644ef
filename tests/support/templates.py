"""A template catalogue for the sandbox as the Graph API lists templates, shared by the template tests."""

from __future__ import annotations

from typing import Any

# The sandbox's default WhatsApp Business Account id (sandbox/settings.py): its listing holds the catalogue.
WABA_ID = "102290129340398"


def _body(text: str) -> dict[str, Any]:
    return {"type": "BODY", "text": text}


TEMPLATES: dict[str, dict[str, Any]] = {
    # Image header, two positional body parameters, a URL button with a variable and a quick reply.
    "oferta_imagen": {
        "es": {
            "status": "APPROVED",
            "category": "MARKETING",
            "quality_score": "YELLOW",
            "components": [
                {"type": "HEADER", "format": "IMAGE", "example": {"header_handle": ["https://cdn.example.com/x.png"]}},
                {
                    "type": "BODY",
                    "text": "Hola {{1}}, tu plan {{2}} tiene oferta",
                    "example": {"body_text": [["Ana", "300"]]},
                },
                {"type": "FOOTER", "text": "Responde BAJA para no recibir más"},
                {
                    "type": "BUTTONS",
                    "buttons": [
                        {"type": "URL", "text": "Ver oferta", "url": "https://tienda.example.com/o/{{1}}"},
                        {"type": "QUICK_REPLY", "text": "No me interesa"},
                    ],
                },
            ],
        },
        "en": 2,
    },
    # A document header and a named body parameter.
    "factura": {
        "es": {
            "category": "UTILITY",
            "quality_score": "GREEN",
            "components": [{"type": "HEADER", "format": "DOCUMENT"}, _body("Su factura {{numero}} está lista")],
        }
    },
    # A text header with a variable.
    "aviso": {
        "es": {
            "category": "UTILITY",
            "components": [{"type": "HEADER", "format": "TEXT", "text": "Aviso para {{1}}"}, _body("Su cita es {{1}}")],
        }
    },
    "clave": {"es": {"category": "AUTHENTICATION", "components": [_body("Su código es {{1}}")]}},
    "pausada": {
        "es": {"status": "PAUSED", "category": "MARKETING", "quality_score": "RED", "components": [_body("Hola {{1}}")]}
    },
    "deshabilitada": {"es": {"status": "DISABLED", "category": "MARKETING", "components": [_body("Hola {{1}}")]}},
    "pendiente": {"es": {"status": "PENDING", "category": "MARKETING", "components": [_body("Hola {{1}}")]}},
}
