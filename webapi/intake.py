"""The notification intake: `POST /webhooks/whatsapp` answered in front of Flask.

WhatsApp posts about three notifications per message sent, one status per POST, so at 1,000 messages/s
the intake takes about 3,000 POSTs/s: Flask's per-request machinery (routing, request context, the
before/after hooks of access control, audit, limits) would cost more than the work. This WSGI layer does
only what the route needs: read the raw body (within WEBHOOK_MAX_BODY_KB), verify its signature on those
bytes (constant-time), check it is a JSON object, keep it in the inbox and schedule a drain, and answer
in the API's JSON shape. Nothing is acknowledged before it is in Redis. Every other request, the
verification handshake (`GET`) included, goes to Flask as before.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from tasks import jsoncodec, metrics, texts
from tasks.config import Settings
from tasks.runtime import Runtime
from webapi.errors import error_body
from webapi.headers import SECURITY_HEADERS

log = logging.getLogger("webapi.webhooks")

PATH = "/webhooks/whatsapp"
# The headers every API answer carries (webapi/headers.py), for these answers too.
HEADERS = [("Content-Type", "application/json"), *SECURITY_HEADERS.items()]

# The result label of wcq_webhook_notifications_received for each answer.
_RESULTS = {"200": "accepted", "400": "invalid", "401": "bad_signature", "413": "too_large", "503": "unavailable"}
_COUNTERS = {code: metrics.WEBHOOKS_RECEIVED.labels(result) for code, result in _RESULTS.items()}
_REFUSED = metrics.WEBHOOKS_RECEIVED.labels("refused")

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict, StartResponse], Iterable[bytes]]
Answer = tuple[str, bytes]  # an HTTP status line and a body


class NotificationCheck:
    """The checks one notification passes before it is kept, shared by this route and the receiver
    (webapi/receiver.py): size, signature on the raw bytes, a JSON object."""

    def __init__(self, settings: Settings):
        self.limit = settings.webhook_max_body_kb * 1024
        self.limit_kb = settings.webhook_max_body_kb
        self.secret = (settings.whatsapp_app_secret or "").encode()

    def too_large(self) -> Answer:
        """The answer to a body over WEBHOOK_MAX_BODY_KB."""
        return error_reply(413, texts.WEBHOOK_TOO_LARGE.format(limit_kb=self.limit_kb))

    def refusal(self, raw: bytes, signature: str) -> Answer | None:
        """Why `raw` must not be kept, as the answer to give; None when it may be kept."""
        if len(raw) > self.limit:
            return self.too_large()
        if not self.secret:
            return error_reply(503, texts.WEBHOOK_NO_SECRET)
        expected = "sha256=" + hmac.new(self.secret, raw, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            log.warning("Webhook refused: %s signature", "missing" if not signature else "wrong")
            return error_reply(401, texts.WEBHOOK_BAD_SIGNATURE)
        try:
            body = jsoncodec.loads(raw)
        except ValueError:
            return error_reply(400, texts.WEBHOOK_NOT_JSON)
        if not isinstance(body, dict):
            return error_reply(400, texts.WEBHOOK_NOT_OBJECT)
        return None


def count(status: str) -> None:
    """Count an answer in wcq_webhook_notifications_received."""
    (_COUNTERS.get(status[:3]) or _REFUSED).inc()


class WebhookIntake:
    """WSGI middleware: takes `POST /webhooks/whatsapp`, hands everything else to `app`."""

    def __init__(self, app: WsgiApp, runtime: Runtime):
        self.app = app
        self.runtime = runtime
        self.check = NotificationCheck(runtime.settings)

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        status, body = self._receive(environ)
        count(status)
        start_response(status, [*HEADERS, ("Content-Length", str(len(body)))])
        return [body]

    def _receive(self, environ: dict) -> Answer:
        """Check, keep and acknowledge one notification; returns the HTTP status line and body."""
        try:
            length = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            length = -1
        if length > self.check.limit:
            return self.check.too_large()
        stream = environ["wsgi.input"]
        raw = stream.read(length) if length >= 0 else stream.read(self.check.limit + 1)
        refusal = self.check.refusal(raw, environ.get("HTTP_X_HUB_SIGNATURE_256", ""))
        if refusal is not None:
            return refusal
        try:
            if self.runtime.inbox.push(raw):
                self.runtime.queue.schedule_webhooks()
        except Exception:
            return NOT_RECORDED
        return ACCEPTED


def error_reply(status: int, message: str) -> Answer:
    """An error answer in the API's shape (webapi.errors)."""
    body = json.dumps(error_body(message), ensure_ascii=False).encode()
    return f"{status} {HTTPStatus(status).phrase}", body


ACCEPTED: Answer = ("200 OK", b'{"success":true}\n')
# Not acknowledged: Meta sends it again later.
NOT_RECORDED: Answer = error_reply(503, texts.WEBHOOK_NOT_RECORDED)
