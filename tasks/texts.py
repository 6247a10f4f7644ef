"""Every Spanish text an operator reads, in one catalogue; code keeps English identifiers.

Each text is a format string with named fields, so callers never build Spanish sentences themselves and a
reviewer can read (and a translator change) every message in one place. Sections follow who shows them.
"""

from __future__ import annotations

# --- contacts: problems with an uploaded file or contact list (422 with row numbers) ----------------------

# The file as a whole: what it is and how it is encoded.
EXCEL_WORKBOOK = (
    "El archivo es un libro de Excel, no un CSV. En Excel use 'Guardar como' > 'CSV UTF-8 (delimitado por "
    "comas)' y suba ese archivo."
)
COMPRESSED_FILE = "El archivo parece comprimido (gzip/zip): descomprímalo y suba el CSV que contiene."
BINARY_FILE = (
    "El archivo no es un CSV de texto (tiene datos binarios). Exporte la lista desde su hoja de cálculo con "
    "'Guardar como' > 'CSV UTF-8' y suba ese archivo."
)
UNDECODABLE_BYTES = (
    "Fila {row}: hay bytes que no son texto válido en {encoding}. Guarde el archivo como 'CSV UTF-8' y vuelva "
    "a subirlo."
)
CONTROL_CHARACTER = (
    "Fila {row}: una celda contiene un carácter de control invisible (código {code}). Bórrelo o copie los "
    "datos como texto simple en una hoja nueva y vuelva a exportar el CSV."
)
FILE_UNREADABLE = "No se pudo leer el archivo. Vuelva a subirlo."
EMPTY_FILE = (
    "El archivo está vacío. Debe tener una fila de encabezados (por ejemplo telefono;nombre) y al menos un contacto."
)
HEADER_TOO_LONG = (
    "La primera fila es demasiado larga para ser una fila de encabezados. Verifique que el archivo sea un CSV."
)
NOTE_READ_AS_CP1252 = (
    "El archivo no está en UTF-8; se leyó como Windows-1252 (Latin-1). Si ve caracteres extraños en los "
    "nombres, guárdelo como 'CSV UTF-8'."
)

# The CSV's structure: one line per row, cells of a sane size.
CSV_UNREADABLE = (
    "El archivo no se pudo leer como CSV cerca de la fila {row}: revise comillas sin cerrar o celdas demasiado largas."
)
CSV_UNCLOSED_QUOTE = (
    'Fila {row}: una celda abre comillas (") y no las cierra en la misma línea, así que se mezclaría con las '
    "filas siguientes. Cierre las comillas o quítelas, y no use saltos de línea dentro de una celda."
)
PARAM_TOO_LONG = (
    "Fila {row}: la columna '{column}' tiene {length} caracteres y el máximo es {limit}. Acorte el texto o "
    "revise si faltan comillas de cierre en filas anteriores."
)
TOO_MANY_COLUMNS = (
    "El archivo tiene {count} columnas y el máximo es {limit} (el teléfono y los parámetros de la plantilla). "
    "Deje solo las columnas que usa la plantilla."
)
# The {count} of TOO_MANY_COLUMNS when the header was too long to be read whole.
COLUMNS_AT_LEAST = "al menos {count}"

# The columns: which one is the phone, what the others are called.
NO_HEADER_ROW = (
    "La primera fila parece ser un contacto y no una fila de encabezados. Agregue al inicio una fila con los "
    "nombres de las columnas, por ejemplo: telefono;nombre."
)
NAMED_PHONE_COLUMN_ABSENT_CSV = (
    "No existe la columna '{column}' indicada en 'columna_telefono'. Columnas del archivo: {columns}."
)
NAMED_PHONE_COLUMN_ABSENT_JSON = (
    "No existe la columna '{column}' indicada en 'columna_telefono'. Campos de los contactos: {columns}."
)
PHONE_COLUMN_NOT_FOUND_CSV = (
    "No se encontró la columna de teléfono. Columnas del archivo: {columns}. Renombre la columna a 'telefono' "
    "o indíquela en el campo 'columna_telefono'."
)
PHONE_COLUMN_NOT_FOUND_JSON = (
    "No se encontró la columna de teléfono. Campos de los contactos: {columns}. Renombre el campo a "
    "'telefono' o indíquelo en el campo 'columna_telefono'."
)
NOTE_SEVERAL_PHONE_COLUMNS = (
    "Hay varias columnas que parecen de teléfono ({columns}); se usó '{chosen}' y las demás se envían como "
    "parámetros de la plantilla."
)
NOTE_PHONE_COLUMN_REPEATED = "Hay {count} columnas llamadas '{column}'; se usó la primera como teléfono."
REPEATED_COLUMNS = (
    "Hay columnas repetidas ({columns}); con parámetros con nombre cada columna debe tener un nombre distinto."
)
UNNAMED_COLUMN = (
    "La columna {position} no tiene nombre en la fila de encabezados. Escriba un nombre o elimine la columna."
)

# The JSON body's `contactos` list.
RECORDS_NOT_A_LIST = "El campo 'contactos' debe ser una lista de objetos."
RECORDS_EMPTY = "La lista 'contactos' está vacía. Agregue al menos un contacto."
RECORDS_NOT_OBJECTS = (
    'Los contactos deben ser objetos con campos, por ejemplo {{"telefono": "584141234567", "nombre": "Ana"}}.'
)
RECORDS_UNNAMED_FIELD = "Hay un campo sin nombre en los contactos."
RECORDS_REPEATED_FIELDS = "Hay campos repetidos en los contactos (difieren solo en espacios)."

# The list as a whole, once every row has been read.
UNKNOWN_REGION = "Región desconocida: {region!r}. Use un código de país de dos letras, como 'VE'."
TOO_MANY_CONTACTS = (
    "Hay más de {limit} contactos válidos y el máximo por envío es {limit} (se dejó de leer en la fila {row}). "
    "Divida la lista en partes más pequeñas."
)
TOO_MANY_REJECTED = (
    "Hay más de {limit} filas con errores (se dejó de leer en la fila {row}). Revise que la columna de "
    "teléfono y la región sean las correctas."
)
NO_CONTACTS = (
    "La lista no tiene contactos: solo se encontraron los encabezados o filas vacías. Agregue al menos una "
    "fila con un teléfono."
)
NO_VALID_CONTACT = (
    "Ningún contacto es válido: se rechazaron las {count} filas. Revise la columna '{column}' y que la región "
    "({region}) sea la de los números sin código de país."
)
NOTE_BLANK_ROW = "Se ignoró 1 fila vacía."
NOTE_BLANK_ROWS = "Se ignoraron {count} filas vacías."

# Why one row is left out (the `motivo` of each rejected row).
ROW_NOT_AN_OBJECT = "el contacto no es un objeto con campos"
ROW_WIDTH_MISMATCH = "la fila tiene {cells} celdas y el encabezado {columns} columnas"
ROW_FIELD_MISSING = "falta el campo '{field}'"
ROW_FIELD_UNKNOWN = "campo no reconocido '{field}'"
ROW_VALUE_BOOLEAN = "valor no admitido en '{column}' (verdadero/falso)"
ROW_VALUE_NOT_A_NUMBER = "valor no admitido en '{column}'"
ROW_VALUE_WRONG_TYPE = "valor no admitido en '{column}' (se esperaba texto o número)"
ROW_VALUE_CONTROL_CHARACTER = "'{column}' contiene caracteres de control o inválidos; escríbalo como texto simple"
ROW_PARAM_EMPTY = "parámetro {columns} vacío"
ROW_PARAMS_EMPTY = "parámetros {columns} vacíos"
ROW_DUPLICATE = "duplicado de la fila {first}"

# Why one phone value is unusable (also a rejected row's `motivo`).
PHONE_EMPTY = "celda de teléfono vacía"
PHONE_HAS_LETTERS = "el teléfono contiene letras"
PHONE_NO_DIGITS = "el teléfono no contiene dígitos"
PHONE_BAD_CHARACTERS = "el teléfono contiene caracteres no permitidos"
PHONE_SCIENTIFIC_NOTATION = (
    "Excel convirtió el número a notación científica y se perdieron dígitos; dé formato de texto a la columna "
    "y vuelva a exportar el archivo"
)
PHONE_UNKNOWN_COUNTRY_CODE = "el código de país no existe"
PHONE_TOO_LONG = "número demasiado largo"
PHONE_TOO_SHORT = "número demasiado corto"
PHONE_NOT_A_NUMBER = "no parece un número de teléfono"
PHONE_INVALID_FOR_COUNTRY = "número inválido para el código de país +{country_code} ({region}){hint}"
PHONE_INVALID_FOR_REGION = "número inválido para la región {region}{hint}"
PHONE_HINT_MISSING_DIGITS = ": faltan dígitos"
PHONE_HINT_EXTRA_DIGITS = ": sobran dígitos"
PHONE_HINT_FOREIGN = "; si es de otro país, escríbalo con + y el código de país"


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
FIELD_NOT_OBJECT = 'Debe ser un objeto con campos, como {{"nombre": "Ana"}}.'
FIELD_NOT_BODY = "Se esperaba un objeto JSON con los campos del formulario."
FIELD_UNKNOWN = "Campo desconocido."
FIELD_LENGTH_BETWEEN = "Debe tener entre {min} y {max} caracteres."
FIELD_LENGTH_AT_MOST = "Debe tener como máximo {max} caracteres."
FIELD_ITEMS_AT_LEAST = "Debe tener al menos {min} elemento(s)."
FIELD_RANGE = "Debe ser un número entero entre {min} y {max}."
FIELD_ONE_OF = "Debe ser uno de: {choices}."
FIELD_BAD_CHARACTER = (
    "Tiene un carácter no permitido (NUL o Unicode inválido, como una mitad de emoji suelta). Quítelo y envíe de nuevo."
)
CONTACT_BAD_CHARACTER = (
    "El contacto {row} tiene un carácter no permitido (NUL o Unicode inválido) en el campo "
    "'{field}'. Quítelo y envíe de nuevo."
)

# Request guards.
CAMPAIGN_ID_INVALID = (
    "El id de campaña no es válido: un id tiene solo minúsculas, números, guiones y _ (hasta "
    "{max_length} caracteres), tal como lo devuelve crear-campana. Consulte /api/listar-campanas."
)
JSON_TOO_LARGE = (
    "El cuerpo JSON pesa {size_mb:.1f} MB y el límite es {limit_mb} MB. Envíe los contactos como "
    "archivo CSV (archivo_csv, hasta {csv_limit_mb} MB) o divida la campaña."
)
JSON_TOO_LARGE_UNKNOWN_SIZE = (
    "El cuerpo JSON supera el límite de {limit_mb} MB. Envíe los contactos como "
    "archivo CSV (archivo_csv, hasta {csv_limit_mb} MB) o divida la campaña."
)
JSON_TOO_DEEP = (
    "El cuerpo JSON tiene demasiados niveles anidados. Envíe un objeto con titulo_campana, plantilla, "
    "buzon y una lista 'contactos' de objetos simples."
)
JSON_BODY_INVALID = (
    "El cuerpo JSON no es válido: envíe un objeto con titulo_campana, plantilla, buzon, idioma y contactos."
)
CSV_TOO_LARGE = (
    "El archivo pesa {size_mb:.1f} MB y el límite es {limit_mb} MB. Divida la campaña en archivos más pequeños."
)
CSV_TOO_LARGE_UNKNOWN_SIZE = "El archivo supera el límite de {limit_mb} MB. Divida la campaña en archivos más pequeños."
FILE_MISSING = "Falta el archivo: envíe el CSV en el campo 'archivo_csv'."
FILE_OR_CONTACTS_MISSING = (
    "Falta el archivo: envíe el CSV en el campo 'archivo_csv' (multipart) o la lista 'contactos' en un cuerpo JSON."
)
IDEMPOTENCY_KEY_TOO_LONG = "La cabecera Idempotency-Key no puede superar {limit} caracteres."

# Validators of single fields (besides marshmallow's own messages above).
TEMPLATE_NAME_INVALID = "Use el nombre exacto de la plantilla: minúsculas, números y _."
LANGUAGE_INVALID = "Use un código de idioma como es, es_MX o en_US."

# Answers of the error handlers.
VALIDATION_FAILED = "Datos inválidos."
VALIDATION_FAILED_IN = "Datos inválidos en: {fields}. Revise los campos indicados."
ROUTE_NOT_FOUND = "La ruta no existe. Consulte /api/docs."
METHOD_NOT_ALLOWED = "Método no permitido en esta ruta."
INTERNAL_ERROR = "Error interno del servidor. Intente de nuevo; si persiste, avise al equipo técnico."
# The 503 of any request made while the database is away (down, restarting or too slow to answer).
DATABASE_UNAVAILABLE = (
    "La base de datos no responde en este momento (puede estar reiniciándose). Intente de nuevo en unos "
    "segundos; las campañas en curso continúan solas cuando vuelva."
)

# Creating a campaign.
SENDER_NOT_ALLOWED = "Su acceso no permite enviar con el buzón '{buzon}'. Buzones permitidos: {allowed}."
SENDER_UNKNOWN = "El buzón '{buzon}' no está registrado. Buzones disponibles: {known}."
# The {allowed} or {known} of the two above when the list is empty.
NO_SENDERS = "ninguno"
QUEUE_UNAVAILABLE = (
    "No se pudo encolar la campaña porque la cola (Redis) no responde. No se guardó nada: intente de nuevo "
    "en unos minutos."
)
# The creation answer: one of the first two, then ROWS_EXCLUDED when rows were left out, then a period.
CAMPAIGN_CREATED = "Campaña creada: {total} mensajes en cola"
CAMPAIGN_ALREADY_CREATED = "Esta solicitud ya creó la campaña (misma Idempotency-Key); no se envía nada dos veces"
ROWS_EXCLUDED = "; {count} filas excluidas (ver 'rechazados')"
# The validation answer (validar-campana: nothing stored or sent), then ROWS_EXCLUDED and a period like above.
CAMPAIGN_VALIDATED = "Archivo revisado, no se guardó ni envió nada: se enviarían {total} mensajes"

# A campaign that does not exist, or that the caller may not see; the short form answers pause, resume,
# cancel and retry when the pipeline itself finds no campaign.
CAMPAIGN_NOT_FOUND = "No existe la campaña '{campaign_id}'. Consulte /api/listar-campanas."
# The answer to each action; a cancel adds CANCELLED_UNSENT, then a period.
CAMPAIGN_PAUSED = "Campaña pausada"
CAMPAIGN_RESUMED = "Campaña reanudada"
CAMPAIGN_CANCELLED = "Campaña cancelada"
CANCELLED_UNSENT = ": {count} mensajes sin enviar quedaron cancelados"
# {action} is the action's Spanish verb in the URL (pausar, reanudar, cancelar); {reason} says why not.
ACTION_REFUSED = "No se puede {action} la campaña: {reason}."
RETRY_REFUSED = "No se puede reintentar: {reason}."
# {detail} lists RETRIED_COUNT for each status, separated by commas.
RETRIED = "{total} mensajes vuelven a la cola ({detail})."
RETRIED_COUNT = "{count} {status}"
RETRIED_STATUS_NAMES = {"unknown": "desconocidos", "failed": "fallidos"}

# The results export (GET /api/campanas/<id>/resultados.csv): its header row, one name per column, and the
# separator choices of its `separador` option (a spreadsheet set to a Spanish locale expects ";").
EXPORT_HEADER = (
    "n",
    "teléfono",
    "estado",
    "wamid",
    "código de error",
    "descripción del error",
    "detalle del error",
    "intentos",
    "estado de entrega",
    "enviado (UTC)",
    "entregado (UTC)",
    "leído (UTC)",
)
EXPORT_SEPARATORS = {",": ",", ";": ";", "coma": ",", "punto-y-coma": ";", "tab": "\t"}

# GET /metrics: served only with METRICS_TOKEN set, to a caller that sends it.
METRICS_TOKEN_INVALID = "Falta el token de métricas o no es válido: envíe 'Authorization: Bearer <METRICS_TOKEN>'."

# Probes: NOT_READY lists the parts that do not answer, separated by commas.
NOT_READY = "El servicio no está listo: {problems}."
NOT_READY_REDIS = "Redis no responde"
NOT_READY_DATABASE = "la base de datos no responde"

# estado-sistema's `advertencias` when the periodic sweeper (celery beat) has not run in time.
BEAT_LATE = (
    "El barrido periódico (celery beat) no corre desde hace {seconds:.0f} s y debería correr cada "
    "{interval:g} s. Sin él no se recuperan los mensajes de workers caídos ni se completan las "
    "campañas que nadie mueve. Verifique que 'celery -A tasks beat' esté en marcha."
)
BEAT_NEVER_RAN = (
    "El barrido periódico (celery beat) no ha corrido nunca con este Redis. Sin él no se recuperan los "
    "mensajes de workers caídos ni se completan las campañas que nadie mueve. Inicie 'celery -A tasks beat'."
)

# WhatsApp webhooks (Meta's own calls).
WEBHOOK_VERIFY_REFUSED = "Token de verificación incorrecto o WHATSAPP_VERIFY_TOKEN sin configurar."
WEBHOOK_TOO_LARGE = "El cuerpo supera {limit_kb} KB."
WEBHOOK_NO_SECRET = "WHATSAPP_APP_SECRET no está configurado: no se pueden verificar las notificaciones."
WEBHOOK_BAD_SIGNATURE = "Firma X-Hub-Signature-256 ausente o incorrecta."
WEBHOOK_NOT_JSON = "El cuerpo no es JSON válido."
WEBHOOK_NOT_OBJECT = "El cuerpo debe ser un objeto JSON de notificación de WhatsApp."
WEBHOOK_NOT_RECORDED = "No se pudo registrar la notificación; se reintentará."
WEBHOOK_BAD_REQUEST = "La petición HTTP no es válida."
RECEIVER_ROUTE_NOT_FOUND = "Este servidor sólo recibe las notificaciones de WhatsApp, en /webhooks/whatsapp."

# --- access: sign-in, roles, origins and limits ---------------------------------------------------------------

# Credentials (401).
AUTH_HEADER_INVALID = "Cabecera Authorization no válida: use 'Authorization: Bearer <token o clave>'."
CREDENTIAL_MISSING = (
    "Falta la credencial: envíe 'Authorization: Bearer <token de sesión de Supabase>' o la clave de API en "
    "'X-API-Key'. Un administrador crea claves con 'flask --app webapi apikey create'."
)
API_KEY_INVALID = "La clave de API no es válida o fue revocada. Pida una nueva a un administrador."
SESSIONS_DISABLED = "Este servidor no acepta sesiones de Supabase (SUPABASE_URL sin configurar); use una clave de API."
# {reason} is one of the TOKEN_* texts below.
SESSION_INVALID = "Sesión no válida: {reason}. Inicie sesión de nuevo y envíe el access_token actual."

# Why a Supabase session token is refused.
TOKEN_KEY_UNPUBLISHED = "la clave de firma del token (kid) no está publicada por Supabase"
TOKEN_NOT_A_JWT = "el token no es un JWT válido"
TOKEN_ALGORITHM_NOT_HS256 = "algoritmo {algorithm!r} no aceptado (se espera HS256)"
TOKEN_ALGORITHM_NOT_ASYMMETRIC = "algoritmo {algorithm!r} no aceptado (se espera RS256 o ES256)"
TOKEN_EXPIRED = "la sesión expiró"
TOKEN_WRONG_AUDIENCE = "el token no es de un usuario autenticado (aud)"
TOKEN_WRONG_ISSUER = "el token no fue emitido por este proyecto de Supabase (iss)"
TOKEN_INVALID = "token no válido ({error})"

# Roles and origins (403).
USER_WITHOUT_ROLE = (
    "Su usuario no tiene un rol en este servicio. Pida a un administrador que le asigne uno (viewer, operator o admin)."
)
ROLE_TOO_LOW = (
    "Su rol ({role}) no permite esta operación: hace falta el rol {required}. Pida a un administrador que se lo asigne."
)
# The {required} of ROLE_TOO_LOW.
ROLE_NAMES = {"viewer": "lector (viewer)", "operator": "operador (operator)", "admin": "administrador (admin)"}
ORIGIN_REFUSED = (
    "El origen '{origin}' no está autorizado a modificar campañas. Si es el front end de esta instalación, "
    "agréguelo a CORS_ORIGINS."
)

# Limits (429) and the audit log's filters.
TOO_MANY_REQUESTS = "Demasiadas solicitudes ({limit}). Espere {retry_after} segundos y vuelva a intentarlo."
AUDIT_PERIOD = "Use una fecha entre el año 2000 y el 2199 (ISO 8601, por ejemplo 2026-01-08T10:30:00-04:00)."

# --- campaign: pause and stop reasons, log lines operators read -----------------------------------------------

PAUSE_ERROR_RATE = (
    "Pausa automática: fallaron {failed} de los últimos {processed} envíos ({share:.0%}, máximo "
    "{limit:.0%}). Revise los errores por código antes de reanudar."
)
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
LOG_DEAD_WORKER_CLAIMS = (
    "Campaña %s: el worker %s dejó %d mensajes sin confirmar (quedan como desconocidos) y %d "
    "sin enviar (vuelven a la cola); %d quedaron resueltos por las respuestas y notificaciones de WhatsApp"
)
LOG_WEBHOOKS_RETURNED = "El worker %s se detuvo con %d notificaciones de WhatsApp sin aplicar; vuelven a la cola"
LOG_MARKS_LOST = (
    "Campaña %s: Redis perdió las marcas de envío de este worker; se vuelven a marcar %d mensajes antes de seguir"
)
LOG_REDIS_LOST_MARKS = (
    "Campaña %s: Redis perdió las marcas de envío del worker %s; sus %d mensajes sin confirmar quedan como desconocidos"
)
LOG_STALE_BATCH = "Campaña %s: el batch %d no terminó a tiempo; vuelve a la cola"
LOG_SWEEP_NO_DATABASE = "Revisión periódica omitida: la base de datos no responde (%s); se repite en la próxima"

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

# The `detail` of a send that got no usable answer from the Cloud API.
SEND_NO_CONNECTION = "no se pudo conectar con WhatsApp"
SEND_TIMED_OUT = "WhatsApp no respondió a tiempo; el mensaje puede haberse entregado"
SEND_CONNECTION_CUT = "la conexión se cortó antes de la respuesta ({error}); el mensaje puede haberse entregado"
SEND_NO_MESSAGE_ID = "respuesta de WhatsApp sin id de mensaje"
SEND_TOKEN_UNUSABLE = (
    "el token de acceso del buzón tiene saltos de línea o caracteres que no van en un encabezado HTTP; "
    "corrija las credenciales del buzón"
)

# --- scheduling, quiet hours and the portfolio's daily limit ----------------------------------------------------

# crear-campana / validar-campana fields programar_para, zona_horaria and horario_envio.
TIME_ZONE_UNKNOWN = (
    "La zona horaria '{zone}' no existe. Use un nombre IANA como America/Caracas, America/Bogota o Europe/Madrid."
)
SCHEDULE_UNREADABLE = (
    "No se entiende la fecha '{value}'. Use ISO 8601, por ejemplo 2026-01-08T09:30:00-04:00, o sin desfase "
    "(2026-01-08T09:30) para la hora local de zona_horaria."
)
SCHEDULE_IN_PAST = "La fecha {at} ya pasó. Indique una fecha futura o deje programar_para vacío para enviar ahora."
SCHEDULE_TOO_FAR = "La fecha {at} está a más de {days} días. Programe la campaña dentro de ese plazo."
WINDOW_UNREADABLE = (
    "El horario de envío '{value}' no se entiende. Escríbalo como HH:MM-HH:MM (por ejemplo 08:00-20:00, o "
    "20:00-08:00 para una franja que cruza la medianoche); vacío envía a cualquier hora."
)
WINDOW_EMPTY = "El horario de envío '{value}' abre y cierra a la misma hora. Indique dos horas distintas."
# The reprogramar route.
CAMPAIGN_RESCHEDULED = "Campaña reprogramada para el {at}"
RESCHEDULE_REFUSED = "No se puede reprogramar: {reason}"
RESCHEDULE_NOT_SCHEDULED = "la campaña está '{status}'; solo se reprograma una campaña que aún no empezó"
# The `motivo` of a scheduled or waiting campaign ({at} and {until} in the campaign's time zone).
SCHEDULED_FOR = "Programada para el {at}"
WAIT_WINDOW = "Fuera del horario de envío ({window}, {zone}): continúa el {until}"
WAIT_PORTFOLIO = (
    "Se alcanzó el límite diario del portafolio '{portfolio}' ({limit} destinatarios únicos en 24 horas): "
    "continúa el {until}, cuando se libera cupo"
)
# The date format of those texts: day/month/year and the local time (seconds only when not zero).
DATETIME_FORMAT = "%d/%m/%Y %H:%M"
DATETIME_FORMAT_SECONDS = "%d/%m/%Y %H:%M:%S"
# Appended to the creation and validation answers.
CAMPAIGN_SCHEDULED_NOTE = "; empieza el {at}"
DAYS_ESTIMATE_NOTE = (
    "Con el límite diario del portafolio '{portfolio}' ({limit} destinatarios únicos en 24 horas, {available} "
    "disponibles ahora) la campaña tardará unos {days} días."
)
UNLIMITED = "ilimitado"

# Log lines.
LOG_WAITING = "Campaña %s en espera: %s"
LOG_WOKEN = "Campaña %s arranca (%s)"
LOG_PORTFOLIO_LIMIT = "Portafolio %s: nuevo límite diario %s (notificación de WhatsApp)"
# --- templates: the template check of crear-campana / validar-campana and rich templates (webapi/templates.py) ---

# Notes (`notas`) when the template was not checked, or its quality is at risk.
NOTE_TEMPLATE_NOT_CHECKED_NO_WABA = (
    "La plantilla no se comprobó con WhatsApp: el buzón '{buzon}' no tiene WABA id (regístrelo con "
    "'buzon add ... --waba-id' para comprobar plantilla, idioma y parámetros antes de enviar)"
)
NOTE_TEMPLATE_NOT_CHECKED_UNAVAILABLE = (
    "La plantilla no se pudo comprobar con WhatsApp ({cause}); se siguió sin esa comprobación: si la plantilla "
    "no coincide, el primer envío detiene la campaña"
)
NOTE_TEMPLATE_QUALITY = (
    "La calidad de la plantilla es {quality}: WhatsApp puede retener o pausar sus envíos; revise su contenido"
)
# The {cause} of NOTE_TEMPLATE_NOT_CHECKED_UNAVAILABLE.
TEMPLATE_CAUSE_TIMEOUT = "WhatsApp no respondió en {seconds:g} s"
TEMPLATE_CAUSE_NETWORK = "no se pudo conectar con WhatsApp: {error}"
TEMPLATE_CAUSE_ERROR = "WhatsApp respondió HTTP {status}, error {code}"
TEMPLATE_CAUSE_UNREADABLE = "respuesta de WhatsApp ilegible"

# Refusals (422) of the template check.
TEMPLATE_LISTING_REFUSED = (
    "WhatsApp no dejó leer las plantillas de la cuenta {waba_id} del buzón '{buzon}' (error {code}: {detail}). "
    "Corrija el token o el WABA id del buzón con 'buzon add ... --waba-id'"
)
TEMPLATE_NOT_FOUND = (
    "La plantilla '{name}' no existe en la cuenta de WhatsApp del buzón. Revise el nombre (como en WhatsApp "
    "Manager, en minúsculas y con guiones bajos)"
)
TEMPLATE_LANGUAGE_NOT_FOUND = (
    "La plantilla '{name}' no existe en el idioma '{language}'. Idiomas disponibles: {languages}. Indique uno de "
    "ellos en 'idioma'"
)
TEMPLATE_NOT_APPROVED = "La plantilla '{name}' ({language}) está en estado {status} y no se puede enviar: {hint}"
TEMPLATE_STATUS_HINTS = {
    "PENDING": "espere a que WhatsApp la apruebe",
    "REJECTED": "WhatsApp la rechazó; corríjala en WhatsApp Manager o use otra",
    "PAUSED": "WhatsApp la pausó por baja calidad; espere a que se reactive o use otra",
    "DISABLED": "WhatsApp la deshabilitó por baja calidad; use otra plantilla",
    "IN_APPEAL": "está en apelación; espere la decisión de WhatsApp",
}
TEMPLATE_STATUS_HINT_OTHER = "use una plantilla aprobada (APPROVED)"
TEMPLATE_NO_PARAMETERS = "ninguno"
TEMPLATE_NO_COLUMNS = "ninguna"
TEMPLATE_NONE = "ninguna"
TEMPLATE_WANTS_NAMED = (
    "La plantilla '{name}' usa parámetros con nombre ({expected}): envíe parametros_nombrados=true con una "
    "columna por parámetro, llamada como él"
)
TEMPLATE_WANTS_POSITIONAL = (
    "La plantilla '{name}' usa parámetros posicionales ({expected}): envíe parametros_nombrados=false, con las "
    "columnas en ese orden"
)
TEMPLATE_BODY_COUNT = (
    "La plantilla '{name}' espera {expected} parámetros en el cuerpo ({placeholders}) y el archivo trae {count} "
    "columnas de parámetros ({columns}). Agregue o quite columnas para que coincidan"
)
TEMPLATE_BODY_NAMES = (
    "Las columnas no coinciden con los parámetros de la plantilla '{name}' ({placeholders}): faltan {missing}; "
    "sobran {extra}. Renombre las columnas como los parámetros"
)

# Header and buttons: what the template needs and what the file or the request supply.
HEADER_KIND_NAMES = {"text": "texto", "image": "imagen", "video": "video", "document": "documento"}
BUTTON_KIND_NAMES = {"url": "url", "quick_reply": "respuesta_rapida"}
HEADER_GIVEN_TWICE = (
    "El encabezado viene a la vez de la columna '{column}' y de encabezado_valor: use solo uno de los dos"
)
HEADER_LOCATION_UNSUPPORTED = (
    "La plantilla '{name}' tiene un encabezado de ubicación, que este servicio todavía no puede llenar: use otra"
)
HEADER_MISSING = (
    "La plantilla '{name}' necesita un encabezado de tipo {kind}: agregue una columna 'encabezado' (un valor "
    "por fila) o envíe encabezado_valor para toda la campaña"
)
HEADER_NOT_EXPECTED = (
    "La plantilla '{name}' no tiene encabezado variable: quite la columna 'encabezado' o el campo encabezado_valor"
)
HEADER_KIND_MISMATCH = "El encabezado de la plantilla '{name}' es de tipo {kind}, no {asked}: corrija encabezado_tipo"
HEADER_KIND_NEEDED = (
    "Indique encabezado_tipo (texto, imagen, video o documento) para el encabezado: el buzón no tiene WABA id y "
    "no se puede saber de la plantilla"
)
HEADER_VALUE_NEEDED = "Se indicó encabezado_tipo sin valor: agregue una columna 'encabezado' o envíe encabezado_valor"
HEADER_LINK_INVALID = "encabezado_valor '{value}' no es un enlace https:// válido (WhatsApp descarga el archivo de ahí)"
FILENAME_NOT_DOCUMENT = "El nombre de archivo solo se usa con un encabezado de tipo documento"
FILENAME_GIVEN_TWICE = (
    "El nombre de archivo viene a la vez de la columna '{column}' y de encabezado_nombre_archivo: use solo uno"
)
BUTTON_GIVEN_TWICE = "El botón {index} recibe valor dos veces (dos columnas, o columna y 'botones'): use solo uno"
BUTTON_NO_SUCH = "La plantilla '{name}' tiene {count} botones (índices desde 0): no hay botón {index}"
BUTTON_KIND_MISMATCH = "El botón {index} de la plantilla es de tipo {kind}, no se le puede dar un valor de tipo {asked}"
BUTTON_URL_FIXED = "El botón {index} tiene una URL fija, sin variable: quite su columna o su valor en 'botones'"
BUTTON_UNSUPPORTED = "El botón {index} de la plantilla es de tipo {kind}, que este servicio todavía no puede llenar"
BUTTON_MISSING = (
    "La plantilla '{name}' necesita el final de la URL del botón {index}: agregue una columna 'boton_{index}_url' "
    'o envíe \'botones\' con {{"indice": {index}, "tipo": "url", "valor": ...}}'
)
# The `botones` form field, and the columns of the file.
BUTTONS_NOT_JSON = '\'botones\' debe ser una lista JSON como [{"indice": 0, "tipo": "url", "valor": "abc"}]'
BUTTONS_ENTRY_INVALID = (
    "El elemento {position} de 'botones' debe tener 'indice' (0 a 9), 'tipo' (url o respuesta_rapida) y 'valor' "
    "(texto no vacío)"
)
RICH_COLUMN_REPEATED = "Estas columnas llenan lo mismo (encabezado o botón): {columns}. Deje solo una"
ROW_LINK_INVALID = "el enlace de '{column}' no es una dirección https:// válida"
# How validar-campana names the header and button values of a row (its `parametro`).
PREVIEW_HEADER = "encabezado"
PREVIEW_FILENAME = "encabezado (nombre de archivo)"
PREVIEW_BUTTON = "botón {index} ({kind})"
# --- signals: template, quality and account notifications; held messages; costs --------------------------------

# The `motivo` of a template status learnt from a refused send; {code} is its error code (132015 or 132016).
TEMPLATE_REFUSED_REASON = "WhatsApp rechazó un envío con la plantilla (error {code})."
# Why a campaign was paused by a notification (its `motivo`).
PAUSE_TEMPLATE_PAUSED = (
    "WhatsApp pausó la plantilla '{template}' ({language}) por baja calidad. Reanude la campaña cuando WhatsApp "
    "la apruebe de nuevo, o cree otra campaña con otra plantilla."
)
PAUSE_TEMPLATE_DISABLED = (
    "WhatsApp deshabilitó la plantilla '{template}' ({language}). Solo podrá reanudarse si WhatsApp la aprueba de "
    "nuevo; mientras tanto use otra plantilla."
)
PAUSE_LOW_QUALITY = (
    "WhatsApp bajó la calidad del número {number} al nivel más bajo ({event}). La campaña se pausó para proteger "
    "el número: revise los reportes y bloqueos en el administrador de WhatsApp antes de reanudarla."
)
# The `reason` of a refused resume (inside ACTION_REFUSED).
RESUME_TEMPLATE_BLOCKED = (
    "WhatsApp informó que la plantilla '{template}' ({language}) está {status} desde {since}; podrá reanudarse "
    "cuando WhatsApp la apruebe de nuevo (APPROVED)"
)
TEMPLATE_STATUS_NAMES = {"PAUSED": "pausada", "DISABLED": "deshabilitada"}
LOG_SIGNAL_PAUSED = "Campaña %s pausada por un aviso de WhatsApp (%s %s)"
WARNING_LOW_QUALITY = "WhatsApp marcó la calidad del número del buzón '{buzon}' como baja (FLAGGED, {since})."

# The cost estimate of validar-campana and estado-cola (rate card from RATE_CARD_FILE).
NOTE_COST_CATEGORY_TEMPLATE = "El costo estimado usa la categoría '{category}' que informó WhatsApp para la plantilla."
NOTE_COST_CATEGORY_FORM = "El costo estimado usa la categoría '{category}' indicada en el campo 'categoria'."
NOTE_COST_CATEGORY_DEFAULT = (
    "El costo estimado supone la categoría 'marketing' (la más cara); indique 'categoria' si la plantilla es de "
    "utilidad o de autenticación."
)
NOTE_COST_NO_RATE = (
    "Sin tarifa de '{category}' para {count} destinatario(s) de +{codes}: no están en el costo estimado; agregue "
    "esos países (o una fila '*') a la tarifa."
)
RATE_CARD_UNREADABLE = "La tarifa de RATE_CARD_FILE ({path}) no se pudo leer: {error}"
RATE_CARD_BAD_ROW = "fila {row}: {problem}"
RATE_CARD_BAD_PRICE = "el precio {value!r} no es un número mayor o igual a 0"
RATE_CARD_BAD_CATEGORY = "la categoría {value!r} no es marketing, utility, authentication ni service"
RATE_CARD_BAD_CODE = "el código de país {value!r} no es un número como 58 ni '*'"
RATE_CARD_MISSING_COLUMNS = "faltan las columnas {columns} (se esperan categoria, codigo_pais, precio)"
RATE_CARD_BAD_SHAPE = "se espera un objeto con 'tarifas': {{categoría: {{código de país: precio}}}}"
# --- opt-outs and the per-user marketing limit -----------------------------------------------------------------

# A row of an upload left out because its number is on the suppression list.
ROW_SUPPRESSED = "el número se dio de baja y no recibe mensajes de este buzón"
# The detail of a recipient skipped at its turn because its number opted out meanwhile.
SUPPRESSED_AT_SEND = "El número se dio de baja antes de su turno; no se le envió."
# The detail of a recipient refused for the per-user marketing limit, waiting for its one retry.
DEFERRED_DETAIL = (
    "WhatsApp limitó los mensajes de marketing a este usuario (131049); se reintenta una vez desde {at} UTC."
)
# The motivo of a campaign that has sent everything else and waits for its deferred recipients.
WAITING_DEFERRED = (
    "Esperando a {count} destinatario(s) diferido(s) por el límite de marketing por usuario (131049); se "
    "reintentan desde {at} UTC. La campaña termina cuando se resuelvan."
)
LOG_DEFERRED_RELEASED = "Campaña %s: %d destinatario(s) diferido(s) por 131049 vuelven a la cola"
# Answers of /api/bajas.
OPTOUT_ALL_BUZONES = "todos los buzones"
OPTOUT_ADDED = "El número {phone} quedó dado de baja para {where}."
OPTOUT_ALREADY = "El número {phone} ya estaba dado de baja para {where}."
OPTOUT_LIFTED = "Se levantó la baja del número {phone} en: {where}."
OPTOUT_NOT_FOUND = "El número {phone} no tiene una baja vigente{where}."
OPTOUT_NOT_FOUND_IN = " en el buzón '{buzon}'"
OPTOUT_PHONE_INVALID = (
    "El teléfono '{value}' no es válido: {reason}. Escríbalo con el código de país, por ejemplo +58..."
)
OPTOUT_BUZON_REQUIRED = (
    "Su credencial está limitada a los buzones {allowed}: indique en 'buzon' cuál de ellos (una baja para todos "
    "los buzones la da un usuario sin límite de buzones)."
)
OPTOUT_BUZON_NOT_ALLOWED = "No puede gestionar bajas del buzón '{buzon}'. Buzones permitidos: {allowed}."
OPTOUT_BUZON_UNKNOWN = "El buzón '{buzon}' no está registrado. Use uno de: {known}, o '*' para todos los buzones."
