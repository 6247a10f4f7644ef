"""Marshmallow schemas for every input and output of the HTTP API (they also generate the OpenAPI document)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from tasks import texts
from tasks.vocabulary import RETRYABLE_RECIPIENT_STATUSES, RecipientStatus

#: The deepest page a listing serves: (page - 1) * per_page must stay a 32-bit offset for PostgreSQL.
MAX_PAGE = 1_000_000

_TEMPLATE_NAME = validate.Regexp(r"^[a-z0-9_]{1,512}$", error=texts.TEMPLATE_NAME_INVALID)
_LANGUAGE = validate.Regexp(r"^[a-z]{2,3}(_[A-Z]{2})?$", error=texts.LANGUAGE_INVALID)
# PostgreSQL text cannot hold NUL, and a lone UTF-16 surrogate cannot be encoded as UTF-8.
_BAD_CHARACTER = re.compile("[\x00\ud800-\udfff]")

# marshmallow's English default messages, by field class (the first class of a field's MRO found wins).
_SPANISH = {
    fields.Field: {"required": texts.FIELD_REQUIRED, "null": texts.FIELD_NULL, "validator_failed": texts.FIELD_INVALID},
    fields.String: {"invalid": texts.FIELD_NOT_TEXT, "invalid_utf8": texts.FIELD_NOT_UTF8},
    fields.Integer: {"invalid": texts.FIELD_NOT_INTEGER},
    fields.Number: {"invalid": texts.FIELD_NOT_NUMBER, "too_large": texts.FIELD_TOO_LARGE},
    fields.Boolean: {"invalid": texts.FIELD_NOT_BOOLEAN},
    fields.List: {"invalid": texts.FIELD_NOT_LIST},
    fields.Mapping: {"invalid": texts.FIELD_NOT_OBJECT},
}


def _length(minimum: int | None = None, maximum: int | None = None) -> validate.Length:
    """A length check whose message is Spanish (texts between bounds, at most, or lists of at least)."""
    if minimum is not None and maximum is not None:
        message = texts.FIELD_LENGTH_BETWEEN
    elif maximum is not None:
        message = texts.FIELD_LENGTH_AT_MOST
    else:
        message = texts.FIELD_ITEMS_AT_LEAST
    return validate.Length(min=minimum, max=maximum, error=message)


def _range(minimum: int, maximum: int) -> validate.Range:
    """A range check whose message names both bounds in Spanish."""
    return validate.Range(min=minimum, max=maximum, error=texts.FIELD_RANGE)


def _one_of(choices: list[str]) -> validate.OneOf:
    """A choice check whose message lists the choices in Spanish."""
    return validate.OneOf(choices, error=texts.FIELD_ONE_OF)


def _translate(field: fields.Field) -> None:
    """Replace the English defaults of a field (and of a list's items) by their Spanish texts.

    Messages a field declares itself are kept: only those still equal to marshmallow's default change.
    """
    for key, message in list(field.error_messages.items()):
        for cls in type(field).__mro__:
            english = vars(cls).get("default_error_messages", {}).get(key)
            if english is not None:
                if message == english and key in _SPANISH.get(cls, {}):
                    field.error_messages[key] = _SPANISH[cls][key]
                break
    inner = getattr(field, "inner", None)
    if inner is not None:
        _translate(inner)


class ApiSchema(Schema):
    """Every input schema of the API: unknown fields are ignored and every message is Spanish."""

    class Meta:
        unknown = EXCLUDE

    error_messages = {"type": texts.FIELD_NOT_BODY, "unknown": texts.FIELD_UNKNOWN}

    def on_bind_field(self, field_name: str, field_obj: fields.Field) -> None:
        """Give each field its Spanish messages when the schema is built."""
        _translate(field_obj)


class Text(fields.String):
    """A string that PostgreSQL can store: no NUL and no lone surrogate."""

    default_error_messages = {"bad_character": texts.FIELD_BAD_CHARACTER}

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if _BAD_CHARACTER.search(text):
            raise self.make_error("bad_character")
        return text


class ContactList(fields.List):
    """The JSON body's contacts: a list of objects whose names and values hold only storable text.

    The rows themselves (phone, parameters) are judged later by the contacts reader, with the CSV rules.
    """

    def __init__(self, **kwargs):
        super().__init__(fields.Dict(), **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        contacts = super()._deserialize(value, attr, data, **kwargs)
        for row, contact in enumerate(contacts, start=1):
            bad = _bad_text_in(contact)  # type: ignore[arg-type]  # the list holds dicts (fields.Dict)
            if bad is not None:
                raise ValidationError(texts.CONTACT_BAD_CHARACTER.format(row=row, field=bad))
        return contacts


def _bad_text_in(contact: dict) -> str | None:
    """The (printable) name of the first field whose name or value holds a character no store accepts."""
    for name, value in contact.items():
        # Values nested in lists or objects are walked without recursion: depth is whatever the JSON allowed.
        pending = [name, value]
        while pending:
            item = pending.pop()
            if isinstance(item, str):
                if _BAD_CHARACTER.search(item):
                    return _BAD_CHARACTER.sub("?", str(name))[:60]
            elif isinstance(item, dict):
                pending.extend(item.keys())
                pending.extend(item.values())
            elif isinstance(item, list):
                pending.extend(item)
    return None


class ButtonValues(Text):
    """`botones`: campaign-wide button values, a JSON list as text (multipart) or a list (JSON body).

    Each item is {"indice": 0..9, "tipo": "url" | "respuesta_rapida", "valor": text}: the end of a URL
    button's address, or the payload a quick-reply button sends back.
    """

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            text = super()._deserialize(value, attr, data, **kwargs)
            if not text.strip():
                return None
            try:
                value = json.loads(text)
            except ValueError:
                raise ValidationError(texts.BUTTONS_NOT_JSON) from None
        if not isinstance(value, list):
            raise ValidationError(texts.BUTTONS_NOT_JSON)
        buttons = []
        for position, item in enumerate(value, start=1):
            index = item.get("indice") if isinstance(item, dict) else None
            kind = item.get("tipo") if isinstance(item, dict) else None
            text_value = item.get("valor") if isinstance(item, dict) else None
            if (
                not isinstance(index, int)
                or isinstance(index, bool)
                or not 0 <= index <= 9
                or kind not in ("url", "respuesta_rapida")
                or not isinstance(text_value, str)
                or not text_value.strip()
                or _BAD_CHARACTER.search(text_value)
                or len(text_value) > 2000
            ):
                raise ValidationError(texts.BUTTONS_ENTRY_INVALID.format(position=position))
            buttons.append({"indice": index, "tipo": kind, "valor": text_value.strip()})
        return buttons


class CampaignRequestSchema(ApiSchema):
    """The form fields (multipart) or JSON body of POST /api/crear-campana."""

    titulo_campana = Text(
        required=True,
        validate=_length(1, 200),
        metadata={"description": "Título; el id de la campaña se deriva de él."},
    )
    plantilla = Text(
        required=True, validate=_TEMPLATE_NAME, metadata={"description": "Nombre de la plantilla aprobada en WhatsApp."}
    )
    buzon = Text(required=True, validate=_length(1, 100), metadata={"description": "Buzón (número emisor) registrado."})
    idioma = Text(load_default="es", validate=_LANGUAGE, metadata={"description": "Código de idioma de la plantilla."})
    columna_telefono = Text(
        load_default=None,
        validate=_length(maximum=100),
        metadata={"description": "Nombre de la columna del teléfono, si no es una de las habituales."},
    )
    parametros_nombrados = fields.Boolean(
        load_default=False,
        metadata={
            "description": "true: cada columna es un parámetro con nombre ({{nombre}}); false: posicionales "
            "({{1}}, {{2}}...) en el orden de las columnas."
        },
    )
    contactos = ContactList(
        load_default=None, metadata={"description": "Solo con cuerpo JSON: lista de contactos en lugar de archivo_csv."}
    )
    encabezado_tipo = Text(
        load_default=None,
        validate=_one_of(["texto", "imagen", "video", "documento"]),
        metadata={
            "description": "Tipo del encabezado variable: texto, imagen, video o documento. Con WABA id en el "
            "buzón se toma de la plantilla; sin él es obligatorio si hay encabezado."
        },
    )
    encabezado_valor = Text(
        load_default=None,
        validate=_length(1, 2000),
        metadata={
            "description": "Encabezado de toda la campaña: el texto, o el enlace https:// de la imagen, video o "
            "documento. Por fila: una columna 'encabezado' en su lugar."
        },
    )
    encabezado_nombre_archivo = Text(
        load_default=None,
        validate=_length(1, 240),
        metadata={
            "description": "Nombre con el que se muestra un documento de encabezado (opcional). Por fila: "
            "columna 'encabezado_nombre_archivo'."
        },
    )
    botones = ButtonValues(
        load_default=None,
        metadata={
            "description": 'Valores de botones para toda la campaña, lista JSON: [{"indice": 0, "tipo": "url", '
            '"valor": "final-de-la-url"}, {"indice": 1, "tipo": "respuesta_rapida", "valor": "BAJA"}]. Por '
            "fila: columnas 'boton_<índice>_url' o 'boton_<índice>_respuesta' (índice desde 0)."
        },
    )
    categoria = Text(
        load_default=None,
        validate=_one_of(["marketing", "utility", "authentication"]),
        metadata={
            "description": "Categoría de la plantilla para el costo estimado de validar-campana, si la consulta de la "
            "plantilla no la da (por omisión marketing)."
        },
    )
    reintentar_diferidos = fields.Boolean(
        load_default=True,
        metadata={
            "description": "true (por omisión): los destinatarios rechazados por el límite de marketing por "
            "usuario (131049) se reintentan solos una vez, pasado MARKETING_LIMIT_RETRY_H; false: fallan."
        },
    )
    programar_para = Text(
        load_default=None,
        validate=_length(maximum=60),
        metadata={
            "description": "Cuándo empezar (ISO 8601): con desfase (2026-01-08T09:30:00-04:00) o sin él, en la "
            "hora local de zona_horaria. Vacío: ahora. Hasta entonces la campaña queda 'scheduled'."
        },
    )
    zona_horaria = Text(
        load_default=None,
        validate=_length(maximum=100),
        metadata={
            "description": "Zona horaria IANA de la campaña (por omisión DEFAULT_TIME_ZONE, America/Caracas): "
            "en ella se leen programar_para sin desfase y horario_envio."
        },
    )
    horario_envio = Text(
        load_default=None,
        validate=_length(maximum=40),
        metadata={
            "description": "Franja diaria en la que se envía, HH:MM-HH:MM (20:00-08:00 cruza la medianoche; se "
            "admiten segundos). Sin el campo: SEND_WINDOW; vacío: a cualquier hora. Fuera de ella la campaña "
            "queda 'waiting' y sigue sola al abrir."
        },
    )


class RescheduleRequestSchema(ApiSchema):
    """Body of POST /api/programar-campana/<id>."""

    programar_para = Text(
        required=True,
        validate=_length(1, 60),
        metadata={"description": "Nueva fecha de inicio (ISO 8601; sin desfase, en la zona horaria de la campaña)."},
    )


class DailyLimitSchema(Schema):
    """The portfolio's daily messaging limit as it stands before the campaign starts."""

    portafolio = fields.String(metadata={"description": "Portafolio comercial (business portfolio) del buzón."})
    limite = fields.Integer(
        allow_none=True, metadata={"description": "Destinatarios únicos por 24 horas móviles; null: ilimitado."}
    )
    usados_24h = fields.Integer(
        allow_none=True,
        metadata={"description": "Destinatarios únicos ya contados en las últimas 24 horas (null: no se pudo leer)."},
    )
    disponibles = fields.Integer(allow_none=True, metadata={"description": "Lugares libres ahora; null: ilimitado."})


class RejectedRowSchema(Schema):
    """A contact row that was left out, and why."""

    fila = fields.Integer()
    valor = fields.String()
    motivo = fields.String()


class WhatsAppTemplateSchema(Schema):
    """The template as WhatsApp lists it, when the buzón's WABA id let it be checked."""

    verificada = fields.Boolean(metadata={"description": "true si se comprobó con WhatsApp (ver notas si no)."})
    nombre = fields.String()
    idioma = fields.String()
    estado = fields.String(allow_none=True, metadata={"description": "APPROVED (las demás se rechazan)."})
    categoria = fields.String(allow_none=True, metadata={"description": "marketing, utility o authentication"})
    calidad = fields.String(allow_none=True, metadata={"description": "GREEN, YELLOW, RED o UNKNOWN"})
    id = fields.String(allow_none=True, metadata={"description": "Id de la plantilla en WhatsApp."})


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
    motivo = fields.String(allow_none=True, metadata={"description": "Hasta cuándo espera, si no empieza ya."})
    programada_para = fields.String(allow_none=True, metadata={"description": "Inicio programado (ISO 8601)."})
    zona_horaria = fields.String()
    horario_envio = fields.String(metadata={"description": "Franja de envío; vacío: a cualquier hora."})
    dias_estimados = fields.Integer(
        metadata={"description": "Días que tardará con el límite diario actual del portafolio del buzón (1 si cabe)."}
    )
    limite_diario = fields.Nested(DailyLimitSchema, allow_none=True)
    plantilla_whatsapp = fields.Nested(WhatsAppTemplateSchema)


class ParameterColumnSchema(Schema):
    """Which CSV column fills which template parameter."""

    parametro = fields.String(metadata={"description": "{{1}}, {{2}}... o el nombre del parámetro con nombre."})
    columna = fields.String(metadata={"description": "Columna del archivo de la que sale su valor."})


class PreviewParameterSchema(ParameterColumnSchema):
    """One parameter of a row as it would be sent."""

    valor = fields.String()


class PreviewRowSchema(Schema):
    """An accepted row as it would be sent."""

    fila = fields.Integer(metadata={"description": "Número de fila en el archivo."})
    telefono = fields.String(metadata={"description": "Teléfono normalizado (E.164 sin '+'); enmascarado para viewer."})
    parametros = fields.List(fields.Nested(PreviewParameterSchema))


class CountryCostSchema(Schema):
    """The estimate's share of one country calling code."""

    codigo_pais = fields.String(allow_none=True, metadata={"description": "Código de país (58, 57...)."})
    destinatarios = fields.Integer()
    precio = fields.Float(metadata={"description": "Precio por mensaje según la tarifa."})
    subtotal = fields.Float()


class CostEstimateSchema(Schema):
    """What the campaign would cost at the rate card's prices (RATE_CARD_FILE)."""

    total = fields.Float()
    moneda = fields.String()
    categoria = fields.String(metadata={"description": "Categoría supuesta; las notas dicen de dónde salió."})
    por_pais = fields.List(fields.Nested(CountryCostSchema))
    sin_tarifa = fields.Dict(
        keys=fields.String(), values=fields.Integer(), metadata={"description": "Destinatarios sin precio, por país."}
    )


class SpentSchema(Schema):
    """What the billable messages reported so far cost at the rate card's prices."""

    total = fields.Float()
    moneda = fields.String()
    sin_tarifa = fields.Integer(metadata={"description": "Mensajes facturables sin precio en la tarifa."})


class CampaignValidatedSchema(Schema):
    """Answer of POST /api/validar-campana: what crear-campana would send, with nothing stored or sent."""

    success = fields.Boolean()
    message = fields.String()
    columna_telefono = fields.String(metadata={"description": "Columna detectada (o indicada) como teléfono."})
    columnas_parametros = fields.List(fields.Nested(ParameterColumnSchema))
    parametros_nombrados = fields.Boolean()
    codificacion = fields.String(metadata={"description": "Codificación con la que se leyó el archivo."})
    separador = fields.String(metadata={"description": "Separador de columnas detectado."})
    total_messages = fields.Integer(metadata={"description": "Mensajes que se enviarían."})
    total_rechazados = fields.Integer()
    filas = fields.List(
        fields.Nested(PreviewRowSchema), metadata={"description": "Las primeras filas aceptadas, como se enviarían."}
    )
    rechazados = fields.List(fields.Nested(RejectedRowSchema))
    notas = fields.List(fields.String())
    programada_para = fields.String(allow_none=True, metadata={"description": "Inicio que se programaría."})
    zona_horaria = fields.String()
    horario_envio = fields.String()
    dias_estimados = fields.Integer(
        metadata={"description": "Días que tardaría con el límite diario actual del portafolio del buzón (1 si cabe)."}
    )
    limite_diario = fields.Nested(DailyLimitSchema, allow_none=True)
    plantilla_whatsapp = fields.Nested(WhatsAppTemplateSchema)
    costo_estimado = fields.Nested(
        CostEstimateSchema, allow_none=True, metadata={"description": "Solo con RATE_CARD_FILE; null sin tarifa."}
    )


class CallerSchema(Schema):
    """Answer of GET /api/yo: who is calling."""

    success = fields.Boolean()
    tipo = fields.String(metadata={"description": "key (clave de API), user (sesión de Supabase) u open"})
    id = fields.String(metadata={"description": "Nombre de la clave o id del usuario."})
    email = fields.String(allow_none=True)
    nombre = fields.String(metadata={"description": "Cómo aparece como creador de campañas (creado_por)."})
    rol = fields.String(metadata={"description": "viewer, operator o admin"})
    buzones = fields.List(
        fields.String(), allow_none=True, metadata={"description": "Buzones permitidos; null: todos."}
    )
    puede_operar = fields.Boolean(metadata={"description": "true si puede crear campañas y actuar sobre ellas."})


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
    status = fields.String(
        metadata={"description": "queued, scheduled, running, waiting, paused, cancelled, completed o failed"}
    )
    motivo = fields.String(
        allow_none=True, metadata={"description": "Por qué se pausó, falló, está programada o espera (y hasta cuándo)."}
    )
    programada_para = fields.String(allow_none=True, metadata={"description": "Inicio programado (ISO 8601)."})
    reanuda_en = fields.String(
        allow_none=True, metadata={"description": "Con scheduled o waiting: cuándo empieza o sigue (ISO 8601)."}
    )
    zona_horaria = fields.String(allow_none=True)
    horario_envio = fields.String(
        allow_none=True, metadata={"description": "Franja de envío; vacío: a cualquier hora."}
    )
    total = fields.Integer()
    pending = fields.Integer()
    sent = fields.Integer()
    failed = fields.Integer()
    cancelled = fields.Integer()
    unknown = fields.Integer()  # type: ignore[assignment]  # a field, not Meta's `unknown` option
    retries = fields.Integer()
    suppressed = fields.Integer(
        metadata={"description": "No enviados porque el número se dio de baja mientras la campaña corría."}
    )
    deferred = fields.Integer(
        metadata={
            "description": "Diferidos por el límite de marketing por usuario (131049), a la espera de su "
            "reintento; no cuentan como pendientes ni como procesados."
        }
    )
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
    creado_por = fields.String(
        allow_none=True,
        metadata={
            "description": "Quién creó la campaña: el email del usuario (o su id) o el nombre de la clave de API."
        },
    )
    held = fields.Integer(
        metadata={
            "description": "Enviados que WhatsApp retuvo al aceptarlos (held_for_quality_assessment o paused); "
            "sus webhooks los entregan o los fallan después."
        }
    )
    facturables = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        metadata={"description": "Mensajes que WhatsApp informó como cobrados, por categoría."},
    )
    total_facturables = fields.Integer()
    costo = fields.Nested(
        SpentSchema, allow_none=True, metadata={"description": "Costo acumulado según RATE_CARD_FILE; null sin tarifa."}
    )


class CampaignSummarySchema(QueueStatusSchema):
    """One campaign in the list (same fields as the queue status, `id` instead of `campaign_id`)."""

    class Meta:
        exclude = ("success", "campaign_id")

    id = fields.String()
    plantilla = fields.String()
    buzon = fields.String()
    idioma = fields.String()


class CampaignListQuerySchema(ApiSchema):
    """Paging of GET /api/listar-campanas."""

    pagina = fields.Integer(load_default=1, validate=_range(1, MAX_PAGE))
    por_pagina = fields.Integer(load_default=20, validate=_range(1, 100))


class CampaignListSchema(Schema):
    """Answer of GET /api/listar-campanas."""

    success = fields.Boolean()
    campaigns = fields.List(fields.Nested(CampaignSummarySchema))
    total_campaigns = fields.Integer()
    pagina = fields.Integer()
    por_pagina = fields.Integer()


class WorkerStatusSchema(Schema):
    """One worker as its latest heartbeat described it."""

    id = fields.String(metadata={"description": "Id del proceso worker (host:pid:sufijo), el que firma sus claims."})
    alive = fields.Boolean(metadata={"description": "false si su latido expiró (caído o sin Redis)."})
    last_heartbeat_at = fields.String(allow_none=True, metadata={"description": "Último latido (reloj de Redis)."})
    seconds_since_heartbeat = fields.Float(allow_none=True)
    started_at = fields.String(allow_none=True, metadata={"description": "Primer latido de este proceso."})
    tasks_in_progress = fields.Integer(metadata={"description": "Tareas ejecutándose en su último latido."})
    sent_last_minute = fields.Integer(
        metadata={"description": "Mensajes aceptados por WhatsApp en el minuto anterior a su último latido."}
    )


class BeatStatusSchema(Schema):
    """When the periodic sweeper (celery beat) last ran."""

    running = fields.Boolean(metadata={"description": "true si el barrido corrió dentro de late_after_seconds."})
    last_pass_at = fields.String(allow_none=True, metadata={"description": "Inicio de la última pasada del barrido."})
    seconds_since_last_pass = fields.Float(allow_none=True)
    interval_seconds = fields.Float(metadata={"description": "SWEEP_INTERVAL_S: cada cuánto lo programa beat."})
    late_after_seconds = fields.Float(metadata={"description": "Sin pasada en este tiempo, se avisa en advertencias."})


class SignalSchema(Schema):
    """The latest notification of one kind WhatsApp sent about a number or an account."""

    evento = fields.String(
        allow_none=True, metadata={"description": "FLAGGED, UNFLAGGED, DOWNGRADE, tipo de alerta..."}
    )
    detalle = fields.Dict(metadata={"description": "Los demás campos del aviso (current_limit, alert_severity...)."})
    waba_id = fields.String(allow_none=True)
    fecha = fields.String(allow_none=True)


class SenderSignalsSchema(Schema):
    """What WhatsApp last said about one buzón's number."""

    buzon = fields.String()
    phone_number_id = fields.String()
    display_phone_number = fields.String(
        allow_none=True, metadata={"description": "Aprendido de los webhooks de estado del número."}
    )
    calidad = fields.Nested(SignalSchema, allow_none=True, metadata={"description": "phone_number_quality_update"})
    alerta = fields.Nested(SignalSchema, allow_none=True, metadata={"description": "account_alerts"})
    cuenta = fields.Nested(SignalSchema, allow_none=True, metadata={"description": "account_update"})


class TemplateStatusSchema(Schema):
    """The latest status WhatsApp reported for a template."""

    plantilla = fields.String()
    idioma = fields.String(allow_none=True)
    template_id = fields.String(allow_none=True)
    estado = fields.String(metadata={"description": "APPROVED, PAUSED, DISABLED, REJECTED..."})
    motivo = fields.String(allow_none=True)
    fecha = fields.String()


class AccountSignalSchema(SignalSchema):
    """An alert or account event about a whole account (not about one buzón's number)."""

    tipo = fields.String(metadata={"description": "alert (account_alerts) o account (account_update)"})
    id = fields.String(metadata={"description": "Id de la entidad o de la cuenta."})


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
    worker_details = fields.List(
        fields.Nested(WorkerStatusSchema),
        metadata={"description": "Cada worker vivo, o visto y aún no dado por muerto por el barrido."},
    )
    beat = fields.Nested(BeatStatusSchema)
    advertencias = fields.List(fields.String(), metadata={"description": "Problemas que un operador debe atender."})
    buzones = fields.List(
        fields.Nested(SenderSignalsSchema), metadata={"description": "Calidad y avisos de WhatsApp por buzón."}
    )
    plantillas = fields.List(fields.Nested(TemplateStatusSchema))
    alertas_cuenta = fields.List(fields.Nested(AccountSignalSchema))


class CampaignActionSchema(Schema):
    """Answer of pause, resume and cancel."""

    success = fields.Boolean()
    message = fields.String()
    campaign_id = fields.String()
    status = fields.String()


class RescheduleResultSchema(CampaignActionSchema):
    """Answer of POST /api/programar-campana/<id>."""

    programada_para = fields.String(metadata={"description": "Nuevo inicio (ISO 8601)."})
    motivo = fields.String()


class RetryRequestSchema(ApiSchema):
    """Body of POST /api/reintentar-campana/<id>."""

    estados = fields.List(
        fields.String(validate=_one_of([str(s) for s in RETRYABLE_RECIPIENT_STATUSES])),
        load_default=lambda: ["unknown"],
        validate=_length(minimum=1),
        metadata={
            "description": "Qué reintentar: 'unknown' (sin confirmación; podrían llegar dos veces) y/o 'failed'."
        },
    )


class RetryResultSchema(CampaignActionSchema):
    """Answer of POST /api/reintentar-campana/<id>."""

    reencolados = fields.Integer()


class RecipientQuerySchema(CampaignListQuerySchema):
    """Filter and paging of GET /api/destinatarios/<id>."""

    estado = fields.String(load_default=None, validate=_one_of([str(s) for s in RecipientStatus]))
    por_pagina = fields.Integer(load_default=100, validate=_range(1, 1000))


class ExportQuerySchema(ApiSchema):
    """Options of GET /api/campanas/<id>/resultados.csv."""

    estado = fields.String(load_default=None, validate=_one_of([str(s) for s in RecipientStatus]))
    separador = fields.String(
        load_default=",",
        validate=_one_of(list(texts.EXPORT_SEPARATORS)),
        metadata={"description": "Separador de columnas: ',' (por omisión), ';' (Excel en español) o 'tab'."},
    )


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
    message_status = fields.String(
        allow_none=True,
        metadata={
            "description": "held_for_quality_assessment o paused si WhatsApp retuvo el envío; null si lo aceptó."
        },
    )
    pricing_category = fields.String(
        allow_none=True, metadata={"description": "Categoría cobrada según los webhooks (marketing, utility...)."}
    )
    pricing_type = fields.String(allow_none=True, metadata={"description": "regular (cobrado) o free_*."})
    billable = fields.Boolean(allow_none=True, metadata={"description": "true si WhatsApp lo cobra."})
    retry_at = fields.String(
        allow_none=True, metadata={"description": "Con estado deferred: desde cuándo se reintenta (una vez)."}
    )


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
    waba_id = fields.String(allow_none=True, metadata={"description": "Cuenta de WhatsApp Business (plantillas)."})


class SenderListSchema(Schema):
    """Answer of GET /api/buzones: the buzones the caller may use."""

    success = fields.Boolean()
    buzones = fields.List(fields.Nested(SenderSchema))


# The audit log covers this service's life; anything outside is a typo (and PostgreSQL refuses some of it).
_AUDIT_PERIOD = validate.Range(
    min=datetime(2000, 1, 1, tzinfo=UTC),
    max=datetime(2200, 1, 1, tzinfo=UTC),
    error=texts.AUDIT_PERIOD,
)


class AuditQuerySchema(CampaignListQuerySchema):
    """Filters and paging of GET /api/auditoria."""

    campaign_id = Text(
        load_default=None,
        validate=validate.Length(min=1, max=200),
        metadata={"description": "Solo las entradas de esta campaña."},
    )
    desde = fields.AwareDateTime(
        load_default=None,
        default_timezone=UTC,
        validate=_AUDIT_PERIOD,
        metadata={"description": "Desde este instante (ISO 8601, incluido); sin zona horaria se entiende UTC."},
    )
    hasta = fields.AwareDateTime(
        load_default=None,
        default_timezone=UTC,
        validate=_AUDIT_PERIOD,
        metadata={"description": "Hasta este instante (ISO 8601, excluido)."},
    )
    por_pagina = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))


class AuditEntrySchema(Schema):
    """One entry of the audit log."""

    id = fields.Integer()
    at = fields.String(metadata={"description": "Cuándo (ISO 8601)."})
    actor = fields.String(
        allow_none=True, metadata={"description": "Id del usuario o nombre de la clave; vacío si no se identificó."}
    )
    actor_email = fields.String(allow_none=True)
    actor_kind = fields.String(
        metadata={"description": "user, key, cli, open (AUTH_DISABLED), anonymous o whatsapp (bajas automáticas)"}
    )
    action = fields.String(
        metadata={
            "description": "create, pause, resume, cancel, retry, reschedule, access (rechazo 401/"
            "403), apikey.create, apikey.revoke, user.set, buzon.add, portfolio.set, optout.add u optout.lift "
            "(bajas: actor_kind whatsapp cuando las registra un webhook o una respuesta 131050)"
        }
    )
    campaign_id = fields.String(allow_none=True)
    buzon = fields.String(allow_none=True)
    status_code = fields.Integer(metadata={"description": "Estado HTTP de la respuesta (0 para la línea de comandos)."})
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


_OPTOUT_BUZON = Text(
    load_default=None,
    validate=_length(1, 100),
    metadata={"description": "Buzón de la baja; '*' para todos los buzones."},
)
_OPTOUT_PHONE = Text(
    required=True,
    validate=_length(1, 40),
    metadata={"description": "Teléfono, con código de país (+58...) o en el formato del país por omisión."},
)


class OptOutQuerySchema(CampaignListQuerySchema):
    """Filters and paging of GET /api/bajas."""

    buzon = _OPTOUT_BUZON
    telefono = Text(load_default=None, validate=_length(1, 40), metadata={"description": "Solo este teléfono."})
    por_pagina = fields.Integer(load_default=50, validate=_range(1, 500))


class OptOutRequestSchema(ApiSchema):
    """Body of POST /api/bajas."""

    telefono = _OPTOUT_PHONE
    buzon = Text(
        load_default=None,
        validate=_length(1, 100),
        metadata={"description": "Buzón de la baja; sin él (o '*'), todos los buzones."},
    )
    motivo = Text(load_default=None, validate=_length(maximum=500), metadata={"description": "Por qué."})


class OptOutLiftQuerySchema(ApiSchema):
    """Query of DELETE /api/bajas."""

    telefono = _OPTOUT_PHONE
    buzon = Text(
        load_default=None,
        validate=_length(1, 100),
        metadata={"description": "Solo la baja de este buzón ('*': la de todos); sin él, todas las que pueda."},
    )


class OptOutEntrySchema(Schema):
    """One opt-out in force."""

    telefono = fields.String(metadata={"description": "Enmascarado para el rol viewer."})
    buzon = fields.String(metadata={"description": "'*' si vale para todos los buzones."})
    todos_los_buzones = fields.Boolean()
    origen = fields.String(metadata={"description": "manual, 131050, user_preferences o palabra_clave"})
    motivo = fields.String(allow_none=True, metadata={"description": "Detalle: la palabra recibida, el error..."})
    desde = fields.String(allow_none=True, metadata={"description": "Cuándo ocurrió (ISO 8601)."})
    campaign_id = fields.String(allow_none=True, metadata={"description": "La campaña cuyo envío la reveló."})
    registrado_por = fields.String(allow_none=True, metadata={"description": "Operador, o 'whatsapp'."})


class OptOutListSchema(Schema):
    """Answer of GET /api/bajas."""

    success = fields.Boolean()
    bajas = fields.List(fields.Nested(OptOutEntrySchema))
    total = fields.Integer()
    pagina = fields.Integer()
    por_pagina = fields.Integer()


class OptOutAddedSchema(Schema):
    """Answer of POST /api/bajas."""

    success = fields.Boolean()
    message = fields.String()
    telefono = fields.String()
    buzon = fields.String()
    nueva = fields.Boolean(metadata={"description": "false si ya estaba dado de baja."})


class OptOutLiftedSchema(Schema):
    """Answer of DELETE /api/bajas."""

    success = fields.Boolean()
    message = fields.String()
    telefono = fields.String()
    buzones = fields.List(fields.String(), metadata={"description": "Buzones cuya baja se levantó ('*': todos)."})


class ErrorSchema(Schema):
    """Every error answer."""

    success = fields.Boolean()
    message = fields.String()
    details = fields.Dict()
