"""Probes for orchestrators: /healthz (the process answers) and /readyz (Redis and the database answer)."""

from __future__ import annotations

from flask import Blueprint, jsonify

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
        redis_ok = bool(rt.redis.ping())
    except Exception:
        redis_ok = False
    database_ok = rt.store.ping()
    ready = redis_ok and database_ok
    body: dict[str, object] = {"success": ready, "redis_connected": redis_ok, "database_connected": database_ok}
    if not ready:
        body["message"] = (
            "El servicio no está listo: "
            + ", ".join(
                name
                for name, ok in (("Redis no responde", redis_ok), ("la base de datos no responde", database_ok))
                if not ok
            )
            + "."
        )
    return jsonify(body), 200 if ready else 503
