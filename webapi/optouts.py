"""What the API does with the suppression list (/api/bajas), as plain functions over the store.

Nothing here reads the request; a change leaves what it did on `flask.g.audit_details` for the audit entry
(webapi/audit.py), refused changes included.
"""

from __future__ import annotations

from flask import g

from tasks import texts
from tasks.optouts import ALL_BUZONES
from tasks.runtime import Runtime
from webapi.access import Caller
from webapi.contacts import InvalidPhone, mask_value, normalize_phone
from webapi.errors import ApiError

#: How each source of an opt-out is named in the answers.
SOURCE_NAMES = {
    "manual": "manual",
    "send_error": "131050",
    "user_preferences": "user_preferences",
    "keyword": "palabra_clave",
}


def _phone(runtime: Runtime, raw: str) -> str:
    """The number as the store keeps it, or a 422 that says what is wrong with it."""
    try:
        return normalize_phone(raw, runtime.settings.default_region)
    except InvalidPhone as exc:
        raise ApiError(
            422, texts.OPTOUT_PHONE_INVALID.format(value=mask_value(raw), reason=exc.reason), {"field": "telefono"}
        ) from None


def _where(buzones: list[str]) -> str:
    """The buzones of an answer in words ('*' is every buzón)."""
    return ", ".join(texts.OPTOUT_ALL_BUZONES if b == ALL_BUZONES else f"'{b}'" for b in buzones)


def _check_buzon(runtime: Runtime, buzon: str | None, caller: Caller, *, required: bool) -> str | None:
    """The buzón an opt-out change is for: one the caller may act on and that exists, or '*' (unlimited callers)."""
    allowed = caller.scope
    if buzon is None:
        if allowed is not None and required:
            raise ApiError(422, texts.OPTOUT_BUZON_REQUIRED.format(allowed=", ".join(allowed)), {"field": "buzon"})
        return None
    if buzon == ALL_BUZONES:
        if allowed is not None:
            raise ApiError(403, texts.OPTOUT_BUZON_REQUIRED.format(allowed=", ".join(allowed)), {"field": "buzon"})
        return buzon
    if not caller.may_use(buzon):
        raise ApiError(
            403,
            texts.OPTOUT_BUZON_NOT_ALLOWED.format(buzon=buzon, allowed=", ".join(allowed or [])),
            {"field": "buzon", "buzones": allowed},
        )
    if runtime.store.get_sender(buzon) is None:
        known = [s["buzon"] for s in runtime.store.list_senders() if caller.may_use(s["buzon"])]
        raise ApiError(
            422, texts.OPTOUT_BUZON_UNKNOWN.format(buzon=buzon, known=", ".join(known) or "-"), {"field": "buzon"}
        )
    return buzon


def _entry(row: dict, full_phones: bool) -> dict:
    """One opt-out in the API's field names."""
    return {
        "telefono": row["phone"] if full_phones else mask_value(row["phone"]),
        "buzon": row["buzon"],
        "todos_los_buzones": row["buzon"] == ALL_BUZONES,
        "origen": SOURCE_NAMES.get(row["source"], row["source"]),
        "motivo": row.get("reason"),
        "desde": row.get("since"),
        "campaign_id": row.get("campaign_id"),
        "registrado_por": row.get("actor"),
    }


def list_optouts(runtime: Runtime, query: dict, caller: Caller, full_phones: bool) -> dict:
    """A page of the opt-outs in force that concern the caller's buzones, newest first."""
    buzon = query["buzon"]
    if buzon is not None and buzon != ALL_BUZONES and not caller.may_use(buzon):
        raise ApiError(
            403,
            texts.OPTOUT_BUZON_NOT_ALLOWED.format(buzon=buzon, allowed=", ".join(caller.scope or [])),
            {"field": "buzon"},
        )
    phone = _phone(runtime, query["telefono"]) if query["telefono"] else None
    page, per_page = query["pagina"], query["por_pagina"]
    rows, total = runtime.store.list_suppressions(caller.scope, buzon, phone, per_page, (page - 1) * per_page)
    return {
        "success": True,
        "bajas": [_entry(r, full_phones) for r in rows],
        "total": total,
        "pagina": page,
        "por_pagina": per_page,
    }


def add_optout(runtime: Runtime, body: dict, caller: Caller) -> tuple[dict, bool]:
    """Put a number on the suppression list of a buzón ('*' or none given: every buzón); returns the answer
    and whether it was new."""
    phone = _phone(runtime, body["telefono"])
    buzon = _check_buzon(runtime, body["buzon"], caller, required=True) or ALL_BUZONES
    added = runtime.store.add_suppression(buzon, phone, body["motivo"], caller.label)
    g.audit_details = {"telefono": phone, "buzon": buzon, "nueva": added}
    where = _where([buzon])
    message = (texts.OPTOUT_ADDED if added else texts.OPTOUT_ALREADY).format(phone=mask_value(phone), where=where)
    return {"success": True, "message": message, "telefono": phone, "buzon": buzon, "nueva": added}, added


def lift_optout(runtime: Runtime, query: dict, caller: Caller) -> dict:
    """Lift a number's opt-outs: of one buzón, or of every buzón the caller may act on."""
    phone = _phone(runtime, query["telefono"])
    buzon = _check_buzon(runtime, query["buzon"], caller, required=False)
    lifted = runtime.store.lift_suppression(phone, buzon, caller.scope, caller.label)
    g.audit_details = {"telefono": phone, "buzon": buzon, "levantadas": lifted}
    if not lifted:
        where = texts.OPTOUT_NOT_FOUND_IN.format(buzon=buzon) if buzon else ""
        raise ApiError(404, texts.OPTOUT_NOT_FOUND.format(phone=mask_value(phone), where=where), {"field": "telefono"})
    return {
        "success": True,
        "message": texts.OPTOUT_LIFTED.format(phone=mask_value(phone), where=_where(lifted)),
        "telefono": phone,
        "buzones": lifted,
    }
