"""Direct Postgres adapter (psycopg 3), also for Supabase's own connection string."""

from __future__ import annotations

import json
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from tasks.store.base import SCHEMA, Store, StoreError


# Arguments that are SQL arrays rather than jsonb documents.
_ARRAY_ARGS = {"p_attempted", "p_states"}


def _copy_blocks(campaign_id: str, leads: list[dict], rows_per_block: int = 5000):
    """COPY text-format lines, a few thousand rows per write (per-row writes cost more than the insert).

    Slugs and E.164 digits need no escaping; JSON text escapes control characters itself, so only its
    backslashes must be doubled for COPY.
    """
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    lines = []
    for seq, lead in enumerate(leads, start=1):
        lines.append(f"{campaign_id}\t{seq}\t{lead['phone']}\t{dumps(lead['parameters']).replace(chr(92), chr(92) * 2)}\n")
        if len(lines) == rows_per_block:
            yield "".join(lines).encode()
            lines = []
    if lines:
        yield "".join(lines).encode()


class PostgresStore(Store):
    """Calls the schema's functions over a small connection pool."""

    def __init__(self, dsn: str, *, max_size: int = 10):
        # prepare_threshold=None keeps it working behind Supabase's transaction pooler (pgbouncer).
        self._pool = ConnectionPool(dsn, min_size=1, max_size=max_size, open=True, timeout=30,
                                    kwargs={"prepare_threshold": None, "autocommit": True})
        self._queries: dict[tuple[str, tuple[str, ...]], sql.Composed] = {}

    def _query(self, function: str, names: tuple[str, ...]) -> sql.Composed:
        """Build (once) the SELECT that calls `function` with named arguments."""
        key = (function, names)
        if key not in self._queries:
            args = sql.SQL(", ").join(
                sql.SQL("{} => {}").format(sql.Identifier(n), sql.Placeholder(n)) for n in names)
            self._queries[key] = sql.SQL("SELECT {}.{}({})").format(
                sql.Identifier(SCHEMA), sql.Identifier(function), args)
        return self._queries[key]

    def _call(self, function: str, **args: Any) -> Any:
        """Run one function call in its own transaction and return its JSON result."""
        params = {k: Jsonb(v) if isinstance(v, dict) or (isinstance(v, list) and k not in _ARRAY_ARGS) else v
                  for k, v in args.items()}
        try:
            with self._pool.connection() as conn:
                row = conn.execute(self._query(function, tuple(args)), params).fetchone()
        except psycopg.Error as exc:
            raise StoreError(f"database error in {function}: {exc}") from exc
        return row[0] if row else None

    def create_campaign(self, campaign: dict, leads: list[dict]) -> dict:
        """Store the campaign row and COPY its recipients, in one transaction (several times faster)."""
        try:
            with self._pool.connection() as conn, conn.transaction():
                row = conn.execute("SELECT instancia_sofia.create_campaign_row(%s, %s)",
                                   (Jsonb(campaign), len(leads))).fetchone()[0]
                if row["created"]:
                    with conn.cursor().copy("COPY instancia_sofia.leads_activos (campaign_id, seq, phone, "
                                            "parameters) FROM STDIN") as copy:
                        for block in _copy_blocks(row["id"], leads):
                            copy.write(block)
        except psycopg.Error as exc:
            raise StoreError(f"database error in create_campaign: {exc}") from exc
        return row

    def close(self) -> None:
        """Close the pool."""
        self._pool.close()
