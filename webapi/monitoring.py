"""GET /metrics: the API's Prometheus metrics, for a scraper that sends METRICS_TOKEN.

Off (404, like any unknown path) unless METRICS_TOKEN is set: the API's port is public, and the queue's
figures are nobody else's business. The metrics hold no token, phone number, wamid or campaign id
(see tasks.metrics). Outside /api/, so API keys and their rate limits do not apply.
"""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, abort, request
from prometheus_client import CONTENT_TYPE_LATEST

from tasks import metrics, texts
from webapi.context import runtime
from webapi.errors import ApiError

bp = Blueprint("monitoring", __name__)


@bp.get("/metrics")
def metrics_endpoint():
    """This API's counters (added up across its processes) and the queue's live figures from Redis."""
    rt = runtime()
    expected = rt.settings.metrics_token
    if not expected:
        abort(404)  # the same answer as any path that does not exist
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        exc = ApiError(401, texts.METRICS_TOKEN_INVALID)
        exc.headers = {"WWW-Authenticate": 'Bearer realm="metrics"'}
        raise exc
    body = metrics.exposition(metrics.LiveCollector(rt.state, rt.inbox))
    return Response(body, headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"})
