"""WhatsApp status webhooks: Meta's verification handshake, and signed notifications recorded for a task."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging

from flask import Blueprint, Response, jsonify, request

from tasks import metrics, texts
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


# The result label of wcq_webhook_notifications_received for each refusal.
_REFUSALS = {400: "invalid", 401: "bad_signature", 413: "too_large", 503: "unavailable"}


@bp.post("/whatsapp")
def receive():
    """Check the signature over the raw body, keep the body for the worker, acknowledge at once."""
    try:
        answer = _receive()
    except ApiError as exc:
        metrics.WEBHOOKS_RECEIVED.labels(_REFUSALS.get(exc.status, "refused")).inc()
        raise
    metrics.WEBHOOKS_RECEIVED.labels("accepted").inc()
    return answer


def _receive():
    """The checks and the push of `receive`."""
    settings = _settings()
    limit = settings.webhook_max_body_kb * 1024
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, texts.WEBHOOK_TOO_LARGE.format(limit_kb=settings.webhook_max_body_kb))
    raw = request.stream.read(limit + 1)
    if len(raw) > limit:
        raise ApiError(413, texts.WEBHOOK_TOO_LARGE.format(limit_kb=settings.webhook_max_body_kb))
    secret = settings.whatsapp_app_secret
    if not secret:
        raise ApiError(503, texts.WEBHOOK_NO_SECRET)
    signature = request.headers.get("X-Hub-Signature-256", "")
    expected = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(signature.encode(), expected.encode()):
        log.warning("Webhook refused: %s signature", "missing" if not signature else "wrong")
        raise ApiError(401, texts.WEBHOOK_BAD_SIGNATURE)
    try:
        body = json.loads(raw)
    except ValueError:
        raise ApiError(400, texts.WEBHOOK_NOT_JSON) from None
    if not isinstance(body, dict):
        raise ApiError(400, texts.WEBHOOK_NOT_OBJECT)
    rt = runtime()
    try:
        if rt.inbox.push(raw):
            rt.queue.schedule_webhooks()
    except Exception:
        # Not acknowledged: Meta sends it again later.
        raise ApiError(503, texts.WEBHOOK_NOT_RECORDED) from None
    return jsonify({"success": True})
