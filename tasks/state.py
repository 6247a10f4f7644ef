"""Live campaign state in Redis: counters, status, the queue of batches and the batches in flight."""

from __future__ import annotations

import time

import redis

_PREFIX = "wcq:campaign:"
ACTIVE_SET = "wcq:campaigns:active"
COUNTERS = ("sent", "failed", "cancelled", "unknown", "retries")

# Hands out the next batch only while the campaign runs and fewer than ARGV[1] batches are in flight,
# so that the decision and the bookkeeping happen in one atomic step.
_NEXT_BATCH = """
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return -1 end
if redis.call('SCARD', KEYS[3]) >= tonumber(ARGV[1]) then return -2 end
local batch = redis.call('LPOP', KEYS[2])
if not batch then return 0 end
redis.call('SADD', KEYS[3], batch)
return tonumber(batch)
"""

# A finished batch leaves the in-flight set; if some of its messages were handed back while the
# campaign still runs, it goes back to the end of the queue.
_BATCH_DONE = """
redis.call('SREM', KEYS[3], ARGV[1])
if ARGV[2] == '1' and redis.call('HGET', KEYS[1], 'status') == 'running' then
  redis.call('RPUSH', KEYS[2], ARGV[1])
end
return redis.call('SCARD', KEYS[3])
"""

# Replaces the queue with the batches that still hold pending messages and are not in flight.
_REQUEUE = """
redis.call('DEL', KEYS[2])
local n = 0
for i = 1, #ARGV do
  if redis.call('SISMEMBER', KEYS[3], ARGV[i]) == 0 then
    redis.call('RPUSH', KEYS[2], ARGV[i]); n = n + 1
  end
end
return n
"""


class LiveState:
    """Reads and updates one Redis database's view of every campaign; counts only ever grow."""

    def __init__(self, client: redis.Redis):
        self.redis = client
        self._next_batch = client.register_script(_NEXT_BATCH)
        self._batch_done = client.register_script(_BATCH_DONE)
        self._requeue = client.register_script(_REQUEUE)

    @staticmethod
    def _keys(campaign_id: str) -> list[str]:
        """The hash, queue and in-flight keys of one campaign."""
        base = _PREFIX + campaign_id
        return [base, base + ":queue", base + ":inflight"]

    def exists(self, campaign_id: str) -> bool:
        """Tell whether Redis knows this campaign (it may have been flushed)."""
        return bool(self.redis.exists(_PREFIX + campaign_id))

    def init_campaign(self, campaign: dict, batches: list[int], counts: dict[str, int] | None = None) -> None:
        """Write a campaign's fixed fields, its counters and its queue of batches."""
        key, queue, inflight = self._keys(campaign["id"])
        counts = counts or {}
        fields = {
            "total": campaign["total"], "buzon": campaign["buzon"], "template": campaign["template"],
            "language": campaign["language"], "batch_size": campaign["batch_size"],
            "chunk_size": campaign["chunk_size"], "status": campaign["status"],
            "reason": campaign.get("status_reason") or "", "created_at": campaign.get("created_at") or "",
        }
        for name in COUNTERS:
            fields[name] = counts.get(name, 0)
        pipe = self.redis.pipeline()
        pipe.delete(key, queue, inflight)
        pipe.hset(key, mapping=fields)
        if batches:
            pipe.rpush(queue, *batches)
        pipe.sadd(ACTIVE_SET, campaign["id"])
        pipe.execute()

    def fields(self, campaign_id: str) -> dict[str, str]:
        """All fields of a campaign's hash (empty when Redis does not know it)."""
        return self.redis.hgetall(_PREFIX + campaign_id)

    def status(self, campaign_id: str) -> str | None:
        """The campaign's live status."""
        return self.redis.hget(_PREFIX + campaign_id, "status")

    def set_status(self, campaign_id: str, status: str, reason: str | None = None, **stamps: str) -> None:
        """Record a status change (the store has already accepted it)."""
        mapping = {"status": status, "reason": reason or "", **stamps}
        pipe = self.redis.pipeline()
        pipe.hset(_PREFIX + campaign_id, mapping=mapping)
        if status in ("completed", "cancelled", "failed"):
            pipe.srem(ACTIVE_SET, campaign_id)
        else:
            pipe.sadd(ACTIVE_SET, campaign_id)
        pipe.execute()

    def next_batch(self, campaign_id: str, max_in_flight: int) -> int | None:
        """Take the next batch to dispatch, or None when the campaign is full, paused or out of batches."""
        batch = self._next_batch(keys=self._keys(campaign_id), args=[max_in_flight])
        return int(batch) if int(batch) > 0 else None

    def batch_done(self, campaign_id: str, batch_no: int, requeue: bool) -> int:
        """Take a batch out of flight (requeue it when it handed messages back); returns batches in flight."""
        return int(self._batch_done(keys=self._keys(campaign_id), args=[batch_no, "1" if requeue else "0"]))

    def requeue(self, campaign_id: str, batches: list[int]) -> int:
        """Rebuild the queue from the batches that still hold pending messages."""
        return int(self._requeue(keys=self._keys(campaign_id), args=batches))

    def in_flight(self, campaign_id: str) -> int:
        """How many batches of the campaign are in flight."""
        return self.redis.scard(self._keys(campaign_id)[2])

    def queued(self, campaign_id: str) -> int:
        """How many batches wait in the campaign's queue."""
        return self.redis.llen(self._keys(campaign_id)[1])

    def add_counts(self, campaign_id: str, counts: dict[str, int]) -> None:
        """Increment a campaign's counters."""
        key = _PREFIX + campaign_id
        pipe = self.redis.pipeline()
        for name, value in counts.items():
            if value:
                pipe.hincrby(key, name, value)
        pipe.execute()

    def record_activity(self, campaign_id: str, processed: int) -> None:
        """Count messages answered this second, for the live messages/s figure."""
        tick = f"{_PREFIX}{campaign_id}:tick:{int(time.time())}"
        pipe = self.redis.pipeline()
        pipe.incrby(tick, processed)
        pipe.expire(tick, 60)
        pipe.execute()

    def rate(self, campaign_id: str, window_s: int = 10) -> float:
        """Messages per second processed over the last `window_s` whole seconds."""
        now = int(time.time())
        keys = [f"{_PREFIX}{campaign_id}:tick:{s}" for s in range(now - window_s, now)]
        return sum(int(v) for v in self.redis.mget(keys) if v) / window_s

    def active_campaigns(self) -> set[str]:
        """Campaigns that are queued, running or paused."""
        return self.redis.smembers(ACTIVE_SET)
