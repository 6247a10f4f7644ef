"""Worker heartbeats in Redis: the API counts live workers, and crash recovery finds dead workers' claims.

Each worker process gets an owner id (`hostname:pid:random`) that it writes on every claim; a restarted
worker has a new id, so the claims of the process that died are never mistaken for live ones.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid

from celery.signals import worker_ready, worker_shutdown

PREFIX = "wcq:worker:"
KNOWN_SET = "wcq:workers:known"
SUSPECT_HASH = "wcq:workers:suspect"
INTERVAL_S = 2

_stop = threading.Event()
_owner: str | None = None


def owner_id() -> str:
    """This process's owner id, written on every claim it makes."""
    global _owner
    if _owner is None:
        _owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    return _owner


def live_workers(client) -> list[str]:
    """Owner ids of workers whose heartbeat has not expired."""
    return [key[len(PREFIX):] for key in client.scan_iter(match=PREFIX + "*", count=1000)]


def dead_workers(client, ttl_s: int, also: set[str] = frozenset()) -> set[str]:
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


def _beat(owner: str) -> None:
    """Refresh this worker's key until the worker shuts down."""
    from tasks.runtime import get_runtime

    runtime = get_runtime()
    client, ttl = runtime.redis, runtime.settings.worker_heartbeat_ttl_s
    while not _stop.is_set():
        try:
            pipe = client.pipeline()
            pipe.set(PREFIX + owner, "alive", ex=ttl)
            pipe.sadd(KNOWN_SET, owner)
            pipe.execute()
        except Exception:  # Redis briefly away: the key may expire and the API reports it, which is the truth
            pass
        _stop.wait(INTERVAL_S)


@worker_ready.connect
def _start_heartbeat(sender=None, **_kwargs) -> None:
    """Start beating once the worker consumes."""
    threading.Thread(target=_beat, args=(owner_id(),), daemon=True, name="heartbeat").start()


@worker_shutdown.connect
def _stop_heartbeat(sender=None, **_kwargs) -> None:
    """At a clean shutdown (tasks finished) leave at once, so nothing mistakes this worker for a dead one."""
    _stop.set()
    try:
        from tasks.runtime import get_runtime

        pipe = get_runtime().redis.pipeline()
        pipe.delete(PREFIX + owner_id())
        pipe.srem(KNOWN_SET, owner_id())
        pipe.execute()
    except Exception:
        pass
