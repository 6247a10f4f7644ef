"""The sandbox's HTTP client for notifications: POSTs over a pool of keep-alive HTTP/1.1 connections.

The sandbox posts about three notifications per message it accepts, on the same machine as the service it
stands in front of, so its cost per POST is taken from the service under test. A general client (aiohttp's
session) spent about 0.25 ms of CPU per POST; this one writes the request in one call and parses the answer
with httptools in the connection's protocol callback, at a fraction of that. One request at a time per
connection, as Meta's senders do. An idle connection the server has closed (gunicorn closes them after 2 s)
is marked closed when its end arrives and is not reused; one idle for more than IDLE_REUSE_S is not reused
either.
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
# How often POSTs in flight are checked against their deadline: a POST fails at most this much late.
SWEEP_S = 0.05


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


class _Connection(asyncio.Protocol):
    """One open connection: writes a request, feeds the answer's bytes to httptools, wakes the poster when the
    answer is complete. A protocol rather than asyncio's streams: no reader or writer object, no task or waiter
    per read, and the answer is parsed in the loop's own callback."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.used_at = time.monotonic()
        self.closed = False
        self._answer: _Answer | None = None
        self._waiter: asyncio.Future[tuple[int, bool]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, request: bytes) -> asyncio.Future[tuple[int, bool]]:
        """Write one request; the future gets the answer's (status code, keep-alive)."""
        assert self.transport is not None
        self._answer = _Answer()
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self._waiter

    def data_received(self, data: bytes) -> None:
        answer, waiter = self._answer, self._waiter
        if answer is None or waiter is None or waiter.done():
            self.close()  # bytes that answer no request: the connection cannot be trusted
            return
        try:
            answer.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            waiter.set_exception(exc)
            self.close()
            return
        if answer.done:
            self._answer = self._waiter = None
            waiter.set_result((answer.parser.get_status_code(), answer.keep_alive))

    def eof_received(self) -> bool:
        self.closed = True
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("the server closed the connection before answering"))

    def time_out(self) -> None:
        """The answer did not come in time: the POST fails and the connection closes (a late answer would
        arrive on it)."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(TimeoutError("no answer within the timeout"))
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


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
        # Connections with a POST in flight, and when it must have been answered (the loop's clock).
        self._busy: dict[_Connection, float] = {}
        self._sweeper: asyncio.TimerHandle | None = None

    async def post(self, body: bytes, headers: dict[str, str], timeout_s: float) -> int:
        """POST `body` with `headers` (besides Host, Content-Type and Content-Length) within `timeout_s`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        connection = self._take()
        if connection is None:
            async with asyncio.timeout(timeout_s):
                _, connection = await loop.create_connection(
                    _Connection, self.host, self.port, ssl=ssl.create_default_context() if self.tls else None
                )
        keep = False
        try:
            extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items() if name != "Content-Type")
            answer = connection.send(
                self._head + extra.encode("latin-1") + b"Content-Length: %d\r\n\r\n" % len(body) + body
            )
            self._busy[connection] = deadline
            if self._sweeper is None:
                self._sweeper = loop.call_later(SWEEP_S, self._sweep)
            status, keep = await answer
            return status
        finally:
            self._busy.pop(connection, None)
            if keep and not connection.closed:
                connection.used_at = time.monotonic()
                self._idle.append(connection)
            else:
                connection.close()

    def _sweep(self) -> None:
        """Fail the POSTs past their deadline (their connections close), every SWEEP_S while any is in flight.

        One timer for every POST in flight rather than a deadline per POST (asyncio.timeout): at thousands of
        POSTs a second the per-POST timer and its cancellation were a tenth of the sandbox's CPU.
        """
        loop = asyncio.get_running_loop()
        now = loop.time()
        late = [connection for connection, deadline in self._busy.items() if deadline <= now]
        for connection in late:
            del self._busy[connection]
            connection.time_out()
        self._sweeper = loop.call_later(SWEEP_S, self._sweep) if self._busy else None

    def _take(self) -> _Connection | None:
        """The most recently used idle connection still worth reusing; older ones are closed."""
        while self._idle:
            connection = self._idle.pop()
            if time.monotonic() - connection.used_at < IDLE_REUSE_S and not connection.closed:
                return connection
            connection.close()
        return None

    async def close(self) -> None:
        """Close every idle connection (POSTs still in flight keep their deadlines: the timer stops after them)."""
        if self._sweeper is not None and not self._busy:
            self._sweeper.cancel()
            self._sweeper = None
        for connection in self._idle:
            connection.close()
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
