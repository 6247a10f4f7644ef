"""WhatsApp status webhooks: Meta's verification handshake (the notifications themselves: webapi/intake.py)."""

from __future__ import annotations

import hmac
import logging

from flask import Blueprint, Response, request

from tasks import texts
from webapi.context import runtime
from webapi.errors import ApiError

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")
log = logging.getLogger("webapi.webhooks")


def _settings():
    """The app's settings."""
    return runtime().settings


@bp.get("/whatsapp")
def verify():
    """Answer Meta's subscription check with the challenge when the verify token matches."""
    expected = _settings().whatsapp_verify_token
    token = request.args.get("hub.verify_token", "")
    if (
        request.args.get("hub.mode") == "subscribe"
        and expected
        and hmac.compare_digest(token.encode(), expected.encode())
    ):
        return Response(request.args.get("hub.challenge", ""), mimetype="text/plain")
    raise ApiError(403, texts.WEBHOOK_VERIFY_REFUSED)


# POST /webhooks/whatsapp (the notifications) is taken before Flask: see webapi/intake.py.
