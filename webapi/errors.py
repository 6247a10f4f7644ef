"""One JSON error shape for every failure the API can answer with."""

from __future__ import annotations

import logging
import math
import re
import time

from flask import Flask, g, jsonify, request
from flask_limiter import RateLimitExceeded
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from tasks import texts
from tasks.store import StoreUnavailable
from webapi.context import runtime
from webapi.limits import limiter

log = logging.getLogger("webapi")

MAX_ID_LENGTH = 100
#: Seconds a caller is told to wait (Retry-After) when the database is away.
DATABASE_RETRY_AFTER_S = 5
_PER_CAMPAIGN_ROUTE = re.compile(r"/api/(estado-cola|destinatarios|(pausar|reanudar|cancelar|reintentar)-campana)/.")


class ApiError(Exception):
    """An error a caller can act on: HTTP status, a sentence in Spanish, and details."""

    def __init__(self, status: int, message: str, details: dict | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details or {}
        self.headers = headers or {}


def error_body(message: str, details: dict | None = None) -> dict:
    """The JSON body of every error answer."""
    return {"success": False, "message": message, "details": details or {}}


def register_error_handlers(app: Flask) -> None:
    """Answer every error as JSON: never an HTML page, never a stack trace."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return jsonify(error_body(exc.message, exc.details)), exc.status, exc.headers

    @app.errorhandler(RateLimitExceeded)
    def _rate_limited(exc: RateLimitExceeded):
        limit = limiter.current_limit
        window = limit.limit.get_expiry() if limit else 60
        retry_after = min(window, max(1, math.ceil(limit.reset_at - time.time()))) if limit else window
        return (
            jsonify(
                error_body(
                    texts.TOO_MANY_REQUESTS.format(limit=exc.description, retry_after=retry_after),
                    {"limite": exc.description, "retry_after_s": retry_after},
                )
            ),
            429,
            {"Retry-After": str(retry_after)},
        )

    @app.errorhandler(StoreUnavailable)
    def _database_unavailable(exc: StoreUnavailable):
        # Whatever the request needed from the database (its caller's key, a campaign) could not be had.
        log.warning("Database unavailable for %s %s: %s", request.method, request.path, exc)
        g.database_unavailable = True
        return (
            jsonify(error_body(texts.DATABASE_UNAVAILABLE, {"retry_after_s": DATABASE_RETRY_AFTER_S})),
            503,
            {"Retry-After": str(DATABASE_RETRY_AFTER_S)},
        )

    @app.errorhandler(ValidationError)
    def _validation_error(exc: ValidationError):
        fields = ", ".join(sorted(exc.messages)) if isinstance(exc.messages, dict) else ""
        message = texts.VALIDATION_FAILED_IN.format(fields=fields) if fields else texts.VALIDATION_FAILED
        return jsonify(error_body(message, {"fields": exc.messages})), 422

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(exc):
        settings = runtime().settings
        if request.is_json:
            return jsonify(
                error_body(
                    texts.JSON_TOO_LARGE_UNKNOWN_SIZE.format(
                        limit_mb=settings.max_json_body_mb, csv_limit_mb=settings.max_csv_size_mb
                    ),
                    {"max_json_body_mb": settings.max_json_body_mb},
                )
            ), 413
        limit_mb = settings.max_csv_size_mb
        return jsonify(
            error_body(
                texts.CSV_TOO_LARGE_UNKNOWN_SIZE.format(limit_mb=limit_mb),
                {"max_csv_size_mb": limit_mb},
            )
        ), 413

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        messages = {404: texts.ROUTE_NOT_FOUND, 405: texts.METHOD_NOT_ALLOWED}
        message = messages.get(exc.code or 0, exc.description or exc.name)
        if exc.code == 404 and _PER_CAMPAIGN_ROUTE.match(request.path):
            # An id holding a slash ('../x') matches no route, but what the caller must fix is the id.
            message = texts.CAMPAIGN_ID_INVALID.format(max_length=MAX_ID_LENGTH)
        return jsonify(error_body(message, {"http_status": exc.code})), exc.code

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("Unexpected error: %s", type(exc).__name__)
        return jsonify(
            error_body(
                texts.INTERNAL_ERROR,
                {"error": type(exc).__name__},
            )
        ), 500
