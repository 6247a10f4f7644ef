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


class _CopyLines:
    """COPY text-format blocks of a few thousand rows (per-row writes cost more than the insert), counted.

    Slugs and E.164 digits need no escaping; JSON text escapes control characters itself, so only its
    backslashes must be doubled for COPY.
    """

    def __init__(self, campaign_id: str, rows_per_block: int = 5000):
        self.campaign_id = campaign_id
        self.rows_per_block = rows_per_block
        self.count = 0

    def blocks(self, leads: Iterable[dict]):
        """Yield encoded blocks while `leads` is read, so only one block is held at a time."""
        dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
        prefix = f"{self.campaign_id}\t"
        lines = []
        for lead in leads:
            self.count += 1
            params = dumps(lead["parameters"]).replace("\\", "\\\\")
            lines.append(f"{prefix}{self.count}\t{lead['phone']}\t{params}\n")
            if len(lines) == self.rows_per_block:
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

    def create_campaign(self, campaign: dict, leads: Iterable[dict],
                        finish: Callable[[], dict] | None = None) -> dict:
        """Store the campaign row and COPY its recipients as they are read, in one transaction.

        The upload is never held in memory: each block goes to PostgreSQL while the next one is parsed,
        and an error from `leads` (a file rejected half-way) rolls everything back.
        """
        try:
            with self._pool.connection() as conn, conn.transaction():
                # The real total is set once the file is read; an empty list then fails `total > 0`.
                row = conn.execute("SELECT instancia_sofia.create_campaign_row(%s, 1)",
                                   (Jsonb(campaign),)).fetchone()[0]
                if row["created"]:
                    if campaign.get("created_by"):
                        conn.execute("SELECT instancia_sofia.set_campaign_creator(%s, %s)",
                                     (row["id"], campaign["created_by"]))
                    lines = _CopyLines(row["id"])
                    with conn.cursor().copy("COPY instancia_sofia.leads_activos (campaign_id, seq, phone, "
                                            "parameters) FROM STDIN") as copy:
                        for block in lines.blocks(leads):
                            copy.write(block)
                    known_now = {**campaign, **(finish() if finish is not None else {})}
                    row = conn.execute("SELECT instancia_sofia.finish_campaign_row(%s, %s, %s)",
                                       (row["id"], lines.count, Jsonb(known_now.get("rejected_rows", [])))
                                       ).fetchone()[0]
        except psycopg.Error as exc:
            raise StoreError(f"database error in create_campaign: {exc}") from exc
        return row

    def close(self) -> None:
        """Close the pool."""
        self._pool.close()
