"""Meta's warnings on demand: template status, number quality and account notifications, and template pacing.

Control routes post one signed notification each, in the shape Meta documents, to the configured webhook_url
and answer with the receiver's HTTP status and the body posted:

- POST /_sandbox/signals/template-status {template, language, event, reason?, template_id?, timestamp?}
  (message_template_status_update). PAUSED and DISABLED also make later sends of the template answer
  132015 / 132016; any other event (APPROVED ...) lifts that.
- POST /_sandbox/signals/quality {phone_number_id, event, current_limit?, old_limit?, timestamp?}
  (phone_number_quality_update; the number is named by its display digits, as Meta does).
- POST /_sandbox/signals/account-alert {entity_type?, entity_id?, alert_severity, alert_status?, alert_type,
  alert_description?, timestamp?} (account_alerts).
- POST /_sandbox/signals/account-update {event, phone_number_id?, detail?, timestamp?} (account_update).

Send answers: `held_recipients` / `held_templates` make the answer's messages[0].message_status
held_for_quality_assessment or paused instead of accepted (the message is accepted all the same and its
statuses follow).
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import httptools
from aiohttp import web

from .poster import post_signed
from .settings import TEMPLATE_BLOCKS, SandboxSettings

_JSON = "application/json"
_encode_json = json.JSONEncoder(separators=(",", ":")).encode


class _BadSignal(ValueError):
    """A control request the sandbox cannot turn into a notification."""


def blocked_template(settings: SandboxSettings, name: str | None, language: str | None) -> tuple[int, str] | None:
    """The Cloud API's error for sending a paused (132015) or disabled (132016) template, or None."""
    status = settings.template_statuses.get(f"{name}:{language}") or settings.template_statuses.get(name or "")
    if status == "PAUSED":
        return 132015, f"Template {name} ({language}) is paused due to low quality."
    if status == "DISABLED":
        return 132016, f"Template {name} ({language}) has been disabled due to low quality."
    return None


def message_status(settings: SandboxSettings, record: dict[str, Any]) -> str:
    """messages[0].message_status of an accepted send: accepted, or the pacing configured for it."""
    if settings.held_recipients:
        held = settings.held_recipients.get(record["wa_id"])
        if held:
            return held
    if settings.held_templates and record.get("template"):
        held = settings.held_templates.get(record["template"])
        if held:
            return held
    return "accepted"


def _text(options: dict, key: str, *, required: bool = False, default: str | None = None) -> str | None:
    """A string option of a control request."""
    value = options.get(key, default)
    if value is None:
        if required:
            raise _BadSignal(f"{key} is required")
        return None
    if not isinstance(value, (str, int)) or isinstance(value, bool) or value == "":
        raise _BadSignal(f"{key} must be a non-empty string")
    return str(value)


def _timestamp(options: dict) -> int:
    """The notification's time: the request's `timestamp`, or now."""
    value = options.get("timestamp")
    if value is None:
        return int(time.time())
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _BadSignal("timestamp must be a Unix time in seconds")
    return value


def _notification(settings: SandboxSettings, field: str, value: dict, ts: int) -> dict:
    """A webhook body carrying one change of `field`, as Meta posts account-level notifications."""
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": settings.waba_id, "time": ts, "changes": [{"value": value, "field": field}]}],
    }


def template_status_change(sandbox: Any, options: dict) -> dict:
    """Build a message_template_status_update and keep the sandbox's template status in step with it."""
    settings: SandboxSettings = sandbox.settings
    name = _text(options, "template", required=True)
    language = _text(options, "language", default="es")
    event = (_text(options, "event", required=True) or "").upper()
    ts = _timestamp(options)
    # A stable id per name, shaped like Meta's numeric template ids.
    digest = hashlib.md5((name or "").encode(), usedforsecurity=False).hexdigest()
    template_id = _text(options, "template_id") or str(int(digest[:12], 16))
    value: dict[str, Any] = {
        "event": event,
        "message_template_id": int(template_id) if template_id.isdigit() else template_id,
        "message_template_name": name,
        "message_template_language": language,
        "reason": _text(options, "reason") or "NONE",
    }
    if event in TEMPLATE_BLOCKS:
        value["other_info"] = {
            "title": "FIRST_PAUSE" if event == "PAUSED" else "DISABLED",
            "description": f"Your template {name} has been {event.lower()} due to low quality.",
        }
    statuses = {k: v for k, v in settings.template_statuses.items() if k not in (name, f"{name}:{language}")}
    if event in TEMPLATE_BLOCKS:
        statuses[f"{name}:{language}"] = event
    sandbox.configure({"template_statuses": statuses})
    return _notification(settings, "message_template_status_update", value, ts)


def quality_change(sandbox: Any, options: dict) -> dict:
    """Build a phone_number_quality_update for one of the sandbox's numbers."""
    settings: SandboxSettings = sandbox.settings
    number = _text(options, "phone_number_id", required=True) or ""
    value: dict[str, Any] = {
        "display_phone_number": settings.display_phone_numbers.get(number, number),
        "event": (_text(options, "event", required=True) or "").upper(),
        "current_limit": _text(options, "current_limit", default="TIER_2K"),
    }
    if options.get("old_limit") is not None:
        value["old_limit"] = _text(options, "old_limit")
    return _notification(settings, "phone_number_quality_update", value, _timestamp(options))


def account_alert(sandbox: Any, options: dict) -> dict:
    """Build an account_alerts notification."""
    settings: SandboxSettings = sandbox.settings
    alert_type = _text(options, "alert_type", required=True)
    value = {
        "entity_type": _text(options, "entity_type", default="WABA"),
        "entity_id": _text(options, "entity_id", default=settings.waba_id),
        "alert_info": {
            "alert_severity": _text(options, "alert_severity", default="WARNING"),
            "alert_status": _text(options, "alert_status", default="ACTIVE"),
            "alert_type": alert_type,
            "alert_description": _text(options, "alert_description", default=f"{alert_type} (sandbox alert)"),
        },
    }
    return _notification(settings, "account_alerts", value, _timestamp(options))


def account_update(sandbox: Any, options: dict) -> dict:
    """Build an account_update notification, about one number when phone_number_id is given."""
    settings: SandboxSettings = sandbox.settings
    value: dict[str, Any] = {"event": (_text(options, "event", required=True) or "").upper()}
    number = _text(options, "phone_number_id")
    if number:
        value["phone_number"] = settings.display_phone_numbers.get(number, number)
    detail = options.get("detail")
    if isinstance(detail, dict):
        value.update({str(k): v for k, v in detail.items()})
    return _notification(settings, "account_update", value, _timestamp(options))


_BUILDERS = {
    "template-status": template_status_change,
    "quality": quality_change,
    "account-alert": account_alert,
    "account-update": account_update,
}


def add_signal_routes(app: web.Application, key: web.AppKey) -> None:
    """Register the control routes that post template, quality and account notifications."""

    async def post_signal(request: web.Request) -> web.Response:
        """POST /_sandbox/signals/{kind}: build the notification and post it to webhook_url."""
        sandbox = request.app[key]
        builder = _BUILDERS.get(request.match_info["kind"])
        if builder is None:
            return _answer({"error": f"unknown signal; use one of {', '.join(_BUILDERS)}"}, 404)
        try:
            raw = await request.read()
            options = json.loads(raw) if raw.strip() else {}
            if not isinstance(options, dict):
                raise _BadSignal("the body must be a JSON object")
            body = builder(sandbox, options)
        except (ValueError, _BadSignal) as exc:
            return _answer({"error": str(exc)}, 400)
        settings = sandbox.settings
        if not settings.webhook_url:
            return _answer({"error": "webhook_url is not set: nothing to post to", "body": body}, 409)
        try:
            status = await post_signed(settings, body)
        except (TimeoutError, OSError, ValueError, httptools.HttpParserError) as exc:
            return _answer({"error": f"{type(exc).__name__}: {exc}", "body": body}, 502)
        return _answer({"status": "ok", "http_status": status, "body": body})

    app.router.add_post("/_sandbox/signals/{kind}", post_signal)


def _answer(data: dict, status: int = 200) -> web.Response:
    """A control route's JSON answer."""
    return web.Response(status=status, body=json.dumps(data).encode(), content_type=_JSON)
