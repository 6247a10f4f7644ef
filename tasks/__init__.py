"""Celery app, tasks and the sending logic of the campaign queue (`celery -A tasks worker -P gevent`)."""

from tasks import heartbeat  # noqa: F401  (registers the worker signals)
from tasks.celery_app import create_celery_app

app = create_celery_app()
celery = app

__all__ = ["app", "celery"]
