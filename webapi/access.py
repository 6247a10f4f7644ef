"""Who is calling and what they may do: API keys and Supabase sessions, roles, buzón scopes, and origins.

Every request to /api/* (except the docs) needs a caller; each view declares the least role it needs with
`@requires(...)`, and a view that declares none needs `admin`, so a route added without thought is closed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlparse

from flask import Flask, current_app, g, request

from tasks import texts
from tasks.config import Settings
from tasks.runtime import Runtime
from webapi import apikeys
from webapi.errors import ApiError
from webapi.tokens import SessionVerifier, TokenError

log = logging.getLogger("webapi.access")

ROLE_RANK = {"viewer": 1, "operator": 2, "admin": 3}
PUBLIC_ENDPOINTS = {"docs.openapi_json", "docs.docs", "docs.docs_asset"}
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: an API key or a Supabase user, with a role and optionally a set of buzones."""

    kind: str  # "key", "user" or "open" (AUTH_DISABLED)
    id: str
    role: str
    buzones: frozenset[str] | None = None  # None: every buzón
    email: str | None = None

    @property
    def label(self) -> str:
        """How the caller appears as a campaign's creator: the key's name or the user's email (or id)."""
        return self.id if self.kind == "key" else (self.email or self.id)

    def can(self, role: str) -> bool:
        """Whether the caller's role is at least `role`."""
        return ROLE_RANK[self.role] >= ROLE_RANK[role]

    def may_use(self, buzon: str | None) -> bool:
        """Whether the caller may send with, and see the campaigns of, this buzón."""
        return self.buzones is None or buzon in self.buzones

    @property
    def scope(self) -> list[str] | None:
        """The buzones the caller is limited to, sorted, or None when it is not limited."""
        return None if self.buzones is None else sorted(self.buzones)


def requires(role: str) -> Callable:
    """Declare the least role a view needs."""

    def mark(view: Callable) -> Callable:
        view.required_role = role  # type: ignore[attr-defined]  # read back by the before-request check
        return view

    return mark


def current_caller() -> Caller:
    """The caller of this request (set before the view runs)."""
    return g.caller


def _unauthorized(message: str, error: str = "invalid_token") -> ApiError:
    """A 401 whose WWW-Authenticate header tells clients to send a bearer credential."""
    exc = ApiError(401, message, {"auth": "required"})
    exc.headers = {"WWW-Authenticate": f'Bearer realm="api", error="{error}"'}
    return exc


def _scope(raw) -> frozenset[str] | None:
    """A buzón list from a claim or a row; absent or empty means every buzón."""
    if not raw:
        return None
    if isinstance(raw, str):
        raw = [raw]
    return frozenset(str(b) for b in raw)


_MAX_CACHED_CALLERS = 10_000  # distinct keys and users remembered by one process


class Authenticator:
    """Turns a request's credentials into a Caller, using the store for keys and user roles."""

    def __init__(self, settings: Settings, runtime: Runtime):
        self.settings = settings
        self.runtime = runtime
        self.sessions = (
            SessionVerifier(settings.supabase_url, settings.supabase_jwt_secret, settings.jwks_cache_s)
            if settings.supabase_url
            else None
        )
        # A status read polled every second would otherwise cost a database round trip for its key: the
        # busiest process on a loaded machine, and what set the reads' p99 (docs/benchmarks.md). A revoked
        # key or a changed role takes effect within API_KEY_CACHE_S.
        self._callers: dict[tuple[str, str], tuple[float, Caller]] = {}

    def authenticate(self) -> Caller:
        """The caller, or a 401 ApiError when the credentials are missing or wrong."""
        if self.settings.auth_disabled:
            return Caller("open", "AUTH_DISABLED", "admin")
        header = request.headers.get("Authorization", "")
        api_key = request.headers.get("X-API-Key", "").strip()
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if header and scheme.lower() != "bearer":
            raise _unauthorized(texts.AUTH_HEADER_INVALID)
        if api_key or apikeys.looks_like_key(token):
            return self._key_caller(api_key or token)
        if token:
            return self._session_caller(token)
        raise _unauthorized(texts.CREDENTIAL_MISSING, "invalid_request")

    def _key_caller(self, key: str) -> Caller:
        """The caller behind an API key."""
        key_hash = apikeys.hash_key(key)
        caller = self._cached(("key", key_hash))
        if caller is not None:
            return caller
        row = self.runtime.store.use_api_key(key_hash)
        if row is None:
            raise _unauthorized(texts.API_KEY_INVALID)  # never cached: a key created now works at once
        return self._keep(("key", key_hash), Caller("key", row["name"], row["role"], _scope(row.get("buzones"))))

    def _cached(self, entry: tuple[str, str]) -> Caller | None:
        """A caller looked up less than API_KEY_CACHE_S ago."""
        found = self._callers.get(entry)
        if found is None:
            return None
        if found[0] > time.monotonic():
            return found[1]
        self._callers.pop(entry, None)
        return None

    def _keep(self, entry: tuple[str, str], caller: Caller) -> Caller:
        """Remember a caller for API_KEY_CACHE_S; the cache is emptied when it grows past its bound."""
        ttl = self.settings.api_key_cache_s
        if ttl > 0:
            if len(self._callers) >= _MAX_CACHED_CALLERS:
                self._callers.clear()
            self._callers[entry] = (time.monotonic() + ttl, caller)
        return caller

    def _session_caller(self, token: str) -> Caller:
        """The caller behind a Supabase session: role from app_metadata, else api_users, else DEFAULT_ROLE."""
        if self.sessions is None:
            raise _unauthorized(texts.SESSIONS_DISABLED)
        try:
            claims = self.sessions.verify(token)
        except TokenError as exc:
            raise _unauthorized(texts.SESSION_INVALID.format(reason=exc)) from None
        user_id, email = str(claims["sub"]), claims.get("email")
        metadata = claims.get("app_metadata") or {}
        role, buzones = metadata.get("wcq_role"), metadata.get("wcq_buzones")
        if role not in ROLE_RANK:
            cached = self._cached(("user", user_id))
            if cached is not None:
                return Caller("user", user_id, cached.role, cached.buzones, email)
            row = self.runtime.store.get_api_user(user_id)
            if row is not None:
                role, buzones = row["role"], row.get("buzones")
            else:
                role, buzones = self.settings.default_role, None
            if role in ROLE_RANK:
                self._keep(("user", user_id), Caller("user", user_id, role, _scope(buzones), email))
        if role not in ROLE_RANK:
            raise ApiError(403, texts.USER_WITHOUT_ROLE, {"user_id": user_id})
        return Caller("user", user_id, role, _scope(buzones), email)


def _same_host(origin: str) -> bool:
    """Whether the Origin is the API's own host (its docs page calling it)."""
    return urlparse(origin).netloc.lower() == request.host.lower()


def _refuse_foreign_origin() -> None:
    """Refuse state changes sent by a page of an origin not in CORS_ORIGINS, before anything is done."""
    origin = request.headers.get("Origin")
    if (
        request.method not in STATE_CHANGING
        or origin is None
        or request.path.startswith("/webhooks/")
        or origin.rstrip("/").lower() in current_app.extensions["access"].settings.cors_origins
        or _same_host(origin)
    ):
        return
    g.refused_origin = origin
    raise ApiError(403, texts.ORIGIN_REFUSED.format(origin=origin), {"origin": origin})


def _check_caller() -> None:
    """Authenticate /api/* requests and check the role the view needs."""
    if request.method == "OPTIONS" or not request.path.startswith("/api/") or request.endpoint in PUBLIC_ENDPOINTS:
        return
    caller = current_app.extensions["access"].authenticate()
    g.caller = caller
    view = current_app.view_functions.get(request.endpoint or "")
    if view is None:
        return  # an unknown route: the 404 follows
    needed = getattr(view, "required_role", "admin")
    if not caller.can(needed):
        raise ApiError(
            403,
            texts.ROLE_TOO_LOW.format(role=caller.role, required=texts.ROLE_NAMES[needed]),
            {"role": caller.role, "required_role": needed},
        )


def install(app: Flask, settings: Settings, runtime: Runtime) -> None:
    """Check origins and callers before every request."""
    app.extensions["access"] = Authenticator(settings, runtime)
    if settings.auth_disabled:
        log.warning(
            "AUTH_DISABLED=true: the API accepts every request as admin, with no credentials. Use it only "
            "for local experiments, never where anyone else can reach this port."
        )
    elif not settings.supabase_url:
        log.info("SUPABASE_URL is not set: only API keys are accepted (no Supabase sessions)")
    app.before_request(_refuse_foreign_origin)
    app.before_request(_check_caller)
