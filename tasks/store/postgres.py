"""Direct Postgres adapter (psycopg 3), also for Supabase's own connection string."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from tasks.store.base import SCHEMA, Store, StoreError

# Arguments that are SQL arrays rather than jsonb documents.
_ARRAY_ARGS = {"p_attempted", "p_states", "p_buzones"}


def _recipient_blocks(leads: Iterable[dict], rows_per_block: int = 5000, max_block_chars: int = 1 << 20):
    """Yield the recipients as JSON arrays of a few thousand (a call per row would cost more than the insert).

    Blocks are encoded while `leads` is read, so only one block is held at a time; long rows make shorter
    blocks, so that PostgreSQL starts storing early instead of waiting for megabytes. Each row is written
    as text directly: building a dict per row to encode the list costs about a third more.
    """
    encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
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


class PostgresStore(Store):
    """Calls the schema's functions over a small connection pool."""

    def __init__(self, dsn: str, *, max_size: int = 10):
        # prepare_threshold=None keeps it working behind Supabase's transaction pooler (pgbouncer).
        self._pool = ConnectionPool(
            dsn,
            min_size=1,
            max_size=max_size,
            open=True,
            timeout=30,
            kwargs={"prepare_threshold": None, "autocommit": True},
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

    def _call(self, function: str, **args: Any) -> Any:
        """Run one function call in its own transaction and return its JSON result."""
        params = {
            k: Jsonb(v) if isinstance(v, dict) or (isinstance(v, list) and k not in _ARRAY_ARGS) else v
            for k, v in args.items()
        }
        try:
            with self._pool.connection() as conn:
                row = conn.execute(self._query(function, tuple(args)), params).fetchone()
        except psycopg.Error as exc:
            raise StoreError(f"database error in {function}: {exc}") from exc
        return row[0] if row else None

    def create_campaign(self, campaign: dict, leads: Iterable[dict], finish: Callable[[], dict] | None = None) -> dict:
        """Run the upload functions' three steps in one transaction, sending recipients as they are read.

        The upload is never held in memory: each block goes to PostgreSQL while the next one is parsed,
        and an error from `leads` (a file rejected half-way) rolls everything back.
        """
        try:
            with self._pool.connection() as conn, conn.transaction():
                row = _one(conn.execute("SELECT instancia_sofia.begin_campaign(%s)", (Jsonb(campaign),)))
                if row["created"]:
                    with conn.pipeline() as pipeline:
                        for block in _recipient_blocks(leads):
                            # Wait for the previous block only now that this one is read: PostgreSQL stores
                            # one block while the next is parsed, and at most one is in flight (queueing
                            # them all held a 50 MB file in the send buffer).
                            pipeline.sync()
                            conn.execute("SELECT instancia_sofia.add_recipients(%s, %s::jsonb)", (row["id"], block))
                    known_now = {**campaign, **(finish() if finish is not None else {})}
                    row = _one(
                        conn.execute(
                            "SELECT instancia_sofia.finish_campaign(%s, %s)",
                            (row["id"], Jsonb(known_now.get("rejected_rows", []))),
                        )
                    )
        except psycopg.Error as exc:
            raise StoreError(f"database error in create_campaign: {exc}") from exc
        return row

    def close(self) -> None:
        """Close the pool."""
        self._pool.close()
