"""Status webhooks: the API only queues verified bodies in Redis; a task applies them to the store."""

from __future__ import annotations

import json
import logging
import time

from tasks.pipeline import Pipeline

log = logging.getLogger("tasks.webhooks")

INBOX = "wcq:webhooks:inbox"
SCHEDULED = "wcq:webhooks:scheduled"


def enqueue_body(redis, raw_body: bytes) -> bool:
    """Keep a verified notification body; True when a processing task should be scheduled now."""
    pipe = redis.pipeline()
    pipe.rpush(INBOX, raw_body)
    # One drain task at a time: the flag stays set until that task finds the inbox empty (see
    # process_inbox), so a burst of notifications costs one task, and none is left waiting.
    pipe.set(SCHEDULED, "1", nx=True, ex=60)
    return bool(pipe.execute()[1])


def statuses_of(body: dict) -> list[dict]:
    """Flatten a notification into the statuses apply_statuses takes (other change types are ignored)."""
    found = []
    for entry in body.get("entry") or []:
        for change in entry.get("changes") or []:
            value = change.get("value") or {}
            for status in value.get("statuses") or []:
                if not isinstance(status, dict) or status.get("status") not in ("sent", "delivered", "read", "failed"):
                    continue
                error = (status.get("errors") or [{}])[0] or {}
                try:
                    ts = int(status.get("timestamp"))
                except (TypeError, ValueError):
                    ts = int(time.time())
                found.append({"wamid": status.get("id"), "status": status["status"], "ts": ts,
                              "callback": status.get("biz_opaque_callback_data"),
                              "error_code": error.get("code"),
                              "error_detail": ((error.get("error_data") or {}).get("details") or error.get("message")
                                               or error.get("title"))})
    return found


def process_inbox(pipeline: Pipeline, max_bodies: int = 200, budget_s: float = 20.0) -> dict:
    """Drain queued notifications in batches, apply them, and move the campaigns' counters."""
    redis, store, state = pipeline.state.redis, pipeline.store, pipeline.state
    report = {"bodies": 0, "statuses": 0, "applied": 0, "orphans": 0}
    deadline = time.monotonic() + budget_s
    while time.monotonic() < deadline:
        bodies = redis.lpop(INBOX, max_bodies)
        if not bodies:
            # Clear the flag, then look once more: a body pushed before this look is drained here, one
            # pushed after it finds the flag clear and schedules a new task.
            redis.delete(SCHEDULED)
            if redis.llen(INBOX) and redis.set(SCHEDULED, "1", nx=True, ex=60):
                continue
            break
        statuses = []
        for raw in bodies:
            try:
                statuses.extend(statuses_of(json.loads(raw)))
            except (ValueError, AttributeError, TypeError):
                log.warning("ignored a webhook body that is not a notification")
        try:
            result = store.apply_statuses(statuses)
        except Exception:
            redis.lpush(INBOX, *reversed(bodies))  # back to the front: nothing acknowledged is lost
            raise
        _apply_deltas(state, result["deltas"])
        report["bodies"] += len(bodies)
        report["statuses"] += len(statuses)
        report["applied"] += result["applied"]
        report["orphans"] += result["orphans"]
    rematched = store.rematch_orphans()
    _apply_deltas(state, rematched["deltas"])
    report["applied"] += rematched["applied"]
    return report


def _apply_deltas(state, deltas: dict[str, dict[str, int]]) -> None:
    """Move Redis counters by what the store changed (failures also by error code)."""
    for campaign_id, changes in deltas.items():
        counts = {k: v for k, v in changes.items() if not k.startswith("e:")}
        errors = {k[2:]: {"count": v} for k, v in changes.items() if k.startswith("e:")}
        if state.exists(campaign_id):
            state.add_counts(campaign_id, counts)
            state.add_errors(campaign_id, errors)
            if counts.get("delivered") or counts.get("read"):
                stamp = str(int(time.time()))
                state.redis.hset(f"wcq:campaign:{campaign_id}", mapping={
                    **({"last_delivered_at": stamp} if counts.get("delivered") else {}),
                    **({"last_read_at": stamp} if counts.get("read") else {})})
