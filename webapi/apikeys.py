"""API keys for server-to-server callers: how they look, how they are made, and how they are stored (a hash)."""

from __future__ import annotations

import hashlib
import re
import secrets

from tasks.store import Store

#: Every key starts with this, which tells a key from a Supabase session token in `Authorization: Bearer`.
PREFIX = "wcq_"
ROLES = ("viewer", "operator", "admin")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def hash_key(key: str) -> str:
    """The stored form of a key: sha256 is enough, since a key carries 256 random bits, unlike a password."""
    return hashlib.sha256(key.encode()).hexdigest()


def looks_like_key(token: str) -> bool:
    """Whether a bearer credential is one of our keys rather than a JWT."""
    return token.startswith(PREFIX)


def create_key(store: Store, name: str, role: str, buzones: list[str] | None = None) -> tuple[str, dict]:
    """Make a key, store its hash, and return the key (shown once, never stored) with its row."""
    if not _NAME.match(name):
        raise ValueError(f"'{name}' is not a valid key name: use letters, digits, '.', '_' or '-' (at most 64).")
    if role not in ROLES:
        raise ValueError(f"'{role}' is not a role: use one of {', '.join(ROLES)}.")
    key = PREFIX + secrets.token_urlsafe(32)
    row = store.create_api_key(name, hash_key(key), role, sorted(set(buzones)) if buzones else None)
    return key, row
