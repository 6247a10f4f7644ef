"""A worker process's life: build its runtime at start, beat while it consumes, leave cleanly at shutdown.

The handlers are connected by `tasks.celery_app.create_celery_app`; the tasks in `tasks.jobs` reach the
runtime through `runtime()`. Every task start and end is counted in memory (`tasks.heartbeat.Activity`),
and the heartbeat publishes the counts for `GET /api/estado-sistema`.
"""

from __future__ import annotations

import logging

from celery import Celery
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_init,
    worker_ready,
    worker_shutdown,
)

from tasks import metrics
from tasks.config import load_settings
from tasks.heartbeat import Activity, Heartbeat
from tasks.logsetup import configure_handlers
from tasks.queue import SEND_BATCH, SEND_CHUNK, CeleryQueue
from tasks.runtime import Runtime, build_runtime

_current: Runtime | None = None
_heartbeat: Heartbeat | None = None
_activity: Activity | None = None


def runtime() -> Runtime:
    """This worker's runtime; built when the process started."""
    if _current is None:
        raise RuntimeError(
            "the worker's runtime is built at process start (worker_init); start it with `celery -A tasks worker`"
        )
    return _current


def _build(app: Celery) -> None:
    """Build this process's runtime from the environment."""
    global _current, _activity
    _current = build_runtime(load_settings(), CeleryQueue(app))
    _activity = Activity()


def messages_sent(task_name: str | None, state: str | None, retval) -> int:
    """How many messages a finished task had accepted by WhatsApp (only chunks and one-chunk batches send)."""
    if task_name not in (SEND_CHUNK, SEND_BATCH) or state != "SUCCESS" or not isinstance(retval, dict):
        return 0
    return int(retval.get("sent") or 0)  # the chunk's report: what it recorded as sent


def connect(app: Celery) -> None:
    """Connect the worker's life-cycle handlers for `app` (idempotent)."""

    def on_init(sender=None, **_kwargs) -> None:
        _build(app)

    def on_ready(sender=None, **_kwargs) -> None:
        global _heartbeat
        rt = runtime()
        _heartbeat = Heartbeat(rt.redis, rt.owner, rt.settings.worker_heartbeat_ttl_s, _activity)
        _heartbeat.start()
        if rt.settings.metrics_port:
            # This process's counters on a port of its own (one per worker process; see tasks.metrics).
            metrics.serve(rt.settings.metrics_port)

    def on_shutdown(sender=None, **_kwargs) -> None:
        if _heartbeat is not None:
            _heartbeat.stop()

    def on_logging(logger=None, **_kwargs) -> None:
        _format_worker_logs(logger)

    def on_task_start(sender=None, **_kwargs) -> None:
        if _activity is not None:
            _activity.task_started()

    def on_task_end(sender=None, state=None, retval=None, **_kwargs) -> None:
        if _activity is not None:
            _activity.task_finished(messages_sent(getattr(sender, "name", None), state, retval))

    # The gevent pool runs tasks in this process (worker_init); a prefork child builds its own after the
    # fork (worker_process_init), so it never shares the parent's connections.
    worker_init.connect(on_init, weak=False, dispatch_uid="wcq.worker_init")
    worker_process_init.connect(on_init, weak=False, dispatch_uid="wcq.worker_process_init")
    worker_ready.connect(on_ready, weak=False, dispatch_uid="wcq.worker_ready")
    worker_shutdown.connect(on_shutdown, weak=False, dispatch_uid="wcq.worker_shutdown")
    # Tasks are counted where they run: the gevent pool runs them in this process, next to the heartbeat.
    task_prerun.connect(on_task_start, weak=False, dispatch_uid="wcq.task_prerun")
    task_postrun.connect(on_task_end, weak=False, dispatch_uid="wcq.task_postrun")
    after_setup_logger.connect(on_logging, weak=False, dispatch_uid="wcq.logger")
    after_setup_task_logger.connect(on_logging, weak=False, dispatch_uid="wcq.task_logger")


def _format_worker_logs(logger: logging.Logger) -> None:
    """Give worker logs the operators' format and mask phone numbers and tokens."""
    settings = load_settings()
    configure_handlers(logger, settings.instance_id, settings.log_format)
    # A line per task received and succeeded (with its result) costs real CPU at 1,000 messages/s and
    # buries the batch lines operators read; Flower shows every task anyway. Errors still log.
    for name in ("celery.app.trace", "celery.worker.strategy"):
        logging.getLogger(name).setLevel(logging.WARNING)
