"""Supabase adapter: the same SQL functions called through PostgREST with the supabase client."""

from __future__ import annotations

from typing import Any

from tasks.store.base import SCHEMA, Store, StoreError, StoreUnavailable


class SupabaseStore(Store):
    """Calls the schema's functions as PostgREST remote procedure calls."""

    def __init__(self, url: str, key: str):
        from supabase import ClientOptions, create_client

        self._client = create_client(url, key, options=ClientOptions(schema=SCHEMA))

    def _call(self, function: str, *, wait_s: float | None = None, **args: Any) -> Any:
        """Run one function call (PostgREST runs each in its own transaction) and return its JSON result.

        Not made again here: a network error is reported as StoreUnavailable (`wait_s` is not used).
        """
        from postgrest.exceptions import APIError

        try:
            return self._client.schema(SCHEMA).rpc(function, args).execute().data
        except APIError as exc:
            raise StoreError(f"Supabase error in {function}: {exc.message}") from exc
        except Exception as exc:  # network errors from httpx
            raise StoreUnavailable(f"Supabase unreachable in {function}: {exc}") from exc
