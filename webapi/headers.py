"""Response headers every answer carries (security headers, Server) and CORS for the configured front ends."""

from __future__ import annotations

from flask import Flask, Response, request
from flask_cors import CORS

from tasks.config import Settings

#: JSON answers load nothing; pages of their own (the docs) set a CSP that allows their own assets.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
SERVER_NAME = "whatsapp-campaign-queue"
CORS_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", "X-API-Key"]


def _secure(response: Response) -> Response:
    """Add the headers that keep browsers from sniffing, framing or leaking referrers."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Content-Security-Policy", API_CSP)
    # gunicorn writes its own "Server: gunicorn" (no version) and would send a second one; Werkzeug (flask run)
    # writes its and Python's versions unless the app sets the header.
    if not request.environ.get("SERVER_SOFTWARE", "").startswith("gunicorn"):
        response.headers["Server"] = SERVER_NAME
    return response


def install(app: Flask, settings: Settings) -> None:
    """Security headers on every answer; CORS only for the origins in CORS_ORIGINS (none: no cross-origin use)."""
    app.after_request(_secure)
    if settings.cors_origins:
        # Credentials travel in Authorization headers, not cookies, so supports_credentials stays off.
        CORS(app, resources={r"/api/*": {"origins": list(settings.cors_origins)}}, allow_headers=CORS_HEADERS,
             methods=["GET", "POST", "OPTIONS"], expose_headers=["Retry-After"], supports_credentials=False,
             vary_header=True, max_age=600)
