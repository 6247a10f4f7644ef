"""The floor of a notification intake: a WSGI app that reads the body and answers 200, nothing else."""

from __future__ import annotations

_BODY = b'{"success":true}\n'


def app(environ, start_response):
    """Read the request body and acknowledge it."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    environ["wsgi.input"].read(length)
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(_BODY)))])
    return [_BODY]
