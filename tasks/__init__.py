"""Celery app, tasks and the sending logic of the campaign queue (`celery -A tasks worker -P gevent`).

`celery -A tasks` loads `tasks.celery`, which builds the app; importing this package builds nothing.
"""
