"""Worker heartbeats in Redis, so the API can tell whether any worker is alive without waiting on a ping."""

from __future__ import annotations

import socket
import threading

from celery.signals import worker_ready, worker_shutdown

PREFIX = "wcq:worker:"
INTERVAL_S = 5
TTL_S = 15

_stop = threading.Event()


def live_workers(client) -> list[str]:
    """Names of workers whose heartbeat has not expired."""
    return [key[len(PREFIX):] for key in client.scan_iter(match=PREFIX + "*", count=1000)]


def _beat(name: str) -> None:
    """Refresh this worker's key until the worker shuts down."""
    from tasks.runtime import get_runtime

    client = get_runtime().redis
    while not _stop.is_set():
        try:
            client.set(PREFIX + name, "alive", ex=TTL_S)
        except Exception:  # Redis briefly away: the key expires and the API reports it, which is the truth
            pass
        _stop.wait(INTERVAL_S)


@worker_ready.connect
def _start_heartbeat(sender=None, **_kwargs) -> None:
    """Start beating once the worker consumes."""
    name = getattr(sender, "hostname", None) or socket.gethostname()
    threading.Thread(target=_beat, args=(name,), daemon=True, name="heartbeat").start()


@worker_shutdown.connect
def _stop_heartbeat(sender=None, **_kwargs) -> None:
    """Remove the key at a clean shutdown so the API sees the worker gone at once."""
    _stop.set()
    try:
        from tasks.runtime import get_runtime

        get_runtime().redis.delete(PREFIX + (getattr(sender, "hostname", None) or socket.gethostname()))
    except Exception:
        pass
