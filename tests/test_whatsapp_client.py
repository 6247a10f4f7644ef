"""The WhatsApp client's connection handling, against a raw HTTP server that behaves like a real one."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest

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

    def __init__(self, reply, *, close_after_answer: bool = False, tls: ssl.SSLContext | None = None):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.tls = tls
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
        if self.tls is not None:
            try:
                conn = self.tls.wrap_socket(conn, server_side=True)
            except OSError:
                return
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


def test_a_request_larger_than_the_sockets_buffer_arrives_whole():
    def slow_reader(n, head, body):
        return answer(n)

    server = ScriptedServer(slow_reader)
    client = WhatsAppClient(f"http://127.0.0.1:{server.port}", "v21.0", timeout_s=5)
    text = "Señora Peña " * 400_000  # about 5 MB: the kernel takes it in several parts
    try:
        result = client.send(SENDER, {"to": "584141000001", "text": text})
    finally:
        client.close()
        server.close()
    assert result.wamid == "wamid.01"
    assert json.loads(server.requests[0][1]) == {"to": "584141000001", "text": text}


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


def test_an_answer_announcing_close_ends_its_connection_without_costing_the_next_message():
    body = b'{"messages":[{"id":"wamid.01"}]}'
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    server = ScriptedServer(lambda n, head, body: closing if n == 1 else answer(n))
    client = WhatsAppClient(f"http://127.0.0.1:{server.port}", "v21.0", timeout_s=5)
    try:
        first = client.send(SENDER, {"to": "584141000001"})
        second = client.send(SENDER, {"to": "584141000002"})
    finally:
        client.close()
        server.close()
    assert (first.wamid, second.wamid, second.ambiguous) == ("wamid.01", "wamid.02", False)
    assert server.connections == 2


def test_an_interim_answer_is_skipped_and_a_body_without_length_ends_with_the_connection():
    body = b'{"messages":[{"id":"wamid.01"}]}'
    reply = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + body
    server = ScriptedServer(lambda n, head, body: reply if n == 1 else answer(n), close_after_answer=True)
    client = WhatsAppClient(f"http://127.0.0.1:{server.port}", "v21.0", timeout_s=5)
    try:
        first = client.send(SENDER, {"to": "584141000001"})
        second = client.send(SENDER, {"to": "584141000002"})
    finally:
        client.close()
        server.close()
    assert (first.wamid, second.wamid) == ("wamid.01", "wamid.02")
    assert server.connections == 2


def test_a_token_that_cannot_go_in_a_header_is_refused_before_anything_is_sent():
    server = ScriptedServer(lambda n, head, body: answer(n))
    client = WhatsAppClient(f"http://127.0.0.1:{server.port}", "v21.0", timeout_s=5)
    broken = Sender(
        buzon="ventas", phone_number_id="111", access_token="abc\r\nX-Injected: 1", messages_per_second=None
    )
    pasted = Sender(buzon="ventas", phone_number_id="111", access_token=" t\n", messages_per_second=None)
    try:
        refused = client.send(broken, {"to": "584141000001"})
        sent = client.send(pasted, {"to": "584141000002"})  # blanks around a pasted token are dropped
    finally:
        client.close()
        server.close()
    assert (refused.ok, refused.ambiguous, refused.error_code) == (False, False, 190)
    assert "saltos de línea" in (refused.error_detail or "")
    assert sent.wamid == "wamid.01" and len(server.requests) == 1
    assert b"Authorization: Bearer t\r\n" in server.requests[0][0]


def test_requests_beyond_the_connection_limit_wait_for_a_connection():
    def slow(n, head, body):
        time.sleep(0.3)
        return answer(n)

    server = ScriptedServer(slow)
    client = WhatsAppClient(f"http://127.0.0.1:{server.port}", "v21.0", timeout_s=5, pool_size=1)
    results = {}
    threads = [
        threading.Thread(target=lambda i=i: results.update({i: client.send(SENDER, {"to": f"58414100000{i}"})}))
        for i in range(3)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    finally:
        client.close()
        server.close()
    assert sorted(r.wamid for r in results.values()) == ["wamid.01", "wamid.02", "wamid.03"]
    assert server.connections == 1  # one at a time over the one connection allowed


def run_green(script: str, server: ScriptedServer):
    """Run `script` (a monkey-patched client, as a worker is) against `server` in a process of its own; what it
    printed, read as JSON. The server is closed afterwards."""
    try:
        run = subprocess.run(
            [sys.executable, "-c", script, f"http://127.0.0.1:{server.port}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        server.close()
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


_GREEN_CLIENT = """
from gevent import monkey

monkey.patch_all()
import json, sys

import gevent

from tasks.store.base import Sender
from tasks.whatsapp import WhatsAppClient

client = WhatsAppClient(sys.argv[1], "v21.0", timeout_s=5, pool_size=2)
sender = Sender(buzon="ventas", phone_number_id="111", access_token="t", messages_per_second=None)
sends = [gevent.spawn(client.send, sender, {"to": f"5841410000{i:02d}"}) for i in range(6)]
gevent.joinall(sends, raise_error=True)
print(json.dumps(sorted(g.value.wamid for g in sends)))
"""


def test_under_gevent_greenlets_beyond_the_connection_limit_wait_for_a_connection():
    """As in a worker (monkey-patched, a greenlet per message): never more connections than allowed."""
    busy, most = [0], [0]
    lock = threading.Lock()

    def slow(n, head, body):
        with lock:
            busy[0] += 1
            most[0] = max(most[0], busy[0])
        time.sleep(0.2)
        with lock:
            busy[0] -= 1
        return answer(n)

    server = ScriptedServer(slow)
    assert run_green(_GREEN_CLIENT, server) == [f"wamid.{n:02d}" for n in range(1, 7)]
    assert server.connections == 2 and most[0] == 2


_GREEN_TIMEOUTS = """
from gevent import monkey

monkey.patch_all()
import json, sys, time

import gevent

from tasks.store.base import Sender
from tasks.whatsapp import WhatsAppClient

client = WhatsAppClient(sys.argv[1], "v21.0", timeout_s=0.5, pool_size=10)
sender = Sender(buzon="ventas", phone_number_id="111", access_token="t", messages_per_second=None)


def one(i):
    started = time.monotonic()
    first = client.send(sender, {"to": f"58414100000{i}"})
    took = time.monotonic() - started
    gevent.sleep(0.8)  # past the deadline the first request had
    second = client.send(sender, {"to": f"58414100001{i}"})
    return [first.ok, first.ambiguous, first.error_detail, took, second.ok]


jobs = [gevent.spawn(one, i) for i in range(6)]
gevent.joinall(jobs, raise_error=True)
print(json.dumps([g.value for g in jobs]))
"""


def test_under_gevent_a_request_without_an_answer_times_out_alone_and_the_others_carry_on():
    """As in a worker: the requests that get no answer end as "may have been delivered" about the network
    timeout after they started; the ones answered at the same time, and every greenlet's next request after
    its first one's deadline has passed, are not touched by those timeouts."""
    server = ScriptedServer(
        lambda n, head, body: "hang" if b"584141000002" in body or b"584141000004" in body else answer(n)
    )
    results = run_green(_GREEN_TIMEOUTS, server)
    for i, (ok, ambiguous, detail, took, second_ok) in enumerate(results):
        if i in (2, 4):
            assert (ok, ambiguous) == (False, True) and "no respondió a tiempo" in detail
            assert 0.45 < took < 1.5
        else:
            assert (ok, ambiguous) == (True, False) and took < 0.45
        assert second_ok, f"message {i}: the request after a timeout failed"
    assert len(server.requests) == 12


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1, made with the machine's openssl."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_https_keeps_one_verified_connection_and_replaces_one_the_server_closed(certificate):
    cert, key = certificate
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    trusted = ssl.create_default_context(cafile=str(cert))
    kept = ScriptedServer(lambda n, head, body: answer(n), tls=server_tls)
    closing = ScriptedServer(lambda n, head, body: answer(n), tls=server_tls, close_after_answer=True)
    try:
        client = WhatsAppClient(f"https://127.0.0.1:{kept.port}", "v21.0", timeout_s=5, tls=trusted)
        # TLS 1.3 session tickets arrive after the handshake: they do not make the connection look closed.
        results = [client.send(SENDER, {"to": f"58414100000{i}"}) for i in range(1, 4)]
        client.close()
        assert [r.wamid for r in results] == ["wamid.01", "wamid.02", "wamid.03"] and kept.connections == 1

        client = WhatsAppClient(f"https://127.0.0.1:{closing.port}", "v21.0", timeout_s=5, tls=trusted)
        first = client.send(SENDER, {"to": "584141000001"})
        time.sleep(0.2)
        second = client.send(SENDER, {"to": "584141000002"})
        client.close()
        assert (first.wamid, second.wamid, second.ambiguous) == ("wamid.01", "wamid.02", False)
        assert closing.connections == 2

        # An untrusted certificate is no connection: nothing was sent.
        client = WhatsAppClient(f"https://127.0.0.1:{kept.port}", "v21.0", timeout_s=5)
        untrusted = client.send(SENDER, {"to": "584141000009"})
        client.close()
        assert (untrusted.ok, untrusted.ambiguous) == (False, False)
        assert len(kept.requests) == 3
    finally:
        kept.close()
        closing.close()
