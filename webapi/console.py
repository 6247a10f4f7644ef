"""The operators' web console: static files served at `/`, calling the same /api routes with the user's credential.

The page is plain HTML, CSS and JavaScript (no build step, nothing fetched from elsewhere but Supabase Auth when
it is configured); its CSP allows scripts and styles from this origin only, and no inline code.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, jsonify, send_from_directory

from tasks import texts
from webapi.context import runtime
from webapi.errors import ApiError

STATIC = Path(__file__).parent / "static" / "console"
_ASSETS = {"console.js", "console.css", "favicon.svg"}

bp = Blueprint("console", __name__)


def console_csp() -> str:
    """Own scripts, styles and API calls only; Supabase Auth too when sign-in with email is configured."""
    settings = runtime().settings
    connect = "'self'"
    if settings.supabase_url and settings.supabase_anon_key:
        connect += f" {settings.supabase_url}"
    return (
        f"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src {connect}; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def _with_csp(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = console_csp()
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/")
def index():
    """The console's single page."""
    return _with_csp(send_from_directory(STATIC, "index.html", max_age=0))


@bp.get("/consola/<name>")
def asset(name: str):
    """The console's script, styles and icon."""
    if name not in _ASSETS:
        raise ApiError(404, texts.ROUTE_NOT_FOUND)
    return _with_csp(send_from_directory(STATIC, name, max_age=0))


@bp.get("/consola/config.json")
def config():
    """What the page needs to offer email sign-in: the project URL and its public (anon) key, or nothing."""
    settings = runtime().settings
    enabled = bool(settings.supabase_url and settings.supabase_anon_key)
    return jsonify(
        {
            "supabase_url": settings.supabase_url if enabled else None,
            "supabase_anon_key": settings.supabase_anon_key if enabled else None,
        }
    )
