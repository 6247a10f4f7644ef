"""Request limits per caller (API key or user), counted in Redis so every API process shares them."""

from __future__ import annotations

from flask import Flask, g, request
from flask_limiter import Limiter

from tasks import keys
from tasks.config import Settings
from webapi.context import runtime


def caller_key() -> str:
    """Count per API key or per user; the address only when there is no caller (AUTH_DISABLED)."""
    caller = g.get("caller")
    if caller is None or caller.kind == "open":
        return f"ip:{request.remote_addr}"
    return f"{caller.kind}:{caller.id}"


# Limits are declared on the views, and checked when the view runs: after the caller is known.
limiter = Limiter(caller_key, key_prefix=keys.RATE_LIMITS, strategy="fixed-window")


def _setting(name: str):
    """A limit read from the app's settings at request time."""
    return lambda: getattr(runtime().settings, name)


uploads = limiter.limit(_setting("rate_limit_uploads"), scope="uploads", methods=["POST"])
# Validating reads the whole file like an upload: the same limit, counted apart so checking a file first
# does not use up the uploads.
validations = limiter.limit(_setting("rate_limit_uploads"), scope="validations", methods=["POST"])
actions = limiter.shared_limit(_setting("rate_limit_actions"), scope="actions", methods=["POST", "DELETE"])
reads = limiter.shared_limit(
    lambda: runtime().settings.rate_limit_reads or "1/second",
    scope="reads",
    exempt_when=lambda: not runtime().settings.rate_limit_reads,
)


def install(app: Flask, settings: Settings) -> None:
    """Bind the limiter to the service's Redis."""
    app.config.update(
        RATELIMIT_STORAGE_URI=settings.redis_url, RATELIMIT_HEADERS_ENABLED=False, RATELIMIT_SWALLOW_ERRORS=True
    )
    limiter.init_app(app)
