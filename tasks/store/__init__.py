"""The campaign store: one small interface with a direct Postgres and a Supabase implementation."""

from __future__ import annotations

from tasks.config import Settings
from tasks.store.base import ClaimedMessage, Sender, Store, StoreError, StoreUnavailable


def open_store(settings: Settings, *, wait_s: float | None = None) -> Store:
    """Open the store the settings point at: DATABASE_URL first (faster), otherwise Supabase.

    `wait_s` is how long a call waits for a database that is away (DATABASE_RETRY_S by default).
    """
    if settings.database_url:
        from tasks.store.postgres import PostgresStore

        return PostgresStore(
            settings.database_url,
            wait_s=settings.database_retry_s if wait_s is None else wait_s,
            connect_timeout_s=settings.database_connect_timeout_s,
            statement_timeout_s=settings.database_statement_timeout_s,
        )
    if settings.supabase_url and settings.supabase_key:
        from tasks.store.supabase import SupabaseStore

        return SupabaseStore(settings.supabase_url, settings.supabase_key)
    raise StoreError("No store configured: set DATABASE_URL, or SUPABASE_URL and SUPABASE_KEY")


__all__ = ["ClaimedMessage", "Sender", "Store", "StoreError", "StoreUnavailable", "open_store"]
