"""The audit log: every campaign action and every refused request (401, 403) is written to the store."""

from __future__ import annotations

import logging

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from webapi.context import runtime

log = logging.getLogger("webapi.audit")

#: Action names of the views that change something, and of the export (it hands out every phone number of
#: a campaign); the action view says which one in its URL.
_ACTIONS = {
    "api.create_campaign": "create",
    "api.retry_campaign": "retry",
    "api.export_results": "export",
    "api.reschedule_campaign": "reschedule",
    "api.add_optout": "optout.add",
    "api.lift_optout": "optout.lift",
}
_CAMPAIGN_ACTIONS = {"pausar": "pause", "reanudar": "resume", "cancelar": "cancel"}


def actor_fields(caller) -> dict:
    """Who did it, as stored in the log."""
    if caller is None:
        return {"actor": None, "actor_email": None, "actor_kind": "anonymous"}
    return {"actor": caller.id, "actor_email": caller.email, "actor_kind": caller.kind}


def _action() -> str | None:
    """The action this request attempted, or None for a read."""
    if request.endpoint == "api.campaign_action":
        return _CAMPAIGN_ACTIONS.get((request.view_args or {}).get("action") or "")
    return _ACTIONS.get(request.endpoint or "")


def _buzon() -> str | None:
    """The buzón an upload asked for."""
    if request.endpoint != "api.create_campaign":
        return None
    try:
        source = request.get_json(silent=True) if request.is_json else request.form
    except (RecursionError, HTTPException):  # a body too deep or too large, already refused (webapi.bodies)
        return None
    return source.get("buzon") if source is not None and hasattr(source, "get") else None


def _entry(response: Response) -> dict | None:
    """The audit entry for this request, or None when it needs none."""
    action = _action()
    refused = response.status_code in (401, 403) and (request.path.startswith("/api/") or g.get("refused_origin"))
    if action is None and not refused:
        return None
    body = response.get_json(silent=True) if response.is_json else None
    body = body if isinstance(body, dict) else {}
    view_args = request.view_args or {}
    campaign_id = view_args.get("campaign_id") or body.get("campaign_id")
    buzon = _buzon()
    outcome = "ok" if response.status_code < 400 else ("refused" if refused else "error")
    details: dict[str, object] = {"method": request.method, "path": request.path}
    if outcome != "ok":
        details["message"] = body.get("message")
    if g.get("refused_origin"):
        details["origin"] = g.refused_origin
    details.update(g.get("audit_details") or {})  # what the view says it changed (an opt-out's phone...)
    buzon = buzon or (g.get("audit_details") or {}).get("buzon")
    return {
        **actor_fields(g.get("caller")),
        "action": action or "access",
        "campaign_id": campaign_id,
        "buzon": buzon,
        "status_code": response.status_code,
        "outcome": outcome,
        "ip": request.remote_addr,
        "user_agent": (request.user_agent.string or "")[:500] or None,
        "details": details,
    }


def _record(response: Response) -> Response:
    """Write the entry after the answer is decided; a store failure is logged, never shown to the caller."""
    entry = _entry(response)
    if entry is not None and g.get("database_unavailable"):
        # The log lives in the database that just did not answer: say so here instead of waiting for it again.
        log.warning(
            "Audit entry for %s %s not written: the database is unavailable", entry["action"], entry["campaign_id"]
        )
    elif entry is not None:
        try:
            runtime().store.record_audit(entry)
        except Exception as exc:
            log.error(
                "Audit entry for %s %s not written (%s)", entry["action"], entry["campaign_id"], type(exc).__name__
            )
    return response


def record_command(store, actor: str, action: str, details: dict, buzon: str | None = None) -> None:
    """Log a change made from the command line (keys, users, buzones)."""
    store.record_audit(
        {
            "actor": actor,
            "actor_kind": "cli",
            "action": action,
            "buzon": buzon,
            "status_code": 0,
            "outcome": "ok",
            "details": details,
        }
    )


def install(app: Flask) -> None:
    """Record audit entries after every request."""
    app.after_request(_record)
