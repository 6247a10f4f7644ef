"""Marshmallow schemas for every input and output of the HTTP API (they also generate the OpenAPI document)."""

from __future__ import annotations

from datetime import timezone

from marshmallow import EXCLUDE, Schema, fields, validate

_TEMPLATE_NAME = validate.Regexp(r"^[a-z0-9_]{1,512}$",
                                 error="Use el nombre exacto de la plantilla: minúsculas, números y _.")
_LANGUAGE = validate.Regexp(r"^[a-z]{2,3}(_[A-Z]{2})?$", error="Use un código de idioma como es, es_MX o en_US.")


class CampaignRequestSchema(Schema):
    """The form fields (multipart) or JSON body of POST /api/crear-campana."""

    class Meta:
        unknown = EXCLUDE

    titulo_campana = fields.String(required=True, validate=validate.Length(min=1, max=200),
                                   metadata={"description": "Título; el id de la campaña se deriva de él."})
    plantilla = fields.String(required=True, validate=_TEMPLATE_NAME,
                              metadata={"description": "Nombre de la plantilla aprobada en WhatsApp."})
    buzon = fields.String(required=True, validate=validate.Length(min=1, max=100),
                          metadata={"description": "Buzón (número emisor) registrado."})
    idioma = fields.String(load_default="es", validate=_LANGUAGE,
                           metadata={"description": "Código de idioma de la plantilla."})
    columna_telefono = fields.String(load_default=None, validate=validate.Length(max=100),
                                     metadata={"description": "Nombre de la columna del teléfono, si no es una "
                                                              "de las habituales."})
    parametros_nombrados = fields.Boolean(load_default=False, metadata={
        "description": "true: cada columna es un parámetro con nombre ({{nombre}}); false: posicionales "
                       "({{1}}, {{2}}...) en el orden de las columnas."})
    contactos = fields.List(fields.Dict(), load_default=None, metadata={
        "description": "Solo con cuerpo JSON: lista de contactos en lugar de archivo_csv."})


class RejectedRowSchema(Schema):
    """A contact row that was left out, and why."""

    fila = fields.Integer()
    valor = fields.String()
    motivo = fields.String()


class CampaignCreatedSchema(Schema):
    """Answer to a successful upload (the fields the existing front end reads, plus the rejected rows)."""

    success = fields.Boolean()
    message = fields.String()
    campaign_id = fields.String()
    total_messages = fields.Integer()
    status = fields.String()
    duplicate_request = fields.Boolean(metadata={"description": "true si la misma Idempotency-Key ya creó la campaña."})
    total_rechazados = fields.Integer()
    rechazados = fields.List(fields.Nested(RejectedRowSchema))
    notas = fields.List(fields.String())


class ErrorGroupSchema(Schema):
    """Failed messages that share one WhatsApp error code."""

    codigo = fields.String(metadata={"description": "Código de error de WhatsApp ('network' si no hubo código)."})
    cantidad = fields.Integer()
    detalle = fields.String(allow_none=True, metadata={"description": "Detalle de Meta del primer caso."})
    descripcion = fields.String(metadata={"description": "Qué significa y qué hacer."})


class QueueStatusSchema(Schema):
    """Live state of one campaign."""

    success = fields.Boolean()
    campaign_id = fields.String()
    titulo = fields.String()
    status = fields.String(metadata={"description": "queued, running, paused, cancelled, completed o failed"})
    motivo = fields.String(allow_none=True, metadata={"description": "Por qué se pausó o falló."})
    total = fields.Integer()
    pending = fields.Integer()
    sent = fields.Integer()
    failed = fields.Integer()
    cancelled = fields.Integer()
    unknown = fields.Integer()
    retries = fields.Integer()
    errores = fields.List(fields.Nested(ErrorGroupSchema), metadata={"description": "Fallos por código de error."})
    delivered = fields.Integer(metadata={"description": "Entregados según los webhooks (incluye leídos)."})
    read = fields.Integer(metadata={"description": "Leídos según los webhooks."})
    delivery_rate = fields.Float(metadata={"description": "Entregados / enviados, en %."})
    read_rate = fields.Float(metadata={"description": "Leídos / enviados, en %."})
    last_delivered_at = fields.String(allow_none=True)
    last_read_at = fields.String(allow_none=True)
    eta_seconds = fields.Integer(allow_none=True, metadata={"description": "Segundos estimados para terminar."})
    progress = fields.Float(metadata={"description": "Porcentaje procesado; 100.0 cuando no queda nada pendiente."})
    messages_per_second = fields.Float()
    batches_in_flight = fields.Integer()
    created_at = fields.String(allow_none=True)
    started_at = fields.String(allow_none=True)
    finished_at = fields.String(allow_none=True)
    creado_por = fields.String(allow_none=True, metadata={
        "description": "Quién creó la campaña: el email del usuario (o su id) o el nombre de la clave de API."})


class CampaignSummarySchema(QueueStatusSchema):
    """One campaign in the list (same fields as the queue status, `id` instead of `campaign_id`)."""

    class Meta:
        exclude = ("success", "campaign_id")

    id = fields.String()
    plantilla = fields.String()
    buzon = fields.String()
    idioma = fields.String()


class CampaignListQuerySchema(Schema):
    """Paging of GET /api/listar-campanas."""

    class Meta:
        unknown = EXCLUDE

    pagina = fields.Integer(load_default=1, validate=validate.Range(min=1))
    por_pagina = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))


class CampaignListSchema(Schema):
    """Answer of GET /api/listar-campanas."""

    success = fields.Boolean()
    campaigns = fields.List(fields.Nested(CampaignSummarySchema))
    total_campaigns = fields.Integer()
    pagina = fields.Integer()
    por_pagina = fields.Integer()


class SystemStatusSchema(Schema):
    """Answer of GET /api/estado-sistema."""

    success = fields.Boolean()
    instance_id = fields.String()
    uptime_seconds = fields.Float()
    worker_running = fields.Boolean()
    workers = fields.Integer(metadata={"description": "Workers vivos según sus latidos en Redis."})
    redis_connected = fields.Boolean()
    database_connected = fields.Boolean()
    queue_depth = fields.Integer(metadata={"description": "Tareas esperando en la cola de Celery."})
    active_campaigns = fields.Integer()
    batch_size = fields.Integer()
    max_concurrent = fields.Integer()


class CampaignActionSchema(Schema):
    """Answer of pause, resume and cancel."""

    success = fields.Boolean()
    message = fields.String()
    campaign_id = fields.String()
    status = fields.String()


class RetryRequestSchema(Schema):
    """Body of POST /api/reintentar-campana/<id>."""

    class Meta:
        unknown = EXCLUDE

    estados = fields.List(fields.String(validate=validate.OneOf(["unknown", "failed"])),
                          load_default=lambda: ["unknown"], validate=validate.Length(min=1), metadata={
                              "description": "Qué reintentar: 'unknown' (sin confirmación; podrían llegar dos "
                                             "veces) y/o 'failed'."})


class RetryResultSchema(CampaignActionSchema):
    """Answer of POST /api/reintentar-campana/<id>."""

    reencolados = fields.Integer()


class RecipientQuerySchema(CampaignListQuerySchema):
    """Filter and paging of GET /api/destinatarios/<id>."""

    estado = fields.String(load_default=None, validate=validate.OneOf(
        ["pending", "sending", "sent", "failed", "cancelled", "unknown"]))
    por_pagina = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))


class RecipientSchema(Schema):
    """One recipient of a campaign."""

    seq = fields.Integer()
    phone = fields.String()
    status = fields.String()
    wamid = fields.String(allow_none=True)
    error_code = fields.Integer(allow_none=True)
    error_detail = fields.String(allow_none=True)
    attempts = fields.Integer()
    sent_at = fields.String(allow_none=True)
    delivery_status = fields.String(allow_none=True, metadata={"description": "sent, delivered, read o failed"})
    delivered_at = fields.String(allow_none=True)
    read_at = fields.String(allow_none=True)


class RecipientListSchema(Schema):
    """Answer of GET /api/destinatarios/<id>."""

    success = fields.Boolean()
    campaign_id = fields.String()
    estado = fields.String(allow_none=True)
    pagina = fields.Integer()
    por_pagina = fields.Integer()
    total = fields.Integer()
    destinatarios = fields.List(fields.Nested(RecipientSchema))


class SenderSchema(Schema):
    """A registered buzón, without its token."""

    buzon = fields.String()
    phone_number_id = fields.String()
    messages_per_second = fields.Integer(allow_none=True)


class SenderListSchema(Schema):
    """Answer of GET /api/buzones: the buzones the caller may use."""

    success = fields.Boolean()
    buzones = fields.List(fields.Nested(SenderSchema))


class AuditQuerySchema(CampaignListQuerySchema):
    """Filters and paging of GET /api/auditoria."""

    campaign_id = fields.String(load_default=None, validate=validate.Length(min=1, max=200),
                                metadata={"description": "Solo las entradas de esta campaña."})
    desde = fields.AwareDateTime(load_default=None, default_timezone=timezone.utc, metadata={
        "description": "Desde este instante (ISO 8601, incluido); sin zona horaria se entiende UTC."})
    hasta = fields.AwareDateTime(load_default=None, default_timezone=timezone.utc, metadata={
        "description": "Hasta este instante (ISO 8601, excluido)."})
    por_pagina = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))


class AuditEntrySchema(Schema):
    """One entry of the audit log."""

    id = fields.Integer()
    at = fields.String(metadata={"description": "Cuándo (ISO 8601)."})
    actor = fields.String(allow_none=True, metadata={"description": "Id del usuario o nombre de la clave; "
                                                                    "vacío si no se identificó."})
    actor_email = fields.String(allow_none=True)
    actor_kind = fields.String(metadata={"description": "user, key, cli, open (AUTH_DISABLED) o anonymous"})
    action = fields.String(metadata={"description": "create, pause, resume, cancel, retry, access (rechazo 401/"
                                                    "403), apikey.create, apikey.revoke, user.set o buzon.add"})
    campaign_id = fields.String(allow_none=True)
    buzon = fields.String(allow_none=True)
    status_code = fields.Integer(metadata={"description": "Estado HTTP de la respuesta (0 para la línea de "
                                                          "comandos)."})
    outcome = fields.String(metadata={"description": "ok, refused o error"})
    ip = fields.String(allow_none=True)
    user_agent = fields.String(allow_none=True)
    details = fields.Dict()


class AuditListSchema(Schema):
    """Answer of GET /api/auditoria."""

    success = fields.Boolean()
    entradas = fields.List(fields.Nested(AuditEntrySchema))
    total = fields.Integer()
    pagina = fields.Integer()
    por_pagina = fields.Integer()


class ErrorSchema(Schema):
    """Every error answer."""

    success = fields.Boolean()
    message = fields.String()
    details = fields.Dict()
