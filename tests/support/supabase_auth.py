"""A stand-in for Supabase Auth's token endpoints, served over real HTTP for the console's email sign-in tests.

It answers what the console and the API use, the way Supabase Auth (GoTrue behind the project's gateway) does:

- `POST /auth/v1/token?grant_type=password` with `{"email", "password"}` and `POST /auth/v1/token?grant_type=
  refresh_token` with `{"refresh_token"}`: a session `{access_token, token_type, expires_in, expires_at,
  refresh_token, user}`. Refresh tokens are single use (each refresh rotates it). Wrong credentials answer 400
  `invalid_credentials`, an unknown or used refresh token 400 `refresh_token_not_found`.
- `POST /auth/v1/logout` with the access token as a bearer: the user's refresh tokens stop working, 204.
- `GET /auth/v1/.well-known/jwks.json`: the public key of the ES256 access tokens (the API verifies them with it),
  or an empty key set when the stand-in signs HS256 with a shared JWT secret instead.
- every route asks for the project's anon key in the `apikey` header (401 otherwise), and answers CORS preflights
  for any origin, as the hosted gateway does.

Access tokens carry the claims Supabase puts in them (aud "authenticated", iss "<url>/auth/v1", sub, email,
role, app_metadata, session_id ...). The stand-in records every grant it answered, so a test can see a refresh.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "authorization, apikey, content-type, x-client-info, x-supabase-api-version",
    "Access-Control-Max-Age": "600",
}


@dataclass
class User:
    """A user of the stand-in project: credentials and the app_metadata its tokens carry."""

    email: str
    password: str
    app_metadata: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass(frozen=True)
class Grant:
    """One answer of the token endpoint: which grant, for whom, and the access token it issued (or the error)."""

    grant_type: str
    email: str | None
    access_token: str | None
    expires_at: int | None
    error: str | None = None


class SupabaseAuthStandIn:
    """The token, logout and JWKS endpoints of a Supabase project, on 127.0.0.1 at a free port."""

    def __init__(
        self, users: list[User], anon_key: str, *, lifetime_s: int = 3600, jwt_secret: str | None = None
    ) -> None:
        self.users = {u.email.lower(): u for u in users}
        self.anon_key = anon_key
        self.lifetime_s = lifetime_s
        self.jwt_secret = jwt_secret
        self.kid = secrets.token_hex(8)
        self._private_key = ec.generate_private_key(ec.SECP256R1())
        self._lock = threading.Lock()
        self._refresh_tokens: dict[str, tuple[str, str]] = {}  # token -> (user id, session id)
        self.grants: list[Grant] = []
        # The next this many sessions are issued already a minute past their expiry, as the token of a laptop
        # that slept through its refresh looks when it wakes (a knob of the stand-in, not of Supabase).
        self.expired_sessions = 0
        self.logouts: list[str] = []  # user ids
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.issuer = f"{self.url}/auth/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, name="supabase-auth", daemon=True)

    def start(self) -> SupabaseAuthStandIn:
        """Start answering; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering and close the socket."""
        self._server.shutdown()
        self._server.server_close()

    def grants_of(self, grant_type: str) -> list[Grant]:
        """The successful answers of one grant type, oldest first."""
        with self._lock:
            return [g for g in self.grants if g.grant_type == grant_type and g.error is None]

    def claims(self, token: str) -> dict[str, Any]:
        """The claims of a token this stand-in issued (not verified: the tests read what they were given)."""
        return jwt.decode(token, options={"verify_signature": False})

    # ---- what the endpoints do ------------------------------------------------------------------------

    def jwks(self) -> dict[str, Any]:
        """The published signing keys: the ES256 public key, or none when tokens are HS256."""
        if self.jwt_secret:
            return {"keys": []}
        key = ECAlgorithm.to_jwk(self._private_key.public_key(), as_dict=True)
        return {"keys": [{**key, "kid": self.kid, "alg": "ES256", "use": "sig", "key_ops": ["verify"]}]}

    def token(self, grant_type: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Answer the token endpoint."""
        if grant_type == "password":
            user = self.users.get(str(body.get("email", "")).strip().lower())
            if user is None or body.get("password") != user.password:
                return self._refuse(grant_type, body.get("email"), "invalid_credentials", "Invalid login credentials")
            session_id = str(uuid.uuid4())
        elif grant_type == "refresh_token":
            with self._lock:
                owner = self._refresh_tokens.pop(str(body.get("refresh_token", "")), None)
            if owner is None:
                return self._refuse(
                    grant_type, None, "refresh_token_not_found", "Invalid Refresh Token: Refresh Token Not Found"
                )
            user_id, session_id = owner
            user = next(u for u in self.users.values() if u.id == user_id)
        else:
            return 400, {"code": 400, "error_code": "validation_failed", "msg": f"Unsupported grant type {grant_type}"}
        return 200, self._session(grant_type, user, session_id)

    def logout(self, authorization: str) -> tuple[int, dict[str, Any] | None]:
        """End every session of the token's user (scope global, Supabase's default)."""
        scheme, _, token = authorization.partition(" ")
        try:
            if scheme.lower() != "bearer":
                raise jwt.InvalidTokenError("no bearer token")
            claims = self._verify(token)
        except jwt.InvalidTokenError:
            return 401, {
                "code": 401,
                "error_code": "bad_jwt",
                "msg": "invalid JWT: unable to parse or verify signature",
            }
        with self._lock:
            for refresh, (user_id, _) in list(self._refresh_tokens.items()):
                if user_id == claims["sub"]:
                    del self._refresh_tokens[refresh]
            self.logouts.append(claims["sub"])
        return 204, None

    def _refuse(self, grant_type: str, email: Any, code: str, message: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.grants.append(Grant(grant_type, email if isinstance(email, str) else None, None, None, code))
        return 400, {"code": 400, "error_code": code, "msg": message}

    def _session(self, grant_type: str, user: User, session_id: str) -> dict[str, Any]:
        """A new access token and rotated refresh token for the user, recorded as a grant."""
        now = int(time.time())
        expires_at = now + self.lifetime_s
        with self._lock:
            if self.expired_sessions > 0:
                self.expired_sessions -= 1
                expires_at = now - 60
        app_metadata = {"provider": "email", "providers": ["email"], **user.app_metadata}
        claims = {
            "iss": self.issuer,
            "sub": user.id,
            "aud": "authenticated",
            "exp": expires_at,
            "iat": now,
            "email": user.email,
            "phone": "",
            "app_metadata": app_metadata,
            "user_metadata": {},
            "role": "authenticated",
            "aal": "aal1",
            "amr": [{"method": "password" if grant_type == "password" else "token_refresh", "timestamp": now}],
            "session_id": session_id,
            "is_anonymous": False,
        }
        if self.jwt_secret:
            access = jwt.encode(claims, self.jwt_secret, algorithm="HS256", headers={"typ": "JWT"})
        else:
            access = jwt.encode(claims, self._private_key, algorithm="ES256", headers={"kid": self.kid, "typ": "JWT"})
        refresh = secrets.token_urlsafe(12)
        with self._lock:
            self._refresh_tokens[refresh] = (user.id, session_id)
            self.grants.append(Grant(grant_type, user.email, access, expires_at))
        return {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": expires_at - now,
            "expires_at": expires_at,
            "refresh_token": refresh,
            "user": {
                "id": user.id,
                "aud": "authenticated",
                "role": "authenticated",
                "email": user.email,
                "app_metadata": app_metadata,
                "user_metadata": {},
            },
        }

    def _verify(self, token: str) -> dict[str, Any]:
        """The claims of one of our own access tokens, signature and expiry checked."""
        key: Any = self.jwt_secret or self._private_key.public_key()
        algorithm = "HS256" if self.jwt_secret else "ES256"
        return jwt.decode(token, key, algorithms=[algorithm], audience="authenticated", issuer=self.issuer)

    # ---- HTTP ----------------------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        auth = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: dict[str, Any] | None = None) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                for name, value in CORS_HEADERS.items():
                    self.send_header(name, value)
                if body is not None:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _api_key_refused(self) -> bool:
                key = self.headers.get("apikey")
                if key == auth.anon_key:
                    return False
                message = "No API key found in request" if not key else "Invalid API key"
                self._answer(401, {"message": message})
                return True

            def do_OPTIONS(self) -> None:
                self._answer(204)

            def do_GET(self) -> None:
                if urlsplit(self.path).path == "/auth/v1/.well-known/jwks.json":
                    self._answer(200, auth.jwks())  # public, like Supabase's
                    return
                self._answer(404, {"code": 404, "error_code": "not_found", "msg": "Not found"})

            def do_POST(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if self._api_key_refused():
                    return
                if parts.path == "/auth/v1/token":
                    try:
                        body = json.loads(raw or b"{}")
                    except ValueError:
                        body = None
                    if not isinstance(body, dict):
                        self._answer(
                            400, {"code": 400, "error_code": "bad_json", "msg": "Could not parse request body"}
                        )
                        return
                    grant_type = parse_qs(parts.query).get("grant_type", [""])[0]
                    self._answer(*auth.token(grant_type, body))
                elif parts.path == "/auth/v1/logout":
                    self._answer(*auth.logout(self.headers.get("Authorization", "")))
                else:
                    self._answer(404, {"code": 404, "error_code": "not_found", "msg": "Not found"})

        return Handler
