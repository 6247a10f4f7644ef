"""Every Spanish text an operator reads, in one catalogue; code keeps English identifiers.

Each text is a format string with named fields, so callers never build Spanish sentences themselves and a
reviewer can read (and a translator change) every message in one place. Sections follow who shows them.
"""

from __future__ import annotations

# --- contacts: problems with an uploaded file or contact list (422 with row numbers) ----------------------

# --- api: answers of the HTTP routes --------------------------------------------------------------------------

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
