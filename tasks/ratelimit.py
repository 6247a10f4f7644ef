"""One messages-per-second limit per sender number, shared by every worker through Redis."""

from __future__ import annotations

import redis

from tasks import keys

# GCRA with reservations: each call books the next free slot on Redis' own clock and says how long to
# wait for it, so every worker process shares one schedule and clocks of the machines do not matter.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local count = tonumber(ARGV[2] or '1')
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local after = tat + interval * count
redis.call('SET', KEYS[1], after, 'PX', math.floor((after - now) / 1000) + 1000)
return tat - now
"""


# Pushes the number's schedule at least ARGV[1] microseconds into the future: after WhatsApp says
# "too fast" (130429) every worker waits, not only the one that was told.
_PENALIZE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local target = now + tonumber(ARGV[1])
if tat < target then
  redis.call('SET', KEYS[1], target, 'PX', math.floor(tonumber(ARGV[1]) / 1000) + 1000)
end
return 0
"""


class SendRateLimiter:
    """Books send slots per phone_number_id so all workers together stay under the number's rate."""

    def __init__(self, client: redis.Redis, prefix: str = keys.RATE):
        self._reserve = client.register_script(_RESERVE)
        self._penalize = client.register_script(_PENALIZE)
        self._prefix = prefix

    def reserve(self, phone_number_id: str, messages_per_second: float, min_interval_ms: int = 0) -> float:
        """Book one send slot; returns the seconds to wait before sending (0 when it may go now)."""
        return self.reserve_many(phone_number_id, messages_per_second, 1, min_interval_ms)[0]

    def reserve_many(
        self, phone_number_id: str, messages_per_second: float, count: int, min_interval_ms: int = 0
    ) -> list[float]:
        """Book `count` consecutive slots in one round trip; returns each slot's wait in seconds."""
        interval_us = int(max(1_000_000 / messages_per_second, min_interval_ms * 1000))
        first_us = int(self._reserve(keys=[self._prefix + phone_number_id], args=[interval_us, count]))
        return [(first_us + i * interval_us) / 1_000_000 for i in range(count)]

    def penalize(self, phone_number_id: str, seconds: float) -> None:
        """Hold every sender of this number for at least `seconds` (WhatsApp asked us to slow down)."""
        self._penalize(keys=[self._prefix + phone_number_id], args=[int(seconds * 1_000_000)])
