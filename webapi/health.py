"""Probes for orchestrators: /healthz (the process answers) and /readyz (Redis and the database answer)."""

from __future__ import annotations

from flask import Blueprint, jsonify

from tasks import texts
from webapi.context import runtime

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """The process is up."""
    return jsonify({"success": True, "status": "ok"})


@bp.get("/readyz")
def readyz():
    """Redis and the database answer; 503 otherwise, so a load balancer sends no traffic here yet."""
    rt = runtime()
    try:
        redis_ok = bool(rt.probe.ping())
    except Exception:
        redis_ok = False
    database_ok = rt.store.ping()
    ready = redis_ok and database_ok
    body: dict[str, object] = {"success": ready, "redis_connected": redis_ok, "database_connected": database_ok}
    if not ready:
        problems = (
            name for name, ok in ((texts.NOT_READY_REDIS, redis_ok), (texts.NOT_READY_DATABASE, database_ok)) if not ok
        )
        body["message"] = texts.NOT_READY.format(problems=", ".join(problems))
    return jsonify(body), 200 if ready else 503
