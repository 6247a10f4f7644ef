"""The notification receiver: a small HTTP server of its own for `POST /webhooks/whatsapp`.

WhatsApp posts about three notifications per message sent, so at 1,000 messages/s this is 3,000 POSTs/s.
Under gunicorn even a bare "return 200" WSGI app spends most of a request's CPU in the server's own HTTP
and WSGI machinery; this process skips both. `python -m webapi.receiver` (gevent) parses HTTP/1.1 with
httptools (keep-alive, pipelining, chunked bodies), applies the same checks as the API's route
(webapi/intake.py: WEBHOOK_MAX_BODY_KB, the signature on the raw body, a JSON object) and keeps the bodies
in the same Redis inbox. Bodies arriving while Redis is busy with the previous write are written together
in one command (a group commit), and no request is answered 200 before its body is in Redis.

It also answers Meta's verification handshake (`GET /webhooks/whatsapp`) and `GET /healthz`, so Meta's
callback URL can point at it alone. Everything else gets 404. The API keeps its own route: a deployment
without this process loses nothing but speed.
"""

from __future__ import annotations

if __name__ == "__main__":  # before anything that opens sockets is imported
    from gevent import monkey

    monkey.patch_all()

import argparse
import hmac
import logging
import sys
from urllib.parse import parse_qs, urlsplit

import gevent
import httptools
from gevent.event import AsyncResult, Event
from gevent.server import StreamServer

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
# The most bodies one Redis command carries.
_MAX_GROUP = 500
# How long the writer lets bodies gather before writing them: at thousands of POSTs per second a few
# milliseconds turn one Redis call per body into one per several, for that much more answer latency.
GROUP_WAIT_S = 0.002


class GroupWriter:
    """Keeps bodies in the inbox for many connections at once: one RPUSH per round of waiting bodies."""

    def __init__(self, inbox: WebhookInbox, queue: TaskQueue):
        self.inbox = inbox
        self.queue = queue
        self._waiting: list[tuple[bytes, AsyncResult]] = []
        self._wake = Event()
        self._writer = gevent.spawn(self._run)

    def keep(self, raw: bytes) -> bool:
        """Wait until `raw` is in Redis; False when it could not be kept (the caller must not acknowledge it)."""
        done = AsyncResult()
        self._waiting.append((raw, done))
        self._wake.set()
        return bool(done.get())

    def _run(self) -> None:
        """Write whatever waits, until stopped; a failed write fails only the bodies it carried."""
        while True:
            self._wake.wait()
            gevent.sleep(GROUP_WAIT_S)
            self._wake.clear()
            while self._waiting:
                group, self._waiting = self._waiting[:_MAX_GROUP], self._waiting[_MAX_GROUP:]
                try:
                    if self.inbox.push_many([raw for raw, _ in group]):
                        self.queue.schedule_webhooks()
                    kept = True
                except Exception:
                    log.exception("notifications not kept: Redis did not take them; WhatsApp will send them again")
                    kept = False
                for _, done in group:
                    done.set(kept)

    def close(self) -> None:
        """Stop writing (bodies still waiting are answered as not kept)."""
        self._writer.kill()
        for _, done in self._waiting:
            done.set(False)


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


class Receiver:
    """Answers notifications on a gevent StreamServer; `serve_forever` or start/stop."""

    def __init__(self, settings: Settings, inbox: WebhookInbox, queue: TaskQueue, *, host: str, port: int):
        self.settings = settings
        self.check = NotificationCheck(settings)
        self.verify_token = (settings.whatsapp_verify_token or "").encode()
        self.writer = GroupWriter(inbox, queue)
        self.server = StreamServer((host, port), self._serve)

    @property
    def port(self) -> int:
        """The port it listens on."""
        return self.server.server_port

    def _serve(self, sock, _address) -> None:
        """One client connection: requests in, answers out in the same order, until either side closes."""
        connection = _Connection(self.check.limit)
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    return
                try:
                    connection.parser.feed_data(data)
                except httptools.HttpParserError:  # an upgrade request included
                    sock.sendall(_response(error_reply(400, texts.WEBHOOK_BAD_REQUEST), close=True))
                    return
                if connection.continue_now:
                    connection.continue_now = False
                    sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                if not connection.ready:
                    continue
                ready, connection.ready = connection.ready, []
                out = []
                close = False
                for request in ready:
                    answer = self._answer(request)
                    close = request.close or request.too_large
                    out.append(_response(answer, close=close))
                    if close:
                        break
                sock.sendall(b"".join(out))
                if close:
                    return
        except OSError:
            return  # the client went away
        finally:
            sock.close()

    def _answer(self, request: _Request) -> Answer:
        """The answer to one complete request."""
        split = urlsplit(request.url.decode("latin-1"))
        if split.path == "/healthz" and request.method == b"GET":
            return _HEALTHY
        if split.path != PATH:
            return error_reply(404, texts.RECEIVER_ROUTE_NOT_FOUND)
        if request.method == b"GET":
            return self._verify(split.query)
        if request.method != b"POST":
            return error_reply(405, texts.METHOD_NOT_ALLOWED)
        answer = self._keep(request)
        count(answer[0])
        return answer

    def _keep(self, request: _Request) -> Answer:
        """Check one notification and keep it."""
        if request.too_large:
            return self.check.too_large()
        raw = b"".join(request.body)
        refusal = self.check.refusal(raw, request.signature)
        if refusal is not None:
            return refusal
        return ACCEPTED if self.writer.keep(raw) else NOT_RECORDED

    def _verify(self, query: str) -> Answer:
        """Meta's subscription check, as the API answers it (webapi/webhooks.py)."""
        args = {name: values[0] for name, values in parse_qs(query).items()}
        token = args.get("hub.verify_token", "").encode()
        if args.get("hub.mode") == "subscribe" and self.verify_token and hmac.compare_digest(token, self.verify_token):
            return ("200 OK", args.get("hub.challenge", "").encode())
        return error_reply(403, texts.WEBHOOK_VERIFY_REFUSED)

    def start(self) -> None:
        """Listen in the background (tests)."""
        self.server.start()

    def stop(self) -> None:
        """Stop listening and writing."""
        self.server.stop(timeout=5)
        self.writer.close()


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
    queue = CeleryQueue(create_celery_app(settings))
    receiver = Receiver(
        settings,
        WebhookInbox(redis_client(settings.redis_url)),
        queue,
        host=args.host,
        port=args.port or settings.webhook_receiver_port,
    )
    log.info("notification receiver listening on %s:%s", args.host, receiver.port)
    gevent.signal_handler(15, receiver.server.stop)  # SIGTERM: stop taking connections, then exit
    receiver.server.serve_forever()
    receiver.writer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
