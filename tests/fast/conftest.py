"""In-process tests: the pipeline, sender, sweeper, webhook applier and routes called directly.

They run against the machine's real PostgreSQL (a database of their own), a Redis db of their own and the
real sandbox over HTTP; only the Celery transport is replaced, by `InlineQueue`, so the test plays the
worker and can stop between any two steps.
"""

from __future__ import annotations

from dataclasses import replace

import psycopg
import pytest
import redis

from tasks.config import load_settings
from tasks.runtime import build_runtime
from tests.conftest import SENDERS, TEST_DB, TEST_FAST_REDIS_URL, empty_redis, fresh_database, start_test_sandbox
from tests.fast.inline import InlineQueue
from webapi import create_app

FAST_DB = TEST_DB + "_fast"
FAST_REDIS_URL = TEST_FAST_REDIS_URL
APP_SECRET = "fast-app-secret"


@pytest.fixture(scope="session")
def fast_database_url() -> str:
    """A fresh database of the fast lane's own."""
    return fresh_database(FAST_DB)


@pytest.fixture(scope="session")
def fast_redis() -> redis.Redis:
    """The fast tests' Redis db."""
    return empty_redis(FAST_REDIS_URL)


@pytest.fixture(scope="session")
def fast_sandbox():
    """The WhatsApp sandbox answering within a few milliseconds."""
    handle = start_test_sandbox(1, 3)
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def fast_env(fast_database_url, fast_redis, fast_sandbox) -> dict[str, str]:
    """The settings' environment: small batches and chunks, so a few dozen messages make several of each."""
    return {
        "DATABASE_URL": fast_database_url,
        "REDIS_URL": FAST_REDIS_URL,
        "API_WHATSAPP_URL": fast_sandbox.url,
        "WHATSAPP_API_VERSION": "v21.0",
        "BATCH_SIZE": "10",
        "CHUNK_SIZE": "5",
        "MAX_CONCURRENT_BATCHES": "2",
        "MAX_RETRIES": "2",
        "HTTP_TIMEOUT_S": "0.5",
        "MAX_ERROR_RATE": "1",
        "WORKER_HEARTBEAT_TTL_S": "3",
        "STALE_BATCH_S": "1",
        "STUCK_CLAIM_S": "300",
        "CHUNK_DEADLINE_S": "20",
        "INSTANCE_ID": "fast",
        "MAX_CSV_SIZE_MB": "1",
        "MAX_MESSAGES_PER_CAMPAIGN": "1000",
        "WHATSAPP_APP_SECRET": APP_SECRET,
        "WHATSAPP_VERIFY_TOKEN": "verify-fast",
    }


@pytest.fixture(scope="session")
def fast_settings(fast_env):
    """Settings read from that environment only."""
    return load_settings(fast_env, dotenv=False)


@pytest.fixture(scope="session")
def senders(fast_settings):
    """The test buzones registered in the fast database."""
    from tasks.store.postgres import PostgresStore

    store = PostgresStore(fast_settings.database_url)
    for buzon, (pnid, token, mps) in SENDERS.items():
        store.upsert_sender(buzon, pnid, token, mps)
    store.close()
    return SENDERS


@pytest.fixture(scope="session")
def fast_keys(fast_settings) -> dict[str, str]:
    """One API key per role, made the way `flask --app webapi apikey create` makes them."""
    from tasks.store.postgres import PostgresStore
    from webapi.apikeys import create_key

    store = PostgresStore(fast_settings.database_url)
    keys = {role: create_key(store, f"fast-{role}", role)[0] for role in ("viewer", "operator", "admin")}
    store.close()
    return keys


@pytest.fixture
def clean_slate(fast_settings, fast_redis, fast_sandbox, senders):
    """No campaigns, no live state, a sandbox with its start-up configuration and an empty log."""
    with psycopg.connect(fast_settings.database_url, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE instancia_sofia.campaigns, instancia_sofia.leads_activos, instancia_sofia.suppressions, "
            "instancia_sofia.template_statuses, instancia_sofia.whatsapp_signals"
        )
    fast_redis.flushdb()
    fast_sandbox.reset(config=True)


@pytest.fixture
def queue() -> InlineQueue:
    """Batches wait for the test to run them."""
    return InlineQueue()


@pytest.fixture
def rt(fast_settings, queue, clean_slate):
    """A runtime built by the composition root, with the inline queue."""
    runtime = build_runtime(fast_settings, queue)
    # Messages of a chunk are sent one after the other in this process (no gevent patching): short
    # backoffs keep retry tests quick without changing what the loop decides.
    runtime.sender.policy = replace(runtime.sender.policy, backoff_base_s=0.02, backoff_cap_s=0.1)
    yield runtime
    runtime.close()


@pytest.fixture
def app(fast_settings, queue, clean_slate):
    """The Flask app built by create_app with the inline queue."""
    application = create_app({"TESTING": True}, settings=fast_settings, queue=queue)
    yield application
    application.extensions["campaigns"].close()


@pytest.fixture
def client(app, fast_keys):
    """A test client of that app, calling as an operator (requests may bring other credentials)."""
    test_client = app.test_client()
    test_client.environ_base["HTTP_X_API_KEY"] = fast_keys["operator"]
    return test_client
