"""Brings a database up to date under an advisory lock, so concurrent runs are safe.

Tables change through the numbered migrations (`migrations/NNN_*.sql`), each applied once and recorded by
name. SQL functions live in `migrations/functions/*.sql`, one definition each; after the migrations every
function file whose checksum differs from the one recorded is applied again, so a function's live
definition is always its file's.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import psycopg

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
_LOCK_ID = 72_001_337


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[Path]:
    """The migration files in the order they apply."""
    return sorted(directory.glob("*.sql"))


def function_files(directory: Path = MIGRATIONS_DIR) -> list[Path]:
    """The function files, in the order they apply (a file may use the functions of those before it)."""
    return sorted((directory / "functions").glob("*.sql"))


def checksum(path: Path) -> str:
    """The SHA-256 of a file's bytes, recorded when the file is applied."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def apply_migrations(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply the migrations not yet recorded, then the changed function files; returns what was applied now.

    Each file runs in a transaction of its own with its record, so a failing file leaves nothing half-done
    and the next run starts again from it.
    """
    applied_now = []
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        try:
            conn.execute("CREATE SCHEMA IF NOT EXISTS instancia_sofia")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS instancia_sofia.schema_migrations "
                "(name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            conn.execute(
                "CREATE TABLE IF NOT EXISTS instancia_sofia.schema_functions "
                "(name text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz NOT NULL)"
            )
            done = {r[0] for r in conn.execute("SELECT name FROM instancia_sofia.schema_migrations")}
            for path in migration_files(directory):
                if path.name in done:
                    continue
                with conn.transaction():
                    conn.execute(path.read_text())
                    conn.execute("INSERT INTO instancia_sofia.schema_migrations (name) VALUES (%s)", (path.name,))
                applied_now.append(path.name)
            recorded: dict[str, str] = dict(conn.execute("SELECT name, checksum FROM instancia_sofia.schema_functions"))
            for path in function_files(directory):
                name, digest = f"functions/{path.name}", checksum(path)
                if recorded.get(name) == digest:
                    continue
                with conn.transaction():
                    conn.execute(path.read_text())
                    conn.execute(
                        "INSERT INTO instancia_sofia.schema_functions (name, checksum, applied_at) "
                        "VALUES (%s, %s, now()) ON CONFLICT (name) DO UPDATE "
                        "SET checksum = EXCLUDED.checksum, applied_at = EXCLUDED.applied_at",
                        (name, digest),
                    )
                applied_now.append(name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    return applied_now
