"""Live campaign state in Redis: counters, status, the queue of batches and the batches in flight."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

import redis

from tasks import keys
from tasks.vocabulary import COUNTERS, FINAL_CAMPAIGN_STATUSES

_PREFIX = keys.CAMPAIGN
ACTIVE_SET = keys.ACTIVE_CAMPAIGNS
# Beside a worker's send marks stands its sentinel; recovery trusts the marks only while it does.
SENTINEL_PREFIX = "o:"

# Hands out the next batch only while the campaign runs and fewer than ARGV[1] batches are in flight,
# so that the decision and the bookkeeping happen in one atomic step.
_NEXT_BATCH = """
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return -1 end
local limit = tonumber(redis.call('HGET', KEYS[1], 'max_in_flight') or ARGV[1])
if redis.call('SCARD', KEYS[3]) >= limit then return -2 end
local batch = redis.call('LPOP', KEYS[2])
if not batch then return 0 end
redis.call('SADD', KEYS[3], batch)
redis.call('HSET', KEYS[4], batch, redis.call('TIME')[1])
return tonumber(batch)
"""

# A finished batch leaves the in-flight set; if some of its messages were handed back while the
# campaign still runs, it goes back to the end of the queue.
_BATCH_DONE = """
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
if ARGV[2] == '1' and redis.call('HGET', KEYS[1], 'status') == 'running' then
  redis.call('RPUSH', KEYS[2], ARGV[1])
end
return redis.call('SCARD', KEYS[3])
"""

# Keeps the answers WhatsApp gave since the last call, then marks messages as about to be requested, but
# only while the campaign runs: one round trip that makes pause and cancel exact and tells crash recovery
# which claimed messages may have reached WhatsApp (marked) and how those answered ended (answers).
# KEYS: the campaign's hash, its marks, the worker's answers. ARGV: the worker's sentinel, '1' when it has
# marked in this campaign before, the answers as "id\noutcome\nid\noutcome..." (an encoded outcome has no
# line break), the ids to mark as "id,id,...". Two strings rather than an argument each: redis-py packs
# every argument in Python, which was most of this call's CPU in a sending worker. Marks only mean
# something while the sentinel stands beside them: a worker that finds its sentinel gone (Redis lost its
# data) gets -1 and marks again everything it may have sent; recovery treats an owner without a sentinel as
# "may have sent anything". A campaign waiting for its portfolio's budget still lets
# out the messages already given a place (no chunk claims new ones while it waits).
_BEGIN_SEND = """
local function each(text, pattern, call, key, first)
  local group, n = {}, 0
  if first then group[1] = first; n = 1 end
  for part in string.gmatch(text, pattern) do
    n = n + 1
    group[n] = part
    if n == 1000 then redis.call(call, key, unpack(group)); group = {}; n = 0 end
  end
  if n > 0 then redis.call(call, key, unpack(group)) end
end
if ARGV[3] ~= '' then each(ARGV[3], '[^\\n]+', 'HSET', KEYS[3]) end
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'running' and (status ~= 'waiting' or redis.call('HGET', KEYS[1], 'wait_kind') ~= 'budget') then
  return 0
end
if ARGV[2] == '1' and redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 0 then return -1 end
each(ARGV[4], '[^,]+', 'SADD', KEYS[2], ARGV[1])
return 1
"""

# Counters and stamps only go to a campaign whose hash exists: after Redis lost its data, an increment
# would otherwise create a hash of counters alone, which hides the loss from the rebuild.
_INCR_IF_KNOWN = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = 1, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"""

# A status change lands only if it is newer than the one Redis holds: two processes write the store and
# then Redis, and their Redis writes may arrive in the other order. ARGV: campaign id, version, '1' for a
# final status, then the fields; the campaign joins or leaves the active set with it.
_SET_STATUS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if tonumber(redis.call('HGET', KEYS[1], 'status_version') or '0') >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'status_version', ARGV[2], unpack(ARGV, 4))
if ARGV[3] == '1' then
  redis.call('SREM', KEYS[2], ARGV[1])
else
  redis.call('SADD', KEYS[2], ARGV[1])
end
return 1
"""

_SET_IF_KNOWN = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""

# Adds a batch's figures to the recent-sends window and returns the failures and sends of the newest
# entries that cover at least ARGV[3] sends.
_ERROR_WINDOW = """
redis.call('LPUSH', KEYS[1], ARGV[1] .. ':' .. ARGV[2])
redis.call('LTRIM', KEYS[1], 0, 199)
redis.call('EXPIRE', KEYS[1], 86400)
local failed, processed = 0, 0
for _, entry in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  local f, p = string.match(entry, '(%d+):(%d+)')
  failed = failed + tonumber(f); processed = processed + tonumber(p)
  if processed >= tonumber(ARGV[3]) then break end
end
return {failed, processed}
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

# A status read's whole view of a campaign as one JSON text: its hash, the per-second activity counts
# (KEYS[5] on), failures by code, their details and the batches in flight. One command and one string to
# parse cost the reader less than a pipeline of five replies (estado-cola is polled by every open page).
_SNAPSHOT = """
local function map(flat)
  local out = {}
  for i = 1, #flat, 2 do out[flat[i]] = flat[i + 1] end
  return out
end
return cjson.encode({
  map(redis.call('HGETALL', KEYS[1])),
  redis.call('MGET', unpack(KEYS, 5)),
  map(redis.call('HGETALL', KEYS[2])),
  map(redis.call('HGETALL', KEYS[3])),
  redis.call('SCARD', KEYS[4]),
})
"""


class LiveState:
    """Reads and updates one Redis database's view of every campaign; counts only ever grow."""

    def __init__(self, client: redis.Redis):
        self.redis = client
        self._next_batch = client.register_script(_NEXT_BATCH)
        self._batch_done = client.register_script(_BATCH_DONE)
        self._requeue = client.register_script(_REQUEUE)
        self._begin_send = client.register_script(_BEGIN_SEND)
        self._error_window = client.register_script(_ERROR_WINDOW)
        self._incr_if_known = client.register_script(_INCR_IF_KNOWN)
        self._set_if_known = client.register_script(_SET_IF_KNOWN)
        self._set_status = client.register_script(_SET_STATUS)
        self._snapshot = client.register_script(_SNAPSHOT)

    @staticmethod
    def _keys(campaign_id: str) -> list[str]:
        """The hash, queue, in-flight set and in-flight dispatch times of one campaign."""
        base = _PREFIX + campaign_id
        return [base, base + ":queue", base + ":inflight", base + ":inflight_at"]

    def exists(self, campaign_id: str) -> bool:
        """Tell whether Redis knows this campaign (it may have been flushed)."""
        return bool(self.redis.exists(_PREFIX + campaign_id))

    def init_campaign(
        self,
        campaign: dict,
        batches: list[int],
        counts: dict[str, int] | None = None,
        errors: dict[str, dict] | None = None,
        max_in_flight: int = 5,
    ) -> None:
        """Write a campaign's fixed fields, counters, failures by code and its queue of batches."""
        key, queue, inflight, inflight_at = self._keys(campaign["id"])
        counts = counts or {}
        fields = {
            "total": campaign["total"],
            "buzon": campaign["buzon"],
            "template": campaign["template"],
            "language": campaign["language"],
            "batch_size": campaign["batch_size"],
            "chunk_size": campaign["chunk_size"],
            "status": campaign["status"],
            "reason": campaign.get("status_reason") or "",
            "created_at": campaign.get("created_at") or "",
            "started_at": campaign.get("started_at") or "",
            "finished_at": campaign.get("finished_at") or "",
            "max_in_flight": max_in_flight,
            "status_version": campaign.get("status_version") or 0,
            "title": campaign.get("title") or "",
            "created_by": campaign.get("created_by") or "",
            # When and how it may send (tasks.scheduling): fixed at upload, except resume_at.
            "time_zone": campaign.get("time_zone") or "",
            "send_window": campaign.get("send_window") or "",
            "scheduled_for": campaign.get("scheduled_for") or "",
            "resume_at": campaign.get("resume_at") or "",
            # Header and button parameters (tasks/templates.py), read once per worker with the other fixed fields.
            "template_plan": json.dumps(campaign["template_plan"]) if campaign.get("template_plan") else "",
        }
        for name in COUNTERS:
            fields[name] = counts.get(name) or 0
        # Billable messages by category and phone prefix ("b:marketing:584"), as the webhooks count them.
        fields.update({name: n for name, n in counts.items() if name.startswith("b:") and n})
        pipe = self.redis.pipeline()
        pipe.delete(key, queue, inflight, inflight_at, key + ":errors", key + ":error_detail")
        pipe.hset(key, mapping=fields)
        if batches:
            pipe.rpush(queue, *batches)
        for code, entry in (errors or {}).items():
            pipe.hset(key + ":errors", code, entry["count"])
            pipe.hset(key + ":error_detail", code, entry.get("detail") or "")
        pipe.sadd(ACTIVE_SET, campaign["id"])
        pipe.execute()

    def fields(self, campaign_id: str) -> dict[str, str]:
        """All fields of a campaign's hash (empty when Redis does not know it)."""
        return self.redis.hgetall(_PREFIX + campaign_id)

    def status(self, campaign_id: str) -> str | None:
        """The campaign's live status."""
        return self.redis.hget(_PREFIX + campaign_id, "status")

    def set_status(self, campaign_id: str, status: str, reason: str | None, version: int, **stamps: str) -> bool:
        """Record a status change the store has accepted as its `version`; an older one than Redis holds
        (its write arrived late) changes nothing. Returns whether it landed."""
        final = "1" if status in FINAL_CAMPAIGN_STATUSES else "0"
        args = [campaign_id, version, final, "status", status, "reason", reason or ""]
        args += [x for item in stamps.items() for x in item]
        return bool(self._set_status(keys=[_PREFIX + campaign_id, ACTIVE_SET], args=args))

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

    def in_flight_since(self, campaign_id: str) -> dict[int, int]:
        """Batches in flight and the Unix second each was dispatched."""
        _, _, inflight, inflight_at = self._keys(campaign_id)
        pipe = self.redis.pipeline()
        pipe.smembers(inflight)
        pipe.hgetall(inflight_at)
        members, stamps = pipe.execute()
        return {int(b): int(stamps.get(b, 0)) for b in members}

    def begin_sends(
        self,
        campaign_id: str,
        message_ids: list[int],
        owner: str,
        marked_before: bool,
        answers: dict[int, str] | None = None,
    ) -> int:
        """Keep worker `owner`'s `answers`, then mark messages as being requested.

        Returns 1 when marked, 0 (and no mark) when the campaign no longer runs, -1 (no mark) when this
        worker's earlier marks are gone: Redis lost them, and the caller must mark again all it may have sent.
        """
        base = _PREFIX + campaign_id
        kept = "\n".join(f"{m}\n{outcome}" for m, outcome in answers.items()) if answers else ""
        args = [SENTINEL_PREFIX + owner, "1" if marked_before else "0", kept, ",".join(map(str, message_ids))]
        return int(self._begin_send(keys=[base, base + ":attempting", base + ":answers:" + owner], args=args))

    def end_sends(self, campaign_id: str, message_ids: list[int], owners: Iterable[str] = ()) -> None:
        """Clear the marks (and the answers `owners` kept) of messages whose outcome is now in the store."""
        if message_ids:
            base = _PREFIX + campaign_id
            pipe = self.redis.pipeline(transaction=False)
            pipe.srem(base + ":attempting", *message_ids)
            for owner in owners:
                pipe.hdel(base + ":answers:" + owner, *message_ids)
            pipe.execute()

    def attempts(self, campaign_id: str) -> tuple[set[int], set[str]]:
        """Messages marked as being requested (a dead worker's marks stay here), and the workers whose
        sentinel still stands beside their marks."""
        members = self.redis.smembers(_PREFIX + campaign_id + ":attempting")
        marks = {int(m) for m in members if m.isdigit()}
        owners = {m[len(SENTINEL_PREFIX) :] for m in members if m.startswith(SENTINEL_PREFIX)}
        return marks, owners

    def answers(self, campaign_id: str, owner: str) -> dict[int, str]:
        """The answers worker `owner` kept for messages it has not recorded yet."""
        return {int(k): v for k, v in self.redis.hgetall(_PREFIX + campaign_id + ":answers:" + owner).items()}

    def keep_answers(self, campaign_id: str, owner: str, answers: dict[int, str]) -> None:
        """Keep answers for recovery outside a mark call (the chunk could not record them)."""
        if answers:
            self.redis.hset(_PREFIX + campaign_id + ":answers:" + owner, mapping=answers)

    def forget_owner(self, campaign_id: str, owner: str) -> None:
        """Drop a dead worker's sentinel and answers once its claims have been recovered."""
        base = _PREFIX + campaign_id
        pipe = self.redis.pipeline(transaction=False)
        pipe.srem(base + ":attempting", SENTINEL_PREFIX + owner)
        pipe.delete(base + ":answers:" + owner)
        pipe.execute()

    def add_errors(self, campaign_id: str, errors: dict[str, dict]) -> None:
        """Count failures by error code, keeping the first detail seen for each code."""
        if not errors:
            return
        key = _PREFIX + campaign_id
        pipe = self.redis.pipeline()
        for code, entry in errors.items():
            pipe.hincrby(key + ":errors", code, entry["count"])
            pipe.hsetnx(key + ":error_detail", code, entry.get("detail") or "")
        pipe.execute()

    def init_errors(self, campaign_id: str, errors: dict[str, dict]) -> None:
        """Replace the failures by code with the store's figures."""
        key = _PREFIX + campaign_id
        pipe = self.redis.pipeline()
        pipe.delete(key + ":errors", key + ":error_detail")
        for code, entry in errors.items():
            pipe.hset(key + ":errors", code, entry["count"])
            pipe.hset(key + ":error_detail", code, entry.get("detail") or "")
        pipe.execute()

    def error_window(self, campaign_id: str, failed: int, processed: int, window: int) -> tuple[int, int]:
        """Add a batch to the recent-sends window; returns (failed, processed) over about `window` sends."""
        result = self._error_window(keys=[_PREFIX + campaign_id + ":window"], args=[failed, processed, window])
        return int(result[0]), int(result[1])

    def set_counts(self, campaign_id: str, counts: dict[str, int]) -> None:
        """Overwrite counters with the store's exact figures (after a crash or a lost Redis)."""
        self._set_if_known(keys=[_PREFIX + campaign_id], args=[x for item in counts.items() for x in item])

    def set_reason(self, campaign_id: str, reason: str) -> None:
        """Say why a campaign waits without changing its status (for example deferred recipients)."""
        self._set_if_known(keys=[_PREFIX + campaign_id], args=["reason", reason])

    def in_flight(self, campaign_id: str) -> int:
        """How many batches of the campaign are in flight."""
        return self.redis.scard(self._keys(campaign_id)[2])

    def queued(self, campaign_id: str) -> int:
        """How many batches wait in the campaign's queue."""
        return self.redis.llen(self._keys(campaign_id)[1])

    def add_counts(self, campaign_id: str, counts: dict[str, int]) -> None:
        """Increment a campaign's counters (unless Redis lost the campaign: the rebuild counts them)."""
        args = [x for name, value in counts.items() if value for x in (name, value)]
        if args:
            self._incr_if_known(keys=[_PREFIX + campaign_id], args=args)

    def record_activity(self, campaign_id: str, processed: int) -> None:
        """Count messages answered this second, for the live messages/s figure."""
        tick = f"{_PREFIX}{campaign_id}:tick:{int(time.time())}"
        pipe = self.redis.pipeline()
        pipe.incrby(tick, processed)
        pipe.expire(tick, 60)
        pipe.execute()

    @staticmethod
    def _tick_keys(campaign_id: str, now: int, window_s: int) -> list[str]:
        """The per-second activity keys of the window ending now."""
        return [f"{_PREFIX}{campaign_id}:tick:{s}" for s in range(now - window_s, now)]

    def snapshot(self, campaign_id: str, window_s: int = 10) -> tuple[dict, float, list[dict], int]:
        """Fields, live rate, failures by code and batches in flight, in one round trip (status reads)."""
        key = _PREFIX + campaign_id
        now = int(time.time())
        views = [key, key + ":errors", key + ":error_detail", key + ":inflight"]
        answer = self._snapshot(keys=[*views, *self._tick_keys(campaign_id, now, window_s)])
        fields, ticks, counts, details, in_flight = json.loads(answer)
        return fields, _rate(now, window_s, ticks), _error_rows(counts, details), in_flight

    def active_campaigns(self) -> set[str]:
        """Campaigns that are queued, running or paused."""
        return self.redis.smembers(ACTIVE_SET)

    def forget_campaign(self, campaign_id: str) -> None:
        """Stop tracking a campaign the store no longer has."""
        self.redis.srem(ACTIVE_SET, campaign_id)

    def stamp_delivery(self, campaign_id: str, delivered: bool, read: bool) -> None:
        """Remember when the campaign's latest delivered and read notifications were applied."""
        stamp = str(int(time.time()))
        mapping = {**({"last_delivered_at": stamp} if delivered else {}), **({"last_read_at": stamp} if read else {})}
        if mapping:
            self._set_if_known(keys=[_PREFIX + campaign_id], args=[x for item in mapping.items() for x in item])

    def note_number_failure(self, phone_number_id: str) -> int:
        """Count a transient failure of a sender number across all workers; returns the current run."""
        key = keys.NUMBER_FAILURES + phone_number_id
        pipe = self.redis.pipeline()
        pipe.incr(key)
        pipe.expire(key, 120)
        return int(pipe.execute()[0])

    def clear_number_failures(self, phone_number_id: str) -> None:
        """End a sender number's run of failures (a send worked again)."""
        self.redis.delete(keys.NUMBER_FAILURES + phone_number_id)

    def queue_depth(self, queue: str) -> int:
        """Messages waiting in a Celery queue of this Redis (the broker)."""
        return self.redis.llen(queue)


def _rate(now: int, window_s: int, values: list) -> float:
    """Messages per second from per-second counts, over the window or since the first active second."""
    active = [(now - window_s + i, int(v)) for i, v in enumerate(values) if v]
    if not active:
        return 0.0
    return sum(n for _, n in active) / (now - active[0][0])


def _error_rows(counts: dict, details: dict) -> list[dict]:
    """Failures by code, most frequent first."""
    rows = [
        {"code": code, "count": int(n), "detail": details.get(code) or None} for code, n in counts.items() if int(n) > 0
    ]
    return sorted(rows, key=lambda r: -r["count"])
