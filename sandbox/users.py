"""What recipients do on their side: stop (or resume) marketing messages, and reply with a text.

A recipient who opts out gets every later marketing template refused with 131050, and the sandbox posts the
`user_preferences` notification WhatsApp sends (category marketing_messages, value stop or resume). A reply is
posted as an inbound message notification (`value.messages[]` of type text, with `value.contacts[]`). Both
are signed like the status webhooks and posted to webhook_url at once; the admin call answers with the
receiver's HTTP status.

Admin routes:
- POST /_sandbox/users/{wa_id}/opt-out  {"phone_number_id": "...", "timestamp": 1731705721, "webhook": true}
- POST /_sandbox/users/{wa_id}/opt-in   (same body; value resume)
- POST /_sandbox/inbound  {"from": "584141234567", "text": "BAJA", "phone_number_id": "...", "timestamp": ...}
- GET  /_sandbox/users  the recipients who opted out, per phone_number_id
"""

from __future__ import annotations

import base64
import json
import os
import time
from typing import Any

import httptools
from aiohttp import web

from .poster import post_signed
from .settings import SandboxSettings

_encode_json = json.JSONEncoder(separators=(",", ":")).encode
_DETAILS = {
    "stop": "User requested to stop marketing messages",
    "resume": "User requested to resume marketing messages",
}


class UserPreferences:
    """Recipients who stopped marketing messages, per phone_number_id (their business number)."""

    def __init__(self) -> None:
        """Start with nobody opted out."""
        self.opted_out: dict[str, set[str]] = {}  # wa_id -> phone_number_ids

    def reset(self) -> None:
        """Forget every opt-out."""
        self.opted_out.clear()

    def refuses(self, wa_id: str, phone_number_id: str) -> bool:
        """Whether a marketing template from this number to this recipient must be refused (131050)."""
        numbers = self.opted_out.get(wa_id)
        return numbers is not None and phone_number_id in numbers

    def set(self, wa_id: str, phone_number_id: str, stopped: bool) -> None:
        """Record a recipient's choice for one business number."""
        numbers = self.opted_out.setdefault(wa_id, set())
        if stopped:
            numbers.add(phone_number_id)
        else:
            numbers.discard(phone_number_id)
            if not numbers:
                del self.opted_out[wa_id]


def _notification(settings: SandboxSettings, phone_number_id: str, field: str, value: dict[str, Any]) -> dict:
    """A webhook body in Meta's envelope for one change of one business number."""
    display = settings.display_phone_numbers.get(phone_number_id, phone_number_id)
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": settings.waba_id,
                "changes": [
                    {
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {"display_phone_number": display, "phone_number_id": phone_number_id},
                            **value,
                        },
                        "field": field,
                    }
                ],
            }
        ],
    }


async def post_notification(settings: SandboxSettings, body: dict) -> dict[str, Any]:
    """Sign and POST one notification to webhook_url now; returns what the receiver answered."""
    if not settings.webhook_url:
        return {"posted": False, "reason": "webhook_url is not set"}
    try:
        return {"posted": True, "status": await post_signed(settings, body)}
    except (TimeoutError, OSError, ValueError, httptools.HttpParserError) as exc:
        return {"posted": False, "reason": f"{type(exc).__name__}: {exc}"}


def _bad_request(message: str) -> web.HTTPBadRequest:
    """A 400 with the admin routes' JSON error shape."""
    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")


def _digits(value: Any, name: str) -> str:
    """A phone number or id given as digits (a leading + is dropped)."""
    if not isinstance(value, str) or not value.removeprefix("+").isdigit():
        raise _bad_request(f"{name} must be a string of digits")
    return value.removeprefix("+")


def _timestamp(options: dict[str, Any]) -> int:
    """The event's Unix time: given (to rehearse notifications that arrive out of order) or now."""
    value = options.get("timestamp", int(time.time()))
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _bad_request("timestamp must be a Unix time in whole seconds")
    return value


async def _options(request: web.Request) -> dict[str, Any]:
    """The JSON object of an admin call (empty body: {})."""
    raw = await request.read()
    try:
        options = json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise _bad_request("invalid JSON") from None
    if not isinstance(options, dict):
        raise _bad_request("the body must be a JSON object")
    return options


def _handlers(sandbox: Any):
    """The admin route handlers over one sandbox (its settings and its UserPreferences)."""

    async def change_preference(request: web.Request) -> web.Response:
        """POST /_sandbox/users/{wa_id}/opt-out or opt-in: the recipient's choice, and its notification."""
        wa_id = _digits(request.match_info["wa_id"], "wa_id")
        options = await _options(request)
        phone_number_id = _digits(options.get("phone_number_id"), "phone_number_id")
        stopped = request.match_info["choice"] == "opt-out"
        sandbox.users.set(wa_id, phone_number_id, stopped)
        result: dict[str, Any] = {"status": "ok", "wa_id": wa_id, "opted_out": stopped}
        if options.get("webhook", True) is not False:
            value = "stop" if stopped else "resume"
            change = {
                "contacts": [{"wa_id": wa_id, "profile": {"name": str(options.get("name") or "Cliente")}}],
                "user_preferences": [
                    {
                        "wa_id": wa_id,
                        "detail": _DETAILS[value],
                        "category": "marketing_messages",
                        "value": value,
                        "timestamp": _timestamp(options),
                    }
                ],
            }
            body = _notification(sandbox.settings, phone_number_id, "user_preferences", change)
            result["webhook"] = await post_notification(sandbox.settings, body)
        return web.json_response(result)

    async def inbound(request: web.Request) -> web.Response:
        """POST /_sandbox/inbound: a recipient's text reply, posted as an inbound message notification."""
        options = await _options(request)
        sender = _digits(options.get("from"), "from")
        phone_number_id = _digits(options.get("phone_number_id"), "phone_number_id")
        text = options.get("text")
        if not isinstance(text, str):
            raise _bad_request("text must be a string")
        wamid = "wamid." + base64.b64encode(os.urandom(33)).decode()
        change = {
            "contacts": [{"profile": {"name": str(options.get("name") or "Cliente")}, "wa_id": sender}],
            "messages": [
                {
                    "from": sender,
                    "id": wamid,
                    "timestamp": str(_timestamp(options)),
                    "type": "text",
                    "text": {"body": text},
                }
            ],
        }
        body = _notification(sandbox.settings, phone_number_id, "messages", change)
        posted = await post_notification(sandbox.settings, body)
        return web.json_response({"status": "ok", "id": wamid, "webhook": posted})

    async def list_users(request: web.Request) -> web.Response:
        """GET /_sandbox/users: who opted out, per business number."""
        return web.json_response({"opted_out": {w: sorted(n) for w, n in sandbox.users.opted_out.items()}})

    return change_preference, inbound, list_users


def register(app: web.Application, sandbox: Any) -> None:
    """Add the recipients' admin routes to the sandbox application."""
    change_preference, inbound, list_users = _handlers(sandbox)
    app.router.add_post(r"/_sandbox/users/{wa_id}/{choice:opt-out|opt-in}", change_preference)
    app.router.add_post("/_sandbox/inbound", inbound)
    app.router.add_get("/_sandbox/users", list_users)
