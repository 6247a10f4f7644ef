"""The OpenAPI document, generated from the marshmallow schemas, and an interactive docs page."""

from __future__ import annotations

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Response, jsonify, send_from_directory
from swagger_ui_bundle import swagger_ui_path

from tasks import texts
from webapi import schemas
from webapi.errors import ApiError

_DESCRIPTION = (
    "Toda ruta /api/* pide credencial: 'Authorization: Bearer <access_token de Supabase>' o una clave "
    "de API ('Authorization: Bearer wcq_...' o 'X-API-Key'). Roles: viewer (lecturas, teléfonos "
    "enmascarados), operator (además crear, pausar, reanudar, cancelar, reintentar; teléfonos "
    "completos), admin (además auditoría). Una credencial limitada a ciertos buzones recibe 404 "
    "para las campañas de otros buzones."
)

bp = Blueprint("docs", __name__, url_prefix="/api")

# Swagger UI comes from the pinned swagger-ui-bundle package and is served from here: the page needs no CDN
# and no internet, and its CSP allows only this origin.
_ASSETS = {"swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png"}
_DOCS_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>whatsapp-campaign-queue API</title>
<link rel="icon" href="/api/docs/favicon-32x32.png"><link rel="stylesheet" href="/api/docs/swagger-ui.css"></head>
<body><div id="ui"></div><script src="/api/docs/swagger-ui-bundle.js"></script>
<script src="/api/docs/init.js"></script></body></html>"""
_DOCS_INIT = 'window.ui = SwaggerUIBundle({url: "/api/openapi.json", dom_id: "#ui"});\n'
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
BEARER = "bearerAuth"
API_KEY = "apiKeyAuth"


def _json(schema: str, description: str) -> dict:
    """A response entry that points at a named schema."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict:
    """Error responses, all with the one error shape (503 on every route that needs the database: it is away)."""
    return {str(c): _json("Error", "Error con mensaje accionable") for c in codes}


def build_spec() -> dict:
    """Describe every route of the API."""
    plugin = MarshmallowPlugin()
    spec = APISpec(
        title="whatsapp-campaign-queue",
        version="1.0.0",
        openapi_version="3.0.3",
        plugins=[plugin],
        security=[{BEARER: []}, {API_KEY: []}],
        info={"description": _DESCRIPTION},
    )
    spec.components.security_scheme(
        BEARER,
        {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "Sesión de Supabase Auth (access_token), o una clave de API 'wcq_...' como Bearer.",
        },
    )
    spec.components.security_scheme(
        API_KEY,
        {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": "Clave de API creada con 'flask --app webapi apikey create'.",
        },
    )
    for name in (
        "CampaignRequest",
        "CampaignCreated",
        "CampaignValidated",
        "Caller",
        "QueueStatus",
        "CampaignList",
        "SystemStatus",
        "CampaignAction",
        "RetryRequest",
        "RetryResult",
        "RescheduleRequest",
        "RescheduleResult",
        "RecipientList",
        "Error",
        "SenderList",
        "AuditList",
        "OptOutList",
        "OptOutRequest",
        "OptOutAdded",
        "OptOutLifted",
    ):
        spec.components.schema(name, schema=getattr(schemas, f"{name}Schema"))
    campaign_id = {"name": "campaign_id", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
    # The form fields with the validators' real limits, plus the file.
    assert plugin.converter is not None  # set once the plugin is registered with the spec
    multipart = plugin.converter.schema2jsonschema(schemas.CampaignRequestSchema)
    multipart["properties"].pop("contactos", None)
    multipart["properties"]["archivo_csv"] = {
        "type": "string",
        "format": "binary",
        "description": "CSV de contactos (UTF-8, separado por , o ;).",
    }
    multipart["required"] = ["archivo_csv", *multipart.get("required", [])]
    # crear-campana and validar-campana take the same input.
    campaign_body = {
        "required": True,
        "content": {"multipart/form-data": {"schema": multipart}, "application/json": {"schema": "CampaignRequest"}},
    }
    spec.path(
        path="/api/crear-campana",
        operations={
            "post": {
                "summary": "Crear una campaña desde un CSV (multipart) o una lista JSON de contactos",
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "Repetir la subida con la misma clave devuelve la misma campaña.",
                    }
                ],
                "requestBody": campaign_body,
                "responses": {
                    "201": _json("CampaignCreated", "Campaña creada y en cola"),
                    **_errors(400, 401, 403, 413, 422, 429, 503),
                },
            }
        },
    )
    spec.path(
        path="/api/validar-campana",
        operations={
            "post": {
                "summary": "Revisar un CSV como lo leería crear-campana, sin guardar ni enviar nada",
                "description": "Columna de teléfono detectada, primeras filas como se enviarían, cantidades y "
                "filas rechazadas con su número y motivo. Mismas entradas y permisos que crear-campana.",
                "requestBody": campaign_body,
                "responses": {
                    "200": _json("CampaignValidated", "Lo que se enviaría"),
                    **_errors(400, 401, 403, 413, 422, 429, 503),
                },
            }
        },
    )
    spec.path(
        path="/api/yo",
        operations={
            "get": {
                "summary": "Quién llama: clave o usuario, rol y buzones permitidos",
                "responses": {"200": _json("Caller", "Llamante"), **_errors(401, 403, 503)},
            }
        },
    )
    spec.path(
        path="/api/estado-cola/{campaign_id}",
        operations={
            "get": {
                "summary": "Progreso en vivo de una campaña",
                "parameters": [campaign_id],
                "responses": {"200": _json("QueueStatus", "Estado"), **_errors(401, 403, 404, 503)},
            }
        },
    )
    spec.path(
        path="/api/listar-campanas",
        operations={
            "get": {
                "summary": "Campañas, las más recientes primero",
                "parameters": [{"in": "query", "schema": schemas.CampaignListQuerySchema}],
                "responses": {"200": _json("CampaignList", "Lista"), **_errors(401, 403, 422, 503)},
            }
        },
    )
    spec.path(
        path="/api/estado-sistema",
        operations={
            "get": {
                "summary": "Salud de Redis, base de datos y workers",
                "responses": {"200": _json("SystemStatus", "Estado del sistema"), **_errors(401, 403, 503)},
            }
        },
    )
    for action, summary in (("pausar", "Pausar"), ("reanudar", "Reanudar"), ("cancelar", "Cancelar")):
        spec.path(
            path=f"/api/{action}-campana/{{campaign_id}}",
            operations={
                "post": {
                    "summary": f"{summary} una campaña",
                    "parameters": [campaign_id],
                    "responses": {"200": _json("CampaignAction", "Hecho"), **_errors(401, 403, 404, 409, 429, 503)},
                }
            },
        )
    spec.path(
        path="/api/reintentar-campana/{campaign_id}",
        operations={
            "post": {
                "summary": "Reintentar los mensajes desconocidos y/o fallidos de una campaña",
                "parameters": [campaign_id],
                "requestBody": {"required": False, "content": {"application/json": {"schema": "RetryRequest"}}},
                "responses": {"200": _json("RetryResult", "Reencolados"), **_errors(401, 403, 404, 409, 422, 429, 503)},
            }
        },
    )
    spec.path(
        path="/api/programar-campana/{campaign_id}",
        operations={
            "post": {
                "summary": "Cambiar la hora de inicio de una campaña programada (aún 'scheduled')",
                "parameters": [campaign_id],
                "requestBody": {"required": True, "content": {"application/json": {"schema": "RescheduleRequest"}}},
                "responses": {
                    "200": _json("RescheduleResult", "Reprogramada"),
                    **_errors(400, 401, 403, 404, 409, 422, 429, 503),
                },
            }
        },
    )
    spec.path(
        path="/api/destinatarios/{campaign_id}",
        operations={
            "get": {
                "summary": "Destinatarios de una campaña (por ejemplo los desconocidos)",
                "description": "Los teléfonos salen enmascarados para el rol viewer.",
                "parameters": [campaign_id, {"in": "query", "schema": schemas.RecipientQuerySchema}],
                "responses": {"200": _json("RecipientList", "Destinatarios"), **_errors(401, 403, 404, 422, 503)},
            }
        },
    )
    spec.path(
        path="/api/campanas/{campaign_id}/resultados.csv",
        operations={
            "get": {
                "summary": "Resultados de una campaña en CSV (todos los destinatarios)",
                "description": (
                    "UTF-8 con BOM para que Excel lea los acentos; separador ',' o ';' (parámetro separador). "
                    "Una columna por dato: n, teléfono (enmascarado para el rol viewer), estado, wamid, código "
                    "y descripción del error, detalle, intentos, estado de entrega y las horas de envío, entrega "
                    "y lectura en UTC. Una celda que empieza por =, +, -, @, tabulador o retorno lleva un "
                    "apóstrofo delante, para que la hoja de cálculo no la ejecute como fórmula."
                ),
                "parameters": [campaign_id, {"in": "query", "schema": schemas.ExportQuerySchema}],
                "responses": {
                    "200": {
                        "description": "El archivo CSV, enviado a medida que se lee",
                        "content": {"text/csv": {"schema": {"type": "string"}}},
                    },
                    **_errors(401, 403, 404, 422, 503),
                },
            }
        },
    )
    spec.path(
        path="/api/buzones",
        operations={
            "get": {
                "summary": "Buzones que el llamante puede usar (sin tokens)",
                "responses": {"200": _json("SenderList", "Buzones"), **_errors(401, 403, 503)},
            }
        },
    )
    spec.path(
        path="/api/auditoria",
        operations={
            "get": {
                "summary": "Registro de auditoría (rol admin), lo más reciente primero",
                "parameters": [{"in": "query", "schema": schemas.AuditQuerySchema}],
                "responses": {"200": _json("AuditList", "Entradas"), **_errors(401, 403, 422, 503)},
            }
        },
    )
    _optout_paths(spec)
    _public_paths(spec)
    return spec.to_dict()


def _optout_paths(spec: APISpec) -> None:
    """The suppression list: read, add, lift (operator role)."""
    spec.path(
        path="/api/bajas",
        operations={
            "get": {
                "summary": "Números dados de baja (lista de supresión) de los buzones del llamante",
                "description": "Bajas vigentes, las más recientes primero: manuales, por error 131050, por el "
                "webhook user_preferences o por una respuesta como BAJA. Los teléfonos salen enmascarados para el "
                "rol viewer; dar de baja y levantar piden el rol operator.",
                "parameters": [{"in": "query", "schema": schemas.OptOutQuerySchema}],
                "responses": {"200": _json("OptOutList", "Bajas"), **_errors(401, 403, 422, 503)},
            },
            "post": {
                "summary": "Dar de baja un número (en un buzón o en todos)",
                "requestBody": {"required": True, "content": {"application/json": {"schema": "OptOutRequest"}}},
                "responses": {
                    "201": _json("OptOutAdded", "Baja registrada"),
                    "200": _json("OptOutAdded", "Ya estaba dado de baja"),
                    **_errors(400, 401, 403, 422, 429, 503),
                },
            },
            "delete": {
                "summary": "Levantar la baja de un número",
                "parameters": [{"in": "query", "schema": schemas.OptOutLiftQuerySchema}],
                "responses": {
                    "200": _json("OptOutLifted", "Baja levantada"),
                    **_errors(401, 403, 404, 422, 429, 503),
                },
            },
        },
    )


def _public_paths(spec: APISpec) -> None:
    """Routes that need no credentials: probes and WhatsApp's webhooks (checked by their signature)."""
    public: dict[str, list] = {"security": []}
    spec.path(
        path="/healthz",
        operations={"get": {**public, "summary": "El proceso responde", "responses": {"200": {"description": "Vivo"}}}},
    )
    spec.path(
        path="/readyz",
        operations={
            "get": {
                **public,
                "summary": "Redis y la base de datos responden",
                "responses": {"200": {"description": "Listo"}, **_errors(503)},
            }
        },
    )
    spec.path(
        path="/webhooks/whatsapp",
        operations={
            "get": {
                **public,
                "summary": "Verificación de la suscripción de Meta (hub.challenge)",
                "parameters": [
                    {"name": n, "in": "query", "required": True, "schema": {"type": "string"}}
                    for n in ("hub.mode", "hub.verify_token", "hub.challenge")
                ],
                "responses": {
                    "200": {
                        "description": "El hub.challenge, en texto plano",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **_errors(403),
                },
            },
            "post": {
                **public,
                "summary": "Notificaciones de estado de WhatsApp, firmadas con WHATSAPP_APP_SECRET",
                "parameters": [
                    {
                        "name": "X-Hub-Signature-256",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string", "pattern": "^sha256=[0-9a-f]{64}$"},
                        "description": "HMAC-SHA256 del cuerpo con el app secret.",
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "description": "Notificación de WhatsApp (object, entry[].changes[])",
                            }
                        }
                    },
                },
                "responses": {"200": {"description": "Recibida"}, **_errors(400, 401, 413, 503)},
            },
        },
    )


@bp.get("/openapi.json")
def openapi_json():
    """The OpenAPI document."""
    return jsonify(build_spec())


@bp.get("/docs")
def docs():
    """Interactive documentation (Swagger UI)."""
    return Response(_DOCS_PAGE, mimetype="text/html", headers={"Content-Security-Policy": DOCS_CSP})


@bp.get("/docs/<name>")
def docs_asset(name: str):
    """Swagger UI's own files, and the line that starts it."""
    if name == "init.js":
        return Response(_DOCS_INIT, mimetype="text/javascript", headers={"Content-Security-Policy": DOCS_CSP})
    if name not in _ASSETS:
        raise ApiError(404, texts.ROUTE_NOT_FOUND)
    response = send_from_directory(swagger_ui_path, name, max_age=86400)
    response.headers["Content-Security-Policy"] = DOCS_CSP
    return response
