"""Flask HTTP API of the campaign queue: `create_app()` builds it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from tasks.config import Settings
    from tasks.queue import TaskQueue

# The package imports nothing heavy itself: `python -m webapi.receiver` runs without Flask (and without
# gevent's patches) and must not pay for importing them. create_app imports what it builds.

#: Seconds an API request waits for a database that is away before it answers 503.
API_DATABASE_WAIT_S = 2.0


def create_app(
    test_config: dict | None = None, *, settings: Settings | None = None, queue: TaskQueue | None = None
) -> Flask:
    """Build the app: settings from the environment, the service's runtime from the settings, routes, errors.

    Batches go to the workers through Celery unless `queue` says otherwise (in-process tests drive the
    pipeline themselves, with settings of their own).
    """
    from flask import Flask

    from tasks.celery_app import create_celery_app
    from tasks.config import load_settings
    from tasks.logsetup import configure_handlers
    from tasks.queue import CeleryQueue
    from tasks.runtime import build_runtime
    from webapi import (
        access,
        audit,
        bodies,
        cli,
        console,
        headers,
        health,
        limits,
        monitoring,
        openapi,
        views,
        webhooks,
    )
    from webapi.context import EXTENSION
    from webapi.errors import register_error_handlers
    from webapi.intake import WebhookIntake

    app = Flask(__name__)
    settings = settings or load_settings()
    # The whole request may carry the file plus form fields; the file's own size is checked precisely later.
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_csv_bytes + 1024 * 1024,
        JSON_SORT_KEYS=False,
        STARTED_AT=time.monotonic(),
        DEBUG=settings.debug,
    )
    if test_config:
        app.config.update(test_config)
    # The one place the web process gets its objects; views reach them through webapi.context.runtime().
    # A request waits only a moment for a database that is away, then answers 503 (webapi.errors).
    runtime = build_runtime(
        settings,
        queue or CeleryQueue(create_celery_app(settings)),
        store_wait_s=min(API_DATABASE_WAIT_S, settings.database_retry_s),
    )
    app.extensions[EXTENSION] = runtime
    app.json.sort_keys = False  # type: ignore[attr-defined]  # the default provider has both
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    configure_handlers(app.logger, settings.instance_id, settings.log_format)
    register_error_handlers(app)
    # JSON bodies are checked before anything reads them (a body nested too deep must not reach a parser).
    bodies.register(app)
    access.install(app, settings, runtime)
    limits.install(app, settings)
    audit.install(app)
    headers.install(app, settings)
    app.register_blueprint(health.bp)
    app.register_blueprint(views.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(cli.bp)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(console.bp)
    app.register_blueprint(monitoring.bp)
    # Status notifications (about three POSTs per message sent) are taken in front of Flask.
    app.wsgi_app = WebhookIntake(app.wsgi_app, runtime)  # type: ignore[method-assign]
    return app
