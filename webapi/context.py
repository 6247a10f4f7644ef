"""The runtime of the app handling the current request or command (built once by `create_app`)."""

from __future__ import annotations

from flask import current_app

from tasks.runtime import Runtime

EXTENSION = "campaigns"


def runtime() -> Runtime:
    """The current app's runtime."""
    return current_app.extensions[EXTENSION]
