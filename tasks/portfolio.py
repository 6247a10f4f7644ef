"""A business portfolio's daily messaging limit: one moving-24-hour count of unique recipients for every
buzón (phone number) of the portfolio, kept in Redis and shared by all workers.

The count's rule: every template message we send counts its recipient, because we do not know whether the
recipient has an open customer-service window (only messages inside such a window are free of the limit,
and a campaign's recipients normally have none). A recipient counts once however many messages it gets,
until 24 hours after the latest one. A recipient takes its place when its message is claimed for sending,
before the request, so two workers can never both take the last place; once the chunk's requests are
answered its time moves to then, so a place frees up 24 hours after the request at the earliest. A claimed
message that is then handed back (quiet hours, a pause) keeps its place, erring on the side of never
exceeding the limit.

Numbers are kept as short hashes, never in clear. Redis losing the count is noticed (a sentinel member is
missing) and the count is rebuilt from the store before the next reservation.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass

import redis

from tasks import keys, texts
from tasks.store.base import Store

log = logging.getLogger("tasks.portfolio")

# Stands in the sorted set with an infinite score: the set exists only while it does.
_SENTINEL = "~"

# Drops recipients whose latest message is older than the window, then takes a place for each member not
# counted yet while places are left (a counted one only moves its time). KEYS: the set. ARGV: the limit,
# the window in seconds, the members. Returns -1 when the set is gone (Redis lost it: rebuild first),
# otherwise {granted flags..., places used, the Unix time the oldest place frees up}.
_RESERVE = """
if redis.call('ZSCORE', KEYS[1], '~') == false then return -1 end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - window))
local limit = tonumber(ARGV[1])
local used = redis.call('ZCARD', KEYS[1]) - 1
local out = {}
for i = 3, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], now, ARGV[i]); out[#out + 1] = 1
  elseif used < limit then
    redis.call('ZADD', KEYS[1], now, ARGV[i]); used = used + 1; out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local free_at = now
if oldest[2] and oldest[1] ~= '~' then free_at = tonumber(oldest[2]) + window end
out[#out + 1] = used
out[#out + 1] = tostring(free_at)
return out
"""

# Seeds the set (sentinel first) unless another process did already. ARGV: score, member pairs.
_SEED = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('ZADD', KEYS[1], 'inf', '~')
for i = 1, #ARGV, 2 do redis.call('ZADD', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"""

# Moves the time of recipients already counted to now (Redis' clock): called once a chunk's requests are
# answered, so a place frees up a window after the request, never before WhatsApp counted it.
_TOUCH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
for i = 1, #ARGV do redis.call('ZADD', KEYS[1], 'XX', now, ARGV[i]) end
return #ARGV
"""

# Places used now (after dropping expired ones), or -1 when the set is gone.
_USED = """
if redis.call('ZSCORE', KEYS[1], '~') == false then return -1 end
local t = redis.call('TIME')
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (tonumber(t[1]) - tonumber(ARGV[1])))
return redis.call('ZCARD', KEYS[1]) - 1
"""


def recipient_key(phone: str) -> str:
    """The short hash a recipient is counted under (the number itself never reaches Redis)."""
    return hashlib.blake2b(phone.encode(), digest_size=8).hexdigest()


@dataclass(frozen=True)
class Reservation:
    """What a reservation gave: a flag per recipient asked for, places used, and when the oldest frees up."""

    granted: list[bool]
    used: int
    free_at: float  # Unix time


class MessagingBudget:
    """The portfolios' moving counts of unique recipients, in Redis."""

    def __init__(self, client: redis.Redis, store: Store, window_s: int = 86400):
        self.redis = client
        self.store = store
        self.window_s = window_s
        self._reserve = client.register_script(_RESERVE)
        self._seed = client.register_script(_SEED)
        self._used = client.register_script(_USED)
        self._touch = client.register_script(_TOUCH)

    def reserve(self, portfolio_id: str, limit: int, phones: Iterable[str]) -> Reservation:
        """Take a place for each recipient while the portfolio has places left."""
        members = [recipient_key(p) for p in phones]
        key = keys.PORTFOLIO_RECIPIENTS + portfolio_id
        result = self._reserve(keys=[key], args=[limit, self.window_s, *members])
        if result == -1:
            self.rebuild(portfolio_id)
            result = self._reserve(keys=[key], args=[limit, self.window_s, *members])
        *flags, used, free_at = result
        return Reservation([bool(int(f)) for f in flags], int(used), float(free_at))

    def touch(self, portfolio_id: str, phones: Iterable[str]) -> None:
        """Count these recipients (already holding places) from now: their requests have just left."""
        members = [recipient_key(p) for p in phones]
        if members:
            self._touch(keys=[keys.PORTFOLIO_RECIPIENTS + portfolio_id], args=members)

    def used(self, portfolio_id: str) -> int:
        """Unique recipients the portfolio messaged in the moving window."""
        key = keys.PORTFOLIO_RECIPIENTS + portfolio_id
        used = int(self._used(keys=[key], args=[self.window_s]))
        if used < 0:
            self.rebuild(portfolio_id)
            used = int(self._used(keys=[key], args=[self.window_s]))
        return used

    def rebuild(self, portfolio_id: str) -> None:
        """Rebuild a lost count from the recipients the store says the portfolio messaged."""
        recent = self.store.portfolio_recent_recipients(portfolio_id, self.window_s)
        args: list = []
        for phone, at in recent:
            args += [at, recipient_key(phone)]
        self._seed(keys=[keys.PORTFOLIO_RECIPIENTS + portfolio_id], args=args)


def estimate_days(total: int, limit: int | None, used: int) -> int:
    """Days a campaign of `total` recipients takes at a limit with `used` places taken now (at least 1)."""
    if limit is None or total <= max(0, limit - used):
        return 1
    return 1 + math.ceil((total - max(0, limit - used)) / limit)


def limit_text(limit: int | None) -> str:
    """A limit as the operator reads it."""
    return texts.UNLIMITED if limit is None else f"{limit:,}".replace(",", ".")


def capability_updates(body: dict) -> list[dict]:
    """The portfolio limits a business_capability_update notification announces: [{waba_id, limit}].

    `max_daily_conversations_per_business` is the portfolio's limit (-1: unlimited); the older
    `max_daily_conversation_per_phone` is read when the newer field is absent.
    """
    found = []
    for entry in body.get("entry") or []:
        if not isinstance(entry, dict):
            continue
        for change in entry.get("changes") or []:
            if not isinstance(change, dict) or change.get("field") != "business_capability_update":
                continue
            value = change.get("value") or {}
            if not isinstance(value, dict):
                continue
            raw = value.get("max_daily_conversations_per_business", value.get("max_daily_conversation_per_phone"))
            try:
                limit = int(raw)  # type: ignore[arg-type]  # None lands in the except
            except (TypeError, ValueError):
                continue
            if entry.get("id") is None or limit == 0 or limit < -1:
                continue
            found.append({"waba_id": str(entry["id"]), "limit": None if limit == -1 else limit})
    return found


def apply_capability_updates(store: Store, updates: list[dict]) -> list[str]:
    """Store the limits announced (one store call for a batch of notifications); returns portfolios changed."""
    if not updates:
        return []
    changed = store.apply_capability_updates(updates)["changed"]
    for portfolio in changed:
        log.info(texts.LOG_PORTFOLIO_LIMIT, portfolio["id"], limit_text(portfolio["messaging_limit"]))
    return [p["id"] for p in changed]
