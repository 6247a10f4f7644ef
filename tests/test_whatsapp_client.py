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


class ScriptedServer:
    """Reads each request on a connection and does what `reply(n, head, body)` returns with it.

    bytes are sent and the connection kept (or closed without saying so, an idle timeout, with
    `close_after_answer`); None closes it without an answer; "hang" sends nothing.
    """

    def __init__(self, reply, *, close_after_answer: bool = False):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.reply = reply
        self.close_after_answer = close_after_answer
        self.connections = 0
        self.requests: list[tuple[bytes, bytes]] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        data = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, data = data.partition(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                while len(data) < length:
                    data += conn.recv(65536)
                body, data = data[:length], data[length:]
                self.requests.append((head, body))
                action = self.reply(len(self.requests), head, body)
                if action is None:
                    return
                if action == "hang":
                    time.sleep(3)
                    return
                conn.sendall(action)
                if self.close_after_answer:
                    return

    def close(self) -> None:
        self.listener.close()


def test_a_connection_the_server_closed_while_idle_is_replaced_not_reused():
    # Reusing it would lose the message's answer and leave it "unknown"; the check before reuse opens a new one.
    server = ScriptedServer(lambda n, head, body: answer(n), close_after_answer=True)
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
    assert (server.connections, len(server.requests)) == (2, 2)


def test_messages_go_out_as_the_cloud_api_expects_over_one_kept_connection():
    server = ScriptedServer(lambda n, head, body: answer(n))
    client = WhatsAppClient(f"http://127.0.0.1:{server.port}/graph", "v21.0", timeout_s=5)
    try:
        results = [client.send(SENDER, {"to": f"58414100000{i}", "text": "Señora Peña"}) for i in range(1, 6)]
    finally:
        client.close()
        server.close()
    assert [r.wamid for r in results] == [f"wamid.0{i}" for i in range(1, 6)]
    assert server.connections == 1
    head, body = server.requests[0]
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0] == "POST /graph/v21.0/111/messages HTTP/1.1"
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert headers["authorization"] == "Bearer t" and headers["content-type"] == "application/json"
    assert headers["host"] == f"127.0.0.1:{server.port}"
    assert body.decode("utf-8") == '{"to":"584141000001","text":"Señora Peña"}'


def test_a_meta_error_answer_is_read_with_its_code_even_when_chunked():
    error = b'{"error":{"message":"(#131026) Message undeliverable","code":131026,"error_data":{"details":"no WA"}}}'
    chunked = b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunked += b"%x\r\n%s\r\n0\r\n\r\n" % (len(error), error)
    server = ScriptedServer(lambda n, head, body: chunked if n == 1 else answer(n))
    client = WhatsAppClient(f"http://127.0.0.1:{server.port}", "v21.0", timeout_s=5)
    try:
        failed = client.send(SENDER, {"to": "584141000001"})
        after = client.send(SENDER, {"to": "584141000002"})
    finally:
        client.close()
        server.close()
    assert (failed.error_code, failed.error_detail, failed.http_status, failed.ambiguous) == (
        131026,
        "no WA",
        400,
        False,
    )
    assert after.wamid == "wamid.02" and server.connections == 1  # the connection stayed usable


def test_nothing_listening_is_no_connection_and_safe_to_retry():
    port = socket.create_server(("127.0.0.1", 0))
    free = port.getsockname()[1]
    port.close()
    client = WhatsAppClient(f"http://127.0.0.1:{free}", "v21.0", timeout_s=2)
    try:
        result = client.send(SENDER, {"to": "584141000001"})
    finally:
        client.close()
    assert (result.ok, result.ambiguous, result.error_detail) == (False, False, "no se pudo conectar con WhatsApp")


def test_a_request_without_an_answer_may_have_been_delivered_and_is_never_sent_again():
    server = ScriptedServer(lambda n, head, body: "hang")
    client = WhatsAppClient(f"http://127.0.0.1:{server.port}", "v21.0", timeout_s=0.5)
    try:
        started = time.monotonic()
        result = client.send(SENDER, {"to": "584141000001"})
        took = time.monotonic() - started
    finally:
        client.close()
        server.close()
    assert result.ambiguous and "puede haberse entregado" in (result.error_detail or "")
    assert "no respondió a tiempo" in (result.error_detail or "")
    assert 0.4 < took < 2.5
    assert len(server.requests) == 1


def test_a_connection_cut_before_the_answer_is_ambiguous_and_not_retried_by_the_client():
    server = ScriptedServer(lambda n, head, body: None if n == 1 else answer(n))
    client = WhatsAppClient(f"http://127.0.0.1:{server.port}", "v21.0", timeout_s=5)
    try:
        cut = client.send(SENDER, {"to": "584141000001"})
        time.sleep(0.1)
        after = client.send(SENDER, {"to": "584141000002"})
    finally:
        client.close()
        server.close()
    assert cut.ambiguous and "la conexión se cortó antes de la respuesta" in (cut.error_detail or "")
    assert [b for _, b in server.requests] == [b'{"to":"584141000001"}', b'{"to":"584141000002"}']
    assert after.wamid == "wamid.02"


def test_an_answer_that_is_not_http_is_ambiguous():
    server = ScriptedServer(lambda n, head, body: b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
    client = WhatsAppClient(f"http://127.0.0.1:{server.port}", "v21.0", timeout_s=2)
    try:
        result = client.send(SENDER, {"to": "584141000001"})
    finally:
        client.close()
        server.close()
    assert result.ambiguous and not result.ok and "puede haberse entregado" in (result.error_detail or "")
