"""Flask HTTP API of the campaign queue: `create_app()` builds it."""

from __future__ import annotations

import time

from flask import Flask

from tasks.config import load_settings
from tasks.runtime import Runtime, set_runtime


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app: settings from the environment, store and Redis from the settings, routes, errors."""
    from webapi import access, audit, cli, headers, health, limits, openapi, views, webhooks
    from webapi.errors import register_error_handlers
    from tasks.logsetup import configure_handlers

    app = Flask(__name__)
    settings = load_settings()
    # The whole request may carry the file plus form fields; the file's own size is checked precisely later.
    app.config.update(MAX_CONTENT_LENGTH=settings.max_csv_bytes + 1024 * 1024, JSON_SORT_KEYS=False,
                      CAMPAIGN_SETTINGS=settings, STARTED_AT=time.monotonic(), DEBUG=settings.debug)
    if test_config:
        app.config.update(test_config)
    runtime = Runtime(settings)
    set_runtime(runtime)
    app.extensions["campaigns"] = runtime
    app.json.sort_keys = False
    app.json.ensure_ascii = False
    configure_handlers(app.logger, settings.instance_id)
    register_error_handlers(app)
    access.install(app, settings, runtime)
    limits.install(app, settings)
    audit.install(app)
    headers.install(app, settings)
    app.register_blueprint(health.bp)
    app.register_blueprint(views.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(cli.bp)
    app.register_blueprint(webhooks.bp)
    return app
