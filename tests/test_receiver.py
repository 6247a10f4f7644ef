"""The notification receiver (`python -m webapi.receiver`): the same answers as the API's route, faster.

It runs as its own process, as deployed, in front of the same Redis inbox the workers drain.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import requests

from demo.services import EmbeddedRedis
from tasks import keys, texts
from tests.conftest import (
    APP_SECRET,
    ROOT,
    free_port,
    make_csv,
    status,
    store_rows,
    upload,
    wait_for,
    wait_status,
)
from tests.test_webhooks import HOOK, notification, signed, st

pytestmark = pytest.mark.usefixtures("worker", "clean")


class Receiver:
    """The receiver process on a free port."""

    def __init__(self, env: dict[str, str], log_path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "webapi.receiver", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(self.url + "/healthz", timeout=2)
                return
            except requests.ConnectionError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.1)
        raise RuntimeError(f"receiver did not start:\n{log_path.read_text()[-3000:]}")

    def stop(self) -> int:
        """SIGTERM, and the exit code."""
        self.process.terminate()
        try:
            return self.process.wait(10)
        finally:
            self._log.close()


@pytest.fixture(scope="module")
def receiver(service_env, tmp_path_factory):
    process = Receiver(service_env, tmp_path_factory.mktemp("receiver") / "receiver.log")
    yield process
    assert process.stop() == 0, "the receiver stops cleanly on SIGTERM"


@pytest.fixture
def sent_campaign(api):
    """A campaign of 200 sent to the end; its rows' wamids in order."""
    response = upload(api, make_csv(200), title="Receptor")
    assert response.status_code == 201, response.text
    wait_status(api, "receptor", {"completed"})
    return [r[2] for r in store_rows("receptor")]


def test_verification_handshake_and_health(receiver):
    ok = requests.get(
        receiver.url + HOOK,
        params={"hub.mode": "subscribe", "hub.verify_token": "verify-me", "hub.challenge": "1158201444"},
        timeout=5,
    )
    assert ok.status_code == 200 and ok.text == "1158201444"
    assert ok.headers["Content-Type"].startswith("text/plain")
    bad = requests.get(
        receiver.url + HOOK,
        params={"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "1"},
        timeout=5,
    )
    assert bad.status_code == 403 and bad.json()["success"] is False
    assert "WHATSAPP_VERIFY_TOKEN" in bad.json()["message"]
    assert requests.get(receiver.url + "/healthz", timeout=5).status_code == 200
    elsewhere = requests.get(receiver.url + "/api/listar-campanas", timeout=5)
    assert elsewhere.status_code == 404 and "/webhooks/whatsapp" in elsewhere.json()["message"]


def test_statuses_posted_concurrently_all_reach_the_campaign(api, receiver, sent_campaign):
    bodies = [notification(st(wamid, "delivered")) for wamid in sent_campaign]
    bodies += [notification(st(wamid, "read", ts=1_800_000_100)) for wamid in sent_campaign]

    def post_all(share: list[bytes]) -> list[int]:
        with requests.Session() as session:  # keep-alive, as Meta posts
            return [session.post(receiver.url + HOOK, data=b, headers=signed(b), timeout=30).status_code for b in share]

    with ThreadPoolExecutor(20) as pool:
        codes = [code for part in pool.map(post_all, [bodies[i::20] for i in range(20)]) for code in part]
    assert codes == [200] * len(bodies)
    final = wait_for(
        lambda: (s := status(api, "receptor"))["delivered"] == 200 and s["read"] == 200 and s,
        30,
        message="200 delivered and read",
    )
    assert final["sent"] == 200


def test_refused_notifications_are_never_applied(api, receiver, sent_campaign):
    read_first = notification(st(sent_campaign[0], "read"))
    refused = [
        (read_first, {"X-Hub-Signature-256": "sha256=" + "0" * 64}, 401),
        (read_first, {}, 401),
        (read_first, signed(read_first, "another-secret"), 401),
        (b"{not json", signed(b"{not json"), 400),
        (b"[1, 2]", signed(b"[1, 2]"), 400),
    ]
    for body, headers, code in refused:
        answer = requests.post(receiver.url + HOOK, data=body, headers=headers, timeout=5)
        assert answer.status_code == code, answer.text
        assert answer.json()["success"] is False and answer.json()["message"]
    # Over WEBHOOK_MAX_BODY_KB (1 MB here): by its declared length, and in chunks without one.
    huge = b'{"entry": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    assert requests.post(receiver.url + HOOK, data=huge, headers=signed(huge), timeout=10).status_code == 413
    chunked = requests.post(
        receiver.url + HOOK, data=(huge[i : i + 65536] for i in range(0, len(huge), 65536)), headers=signed(huge)
    )
    assert chunked.status_code == 413 and "1024 KB" in chunked.json()["message"]
    assert requests.put(receiver.url + HOOK, data=b"{}", timeout=5).status_code == 405
    # A good notification after them: once it shows, any refused one kept before it would have too.
    delivered = notification(st(sent_campaign[1], "delivered"))
    assert requests.post(receiver.url + HOOK, data=delivered, headers=signed(delivered), timeout=5).status_code == 200
    wait_for(lambda: status(api, "receptor")["delivered"] == 1, 20, message="the good one applied")
    assert status(api, "receptor")["read"] == 0


def test_pipelined_requests_are_answered_in_order_on_one_connection(api, receiver, sent_campaign):
    good = [notification(st(wamid, "delivered")) for wamid in sent_campaign[:2]]
    requests_bytes = b""
    for body, secret in ((good[0], APP_SECRET), (good[0], "wrong"), (good[1], APP_SECRET)):
        headers = signed(body, secret)
        requests_bytes += (
            f"POST {HOOK} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"X-Hub-Signature-256: {headers['X-Hub-Signature-256']}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
    with socket.create_connection(("127.0.0.1", receiver.port), timeout=10) as conn:
        conn.sendall(requests_bytes)
        received = b""
        while received.count(b"HTTP/1.1 ") < 3 or not received.endswith(b"}\n"):  # the last answer is a 200
            chunk = conn.recv(65536)
            assert chunk, f"connection closed after {received!r}"
            received += chunk
    answers = re.findall(rb"HTTP/1\.1 (\d{3}) ", received)
    assert answers == [b"200", b"401", b"200"]
    wait_for(lambda: status(api, "receptor")["delivered"] == 2, 20, message="both good ones applied")


def test_a_request_that_is_not_http_is_answered_400_and_closed(receiver):
    with socket.create_connection(("127.0.0.1", receiver.port), timeout=10) as conn:
        conn.sendall(b"HELLO THERE\r\n\r\n")
        answer = conn.recv(65536)
        assert answer.startswith(b"HTTP/1.1 400 ")
        assert b"Connection: close" in answer
        assert conn.recv(65536) == b""  # closed


def test_end_to_end_with_the_sandboxs_webhooks_at_the_receiver(api, receiver, sandbox):
    sandbox.configure(
        webhook_url=receiver.url + HOOK,
        app_secret=APP_SECRET,
        delivered_share=1.0,
        read_share=0.5,
        webhook_delay_ms=[5, 30],
        duplicate_share=0.3,
        out_of_order_share=0.3,
    )
    upload(api, make_csv(300), title="Acuses al receptor")
    wait_status(api, "acuses-al-receptor", {"completed"})
    sandbox.flush_webhooks()
    read = sum(any(s["status"] == "read" for s in m["statuses"]) for m in sandbox.webhooks()["messages"])
    assert read > 0
    wait_for(
        lambda: (s := status(api, "acuses-al-receptor"))["delivered"] == 300 and s["read"] == read,
        30,
        message=f"300 delivered, {read} read",
    )


def test_a_client_that_expects_100_continue_is_told_to_send_the_body(api, receiver, sent_campaign):
    body = notification(st(sent_campaign[0], "delivered"))
    head = (
        f"POST {HOOK} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n"
        f"X-Hub-Signature-256: {signed(body)['X-Hub-Signature-256']}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", receiver.port), timeout=10) as conn:
        conn.sendall(head)
        assert conn.recv(65536).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        conn.sendall(body)
        answer = b""
        while not answer.endswith(b"}\n"):
            chunk = conn.recv(65536)
            assert chunk, f"connection closed after {answer!r}"
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    wait_for(lambda: status(api, "receptor")["delivered"] == 1, 20, message="the notification applied")


def test_while_redis_is_away_nothing_is_acknowledged_and_intake_resumes_after(service_env, tmp_path):
    """A notification the inbox could not take is answered 503 (Meta sends it again), never 200; once Redis
    is back the next ones are kept, and the inbox holds exactly the acknowledged ones."""
    server = EmbeddedRedis(tmp_path / "redis", port=free_port())
    url = server.start()
    receiver = Receiver({**service_env, "REDIS_URL": url}, tmp_path / "receiver.log")
    try:
        first, second, third = (notification(st(f"wamid.away{i}", "delivered")) for i in range(3))
        assert requests.post(receiver.url + HOOK, data=first, headers=signed(first), timeout=10).status_code == 200
        server.stop()
        answer = requests.post(receiver.url + HOOK, data=second, headers=signed(second), timeout=30)
        assert answer.status_code == 503, answer.text
        assert answer.json()["message"] == texts.WEBHOOK_NOT_RECORDED
        server.start()
        inbox = redis.Redis.from_url(url)
        wait_for(
            lambda: (
                requests.post(receiver.url + HOOK, data=third, headers=signed(third), timeout=10).status_code == 200
            ),
            30,
            message="intake accepts again once Redis is back",
        )
        kept = set(inbox.lrange(keys.WEBHOOK_INBOX, 0, -1))
        assert kept == {first, third}, "the inbox keeps what was acknowledged (its file outlived the restart)"
    finally:
        assert receiver.stop() == 0, "the receiver stops cleanly on SIGTERM"
        server.stop()
