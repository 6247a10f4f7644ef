"""The sandbox's HTTP client for notifications: POSTs over a pool of keep-alive HTTP/1.1 connections.

The sandbox posts about three notifications per message it accepts, on the same machine as the service it
stands in front of, so its cost per POST is taken from the service under test. A general client (aiohttp's
session) spent about 0.25 ms of CPU per POST; this one writes the request in one call and parses the answer
with httptools, at a fraction of that. One request at a time per connection, as Meta's senders do. An idle
connection the server has closed (gunicorn closes them after 2 s) shows as at EOF and is not reused; one idle
for more than IDLE_REUSE_S is not reused either.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import ssl
import time
from typing import Any
from urllib.parse import urlsplit

import httptools

from .settings import SandboxSettings

IDLE_REUSE_S = 30.0


class _Answer:
    """httptools' callbacks for one response: whether the server keeps the connection (known once the headers
    are in; the parser forgets it when the message completes), and done once the message is complete."""

    __slots__ = ("done", "keep_alive", "parser")

    def __init__(self) -> None:
        self.done = False
        self.keep_alive = False
        self.parser = httptools.HttpResponseParser(self)

    def on_headers_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()

    def on_message_complete(self) -> None:
        self.done = True


class _Connection:
    """One open connection and when it was last answered."""

    __slots__ = ("reader", "used_at", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self.used_at = time.monotonic()


class KeepAlivePoster:
    """POSTs bodies to one URL; `post` returns the answer's status code or raises (OSError, TimeoutError)."""

    def __init__(self, url: str, user_agent: str):
        parts = urlsplit(url)
        self.url = url
        self.host = parts.hostname or "127.0.0.1"
        self.tls = parts.scheme == "https"
        self.port = parts.port or (443 if self.tls else 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = parts.netloc
        self._head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {user_agent}\r\nAccept: */*\r\n"
            "Content-Type: application/json\r\n"
        ).encode()
        self._idle: list[_Connection] = []

    async def post(self, body: bytes, headers: dict[str, str], timeout_s: float) -> int:
        """POST `body` with `headers` (besides Host, Content-Type and Content-Length) within `timeout_s`."""
        return await asyncio.wait_for(self._post(body, headers), timeout_s)

    async def _post(self, body: bytes, headers: dict[str, str]) -> int:
        connection = self._take()
        if connection is None:
            reader, writer = await asyncio.open_connection(
                self.host, self.port, ssl=ssl.create_default_context() if self.tls else None
            )
            connection = _Connection(reader, writer)
        keep = False
        try:
            extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items() if name != "Content-Type")
            connection.writer.write(
                self._head + extra.encode("latin-1") + b"Content-Length: %d\r\n\r\n" % len(body) + body
            )
            await connection.writer.drain()
            answer = _Answer()
            while not answer.done:
                data = await connection.reader.read(65536)
                if not data:
                    raise ConnectionResetError("the server closed the connection before answering")
                answer.parser.feed_data(data)
            keep = answer.keep_alive
            return answer.parser.get_status_code()
        finally:
            if keep:
                connection.used_at = time.monotonic()
                self._idle.append(connection)
            else:
                connection.writer.close()

    def _take(self) -> _Connection | None:
        """The most recently used idle connection still worth reusing; older ones are closed."""
        while self._idle:
            connection = self._idle.pop()
            if time.monotonic() - connection.used_at < IDLE_REUSE_S and not connection.reader.at_eof():
                return connection
            connection.writer.close()
        return None

    async def close(self) -> None:
        """Close every idle connection."""
        for connection in self._idle:
            connection.writer.close()
        self._idle.clear()


async def post_signed(settings: SandboxSettings, body: dict[str, Any]) -> int:
    """Sign one notification body with the app secret and POST it to webhook_url now, on a connection of its own;
    returns the HTTP status (raises OSError or TimeoutError when it cannot be posted).

    For the control routes' one-off notifications (opt-outs, inbound replies, Meta's account signals); the
    status stream goes through a `KeepAlivePoster`.
    """
    raw = json.dumps(body, separators=(",", ":")).encode()
    digest = hmac.new(settings.app_secret.encode(), raw, hashlib.sha256).hexdigest()
    poster = KeepAlivePoster(settings.webhook_url, "facebookexternalua")
    try:
        return await poster.post(raw, {"X-Hub-Signature-256": f"sha256={digest}"}, settings.webhook_timeout_s)
    finally:
        await poster.close()
