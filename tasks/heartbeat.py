"""Worker heartbeats in Redis: the API counts live workers, and crash recovery finds dead workers' claims.

Each worker process gets an owner id (`hostname:pid:random`) that it writes on every claim; a restarted
worker has a new id, so the claims of the process that died are never mistaken for live ones.

Every beat also publishes what the worker is doing (tasks in progress, messages sent over the last minute,
counted in memory by `Activity`), and the sweeper stamps when its latest pass began: `read_liveness` is what
`GET /api/estado-sistema` shows of the workers and of beat. Times are Redis' clock, so a worker on a host
whose clock drifts is still reported truthfully.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from tasks import keys

PREFIX = keys.WORKER
KNOWN_SET = keys.KNOWN_WORKERS
SUSPECT_HASH = keys.SUSPECT_WORKERS
ACTIVITY_PREFIX = keys.WORKER_ACTIVITY
INTERVAL_S = 2
# A worker's activity hash outlives its last beat by this long, so a worker that stopped beating is still
# shown (with how long ago it last beat) until the sweeper forgets it.
ACTIVITY_KEEP_S = 3600
# Messages sent are counted per second over this window.
SENT_WINDOW_S = 60
# Beat counts as stopped when the sweeper has not begun a pass for this many intervals (and at least
# SWEEP_LATE_MIN_S: a sweep task waiting behind a busy queue expires after one interval, and a very short
# interval would otherwise warn about a beat that runs).
SWEEP_LATE_FACTOR = 3
SWEEP_LATE_MIN_S = 30.0

# One round trip per beat: the expiring heartbeat, the known set, and the activity hash stamped on Redis'
# clock. ARGV: heartbeat TTL, owner, activity TTL, tasks in progress, messages sent over the last minute.
_BEAT = """
redis.call('SET', KEYS[1], 'alive', 'EX', ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
local t = redis.call('TIME')
local now = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
redis.call('HSET', KEYS[3], 'beat_at', now, 'tasks_in_progress', ARGV[4], 'sent_last_minute', ARGV[5])
redis.call('HSETNX', KEYS[3], 'started_at', now)
redis.call('EXPIRE', KEYS[3], ARGV[3])
return 1
"""


def new_owner_id() -> str:
    """A process's owner id, written on every claim it makes; a restarted worker gets a new one."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def live_workers(client) -> list[str]:
    """Owner ids of workers whose heartbeat has not expired."""
    return [key[len(PREFIX) :] for key in client.scan_iter(match=PREFIX + "*", count=1000)]


def dead_workers(client, ttl_s: int, also: frozenset[str] | set[str] = frozenset()) -> set[str]:
    """Workers (known ones, and the owners in `also`) that have not beaten for at least `ttl_s` seconds.

    A missing heartbeat only makes a worker a suspect, stamped on Redis' clock; it is dead once it has
    stayed missing for a whole TTL. A key that merely expired while Redis was restarting therefore never
    condemns a live worker, whose claims would otherwise be handed to another worker and sent twice.
    """
    candidates = set(client.smembers(KNOWN_SET)) | set(also)
    alive = set(live_workers(client))
    now = int(client.time()[0])
    suspects = {owner: int(since) for owner, since in client.hgetall(SUSPECT_HASH).items()}
    pipe = client.pipeline()
    for owner in suspects.keys() & alive:
        pipe.hdel(SUSPECT_HASH, owner)
    dead = set()
    for owner in candidates - alive:
        since = suspects.get(owner)
        if since is None:
            pipe.hset(SUSPECT_HASH, owner, now)
        elif now - since >= ttl_s:
            dead.add(owner)
    pipe.execute()
    return dead


def forget_worker(client, owner: str) -> None:
    """Drop a dead worker once its claims have been recovered."""
    pipe = client.pipeline()
    pipe.srem(KNOWN_SET, owner)
    pipe.hdel(SUSPECT_HASH, owner)
    pipe.delete(ACTIVITY_PREFIX + owner)
    pipe.execute()


def sweep_late_after(interval_s: float) -> float:
    """Seconds without a sweeper pass after which beat counts as stopped."""
    return max(SWEEP_LATE_FACTOR * interval_s, SWEEP_LATE_MIN_S)


class Activity:
    """What one worker is doing, counted in memory by its task signals; its heartbeat publishes it.

    Nothing here touches Redis: a task start or end costs a lock and an addition. A chunk's messages count
    in the second the chunk ends (as the campaigns' live rate counts them).
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._running = 0
        self._sent: dict[int, int] = {}  # Unix second -> messages WhatsApp accepted in it

    def task_started(self) -> None:
        """A task began running in this worker."""
        with self._lock:
            self._running += 1

    def task_finished(self, sent: int = 0) -> None:
        """A task ended, having had `sent` messages accepted by WhatsApp."""
        with self._lock:
            self._running = max(0, self._running - 1)
            if sent:
                second = int(self._clock())
                self._sent[second] = self._sent.get(second, 0) + sent

    def snapshot(self) -> tuple[int, int]:
        """Tasks running now, and messages sent over the last SENT_WINDOW_S seconds."""
        cutoff = int(self._clock()) - SENT_WINDOW_S
        with self._lock:
            for second in [s for s in self._sent if s <= cutoff]:
                del self._sent[second]
            return self._running, sum(self._sent.values())


@dataclass(frozen=True)
class WorkerActivity:
    """One worker as its latest beat described it (times are Redis' clock, Unix seconds)."""

    owner: str
    alive: bool  # its heartbeat has not expired
    beat_at: float | None  # None for a worker that publishes no activity (or whose hash expired)
    started_at: float | None
    tasks_in_progress: int
    sent_last_minute: int  # over the minute before its latest beat


@dataclass(frozen=True)
class Liveness:
    """The workers and beat as Redis knows them, read at `now` (Redis' clock)."""

    now: float
    workers: list[WorkerActivity]
    last_sweep_at: float | None  # when the sweeper last began a pass; None when it never has


def read_liveness(client) -> Liveness:
    """Every worker that beats, or was seen and not yet forgotten, with its activity; and beat's last pass."""
    alive = set(live_workers(client))
    owners = sorted(alive | set(client.smembers(KNOWN_SET)))
    pipe = client.pipeline(transaction=False)
    pipe.time()
    pipe.get(keys.SWEEP_LAST_PASS)
    for owner in owners:
        pipe.hgetall(ACTIVITY_PREFIX + owner)
    (seconds, micros), last_sweep, *rows = pipe.execute()
    workers = [
        WorkerActivity(
            owner=owner,
            alive=owner in alive,
            beat_at=_float(row.get("beat_at")),
            started_at=_float(row.get("started_at")),
            tasks_in_progress=int(row.get("tasks_in_progress") or 0),
            sent_last_minute=int(row.get("sent_last_minute") or 0),
        )
        for owner, row in zip(owners, rows, strict=True)
    ]
    return Liveness(now=int(seconds) + int(micros) / 1e6, workers=workers, last_sweep_at=_float(last_sweep))


def _float(value: str | None) -> float | None:
    """A stamp read from Redis, or None when absent or unreadable."""
    try:
        return float(value) if value else None
    except ValueError:
        return None


class Heartbeat:
    """Refreshes one worker's key, and publishes its activity, in a background thread until it shuts down."""

    def __init__(self, client, owner: str, ttl_s: int, activity: Activity | None = None):
        self.client = client
        self.owner = owner
        self.ttl_s = ttl_s
        self.activity = activity or Activity()
        self._beat = client.register_script(_BEAT)
        self._stop = threading.Event()

    def start(self) -> None:
        """Start beating (once the worker consumes)."""
        threading.Thread(target=self._run, daemon=True, name="heartbeat").start()

    def _run(self) -> None:
        """Beat every INTERVAL_S seconds."""
        while not self._stop.is_set():
            try:
                self.beat()
            except Exception:  # Redis briefly away: the key may expire and the API reports it, which is the truth
                pass
            self._stop.wait(INTERVAL_S)

    def beat(self) -> None:
        """Beat once: refresh the heartbeat and publish the activity."""
        running, sent = self.activity.snapshot()
        self._beat(
            keys=[PREFIX + self.owner, KNOWN_SET, ACTIVITY_PREFIX + self.owner],
            args=[self.ttl_s, self.owner, ACTIVITY_KEEP_S, running, sent],
        )

    def stop(self) -> None:
        """At a clean shutdown (tasks finished) leave at once, so nothing mistakes this worker for a dead one."""
        self._stop.set()
        try:
            pipe = self.client.pipeline()
            pipe.delete(PREFIX + self.owner, ACTIVITY_PREFIX + self.owner)
            pipe.srem(KNOWN_SET, self.owner)
            pipe.execute()
        except Exception:
            pass
