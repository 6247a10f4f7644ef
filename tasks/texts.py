"""Every Spanish text an operator reads, in one catalogue; code keeps English identifiers.

Each text is a format string with named fields, so callers never build Spanish sentences themselves and a
reviewer can read (and a translator change) every message in one place. Sections follow who shows them.
"""

from __future__ import annotations

# --- contacts: problems with an uploaded file or contact list (422 with row numbers) ----------------------

# --- api: answers of the HTTP routes --------------------------------------------------------------------------

# Validation of fields (marshmallow's English defaults replaced; {min}, {max}, {choices} are filled by it).
FIELD_REQUIRED = "Falta este campo: es obligatorio."
FIELD_NULL = "Este campo no puede ser nulo: envíe un valor o quítelo."
FIELD_INVALID = "Valor no válido."
FIELD_NOT_TEXT = "Debe ser un texto."
FIELD_NOT_UTF8 = "No es texto UTF-8 válido."
FIELD_NOT_INTEGER = "Debe ser un número entero."
FIELD_NOT_NUMBER = "Debe ser un número."
FIELD_TOO_LARGE = "El número es demasiado grande."
FIELD_NOT_BOOLEAN = "Debe ser verdadero o falso (true o false)."
FIELD_NOT_LIST = "Debe ser una lista."
FIELD_NOT_OBJECT = "Debe ser un objeto con campos, como {{\"nombre\": \"Ana\"}}."
FIELD_NOT_BODY = "Se esperaba un objeto JSON con los campos del formulario."
FIELD_UNKNOWN = "Campo desconocido."
FIELD_LENGTH_BETWEEN = "Debe tener entre {min} y {max} caracteres."
FIELD_LENGTH_AT_MOST = "Debe tener como máximo {max} caracteres."
FIELD_ITEMS_AT_LEAST = "Debe tener al menos {min} elemento(s)."
FIELD_RANGE = "Debe ser un número entero entre {min} y {max}."
FIELD_ONE_OF = "Debe ser uno de: {choices}."
FIELD_BAD_CHARACTER = ("Tiene un carácter no permitido (NUL o Unicode inválido, como una mitad de emoji "
                       "suelta). Quítelo y envíe de nuevo.")
CONTACT_BAD_CHARACTER = ("El contacto {row} tiene un carácter no permitido (NUL o Unicode inválido) en el campo "
                         "'{field}'. Quítelo y envíe de nuevo.")

# Request guards.
CAMPAIGN_ID_INVALID = ("El id de campaña no es válido: un id tiene solo minúsculas, números, guiones y _ (hasta "
                       "{max_length} caracteres), tal como lo devuelve crear-campana. Consulte /api/listar-campanas.")
JSON_TOO_LARGE = ("El cuerpo JSON pesa {size_mb:.1f} MB y el límite es {limit_mb} MB. Envíe los contactos como "
                  "archivo CSV (archivo_csv, hasta {csv_limit_mb} MB) o divida la campaña.")
JSON_TOO_LARGE_UNKNOWN_SIZE = ("El cuerpo JSON supera el límite de {limit_mb} MB. Envíe los contactos como "
                               "archivo CSV (archivo_csv, hasta {csv_limit_mb} MB) o divida la campaña.")
JSON_TOO_DEEP = ("El cuerpo JSON tiene demasiados niveles anidados. Envíe un objeto con titulo_campana, plantilla, "
                 "buzon y una lista 'contactos' de objetos simples.")

# --- access: sign-in, roles, origins and limits ---------------------------------------------------------------

# --- campaign: pause and stop reasons, log lines operators read -----------------------------------------------

PAUSE_ERROR_RATE = ("Pausa automática: fallaron {failed} de los últimos {processed} envíos ({share:.0%}, máximo "
                    "{limit:.0%}). Revise los errores por código antes de reanudar.")
PAUSE_NO_CREDENTIALS = "No hay credenciales para el buzón: {error}"
CANCELLED_BY_OPERATOR = "Cancelada por el operador"
CANNOT_ACT = "la campaña está '{status}' y no se puede {action}"
RETRY_CANCELLED = "la campaña fue cancelada"
RETRY_NOTHING = "no hay mensajes en estado {statuses} para reintentar"
SENDER_NOT_REGISTERED = "el buzón '{buzon}' no está registrado"
SEND_INTERRUPTED = "error interno durante el envío ({error})"

# Log lines (%-style: the logging module formats them only when they are written).
LOG_BATCH_DONE = "Batch %d/%d completado: %d/%d exitosos (%d fallidos) - campaña %s"
LOG_COMPLETED = "Campaña %s completada: %d enviados, %d fallidos"
LOG_PAUSED = "Campaña %s pausada: %s"
LOG_STOPPED = "Campaña %s detenida: %s"
LOG_RETRIED = "Campaña %s: %s mensajes vuelven a la cola por pedido del operador"
LOG_DEAD_WORKER_CLAIMS = ("Campaña %s: el worker %s dejó %d mensajes sin confirmar (quedan como desconocidos) y %d "
                          "sin enviar (vuelven a la cola)")
LOG_STALE_BATCH = "Campaña %s: el batch %d no terminó a tiempo; vuelve a la cola"

# --- whatsapp: what each Cloud API error code means for the operator ------------------------------------------

# What each Cloud API error code means, shown in estado-cola and the worker log.
ERROR_CODE_REASONS = {
    130429: "WhatsApp limitó el ritmo de envío del número (130429); se reintenta más despacio.",
    131056: "Demasiados mensajes seguidos al mismo destinatario (131056).",
    131057: "El número está en mantenimiento por una mejora de capacidad (131057).",
    131026: "El destinatario no puede recibir el mensaje (no usa WhatsApp o su aplicación es antigua).",
    131049: "WhatsApp no entregó este mensaje de marketing para cuidar la experiencia del usuario (131049).",
    131050: "El destinatario dejó de recibir mensajes de marketing (131050).",
    131008: "Falta un parámetro obligatorio en el mensaje (131008).",
    131009: "Un parámetro del mensaje tiene un valor no válido (131009).",
    132000: "La cantidad de parámetros no coincide con la plantilla (132000). Revise las columnas del CSV.",
    132001: "La plantilla no existe en ese idioma o no está aprobada (132001). Revise plantilla e idioma.",
    132005: "El texto con los parámetros supera el largo permitido por la plantilla (132005).",
    132007: "El contenido de la plantilla viola una política de WhatsApp (132007).",
    132012: "El formato de un parámetro no coincide con la plantilla (132012).",
    132015: "La plantilla está pausada por baja calidad (132015). Use otra plantilla o espere.",
    132016: "La plantilla fue deshabilitada por baja calidad (132016).",
    131048: "WhatsApp limitó el envío por reportes de spam (131048); la calidad del número está en riesgo.",
    190: "El token de acceso del buzón expiró o no es válido (190). Actualice las credenciales del buzón.",
    10: "El token no tiene permiso para enviar con este número (10). Revise los permisos de la app.",
    368: "La cuenta está bloqueada temporalmente por incumplir políticas (368).",
    131031: "La cuenta de WhatsApp Business está bloqueada (131031).",
    131042: "Hay un problema con el método de pago de la cuenta (131042).",
}
ERROR_PERMISSION = "Permiso denegado por WhatsApp ({code}). Revise los permisos del token del buzón."
ERROR_NETWORK = "Error de red o de WhatsApp."
ERROR_NETWORK_DETAIL = "Error de red o de WhatsApp: {detail}"
ERROR_OTHER = "WhatsApp respondió con el error {code}."
ERROR_OTHER_DETAIL = "WhatsApp respondió con el error {code}: {detail}"
