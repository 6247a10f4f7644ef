"""Verification of Supabase Auth access tokens: HS256 with the project's JWT secret, or its published JWKS."""

from __future__ import annotations

import logging
import threading
import time

import jwt
import requests

from tasks import texts

log = logging.getLogger("webapi.tokens")

AUDIENCE = "authenticated"
_ASYMMETRIC = ("RS256", "ES256")


class TokenError(Exception):
    """The token cannot be accepted; the message says why, for the caller."""


class JwksCache:
    """The signing keys published at a JWKS URL, kept for `ttl_s` and refetched when a token names an unknown key.

    A refetch for an unknown `kid` happens at most once per `min_refresh_s`, so tokens with made-up key ids
    cannot turn every request into a call to Supabase.
    """

    def __init__(self, url: str, ttl_s: float = 600.0, min_refresh_s: float = 10.0, timeout_s: float = 5.0):
        self.url = url
        self.ttl_s = ttl_s
        self.min_refresh_s = min_refresh_s
        self.timeout_s = timeout_s
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = threading.Lock()

    def key(self, kid: str | None) -> jwt.PyJWK:
        """The key with this id, fetching the key set when it is stale or does not know the id yet."""
        with self._lock:
            now = time.monotonic()
            stale = self._fetched_at is None or now - self._fetched_at > self.ttl_s
            may_retry = self._attempted_at is None or now - self._attempted_at >= self.min_refresh_s
            if (stale or kid not in self._keys) and may_retry:
                self._fetch(now)
            if kid not in self._keys:
                raise TokenError(texts.TOKEN_KEY_UNPUBLISHED)
            return self._keys[kid]

    def _fetch(self, now: float) -> None:
        """Replace the cached keys with the published ones; on failure keep the old ones."""
        self._attempted_at = now
        try:
            response = requests.get(self.url, timeout=self.timeout_s)
            response.raise_for_status()
            keys = jwt.PyJWKSet.from_dict(response.json()).keys
        except (requests.RequestException, ValueError, jwt.PyJWKSetError) as exc:
            log.warning(
                "JWKS at %s could not be read (%s); keeping %d cached keys",
                self.url,
                type(exc).__name__,
                len(self._keys),
            )
            return
        self._keys = {k.key_id: k for k in keys if k.key_id and k.algorithm_name in _ASYMMETRIC}
        self._fetched_at = now


class SessionVerifier:
    """Checks a Supabase access token's signature, expiry, audience and issuer; returns its claims."""

    def __init__(
        self, supabase_url: str, jwt_secret: str | None, jwks_cache_s: float = 600.0, min_refresh_s: float = 10.0
    ):
        self.issuer = f"{supabase_url.rstrip('/')}/auth/v1"
        self.jwt_secret = jwt_secret
        self.jwks = (
            None if jwt_secret else JwksCache(f"{self.issuer}/.well-known/jwks.json", jwks_cache_s, min_refresh_s)
        )

    def verify(self, token: str) -> dict:
        """The token's claims, or TokenError."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise TokenError(texts.TOKEN_NOT_A_JWT) from None
        algorithm = header.get("alg")
        if self.jwt_secret:
            if algorithm != "HS256":
                raise TokenError(texts.TOKEN_ALGORITHM_NOT_HS256.format(algorithm=algorithm))
            key = self.jwt_secret
        else:
            if algorithm not in _ASYMMETRIC:
                raise TokenError(texts.TOKEN_ALGORITHM_NOT_ASYMMETRIC.format(algorithm=algorithm))
            assert self.jwks is not None  # built whenever no secret is set
            key = self.jwks.key(header.get("kid")).key
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=AUDIENCE,
                issuer=self.issuer,
                leeway=30,
                options={"require": ["exp", "sub", "aud", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError(texts.TOKEN_EXPIRED) from None
        except jwt.InvalidAudienceError:
            raise TokenError(texts.TOKEN_WRONG_AUDIENCE) from None
        except jwt.InvalidIssuerError:
            raise TokenError(texts.TOKEN_WRONG_ISSUER) from None
        except jwt.InvalidTokenError as exc:
            raise TokenError(texts.TOKEN_INVALID.format(error=type(exc).__name__)) from None
