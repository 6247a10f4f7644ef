"""Request limits per caller (API key or user), counted in Redis so every API process shares them."""

from __future__ import annotations

from functools import wraps

from flask import Flask, current_app, g, request
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
# Called only while RATE_LIMIT_READS is set (see `reads`).
_reads_limit = limiter.shared_limit(_setting("rate_limit_reads"), scope="reads")


# The views under the read limit, by qualified name: the function Flask holds is the outermost decorator's,
# which carries the view's name (functools.wraps).
_READ_VIEWS: set[str] = set()


def _name(view) -> str:
    return f"{view.__module__}.{view.__qualname__}"


def reads(view):
    """The shared limit on reads (RATE_LIMIT_READS); with none set, a read skips the limiter altogether.

    Front ends poll estado-cola every second or two per open page, so an unlimited read should cost nothing
    here: the limiter's own checks (before the request and in its decorator) were a fifth of a read's CPU.
    """
    limited = _reads_limit(view)

    @wraps(view)
    def read(*args, **kwargs):
        if runtime().settings.rate_limit_reads:
            return limited(*args, **kwargs)
        return view(*args, **kwargs)

    _READ_VIEWS.add(_name(view))
    return read


@limiter.request_filter
def _unlimited_read() -> bool:
    """Spare the limiter's before-request check for reads while RATE_LIMIT_READS is empty."""
    view = current_app.view_functions.get(request.endpoint or "")
    return view is not None and _name(view) in _READ_VIEWS and not runtime().settings.rate_limit_reads


def install(app: Flask, settings: Settings) -> None:
    """Bind the limiter to the service's Redis."""
    app.config.update(
        RATELIMIT_STORAGE_URI=settings.redis_url, RATELIMIT_HEADERS_ENABLED=False, RATELIMIT_SWALLOW_ERRORS=True
    )
    limiter.init_app(app)
