"""GET /{version}/{waba_id}/message_templates: the Graph API listing of a WhatsApp Business Account's templates.

The sandbox has one WABA (settings `waba_id`) whose templates are the catalogue (settings `templates`); any
registered access token may read it. `name` keeps the templates whose name contains it (clients filter the
exact name themselves), `language` the exact language, `fields` chooses the fields (id is always there),
`limit` and `after` page with opaque cursors. An unknown WABA answers 100, a wrong token 190, the down
switch 2 (503), a forced error for the WABA id (or "*") that code; answers wait the configured latency.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from random import uniform
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

_DEFAULT_LIMIT = 25
_MAX_LIMIT = 1000

ErrorAnswer = Callable[..., tuple[int, bytes]]


class ListingError(Exception):
    """A Graph error answer of the listing: code and details."""

    def __init__(self, code: int, details: str) -> None:
        super().__init__(code, details)
        self.code = code
        self.details = details


def _cursor(offset: int) -> str:
    """An opaque paging cursor for a position in the listing."""
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _offset(cursor: str) -> int:
    """The position a cursor stands for (100 for one the sandbox did not make)."""
    try:
        kind, _, number = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        if kind != "offset" or not number.isdigit():
            raise ValueError
    except ValueError:
        raise ListingError(100, "Invalid parameter: after is not a valid cursor.") from None
    return int(number)


def listing(sandbox: Any, waba_id: str, authorization: str | None, query: Any, url: str) -> dict[str, Any]:
    """The listing's JSON body, or ListingError with what Graph would answer."""
    settings = sandbox.settings
    if settings.down:
        raise ListingError(2, "Service temporarily unavailable.")
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or token.strip() not in settings.tokens.values():
        raise ListingError(190, "Error validating access token.")
    if waba_id != settings.waba_id:
        raise ListingError(100, f"Unsupported get request. Object with ID '{waba_id}' does not exist.")
    forced = settings.forced_errors.get(waba_id) or settings.forced_errors.get("*")
    if forced:
        raise ListingError(forced, "Error forced by the sandbox configuration.")
    try:
        limit = int(query.get("limit", _DEFAULT_LIMIT))
        if not 1 <= limit <= _MAX_LIMIT:
            raise ValueError
    except ValueError:
        raise ListingError(100, f"Invalid parameter: limit must be between 1 and {_MAX_LIMIT}.") from None
    start = _offset(query["after"]) if "after" in query else 0
    name, language = query.get("name"), query.get("language")
    fields = [f.strip() for f in query.get("fields", "").split(",") if f.strip()]
    matching = [
        t
        for (t_name, t_language), t in sandbox.templates.items()
        if (not name or name in t_name) and (not language or language == t_language)
    ]
    page = matching[start : start + limit]
    body: dict[str, Any] = {"data": [t.listing(fields) for t in page]}
    if page:
        body["paging"] = {"cursors": {"before": _cursor(start), "after": _cursor(start + len(page))}}
        if start + len(page) < len(matching):
            body["paging"]["next"] = f"{url.split('?')[0]}?{_next_query(query, _cursor(start + len(page)))}"
    return body


def _next_query(query: Any, after: str) -> str:
    """The query string of the next page: the same filters, the next cursor."""
    return urlencode({**{k: v for k, v in query.items() if k != "after"}, "after": after})


def add_listing_route(app: web.Application, key: web.AppKey, error_answer: ErrorAnswer) -> None:
    """Register the listing route on the sandbox app whose Sandbox lives under `key`."""

    async def get_message_templates(request: web.Request) -> web.Response:
        """GET /{version}/{waba_id}/message_templates."""
        sandbox = request.app[key]
        sandbox.listing_requests += 1
        settings = sandbox.settings
        delay = uniform(settings.latency_min_ms, settings.latency_max_ms) / 1000.0
        try:
            body = listing(
                sandbox,
                request.match_info["waba_id"],
                request.headers.get("Authorization"),
                request.query,
                str(request.url),
            )
            status, raw = 200, json.dumps(body).encode()
        except ListingError as error:
            status, raw = error_answer(error.code, error.details)
        if delay > 0.0:
            await asyncio.sleep(delay)
        return web.Response(status=status, body=raw, content_type="application/json")

    app.router.add_get(r"/{version:v[0-9]+\.[0-9]+}/{waba_id}/message_templates", get_message_templates)
