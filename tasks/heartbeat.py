"""Worker heartbeats in Redis: the API counts live workers, and crash recovery finds dead workers' claims.

Each worker process gets an owner id (`hostname:pid:random`) that it writes on every claim; a restarted
worker has a new id, so the claims of the process that died are never mistaken for live ones.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid

from tasks import keys

PREFIX = keys.WORKER
KNOWN_SET = keys.KNOWN_WORKERS
SUSPECT_HASH = keys.SUSPECT_WORKERS
INTERVAL_S = 2


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
    pipe.execute()


class Heartbeat:
    """Refreshes one worker's key in a background thread until the worker shuts down."""

    def __init__(self, client, owner: str, ttl_s: int):
        self.client = client
        self.owner = owner
        self.ttl_s = ttl_s
        self._stop = threading.Event()

    def start(self) -> None:
        """Start beating (once the worker consumes)."""
        threading.Thread(target=self._run, daemon=True, name="heartbeat").start()

    def _run(self) -> None:
        """Beat every INTERVAL_S seconds."""
        while not self._stop.is_set():
            try:
                pipe = self.client.pipeline()
                pipe.set(PREFIX + self.owner, "alive", ex=self.ttl_s)
                pipe.sadd(KNOWN_SET, self.owner)
                pipe.execute()
            except Exception:  # Redis briefly away: the key may expire and the API reports it, which is the truth
                pass
            self._stop.wait(INTERVAL_S)

    def stop(self) -> None:
        """At a clean shutdown (tasks finished) leave at once, so nothing mistakes this worker for a dead one."""
        self._stop.set()
        try:
            pipe = self.client.pipeline()
            pipe.delete(PREFIX + self.owner)
            pipe.srem(KNOWN_SET, self.owner)
            pipe.execute()
        except Exception:
            pass
