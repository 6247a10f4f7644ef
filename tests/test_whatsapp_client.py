"""The WhatsApp client's connection handling, against a raw HTTP server that behaves like a real one."""

from __future__ import annotations

import socket
import threading
import time

from tasks.store.base import Sender
from tasks.whatsapp import WhatsAppClient

SENDER = Sender(buzon="ventas", phone_number_id="111", access_token="t", messages_per_second=None)


def answer(n: int) -> bytes:
    """A Cloud API success answer for the n-th request, on a connection that is not announced as closing."""
    body = b'{"messages":[{"id":"wamid.%02d"}]}' % n
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


class ClosingServer:
    """Answers each request on a keep-alive connection, then closes it without saying so (an idle timeout)."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.requests = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                if not data:
                    continue
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(
                    next(
                        line.split(b":")[1]
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    )
                )
                while len(body) < length:
                    body += conn.recv(65536)
                self.requests += 1
                conn.sendall(answer(self.requests))

    def close(self) -> None:
        self.listener.close()


def test_a_connection_the_server_closed_while_idle_is_replaced_not_reused():
    # Reusing it would lose the message's answer and leave it "unknown"; the check before reuse opens a new one.
    server = ClosingServer()
    client = WhatsAppClient(f"http://127.0.0.1:{server.port}", "v21.0", timeout_s=5)
    try:
        first = client.send(SENDER, {"to": "584141000001"})
        time.sleep(0.2)  # the server has closed the connection by now
        second = client.send(SENDER, {"to": "584141000002"})
    finally:
        client.close()
        server.close()
    assert (first.wamid, first.ambiguous) == ("wamid.01", False)
    assert (second.wamid, second.ambiguous) == ("wamid.02", False)
    assert (server.connections, server.requests) == (2, 2)
