"""The Celery application, configured from celeryconfig.py when first used."""

from __future__ import annotations

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger

from tasks.logsetup import configure_handlers


def create_celery_app() -> Celery:
    """Create the app; settings are read lazily, when a worker, Flower or a producer first needs them."""
    app = Celery("tasks")
    app.config_from_object("celeryconfig")
    app.autodiscover_tasks(["tasks"], related_name="jobs", force=True)
    return app


@after_setup_logger.connect
@after_setup_task_logger.connect
def _format_worker_logs(logger, **_kwargs) -> None:
    """Give worker logs the operators' format and mask phone numbers and tokens."""
    from tasks.config import load_settings

    configure_handlers(logger, load_settings().instance_id)
