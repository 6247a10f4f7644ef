"""The Celery application, configured from celeryconfig.py when first used."""

from __future__ import annotations

import threading

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger

from tasks import heartbeat  # noqa: F401  (connects the worker heartbeat signals)
from tasks.logsetup import configure_handlers

_lock = threading.Lock()
_app: Celery | None = None


def get_celery_app() -> Celery:
    """The one Celery app of this process; settings are read when a worker or producer first needs them."""
    global _app
    with _lock:
        if _app is None:
            _app = Celery("tasks", include=["tasks.jobs"], set_as_current=True)
            _app.config_from_object("celeryconfig")
        return _app


@after_setup_logger.connect
@after_setup_task_logger.connect
def _format_worker_logs(logger, **_kwargs) -> None:
    """Give worker logs the operators' format and mask phone numbers and tokens."""
    import logging

    from tasks.config import load_settings

    configure_handlers(logger, load_settings().instance_id)
    # A line per task received and succeeded (with its result) costs real CPU at 1,000 messages/s and
    # buries the batch lines operators read; Flower shows every task anyway. Errors still log.
    for name in ("celery.app.trace", "celery.worker.strategy"):
        logging.getLogger(name).setLevel(logging.WARNING)
