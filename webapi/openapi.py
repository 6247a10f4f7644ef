"""The OpenAPI document, generated from the marshmallow schemas, and an interactive docs page."""

from __future__ import annotations

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Response, jsonify

from webapi import schemas

bp = Blueprint("docs", __name__, url_prefix="/api")

_DOCS_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>whatsapp-campaign-queue API</title>
<link rel="stylesheet" href="https://unpkg.com/swagger-ui-dist@5/swagger-ui.css"></head>
<body><div id="ui"></div><script src="https://unpkg.com/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/api/openapi.json", dom_id: "#ui"});</script></body></html>"""


def _json(schema: str, description: str) -> dict:
    """A response entry that points at a named schema."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict:
    """Error responses, all with the one error shape."""
    return {str(c): _json("Error", "Error con mensaje accionable") for c in codes}


def build_spec() -> dict:
    """Describe every route of the API."""
    spec = APISpec(title="whatsapp-campaign-queue", version="1.0.0", openapi_version="3.0.3",
                   plugins=[MarshmallowPlugin()])
    for name in ("CampaignRequest", "CampaignCreated", "QueueStatus", "CampaignList", "SystemStatus",
                 "CampaignAction", "RetryRequest", "RetryResult", "RecipientList", "Error"):
        spec.components.schema(name, schema=getattr(schemas, f"{name}Schema"))
    campaign_id = {"name": "campaign_id", "in": "path", "required": True, "schema": {"type": "string"}}
    multipart = {"type": "object", "required": ["archivo_csv", "titulo_campana", "plantilla", "buzon"],
                 "properties": {"archivo_csv": {"type": "string", "format": "binary"},
                                "titulo_campana": {"type": "string"}, "plantilla": {"type": "string"},
                                "buzon": {"type": "string"}, "idioma": {"type": "string", "default": "es"},
                                "columna_telefono": {"type": "string"},
                                "parametros_nombrados": {"type": "boolean", "default": False}}}
    spec.path(path="/api/crear-campana", operations={"post": {
        "summary": "Crear una campaña desde un CSV (multipart) o una lista JSON de contactos",
        "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                        "schema": {"type": "string"},
                        "description": "Repetir la subida con la misma clave devuelve la misma campaña."}],
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": multipart},
                                                      "application/json": {"schema": "CampaignRequest"}}},
        "responses": {"201": _json("CampaignCreated", "Campaña creada y en cola"),
                      **_errors(400, 413, 422, 503)}}})
    spec.path(path="/api/estado-cola/{campaign_id}", operations={"get": {
        "summary": "Progreso en vivo de una campaña", "parameters": [campaign_id],
        "responses": {"200": _json("QueueStatus", "Estado"), **_errors(404)}}})
    spec.path(path="/api/listar-campanas", operations={"get": {
        "summary": "Campañas, las más recientes primero",
        "parameters": [{"name": "pagina", "in": "query", "schema": {"type": "integer", "default": 1}},
                       {"name": "por_pagina", "in": "query", "schema": {"type": "integer", "default": 20}}],
        "responses": {"200": _json("CampaignList", "Lista"), **_errors(422)}}})
    spec.path(path="/api/estado-sistema", operations={"get": {
        "summary": "Salud de Redis, base de datos y workers",
        "responses": {"200": _json("SystemStatus", "Estado del sistema")}}})
    for action, summary in (("pausar", "Pausar"), ("reanudar", "Reanudar"), ("cancelar", "Cancelar")):
        spec.path(path=f"/api/{action}-campana/{{campaign_id}}", operations={"post": {
            "summary": f"{summary} una campaña", "parameters": [campaign_id],
            "responses": {"200": _json("CampaignAction", "Hecho"), **_errors(404, 409)}}})
    spec.path(path="/api/reintentar-campana/{campaign_id}", operations={"post": {
        "summary": "Reintentar los mensajes desconocidos y/o fallidos de una campaña", "parameters": [campaign_id],
        "requestBody": {"required": False, "content": {"application/json": {"schema": "RetryRequest"}}},
        "responses": {"200": _json("RetryResult", "Reencolados"), **_errors(404, 409, 422)}}})
    spec.path(path="/api/destinatarios/{campaign_id}", operations={"get": {
        "summary": "Destinatarios de una campaña (por ejemplo los desconocidos)",
        "parameters": [campaign_id,
                       {"name": "estado", "in": "query", "schema": {"type": "string"}},
                       {"name": "pagina", "in": "query", "schema": {"type": "integer", "default": 1}},
                       {"name": "por_pagina", "in": "query", "schema": {"type": "integer", "default": 100}}],
        "responses": {"200": _json("RecipientList", "Destinatarios"), **_errors(404, 422)}}})
    return spec.to_dict()


@bp.get("/openapi.json")
def openapi_json():
    """The OpenAPI document."""
    return jsonify(build_spec())


@bp.get("/docs")
def docs():
    """Interactive documentation (Swagger UI)."""
    return Response(_DOCS_PAGE, mimetype="text/html")
