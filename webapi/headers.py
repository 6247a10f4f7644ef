"""Response headers every answer carries and CORS for the configured front ends.

The Server header is the WSGI server's: gunicorn (as deployed) sends "gunicorn" without a version; a header
set here would be sent as a second one, not instead.
"""

from __future__ import annotations

from flask import Flask, Response, request
from flask_cors import CORS

from tasks.config import Settings

#: JSON answers load nothing; pages of their own (the docs) set a CSP that allows their own assets.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
CORS_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", "X-API-Key"]
#: What keeps browsers from sniffing, framing or leaking referrers (the notification intake sends them too).
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": API_CSP,
}


def _secure(response: Response) -> Response:
    """Add the security headers (a page that set its own CSP keeps it)."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.path.startswith("/api/"):
        # CORS answers differ by Origin (flask-cors leaves Vary off preflights), so caches must keep them apart.
        response.vary.add("Origin")
    return response


def install(app: Flask, settings: Settings) -> None:
    """Security headers on every answer; CORS only for the origins in CORS_ORIGINS (none: no cross-origin use)."""
    app.after_request(_secure)
    if settings.cors_origins:
        # Credentials travel in Authorization headers, not cookies, so supports_credentials stays off.
        CORS(
            app,
            resources={r"/api/*": {"origins": list(settings.cors_origins)}},
            allow_headers=CORS_HEADERS,
            methods=["GET", "POST", "OPTIONS"],
            expose_headers=["Retry-After"],
            supports_credentials=False,
            vary_header=True,
            max_age=600,
        )
