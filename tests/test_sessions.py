"""Supabase Auth sessions: HS256 tokens signed with the project secret, and RS256/ES256 tokens checked against
a JWKS that a real local HTTP server publishes (with key rotation)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from webapi import create_app
from webapi.tokens import SessionVerifier, TokenError

SECRET = "test-jwt-secret-with-enough-length-0123456789"


class JwksServer:
    """Serves /auth/v1/.well-known/jwks.json on 127.0.0.1 and counts how often it was read."""

    def __init__(self):
        self.keys: dict[str, tuple[str, object]] = {}  # kid -> (alg, private key)
        self.hits = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path != "/auth/v1/.well-known/jwks.json":
                    self.send_error(404)
                    return
                server.hits += 1
                body = json.dumps(server.jwks()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def add_key(self, alg: str) -> str:
        """Publish a new signing key; returns its kid."""
        kid = f"{alg.lower()}-{uuid.uuid4().hex[:8]}"
        private = ec.generate_private_key(ec.SECP256R1()) if alg == "ES256" else rsa.generate_private_key(65537, 2048)
        self.keys[kid] = (alg, private)
        return kid

    def jwks(self) -> dict:
        """The public halves, as Supabase publishes them."""
        entries = []
        for kid, (alg, private) in self.keys.items():
            algorithm = jwt.algorithms.ECAlgorithm if alg == "ES256" else jwt.algorithms.RSAAlgorithm
            jwk = json.loads(algorithm.to_jwk(private.public_key()))
            entries.append({**jwk, "kid": kid, "alg": alg, "use": "sig"})
        return {"keys": entries}

    def token(self, kid: str, **claims) -> str:
        """A token signed with one of the published keys."""
        alg, private = self.keys[kid]
        return jwt.encode(session_claims(self.url, **claims), private, algorithm=alg, headers={"kid": kid})

    def stop(self):
        self.httpd.shutdown()


def session_claims(supabase_url: str, **overrides) -> dict:
    """The claims of a Supabase access token."""
    now = int(time.time())
    return {
        "sub": str(uuid.uuid4()),
        "email": "ana@example.test",
        "aud": "authenticated",
        "role": "authenticated",
        "iss": f"{supabase_url}/auth/v1",
        "iat": now,
        "exp": now + 600,
        **overrides,
    }


@pytest.fixture(scope="module")
def jwks_server():
    server = JwksServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hs256_app(service_env):
    """The app with a project JWT secret (HS256)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SUPABASE_URL", "http://127.0.0.1:9")
        mp.setenv("SUPABASE_JWT_SECRET", SECRET)
        mp.setenv("DEFAULT_ROLE", "viewer")
        yield create_app()


@pytest.fixture(scope="module")
def published(jwks_server) -> dict[str, str]:
    """One published key per algorithm, before the app reads the key set: {alg: kid}."""
    return {alg: jwks_server.add_key(alg) for alg in ("ES256", "RS256")}


@pytest.fixture(scope="module")
def jwks_app(service_env, jwks_server, published):
    """The app without a secret: tokens are checked against the JWKS server."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SUPABASE_URL", jwks_server.url)
        mp.delenv("SUPABASE_JWT_SECRET", raising=False)
        yield create_app()


def hs256(**claims) -> str:
    """A token signed with the test project's secret."""
    return jwt.encode(session_claims("http://127.0.0.1:9", **claims), SECRET, algorithm="HS256")


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_a_session_with_a_role_in_app_metadata_may_act(hs256_app):
    client = hs256_app.test_client()
    token = hs256(app_metadata={"wcq_role": "operator"})
    assert client.post("/api/pausar-campana/no-existe", headers=bearer(token)).status_code == 404
    assert client.get("/api/auditoria", headers=bearer(token)).status_code == 403


def test_a_session_without_a_role_gets_the_default_role(hs256_app):
    client = hs256_app.test_client()
    token = hs256()
    assert client.get("/api/listar-campanas", headers=bearer(token)).status_code == 200
    refused = client.post("/api/pausar-campana/no-existe", headers=bearer(token))
    assert refused.status_code == 403 and refused.get_json()["details"]["role"] == "viewer"


def test_a_role_can_come_from_the_api_users_table(hs256_app, store):
    user_id = str(uuid.uuid4())
    store.upsert_api_user(user_id, "admin", ["soporte"], "jefa@example.test")
    assert store.get_api_user(user_id)["role"] == "admin"
    client = hs256_app.test_client()
    response = client.get("/api/buzones", headers=bearer(hs256(sub=user_id)))
    assert [b["buzon"] for b in response.get_json()["buzones"]] == ["soporte"]
    assert client.get("/api/auditoria", headers=bearer(hs256(sub=user_id))).status_code == 200


def test_buzones_in_app_metadata_limit_the_session(hs256_app):
    token = hs256(app_metadata={"wcq_role": "viewer", "wcq_buzones": ["lento"]})
    response = hs256_app.test_client().get("/api/buzones", headers=bearer(token))
    assert [b["buzon"] for b in response.get_json()["buzones"]] == ["lento"]


@pytest.mark.parametrize(
    "token, reason",
    [
        (hs256(exp=int(time.time()) - 120), "expiró"),
        (hs256(aud="anon"), "aud"),
        (hs256(iss="https://otro.supabase.co/auth/v1"), "iss"),
        (
            jwt.encode(
                session_claims("http://127.0.0.1:9"), "another-secret-of-enough-length-012345", algorithm="HS256"
            ),
            "token no válido",
        ),
        (jwt.encode(session_claims("http://127.0.0.1:9"), None, algorithm="none"), "algoritmo"),
        ("not.a.jwt", "JWT"),
    ],
)
def test_bad_sessions_are_refused_with_401(hs256_app, token, reason):
    response = hs256_app.test_client().get("/api/listar-campanas", headers=bearer(token))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert reason in response.get_json()["message"] and "Inicie sesión" in response.get_json()["message"]


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_asymmetric_sessions_are_checked_against_the_published_keys(jwks_app, jwks_server, published, alg):
    kid = published[alg]
    client = jwks_app.test_client()
    token = jwks_server.token(kid, app_metadata={"wcq_role": "operator"})
    assert client.get("/api/listar-campanas", headers=bearer(token)).status_code == 200
    for bad in (
        jwks_server.token(kid, exp=int(time.time()) - 120),
        jwks_server.token(kid, aud="anon"),
        jwks_server.token(kid, iss="http://127.0.0.1:1/auth/v1"),
    ):
        assert client.get("/api/listar-campanas", headers=bearer(bad)).status_code == 401
    # An HS256 token is refused where the project signs with asymmetric keys.
    assert client.get("/api/listar-campanas", headers=bearer(hs256())).status_code == 401


def test_rotated_keys_are_fetched_and_unknown_ones_refetch_at_most_once_per_interval(jwks_server):
    verifier = SessionVerifier(jwks_server.url, None, jwks_cache_s=600, min_refresh_s=1.0)
    old = jwks_server.add_key("ES256")
    assert verifier.verify(jwks_server.token(old))["aud"] == "authenticated"
    hits = jwks_server.hits
    assert verifier.verify(jwks_server.token(old)) and jwks_server.hits == hits, "cached"

    time.sleep(1.1)
    new = jwks_server.add_key("RS256")
    del jwks_server.keys[old]
    assert verifier.verify(jwks_server.token(new))["sub"], "the rotated key was fetched"
    assert jwks_server.hits == hits + 1

    forged = jwt.encode(
        session_claims(jwks_server.url),
        ec.generate_private_key(ec.SECP256R1()),
        algorithm="ES256",
        headers={"kid": "made-up"},
    )
    for _ in range(5):
        with pytest.raises(TokenError, match="kid"):
            verifier.verify(forged)
    assert jwks_server.hits == hits + 1, "unknown kids within the interval cause no refetch"
    time.sleep(1.1)
    with pytest.raises(TokenError):
        verifier.verify(forged)
    assert jwks_server.hits == hits + 2
