"""The Celery application factory: static settings from celeryconfig.py, the rest from `Settings`."""

from __future__ import annotations

from celery import Celery

import celeryconfig
from tasks import worker
from tasks.config import Settings


def create_celery_app(settings: Settings) -> Celery:
    """A Celery app for these settings, with the tasks of `tasks.jobs` and the worker's life-cycle handlers."""
    app = Celery("tasks", include=["tasks.jobs"], set_as_current=True)
    app.config_from_object(celeryconfig)
    app.conf.update(celeryconfig.from_settings(settings))
    worker.connect(app)
    return app
