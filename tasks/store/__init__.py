"""The campaign store: one small interface with a direct Postgres and a Supabase implementation."""

from __future__ import annotations

from tasks.config import Settings
from tasks.store.base import ClaimedMessage, Sender, Store, StoreError


def open_store(settings: Settings) -> Store:
    """Open the store the settings point at: DATABASE_URL first (faster), otherwise Supabase."""
    if settings.database_url:
        from tasks.store.postgres import PostgresStore

        return PostgresStore(settings.database_url)
    if settings.supabase_url and settings.supabase_key:
        from tasks.store.supabase import SupabaseStore

        return SupabaseStore(settings.supabase_url, settings.supabase_key)
    raise StoreError("No store configured: set DATABASE_URL, or SUPABASE_URL and SUPABASE_KEY")


__all__ = ["ClaimedMessage", "Sender", "Store", "StoreError", "open_store"]
