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


def dead_workers(client) -> list[str]:
    """Workers that started and stopped beating without a clean shutdown."""
    known = client.smembers(KNOWN_SET)
    if not known:
        return []
    alive = set(live_workers(client))
    return [owner for owner in known if owner not in alive]


def forget_worker(client, owner: str) -> None:
    """Drop a dead worker once its claims have been recovered."""
    client.srem(KNOWN_SET, owner)


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
