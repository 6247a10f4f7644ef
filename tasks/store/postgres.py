"""Direct Postgres adapter (psycopg 3), also for Supabase's own connection string."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import psycopg
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import Jsonb, set_json_loads
from psycopg_pool import ConnectionPool, PoolTimeout

from tasks import jsoncodec
from tasks.store.base import RETRY_SAFE, SCHEMA, Store, StoreError, StoreUnavailable

log = logging.getLogger("tasks.store")

# Arguments that are SQL arrays rather than jsonb documents.
_ARRAY_ARGS = {"p_attempted", "p_states", "p_buzones", "p_waba_ids", "p_wamids"}

# The server ended the session (fast or immediate shutdown, crash of another backend, still starting up):
# whatever the session was running was rolled back, so the call can be made again whatever it does.
_SESSION_ENDED = (errors.AdminShutdown, errors.CrashShutdown, errors.CannotConnectNow)
# A dead peer (a host gone, a network cut) is noticed within about this long instead of TCP's 15 minutes:
# keepalive probes while a call waits for its answer, and a bound on data left unacknowledged.
_KEEPALIVE = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}
_TCP_USER_TIMEOUT_MS = 30_000
# Pauses between attempts while the database is away; the pool reconnects in the background meanwhile.
_RETRY_FIRST_S, _RETRY_CAP_S = 0.1, 1.0


def _recipient_blocks(leads: Iterable[dict], rows_per_block: int = 5000, max_block_chars: int = 1 << 20):
    """Yield the recipients as JSON arrays of a few thousand (a call per row would cost more than the insert).

    Blocks are encoded while `leads` is read, so only one block is held at a time; long rows make shorter
    blocks, so that PostgreSQL starts storing early instead of waiting for megabytes. Each row is written
    as text directly: building a dict per row to encode the list costs about a third more.
    """
    encode = jsoncodec.encode_text
    rows, chars = [], 0
    for lead in leads:
        row = f'{{"phone":{encode(lead["phone"])},"parameters":{encode(lead["parameters"])}}}'
        rows.append(row)
        chars += len(row)
        if len(rows) == rows_per_block or chars >= max_block_chars:
            yield f"[{','.join(rows)}]"
            rows, chars = [], 0
    if rows:
        yield f"[{','.join(rows)}]"


def _one(cursor: psycopg.Cursor) -> Any:
    """The single value a function call returned."""
    row = cursor.fetchone()
    assert row is not None  # a SELECT of one function call always returns one row
    return row[0]


def connection_options(dsn: str, connect_timeout_s: int, statement_timeout_s: int) -> dict[str, Any]:
    """The libpq options every connection of the pool opens with: bounded connect and statement times.

    The statement timeout is passed as a startup option (`-c statement_timeout=...`), added to any
    `options` the URL already has; 0 leaves it to the server, which a pooler that refuses startup options
    needs (PgBouncer may answer "unsupported startup parameter: options"; Supabase also sets one per role).
    """
    kwargs: dict[str, Any] = {
        # prepare_threshold=None keeps it working behind Supabase's transaction pooler (pgbouncer).
        "prepare_threshold": None,
        "autocommit": True,
        "connect_timeout": max(2, connect_timeout_s),  # libpq treats 1 as 2
        "tcp_user_timeout": _TCP_USER_TIMEOUT_MS,
        **_KEEPALIVE,
    }
    if statement_timeout_s:
        options = conninfo_to_dict(dsn).get("options") or ""
        kwargs["options"] = f"{options} -c statement_timeout={statement_timeout_s * 1000}".strip()
    return kwargs


def _session_lost(exc: psycopg.Error, conn: psycopg.Connection | None) -> bool:
    """Whether `exc` says the connection to the database is gone (rather than the call being refused)."""
    if isinstance(exc, _SESSION_ENDED) or (exc.sqlstate or "").startswith("08"):
        return True
    return conn is not None and conn.broken


def _read_json_fast(conn: psycopg.Connection) -> None:
    """Every function answers a jsonb document: read it with orjson (tasks/jsoncodec.py), as the rest of
    the hot path does."""
    set_json_loads(jsoncodec.loads, conn)


class PostgresStore(Store):
    """Calls the schema's functions over a small connection pool, riding out a database that is away.

    While the database is down or restarting, a call waits for it for up to `wait_s` seconds, trying again
    as long as that is safe (base.RETRY_SAFE), then raises StoreUnavailable; so does a statement that runs
    longer than `statement_timeout_s`. Workers wait long (DATABASE_RETRY_S), the API only a moment, so that
    it answers 503 instead of keeping the caller waiting.
    """

    def __init__(
        self,
        dsn: str,
        *,
        max_size: int = 10,
        wait_s: float = 30.0,
        connect_timeout_s: int = 5,
        statement_timeout_s: int = 30,
    ):
        self.wait_s = wait_s
        self._pool = ConnectionPool(
            dsn,
            min_size=1,
            max_size=max_size,
            open=True,
            timeout=wait_s,
            # A connection attempt that fails is tried again for this long only; a caller that still waits
            # makes the pool start again at once. (The default doubles its pause for five minutes: after an
            # outage of 8 s the pool noticed the database was back 6 s late, after 20 s, 9 s late.)
            reconnect_timeout=2.0,
            kwargs=connection_options(dsn, connect_timeout_s, statement_timeout_s),
            configure=_read_json_fast,
        )
        self._queries: dict[tuple[str, tuple[str, ...]], sql.Composed] = {}

    def _query(self, function: str, names: tuple[str, ...]) -> sql.Composed:
        """Build (once) the SELECT that calls `function` with named arguments."""
        key = (function, names)
        if key not in self._queries:
            args = sql.SQL(", ").join(sql.SQL("{} => {}").format(sql.Identifier(n), sql.Placeholder(n)) for n in names)
            self._queries[key] = sql.SQL("SELECT {}.{}({})").format(
                sql.Identifier(SCHEMA), sql.Identifier(function), args
            )
        return self._queries[key]

    def _call(self, function: str, *, wait_s: float | None = None, **args: Any) -> Any:
        """Run one function call in its own transaction and return its JSON result.

        While the database is away the call is made again (with a short pause between attempts) until it
        answers or `wait_s` (the store's patience by default) has passed: always when the call certainly
        did not run (no connection could be had, or the server ended the session), and after a connection
        that broke mid-call only for the functions of RETRY_SAFE.
        """
        params = {
            k: Jsonb(v, dumps=jsoncodec.dumps)
            if isinstance(v, dict) or (isinstance(v, list) and k not in _ARRAY_ARGS)
            else v
            for k, v in args.items()
        }
        query = self._query(function, tuple(args))
        deadline = time.monotonic() + (self.wait_s if wait_s is None else wait_s)
        pause = _RETRY_FIRST_S
        while True:
            conn = None
            try:
                with self._pool.connection(timeout=max(0.01, deadline - time.monotonic())) as conn:
                    row = conn.execute(query, params).fetchone()
                return row[0] if row else None
            except PoolTimeout as exc:  # no connection within the patience: nothing was sent
                raise StoreUnavailable(f"database unavailable in {function}: {exc}") from exc
            except errors.QueryCanceled as exc:  # the statement timeout: the database is too slow to answer
                raise StoreUnavailable(f"database too slow in {function}: {exc}") from exc
            except (errors.DeadlockDetected, errors.SerializationFailure) as exc:
                # The server rolled the whole call back: running it again is exact, whatever it does.
                if time.monotonic() >= deadline:
                    raise StoreUnavailable(f"database kept aborting {function}: {exc}") from exc
                log.warning("%s aborted by the database (%s); trying again", function, type(exc).__name__)
                continue
            except psycopg.Error as exc:
                if not _session_lost(exc, conn):
                    raise StoreError(f"database error in {function}: {exc}") from exc
                if not (function in RETRY_SAFE or isinstance(exc, _SESSION_ENDED)):
                    raise StoreUnavailable(f"connection lost in {function} (it may have run): {exc}") from exc
                if time.monotonic() + pause >= deadline:
                    raise StoreUnavailable(f"database unavailable in {function}: {exc}") from exc
                if pause == _RETRY_FIRST_S:
                    log.warning("database connection lost in %s (%s); trying again", function, type(exc).__name__)
                time.sleep(pause)
                pause = min(_RETRY_CAP_S, pause * 2)

    def create_campaign(self, campaign: dict, leads: Iterable[dict], finish: Callable[[], dict] | None = None) -> dict:
        """Run the upload functions' three steps in one transaction, sending recipients as they are read.

        The upload is never held in memory: each block goes to PostgreSQL while the next one is parsed,
        and an error from `leads` (a file rejected half-way) rolls everything back. A connection lost
        before the first recipient was read is replaced and the transaction started again (nothing of it
        was committed); after that the stream cannot be read twice, and the upload fails whole.
        """
        deadline = time.monotonic() + self.wait_s
        while True:
            conn = None
            reading = False  # the recipients began to be read: the call cannot be made again
            try:
                with self._pool.connection(timeout=max(0.01, deadline - time.monotonic())) as conn, conn.transaction():
                    row = _one(conn.execute("SELECT instancia_sofia.begin_campaign(%s)", (Jsonb(campaign),)))
                    if row["created"]:
                        reading = True
                        with conn.pipeline() as pipeline:
                            for block in _recipient_blocks(leads):
                                # Wait for the previous block only now that this one is read: PostgreSQL
                                # stores one block while the next is parsed, and at most one is in flight
                                # (queueing them all held a 50 MB file in the send buffer).
                                pipeline.sync()
                                conn.execute("SELECT instancia_sofia.add_recipients(%s, %s::jsonb)", (row["id"], block))
                        known_now = {**campaign, **(finish() if finish is not None else {})}
                        row = _one(
                            conn.execute(
                                "SELECT instancia_sofia.finish_campaign(%s, %s)",
                                (row["id"], Jsonb(known_now.get("rejected_rows", []))),
                            )
                        )
                return row
            except PoolTimeout as exc:
                raise StoreUnavailable(f"database unavailable in create_campaign: {exc}") from exc
            except errors.QueryCanceled as exc:
                raise StoreUnavailable(f"database too slow in create_campaign: {exc}") from exc
            except psycopg.Error as exc:
                if not _session_lost(exc, conn):
                    raise StoreError(f"database error in create_campaign: {exc}") from exc
                if reading or time.monotonic() + _RETRY_FIRST_S >= deadline:
                    # Stored whole or not at all; when the commit itself was cut off, the same upload sent
                    # again with its Idempotency-Key tells which.
                    raise StoreUnavailable(f"database unavailable in create_campaign: {exc}") from exc
                time.sleep(_RETRY_FIRST_S)

    def close(self) -> None:
        """Close the pool."""
        self._pool.close()
