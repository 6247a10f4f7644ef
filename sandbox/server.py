"""aiohttp application that answers like the WhatsApp Cloud API messages endpoint, plus /_sandbox/ admin routes."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import re
import secrets
import time
from collections import deque
from itertools import islice
from random import choice, random, uniform
from typing import Any

from aiohttp import web

from . import users
from .portfolios import PortfolioLimits, capability_notification, post_notification
from .settings import SandboxSettings
from .signals import add_signal_routes, blocked_template, message_status
from .template_listing import add_listing_route
from .templates import TemplateMismatch, catalogue, check_send, read_components, require
from .webhooks import StatusWebhooks

# code -> (HTTP status, error.message). Meta answers 400 for nearly every error, 130429 included, so
# the sandbox does too: clients must decide on error.code, never on the HTTP status.
ERRORS: dict[int, tuple[int, str]] = {
    2: (503, "Service temporarily unavailable"),
    4: (400, "(#4) Application request limit reached"),
    10: (403, "(#10) Application does not have permission for this action"),
    100: (
        400,
        "Unsupported post request. Object does not exist, cannot be loaded due to missing "
        "permissions, or does not support this operation",
    ),
    190: (401, "Invalid OAuth access token - Cannot parse access token"),
    368: (400, "Temporarily blocked for policies violations"),
    80007: (400, "(#80007) Rate limit issues"),
    130429: (400, "(#130429) Rate limit hit"),
    131000: (500, "Something went wrong"),
    131008: (400, "(#131008) Required parameter is missing"),
    131009: (400, "(#131009) Parameter value is not valid"),
    131016: (503, "(#131016) Service unavailable"),
    131021: (400, "(#131021) Recipient cannot be sender"),
    131026: (400, "(#131026) Message undeliverable"),
    131030: (400, "(#131030) Recipient phone number not in allowed list"),
    131031: (400, "(#131031) Account has been locked"),
    131042: (400, "(#131042) Business eligibility payment issue"),
    131047: (400, "(#131047) Re-engagement message"),
    131048: (400, "(#131048) Spam rate limit hit"),
    131049: (400, "(#131049) This message was not delivered to maintain healthy ecosystem engagement"),
    131050: (400, "(#131050) User has stopped marketing messages"),
    131051: (400, "(#131051) Unsupported message type"),
    131056: (400, "(#131056) (Business Account, Consumer Account) pair rate limit hit"),
    131057: (400, "(#131057) Account in maintenance mode"),
    132000: (400, "(#132000) Number of parameters does not match the expected number of params"),
    132001: (400, "(#132001) Template name does not exist in the translation"),
    132005: (400, "(#132005) Translated text too long"),
    132007: (400, "(#132007) Template format character policy violated"),
    132012: (400, "(#132012) Parameter format does not match format in the created template"),
    132015: (400, "(#132015) Template is paused"),
    132016: (400, "(#132016) Template is disabled"),
}

# E.164 allows at most 15 digits; Meta also tolerates a leading +.
_RECIPIENT = re.compile(r"\+?[0-9]{5,15}")
_AUTH_SCHEME = "bearer"
_JSON = "application/json"
# json.dumps builds a new encoder whenever separators are given; one shared encoder saves that per request.
_encode_json = json.JSONEncoder(separators=(",", ":")).encode
# Printed once the socket is bound; start_sandbox() reads the real port from it when port 0 was asked for.
LISTENING_PREFIX = "sandbox listening on "


class ApiError(Exception):
    """A Graph API error answer: its code and the error_data.details text."""

    def __init__(self, code: int, details: str | None = None) -> None:
        """Remember the code and details; the message and HTTP status come from ERRORS."""
        super().__init__(code, details)
        self.code = code
        self.details = details


def error_answer(code: int, details: str | None = None, *, status: int | None = None) -> tuple[int, bytes]:
    """Build the HTTP status and body of a Graph API error, in the exact shape Meta uses."""
    default_status, message = ERRORS.get(code, (400, f"(#{code}) Sandbox forced error"))
    body = {
        "error": {
            "message": message,
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": details or message},
            "fbtrace_id": secrets.token_urlsafe(17),
        }
    }
    return status or default_status, _encode_json(body).encode()


def _timeout_answer(hold: float) -> tuple[int, bytes, float]:
    """Answer a held request the way a gateway would once it gives up: 504 after the hold."""
    return (*error_answer(131000, "Injected timeout.", status=504), hold)


def _new_wamid() -> str:
    """Return a fresh message id that looks like Meta's (base64 after a wamid. prefix)."""
    return "wamid." + base64.b64encode(os.urandom(33)).decode()


def parse_message(raw: bytes) -> dict[str, Any]:
    """Validate a message body like the Cloud API and return the fields the sandbox logs."""
    try:
        body = json.loads(raw)
    except ValueError:
        raise ApiError(131009, "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise ApiError(131009, "The request body must be a JSON object.")
    if require(body, "messaging_product", str, "") != "whatsapp":
        raise ApiError(131009, "The parameter messaging_product must be 'whatsapp'.")
    recipient_type = body.get("recipient_type", "individual")
    if recipient_type != "individual":
        raise ApiError(131009, "The parameter recipient_type must be 'individual'.")
    to = require(body, "to", str, "")
    if not _RECIPIENT.fullmatch(to):
        raise ApiError(131009, "The parameter to must be a phone number in E.164 digits.")
    callback_data = body.get("biz_opaque_callback_data")
    if callback_data is not None and not isinstance(callback_data, str):
        raise ApiError(131009, "The parameter biz_opaque_callback_data must be a string.")
    kind = require(body, "type", str, "")
    template_name = language = text = None
    parameters: list[dict[str, str]] = []
    sent = None
    if kind == "template":
        template = require(body, "template", dict, "")
        template_name = require(template, "name", str, "template.")
        language = require(require(template, "language", dict, "template."), "code", str, "template.language.")
        sent = read_components(template.get("components"))
        parameters = sent.body
    elif kind == "text":
        text = require(require(body, "text", dict, ""), "body", str, "text.")
    else:
        raise ApiError(131009, f"The parameter type must be 'template' or 'text', got {kind!r}.")
    return {
        "to": to,
        "wa_id": to.removeprefix("+"),
        "type": kind,
        "template": template_name,
        "language": language,
        "parameters": parameters,
        "text": text,
        "biz_opaque_callback_data": callback_data,
        # Headers and buttons as received, for tests that check the exact shape (kept only when present).
        "components": body["template"]["components"] if sent is not None and sent.rich else None,
        "_sent": sent,
    }


class TokenBucket:
    """Per phone_number_id throughput cap: holds up to one second of tokens, refilled continuously."""

    __slots__ = ("capacity", "rate", "tokens", "updated")

    def __init__(self, rate: float, now: float) -> None:
        """Start full, so a fresh number can burst one second's worth at once."""
        self.rate = rate
        # Below 1 msg/s a bucket of capacity < 1 would never hold a whole token.
        self.capacity = max(rate, 1.0)
        self.tokens = self.capacity
        self.updated = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one."""
        tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return True
        self.tokens = tokens
        return False


class Counters:
    """Request outcome counters for the whole sandbox or one phone_number_id."""

    __slots__ = ("accepted", "rejected", "requests", "timed_out")

    def __init__(self) -> None:
        """Start at zero."""
        self.requests = 0
        self.accepted = 0
        self.timed_out = 0
        self.rejected: dict[int, int] = {}

    def to_json(self) -> dict[str, Any]:
        """Return the counters as the /_sandbox/stats shape."""
        return {
            "requests": self.requests,
            "accepted": self.accepted,
            "timed_out": self.timed_out,
            "rejected": {str(code): n for code, n in sorted(self.rejected.items())},
        }


class Sandbox:
    """State and decisions of one sandbox: settings, rate buckets, message log and counters."""

    def __init__(self, settings: SandboxSettings, webhooks: StatusWebhooks | None = None) -> None:
        """Start with the given settings, which reset(config=True) returns to."""
        self.startup_settings = settings
        self.webhooks = webhooks or StatusWebhooks()
        self.users = users.UserPreferences()  # recipients who stopped marketing messages (sandbox/users.py)
        self.portfolios = PortfolioLimits()
        self.started = time.monotonic()
        self._use(settings)
        self.reset()

    def _use(self, settings: SandboxSettings) -> None:
        """Install settings and the values derived from them that the hot path reads."""
        self.settings = settings
        self.webhooks.use_settings(settings)
        self.portfolios.use_settings(settings)
        self._latency = (settings.latency_min_ms / 1000.0, settings.latency_max_ms / 1000.0)
        self._expected_auth = {number: f"Bearer {token}" for number, token in settings.tokens.items()}
        self.templates = catalogue(settings.templates)
        # Buckets hold the old caps; starting them afresh is what a reconfigured number would do.
        self._buckets: dict[str, TokenBucket] = {}

    def record_port(self, port: int) -> None:
        """Report the port really bound (when 0 was asked for) in the options GET /_sandbox/config shows."""
        self.startup_settings = dataclasses.replace(self.startup_settings, port=port)
        self.settings = dataclasses.replace(self.settings, port=port)

    def configure(self, changes: dict[str, Any]) -> SandboxSettings:
        """Apply runtime option changes (ValueError when invalid) and return the new settings."""
        self._use(self.settings.apply(changes, runtime=True))
        return self.settings

    def reset(self, *, config: bool = False) -> None:
        """Clear the message log, counters, rate buckets and webhook state; optionally restore startup settings."""
        if config:
            self._use(self.startup_settings)
        self.webhooks.reset()
        self.users.reset()
        self.portfolios.reset()
        self._buckets.clear()
        self.log: deque[dict[str, Any]] = deque(maxlen=self.settings.message_log_limit)
        self.next_index = 0
        self.totals = Counters()
        self.by_number: dict[str, Counters] = {}
        self.listing_requests = 0  # GET .../message_templates (sandbox/template_listing.py)

    def answer(self, phone_number_id: str, authorization: str | None, raw: bytes) -> tuple[int, bytes, float]:
        """Decide the answer to one message POST: HTTP status, body, and how long to wait before sending it."""
        settings = self.settings
        counters = self.by_number.get(phone_number_id)
        if counters is None:
            counters = self.by_number[phone_number_id] = Counters()
        self.totals.requests += 1
        counters.requests += 1
        if settings.down:
            return self._reject(counters, ApiError(131016, "The sandbox is switched to down."), 0.0)
        low, high = self._latency
        delay = uniform(low, high) if high > 0.0 else 0.0
        timed_out = False
        try:
            expected = self._expected_auth.get(phone_number_id)
            if expected is None:
                raise ApiError(100, f"Unsupported post request. Object with ID '{phone_number_id}' does not exist.")
            if authorization != expected and not self._token_matches(authorization, settings.tokens[phone_number_id]):
                raise ApiError(190, "Error validating access token.")
            now = time.monotonic()
            bucket = self._buckets.get(phone_number_id)
            if bucket is None:
                rate = settings.mps.get(phone_number_id, settings.default_mps)
                bucket = self._buckets[phone_number_id] = TokenBucket(rate, now)
            if not bucket.take(now):
                raise ApiError(130429, "Message throughput for this phone number has been reached.")
            if settings.forced_errors:
                forced = settings.forced_errors.get(phone_number_id) or settings.forced_errors.get("*")
                if forced:
                    raise ApiError(forced, "Error forced by the sandbox configuration.")
            if settings.timeout_share and random() < settings.timeout_share:
                timed_out = True
                delay = settings.timeout_hold_s
                counters.timed_out += 1
                self.totals.timed_out += 1
                if not settings.timeout_accepts:
                    return _timeout_answer(delay)
            if settings.error_5xx_share and random() < settings.error_5xx_share:
                raise ApiError(choice((131000, 131016)), "Injected server error.")
            message = parse_message(raw)
            sent = message.pop("_sent")
            if self.templates and sent is not None:
                template = self.templates.get((message["template"], message["language"]))
                check_send(template, message["template"], message["language"], sent)
            if settings.template_statuses and message["type"] == "template":
                blocked = blocked_template(settings, message["template"], message["language"])
                if blocked:
                    raise ApiError(*blocked)
            if settings.recipient_errors:
                failure = settings.recipient_errors.get(message["wa_id"])
                if failure:
                    raise ApiError(failure)
            if message["type"] == "template" and self.users.refuses(message["wa_id"], phone_number_id):
                raise ApiError(131050, "The user has stopped marketing messages from this business.")
            if settings.portfolios:
                refused = self.portfolios.admit(phone_number_id, message["wa_id"])
                if refused:
                    raise ApiError(refused, "The business portfolio's daily messaging limit has been reached.")
        except (ApiError, TemplateMismatch) as error:
            if timed_out:
                return _timeout_answer(delay)
            return self._reject(counters, error, delay)
        record = self._accept(counters, phone_number_id, message)
        if timed_out:
            return _timeout_answer(delay)
        body = {
            "messaging_product": "whatsapp",
            "contacts": [{"input": record["to"], "wa_id": record["wa_id"]}],
            "messages": [{"id": record["wamid"], "message_status": message_status(settings, record)}],
        }
        return 200, _encode_json(body).encode(), delay

    @staticmethod
    def _token_matches(authorization: str | None, token: str) -> bool:
        """Accept any capitalisation of the Bearer scheme and stray spaces, like Graph does."""
        if not authorization:
            return False
        scheme, _, value = authorization.strip().partition(" ")
        return scheme.lower() == _AUTH_SCHEME and secrets.compare_digest(value.strip(), token)

    def _reject(self, counters: Counters, error: ApiError | TemplateMismatch, delay: float) -> tuple[int, bytes, float]:
        """Count a rejection and build its answer."""
        code = error.code
        counters.rejected[code] = counters.rejected.get(code, 0) + 1
        self.totals.rejected[code] = self.totals.rejected.get(code, 0) + 1
        return (*error_answer(code, error.details), delay)

    def _accept(self, counters: Counters, phone_number_id: str, message: dict[str, Any]) -> dict[str, Any]:
        """Log an accepted message, count it and hand it to the webhook sender."""
        record = {
            "index": self.next_index,
            "wamid": _new_wamid(),
            "phone_number_id": phone_number_id,
            **message,
            "received_at": time.time(),
        }
        self.next_index += 1
        self.log.append(record)
        counters.accepted += 1
        self.totals.accepted += 1
        self.webhooks.message_accepted(record)
        return record

    def messages_page(self, *, since: int, limit: int, phone_number_id: str | None) -> dict[str, Any]:
        """Return accepted messages with index >= since (optionally of one number), at most limit of them."""
        first_index = self.next_index - len(self.log)
        items: list[dict[str, Any]] = []
        next_since = max(since, first_index)
        for record in islice(self.log, max(0, since - first_index), None):
            if len(items) >= limit:
                break
            next_since = record["index"] + 1
            if phone_number_id is None or record["phone_number_id"] == phone_number_id:
                items.append(record)
        if phone_number_id is None:
            total = self.totals.accepted
        else:
            total = self.by_number[phone_number_id].accepted if phone_number_id in self.by_number else 0
        return {"total": total, "first_index": first_index, "next_since": next_since, "messages": items}

    def stats(self) -> dict[str, Any]:
        """Return the counters, overall and per phone_number_id."""
        result = self.totals.to_json()
        result["by_phone_number_id"] = {number: c.to_json() for number, c in self.by_number.items()}
        result["template_listings"] = self.listing_requests
        return result


SANDBOX = web.AppKey("sandbox", Sandbox)


def _json(data: Any, status: int = 200) -> web.Response:
    """Answer an admin request with JSON."""
    return web.Response(status=status, body=json.dumps(data).encode(), content_type=_JSON)


async def _json_body(request: web.Request) -> Any:
    """Read an admin request's JSON body, treating an empty body as {}."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise web.HTTPBadRequest(text=json.dumps({"error": f"invalid JSON: {exc}"}), content_type=_JSON) from None


async def post_message(request: web.Request) -> web.Response:
    """POST /{version}/{phone_number_id}/messages: the Cloud API send endpoint."""
    raw = await request.read()
    status, body, delay = request.app[SANDBOX].answer(
        request.match_info["phone_number_id"], request.headers.get("Authorization"), raw
    )
    if delay > 0.0:
        await asyncio.sleep(delay)
    return web.Response(status=status, body=body, content_type=_JSON)


def _paging(query: Any) -> tuple[int, int]:
    """Read the since and limit query parameters of an admin listing, or raise a 400."""
    try:
        since = int(query.get("since", 0))
        limit = int(query.get("limit", 1000))
        if since < 0 or limit < 1:
            raise ValueError
    except ValueError:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "since must be an integer >= 0 and limit an integer >= 1"}), content_type=_JSON
        ) from None
    return since, limit


async def get_messages(request: web.Request) -> web.Response:
    """GET /_sandbox/messages?phone_number_id=&since=&limit=: page through accepted messages."""
    query = request.query
    since, limit = _paging(query)
    page = request.app[SANDBOX].messages_page(since=since, limit=limit, phone_number_id=query.get("phone_number_id"))
    return _json(page)


async def get_webhooks(request: web.Request) -> web.Response:
    """GET /_sandbox/webhooks?wamid=&since=&limit=: webhook counters and the statuses posted per message."""
    since, limit = _paging(request.query)
    page = request.app[SANDBOX].webhooks.page(since=since, limit=limit, wamid=request.query.get("wamid"))
    return _json(page)


async def post_webhooks_flush(request: web.Request) -> web.Response:
    """POST /_sandbox/webhooks/flush?timeout=30: post everything planned now and answer once it is all settled."""
    try:
        timeout = float(request.query.get("timeout", 30))
        if not timeout > 0:
            raise ValueError
    except ValueError:
        return _json({"error": "timeout must be a number of seconds > 0"}, 400)
    webhooks = request.app[SANDBOX].webhooks
    settled = await webhooks.flush(timeout)
    return _json({"status": "ok" if settled else "timeout", **webhooks.summary()})


async def get_stats(request: web.Request) -> web.Response:
    """GET /_sandbox/stats: request outcome counters."""
    return _json(request.app[SANDBOX].stats())


async def post_reset(request: web.Request) -> web.Response:
    """POST /_sandbox/reset: clear log and counters; body {"config": true} also restores startup options."""
    options = await _json_body(request)
    restore = isinstance(options, dict) and options.get("config") is True
    request.app[SANDBOX].reset(config=restore)
    return _json({"status": "ok", "config_restored": restore})


async def get_config(request: web.Request) -> web.Response:
    """GET /_sandbox/config: the options in force."""
    return _json(request.app[SANDBOX].settings.to_json())


async def post_config(request: web.Request) -> web.Response:
    """POST /_sandbox/config: change some options (each given key replaces that option whole)."""
    changes = await _json_body(request)
    try:
        settings = request.app[SANDBOX].configure(changes)
    except ValueError as exc:
        return _json({"error": str(exc)}, 400)
    return _json(settings.to_json())


async def get_health(request: web.Request) -> web.Response:
    """GET /_sandbox/health: liveness, answered even while the down switch is on."""
    sandbox = request.app[SANDBOX]
    uptime = round(time.monotonic() - sandbox.started, 3)
    return _json({"status": "ok", "down": sandbox.settings.down, "uptime_s": uptime})


async def get_portfolios(request: web.Request) -> web.Response:
    """GET /_sandbox/portfolios: each portfolio's limit, unique recipients counted and messages refused."""
    return _json(request.app[SANDBOX].portfolios.to_json())


async def post_portfolio_limit(request: web.Request) -> web.Response:
    """POST /_sandbox/portfolios/{id}/limit {"limit": n}: Meta changes the portfolio's limit, and says so in a
    signed business_capability_update notification (answer: the notification and its HTTP status)."""
    sandbox = request.app[SANDBOX]
    portfolio_id = request.match_info["portfolio_id"]
    body = await _json_body(request)
    current = sandbox.settings.portfolios.get(portfolio_id)
    if current is None or not isinstance(body, dict):
        return _json(
            {"error": f"unknown portfolio {portfolio_id!r}, or no JSON object"}, 404 if current is None else 400
        )
    try:
        sandbox.configure(
            {"portfolios": {**sandbox.settings.portfolios, portfolio_id: {**current, "limit": body.get("limit")}}}
        )
    except ValueError as exc:
        return _json({"error": str(exc)}, 400)
    notification = capability_notification(current["waba_id"] or portfolio_id, int(body["limit"]))
    status = await post_notification(sandbox.settings, notification)
    return _json({"notification": notification, "webhook_status": status})


def create_app(settings: SandboxSettings | None = None, webhooks: StatusWebhooks | None = None) -> web.Application:
    """Build the sandbox aiohttp application."""
    app = web.Application()
    sandbox = app[SANDBOX] = Sandbox(settings or SandboxSettings(), webhooks)

    async def close_webhooks(_: web.Application) -> None:
        """Let the webhook sender finish when the server stops."""
        await sandbox.webhooks.close()

    app.on_cleanup.append(close_webhooks)
    app.router.add_post(r"/{version:v[0-9]+\.[0-9]+}/{phone_number_id}/messages", post_message)
    app.router.add_get("/_sandbox/messages", get_messages)
    app.router.add_get("/_sandbox/stats", get_stats)
    app.router.add_post("/_sandbox/reset", post_reset)
    app.router.add_get("/_sandbox/config", get_config)
    app.router.add_post("/_sandbox/config", post_config)
    app.router.add_get("/_sandbox/health", get_health)
    app.router.add_get("/_sandbox/webhooks", get_webhooks)
    app.router.add_post("/_sandbox/webhooks/flush", post_webhooks_flush)
    add_listing_route(app, SANDBOX, error_answer)
    app.router.add_get("/_sandbox/portfolios", get_portfolios)
    app.router.add_post("/_sandbox/portfolios/{portfolio_id}/limit", post_portfolio_limit)
    add_signal_routes(app, SANDBOX)
    users.register(app, sandbox)
    return app
