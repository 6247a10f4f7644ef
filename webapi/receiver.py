"""The notification receiver: a small HTTP server of its own for `POST /webhooks/whatsapp`.

WhatsApp posts about three notifications per message sent, so at 1,000 messages/s this is 3,000 POSTs/s.
Under gunicorn even a bare "return 200" WSGI app spends most of a request's CPU in the server's own HTTP
and WSGI machinery; this process skips both. `python -m webapi.receiver` runs on asyncio's event loop
(uvloop's where it is installed, as it is in the image): one protocol object per connection, no thread or
greenlet per request. It parses HTTP/1.1 with httptools (keep-alive, pipelining, chunked bodies), applies
the same checks as the API's route (webapi/intake.py: WEBHOOK_MAX_BODY_KB, the signature on the raw body,
a JSON object) and keeps the bodies in the same Redis inbox. Bodies arriving while Redis is busy with the
previous write are written together in one command (a group commit, on a thread of its own: Redis's and
Celery's clients block), and no request is answered 200 before its body is in Redis.

It also answers Meta's verification handshake (`GET /webhooks/whatsapp`) and `GET /healthz`, so Meta's
callback URL can point at it alone. Everything else gets 404. The API keeps its own route: a deployment
without this process loses nothing but speed.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import logging
import signal
import sys
import threading
import time
from collections import deque
from urllib.parse import parse_qs, urlsplit

import httptools

from tasks import metrics, texts
from tasks.celery_app import create_celery_app
from tasks.config import Settings, load_settings
from tasks.logsetup import configure_handlers
from tasks.queue import CeleryQueue, TaskQueue
from tasks.runtime import redis_client
from tasks.webhooks import WebhookInbox
from webapi.intake import ACCEPTED, HEADERS, NOT_RECORDED, PATH, Answer, NotificationCheck, count, error_reply

log = logging.getLogger("webapi.receiver")

_JSON_HEAD = "".join(f"{name}: {value}\r\n" for name, value in HEADERS).encode()
_TEXT_HEAD = _JSON_HEAD.replace(b"application/json", b"text/plain; charset=utf-8")
_HEALTHY: Answer = ("200 OK", b'{"status":"ok"}\n')
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_PATH = PATH.encode()
# The most bodies one Redis command carries.
_MAX_GROUP = 500
# How long the writer lets bodies gather before writing them: at thousands of POSTs per second a few
# milliseconds turn one Redis call per body into one per several, for that much more answer latency.
GROUP_WAIT_S = 0.010
# Requests one connection may have waiting for their answers before the receiver stops reading from it.
_MAX_PENDING = 64
# How long a stopping receiver waits for the bodies it took to be written before it closes connections.
_STOP_WAIT_S = 5.0


class GroupWriter:
    """Keeps bodies in the inbox for many connections at once: one Redis call per round of waiting bodies.

    `keep` is called on the event loop and returns a future that becomes True once the body is in Redis
    (False when it could not be kept: the caller must not acknowledge it). The writes run on a thread of
    their own, so the loop goes on reading and answering while Redis works.
    """

    def __init__(self, inbox: WebhookInbox, queue: TaskQueue, loop: asyncio.AbstractEventLoop):
        self.inbox = inbox
        self.queue = queue
        self._loop = loop
        self._waiting: list[tuple[bytes, asyncio.Future]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="inbox-writer", daemon=True)
        self._thread.start()

    def keep(self, raw: bytes) -> asyncio.Future:
        """A future of whether `raw` is in Redis."""
        done = self._loop.create_future()
        with self._lock:
            self._waiting.append((raw, done))
        self._wake.set()
        return done

    def _run(self) -> None:
        """Write whatever waits, until stopped; a failed write fails only the bodies it carried."""
        while True:
            self._wake.wait()
            if not self._stopping:
                time.sleep(GROUP_WAIT_S)
            self._wake.clear()
            while True:
                with self._lock:
                    group, self._waiting = self._waiting[:_MAX_GROUP], self._waiting[_MAX_GROUP:]
                if not group:
                    break
                try:
                    if self.inbox.push_many([raw for raw, _ in group]):
                        self.queue.schedule_webhooks()
                    kept = True
                except Exception:
                    log.exception("notifications not kept: Redis did not take them; WhatsApp will send them again")
                    kept = False
                try:
                    self._loop.call_soon_threadsafe(_settle, [done for _, done in group], kept)
                except RuntimeError:  # the loop is closed: nobody waits for these answers any more
                    return
            if self._stopping:
                return

    def close(self) -> None:
        """Write what waits, then stop (the thread ends once it has)."""
        self._stopping = True
        self._wake.set()
        self._thread.join(_STOP_WAIT_S)


def _settle(futures: list[asyncio.Future], kept: bool) -> None:
    """On the loop: tell each waiting request whether its body was kept."""
    for done in futures:
        if not done.done():
            done.set_result(kept)


class _Request:
    """One request as httptools hands it over."""

    __slots__ = ("body", "close", "complete", "expect_continue", "method", "signature", "too_large", "url")

    def __init__(self) -> None:
        self.url = b""
        self.method = b""
        self.signature = ""
        self.body: list[bytes] = []
        self.close = False
        self.expect_continue = False
        self.too_large = False
        self.complete = False


class _Connection:
    """httptools' callbacks for one client connection: collects complete requests in order."""

    def __init__(self, limit: int):
        self.limit = limit
        self.parser = httptools.HttpRequestParser(self)
        self.current = _Request()
        self.size = 0
        self.ready: list[_Request] = []
        self.continue_now = False

    def on_message_begin(self) -> None:
        self.current = _Request()
        self.size = 0

    def on_url(self, url: bytes) -> None:
        self.current.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"x-hub-signature-256":
            self.current.signature = value.decode("latin-1")
        elif name == b"content-length" and value.isdigit() and int(value) > self.limit:
            self.current.too_large = True
        elif name == b"expect" and value.lower() == b"100-continue":
            self.current.expect_continue = True

    def on_headers_complete(self) -> None:
        request = self.current
        request.method = self.parser.get_method()
        request.close = not self.parser.should_keep_alive()
        if request.too_large:
            # Answer at once and stop reading: the body is not wanted.
            request.complete = True
            self.ready.append(request)
        elif request.expect_continue:
            self.continue_now = True

    def on_body(self, chunk: bytes) -> None:
        request = self.current
        if request.too_large:
            return
        self.size += len(chunk)
        if self.size > self.limit:
            request.too_large = True
            request.body = []
            request.complete = True
            self.ready.append(request)
            return
        request.body.append(chunk)

    def on_message_complete(self) -> None:
        if not self.current.complete:
            self.current.complete = True
            self.ready.append(self.current)


class _Protocol(asyncio.Protocol):
    """One client connection: requests in, answers out in the same order, until either side closes."""

    def __init__(self, receiver: Receiver):
        self.receiver = receiver
        self.connection = _Connection(receiver.check.limit)
        self.transport: asyncio.Transport | None = None
        # What to write, in request order: bytes ready to go, or a body's future of being kept.
        self.pending: deque[tuple[bytes | asyncio.Future, bool]] = deque()
        self.closing = False
        self.paused = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.receiver.connections.add(self)

    def connection_lost(self, exc) -> None:
        self.transport = None
        self.receiver.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        connection = self.connection
        try:
            connection.parser.feed_data(data)
        except httptools.HttpParserError:  # an upgrade request included
            self.pending.append((_response(error_reply(400, texts.WEBHOOK_BAD_REQUEST), close=True), True))
            self.closing = True
            connection.ready = []
        if connection.continue_now:
            connection.continue_now = False
            self.pending.append((_CONTINUE, False))
        if connection.ready:
            ready, connection.ready = connection.ready, []
            for request in ready:
                close = request.close or request.too_large
                answer = self.receiver.answer(request)
                if isinstance(answer, asyncio.Future):
                    answer.add_done_callback(self.flush)
                    self.pending.append((answer, close))
                else:
                    self.pending.append((_response(answer, close=close), close))
                if close:
                    self.closing = True
                    break
        self.flush()
        if len(self.pending) > _MAX_PENDING and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def flush(self, _kept: asyncio.Future | None = None) -> None:
        """Write the answers that are ready, in order, up to the first body Redis has not taken yet (each
        body's future calls this again once it is settled)."""
        transport = self.transport
        if transport is None:
            return
        out = []
        close = False
        while self.pending:
            item, close = self.pending[0]
            if isinstance(item, asyncio.Future):
                if not item.done():
                    break
                answer = ACCEPTED if item.result() else NOT_RECORDED
                count(answer[0])
                item = _response(answer, close=close)
            self.pending.popleft()
            out.append(item)
            if close:
                break
        if out:
            transport.write(b"".join(out))
        if close and out:
            transport.close()
            self.transport = None
        elif self.paused and len(self.pending) <= _MAX_PENDING // 2:
            self.paused = False
            transport.resume_reading()

    def close(self) -> None:
        """Close the connection (the receiver is stopping)."""
        if self.transport is not None:
            self.transport.close()


class Receiver:
    """Answers notifications on the running event loop: `await serve(...)`, or `run` from the command line."""

    def __init__(self, settings: Settings, inbox: WebhookInbox | None, queue: TaskQueue | None):
        self.settings = settings
        self.check = NotificationCheck(settings)
        self.verify_token = (settings.whatsapp_verify_token or "").encode()
        self.inbox = inbox
        self.queue = queue
        self.writer: GroupWriter | None = None
        self.connections: set[_Protocol] = set()

    async def serve(self, host: str, port: int, stop: asyncio.Event) -> None:
        """Listen until `stop` is set; then stop taking connections, answer what was taken, and return."""
        loop = asyncio.get_running_loop()
        if self.inbox is not None and self.queue is not None:
            self.writer = GroupWriter(self.inbox, self.queue, loop)
        server = await loop.create_server(lambda: _Protocol(self), host, port, reuse_address=True, backlog=1024)
        log.info("notification receiver listening on %s:%s", host, server.sockets[0].getsockname()[1])
        try:
            await stop.wait()
        finally:
            server.close()
            deadline = loop.time() + _STOP_WAIT_S
            while any(c.pending for c in self.connections) and loop.time() < deadline:
                await asyncio.sleep(0.05)
            for connection in list(self.connections):
                connection.close()
            if self.writer is not None:
                await loop.run_in_executor(None, self.writer.close)

    def answer(self, request: _Request) -> Answer | asyncio.Future:
        """The answer to one complete request, or the future of its body being kept."""
        # WhatsApp's POSTs carry no query: only other requests need the URL taken apart.
        path, query = (PATH, "") if request.url == _PATH else _path_and_query(request.url)
        if path == "/healthz" and request.method == b"GET":
            return _HEALTHY
        if path != PATH:
            return error_reply(404, texts.RECEIVER_ROUTE_NOT_FOUND)
        if request.method == b"GET":
            return self._verify(query)
        if request.method != b"POST":
            return error_reply(405, texts.METHOD_NOT_ALLOWED)
        answer = self._keep(request)
        if not isinstance(answer, asyncio.Future):
            count(answer[0])
        return answer

    def _keep(self, request: _Request) -> Answer | asyncio.Future:
        """Check one notification; a refusal's answer, or the future of it being kept."""
        if request.too_large:
            return self.check.too_large()
        raw = b"".join(request.body)
        refusal = self.check.refusal(raw, request.signature)
        if refusal is not None:
            return refusal
        if self.writer is None:
            return NOT_RECORDED
        return self.writer.keep(raw)

    def _verify(self, query: str) -> Answer:
        """Meta's subscription check, as the API answers it (webapi/webhooks.py)."""
        args = {name: values[0] for name, values in parse_qs(query).items()}
        token = args.get("hub.verify_token", "").encode()
        if args.get("hub.mode") == "subscribe" and self.verify_token and hmac.compare_digest(token, self.verify_token):
            return ("200 OK", args.get("hub.challenge", "").encode())
        return error_reply(403, texts.WEBHOOK_VERIFY_REFUSED)


def _path_and_query(url: bytes) -> tuple[str, str]:
    """A request target's path and query."""
    split = urlsplit(url.decode("latin-1"))
    return split.path, split.query


def _response(answer: Answer, *, close: bool) -> bytes:
    """The bytes of one HTTP/1.1 answer: JSON, but for the handshake's challenge (plain text)."""
    status, body = answer
    head = _JSON_HEAD if body.startswith(b"{") else _TEXT_HEAD
    return b"".join(
        (
            b"HTTP/1.1 ",
            status.encode(),
            b"\r\n",
            head,
            b"Content-Length: ",
            str(len(body)).encode(),
            b"\r\nConnection: close\r\n\r\n" if close else b"\r\n\r\n",
            body,
        )
    )


def run(receiver: Receiver, host: str, port: int) -> None:
    """Serve on a new event loop (uvloop's when installed) until SIGTERM or SIGINT."""

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await receiver.serve(host, port, stop)

    try:
        import uvloop
    except ImportError:  # asyncio's own loop: the same answers, for more CPU per request
        asyncio.run(serve())
    else:
        uvloop.run(serve())


def main(argv: list[str] | None = None) -> int:
    """Run the receiver until stopped."""
    parser = argparse.ArgumentParser(prog="python -m webapi.receiver", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, help="default: WEBHOOK_RECEIVER_PORT (5001)")
    args = parser.parse_args(argv)
    settings = load_settings()
    configure_handlers(logging.getLogger(), settings.instance_id, settings.log_format)
    logging.getLogger().setLevel(logging.INFO)
    if settings.metrics_port:
        metrics.serve(settings.metrics_port)
    inbox = WebhookInbox(redis_client(settings.redis_url))
    receiver = Receiver(settings, inbox, CeleryQueue(create_celery_app(settings)))
    run(receiver, args.host, args.port or settings.webhook_receiver_port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
