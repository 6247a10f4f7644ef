"""Sorting WhatsApp Cloud API errors by what the sender must do about them."""

from __future__ import annotations

from enum import Enum


class ErrorKind(Enum):
    """What a send error means for the message and its campaign."""

    TRANSIENT = "transient"      # retry the same message with backoff
    RECIPIENT = "recipient"      # this recipient fails now; the campaign goes on
    CAMPAIGN = "campaign"        # every message would fail the same way: stop the campaign
    ACCOUNT = "account"          # credentials, quality or account trouble: pause until someone acts


# Codes that mean "try again later"; network errors, timeouts and 5xx are transient too.
_TRANSIENT = {130429, 131056, 4, 80007, 131057, 131000, 131016, 1, 2}
_CAMPAIGN = {132000, 132001, 132005, 132007, 132012}
_ACCOUNT = {131048, 132015, 132016, 190, 10, 368, 131031, 131042}

# Spanish explanations an operator can act on, shown in estado-cola and the worker log.
REASONS = {
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


def classify(code: int | None, http_status: int | None = None) -> ErrorKind:
    """Decide on the error code (Meta's advice), falling back to the HTTP status only when there is none."""
    if code is None:
        if http_status is None or http_status >= 500 or http_status == 429:
            return ErrorKind.TRANSIENT
        return ErrorKind.RECIPIENT
    if code in _TRANSIENT:
        return ErrorKind.TRANSIENT
    if code in _CAMPAIGN:
        return ErrorKind.CAMPAIGN
    if code in _ACCOUNT or 200 <= code <= 299:
        return ErrorKind.ACCOUNT
    if http_status is not None and http_status >= 500:
        return ErrorKind.TRANSIENT
    return ErrorKind.RECIPIENT


def describe(code: int | None, detail: str | None = None) -> str:
    """A sentence for the operator: our explanation of the code, or Meta's detail when we have none."""
    if code in REASONS:
        return REASONS[code]
    if 200 <= (code or 0) <= 299:
        return f"Permiso denegado por WhatsApp ({code}). Revise los permisos del token del buzón."
    if code is None:
        return f"Error de red o de WhatsApp: {detail}" if detail else "Error de red o de WhatsApp."
    return f"WhatsApp respondió con el error {code}: {detail}" if detail else f"WhatsApp respondió con el error {code}."
