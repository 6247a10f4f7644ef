"""A database that is away: the store waits a bounded time, the API answers 503, the sweeper skips a pass."""

from __future__ import annotations

import time
from dataclasses import replace

import psycopg
import pytest

from tasks import keys, texts
from tasks.runtime import build_runtime
from tasks.store import StoreUnavailable
from tasks.store.postgres import PostgresStore, connection_options
from tests.conftest import free_port
from tests.fast.helpers import live, new_campaign
from tests.fast.inline import InlineQueue
from webapi import create_app

APP_NAME = "wcq-fast-away"


@pytest.fixture
def dead_settings(fast_settings, clean_slate):
    """Settings pointing at a port where no database listens, waiting at most 0.3 s for it."""
    return replace(
        fast_settings, database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/none", database_retry_s=0.3
    )


def _terminate_sessions(database_url: str) -> int:
    """End the store's sessions the way a server shutdown does (57P01); returns how many."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s", (APP_NAME,)
        ).fetchone()[0]


def test_calls_on_sessions_the_server_ended_are_made_again_once(fast_settings, clean_slate, senders):
    store = PostgresStore(f"{fast_settings.database_url}?application_name={APP_NAME}", wait_s=5)
    try:
        assert store.get_sender("ventas") is not None
        assert _terminate_sessions(fast_settings.database_url) >= 1
        # A read and a write that is not safe to repeat both go through: an ended session ran nothing.
        assert store.get_sender("ventas") is not None
        assert _terminate_sessions(fast_settings.database_url) >= 1
        entry = store.record_audit(
            {"actor_kind": "cli", "action": "access", "outcome": "ok", "status_code": 0, "details": {}}
        )
        written = store.list_audit(None, None, None, 100, 0)[0]
        assert [e["id"] for e in written].count(entry) == 1
    finally:
        store.close()


def test_a_database_that_does_not_answer_is_reported_within_the_wait(dead_settings):
    store = PostgresStore(dead_settings.database_url, wait_s=0.3)
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            store.get_campaign("nada")
        assert time.monotonic() - started < 1.5
        started = time.monotonic()
        assert store.ping() is False
        assert time.monotonic() - started < 2
    finally:
        store.close()


def test_connections_open_with_bounded_connect_and_statement_times(fast_settings):
    url = f"{fast_settings.database_url}?options=-c%20search_path%3Dinstancia_sofia"
    options = connection_options(url, connect_timeout_s=3, statement_timeout_s=7)
    assert options["connect_timeout"] == 3
    assert options["options"] == "-c search_path=instancia_sofia -c statement_timeout=7000"
    with psycopg.connect(url, **options) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "7s"
        assert conn.execute("SHOW search_path").fetchone()[0] == "instancia_sofia"  # the URL's own options stay
    assert "options" not in connection_options(fast_settings.database_url, 5, 0)  # 0: the server's own


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/estado-cola/promo"), ("GET", "/api/listar-campanas"), ("POST", "/api/pausar-campana/promo")],
)
def test_the_api_answers_503_in_spanish_while_the_database_is_away(dead_settings, fast_keys, caplog, method, path):
    app = create_app({"TESTING": True}, settings=dead_settings, queue=InlineQueue())
    try:
        client = app.test_client()
        started = time.monotonic()
        response = client.open(path, method=method, headers={"X-API-Key": fast_keys["operator"]})
        took = time.monotonic() - started
        assert response.status_code == 503
        assert response.json == {
            "success": False,
            "message": texts.DATABASE_UNAVAILABLE,
            "details": {"retry_after_s": 5},
        }
        assert response.headers["Retry-After"] == "5"
        assert took < 1.5, f"{took:.1f}s"
        if method == "POST":  # an audited action: its entry is logged, without waiting for the database again
            assert "not written: the database is unavailable" in caplog.text
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json["database_connected"] is False
    finally:
        app.extensions["campaigns"].close()


def test_the_sweeper_skips_a_pass_while_the_database_is_away(dead_settings, fast_redis):
    runtime = build_runtime(dead_settings, InlineQueue())
    try:
        started = time.monotonic()
        assert runtime.sweeper.guarded_sweep() == {"skipped": True, "database": False}
        assert time.monotonic() - started < 2
        assert not fast_redis.exists(keys.SWEEP_LOCK)
    finally:
        runtime.close()


def test_the_sweeper_survives_the_database_leaving_during_a_pass(rt, monkeypatch):
    def away(*_args, **_kwargs):
        raise StoreUnavailable("database unavailable in open_campaigns")

    monkeypatch.setattr(rt.store, "open_campaigns", away)
    assert rt.sweeper.guarded_sweep() == {"skipped": True, "database": False}
    assert not rt.state.redis.exists(keys.SWEEP_LOCK)


def test_a_chunk_whose_credentials_cannot_be_read_is_handed_back_without_pausing(rt, queue, monkeypatch):
    new_campaign(rt, "sin-base", 10)

    def away(_buzon):
        raise StoreUnavailable("database unavailable in get_sender")

    monkeypatch.setattr(rt.sender, "sender", away)
    outcomes = rt.sender.send("sin-base", 1, 0, rt.owner)
    assert outcomes and {o["status"] for o in outcomes} == {"pending"}
    assert live(rt, "sin-base")["status"] == "running"
