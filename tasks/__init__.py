"""Celery app, tasks and the sending logic of the campaign queue (`celery -A tasks worker -P gevent`).

The app is created on first attribute access, not at import: gevent's monkey patching can make Celery
import `celeryconfig` (and through it `tasks.config`) halfway through patching, and that import must stay
light so that nothing imports ssl or requests before the patch completes.
"""

from __future__ import annotations


def __getattr__(name: str):
    """Create the Celery app when `celery -A tasks` (or anyone) asks for `tasks.app`."""
    if name in ("app", "celery"):
        from tasks.celery_app import get_celery_app

        return get_celery_app()
    raise AttributeError(f"module 'tasks' has no attribute {name!r}")
