"""What `GET /api/estado-sistema` reports: Redis, the database, the queue, each worker and beat."""

from __future__ import annotations

from datetime import UTC, datetime

from tasks import costs, texts
from tasks.heartbeat import Liveness, WorkerActivity, read_liveness, sweep_late_after
from tasks.runtime import Runtime
from tasks.vocabulary import CAMPAIGNS_QUEUE


def system_status(runtime: Runtime, uptime_s: float, scope: list[str] | None = None) -> dict:
    """The whole answer; every figure read from Redis or the database, so any API process gives the same one.

    WhatsApp's notifications about numbers are shown for the buzones of `scope` only (all when None).
    """
    settings = runtime.settings
    interval = settings.sweep_interval_s
    try:
        # The probe gives up within a second: a dead Redis is reported, not waited out.
        runtime.probe.ping()
        liveness: Liveness | None = read_liveness(runtime.redis)
        queue_depth = runtime.state.queue_depth(CAMPAIGNS_QUEUE)
        active = len(runtime.state.active_campaigns())
    except Exception:
        liveness, queue_depth, active = None, 0, 0
    workers = [] if liveness is None else [_worker(w, liveness.now) for w in liveness.workers]
    beat, warnings = _beat(liveness, interval)
    live = sum(1 for w in workers if w["alive"])
    signals = _signals(runtime, scope, warnings)
    return {
        "success": True,
        "instance_id": settings.instance_id,
        "uptime_seconds": round(uptime_s, 1),
        "worker_running": live > 0,
        "workers": live,
        "redis_connected": liveness is not None,
        "database_connected": runtime.store.ping(),
        "queue_depth": queue_depth,
        "active_campaigns": active,
        "batch_size": settings.batch_size,
        "max_concurrent": settings.max_concurrent_batches,
        "worker_details": workers,
        "beat": beat,
        "advertencias": warnings,
        **signals,
    }


def _signals(runtime: Runtime, scope: list[str] | None, warnings: list[str]) -> dict:
    """Per buzón the quality, last alert and account event WhatsApp reported; templates it paused or approved;
    alerts about whole accounts; with warnings for numbers at the lowest quality and an unreadable rate card."""
    try:
        costs.load_rate_card(runtime.settings.rate_card_file)
    except costs.RateCardError as exc:
        warnings.append(str(exc))
    try:
        overview = runtime.store.signals_overview()
    except Exception:  # the database is away: database_connected says so
        return {"buzones": [], "plantillas": [], "alertas_cuenta": []}
    senders = [b for b in overview["buzones"] if scope is None or b["buzon"] in scope]
    for sender in senders:
        quality = sender.get("calidad") or {}
        if (quality.get("evento") or "").upper() == "FLAGGED":
            warnings.append(
                texts.WARNING_LOW_QUALITY.format(buzon=sender["buzon"], since=str(quality.get("fecha"))[:19])
            )
    return {
        "buzones": senders,
        "plantillas": overview["plantillas"],
        "alertas_cuenta": overview["cuentas"] if scope is None else [],
    }


def _worker(worker: WorkerActivity, now: float) -> dict:
    """One worker in the answer's words (its id as the worker wrote it: host, pid and a suffix)."""
    return {
        "id": worker.owner,
        "alive": worker.alive,
        "last_heartbeat_at": _iso(worker.beat_at),
        "seconds_since_heartbeat": _age(worker.beat_at, now),
        "started_at": _iso(worker.started_at),
        "tasks_in_progress": worker.tasks_in_progress,
        "sent_last_minute": worker.sent_last_minute,
    }


def _beat(liveness: Liveness | None, interval: float) -> tuple[dict, list[str]]:
    """Beat's last sweeper pass, and the warning when it is overdue (none when Redis cannot tell)."""
    late_after = sweep_late_after(interval)
    last = liveness.last_sweep_at if liveness else None
    age = _age(last, liveness.now) if liveness else None
    running = age is not None and age <= late_after
    warnings = []
    if liveness is not None and not running:
        warnings.append(texts.BEAT_NEVER_RAN if age is None else texts.BEAT_LATE.format(seconds=age, interval=interval))
    beat = {
        "running": running,
        "last_pass_at": _iso(last),
        "seconds_since_last_pass": age,
        "interval_seconds": interval,
        "late_after_seconds": late_after,
    }
    return beat, warnings


def _age(stamp: float | None, now: float) -> float | None:
    """Seconds from `stamp` to `now` (both Redis' clock), never negative."""
    return None if stamp is None else round(max(0.0, now - stamp), 1)


def _iso(stamp: float | None) -> str | None:
    """A Unix time as an ISO timestamp in UTC, to the second."""
    return None if stamp is None else datetime.fromtimestamp(int(stamp), UTC).isoformat()
