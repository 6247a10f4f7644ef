"""Two API servers (gunicorn, two gevent workers each) on one Redis and one database, behind one client.

Whichever process answers, a campaign ends the same: every request below goes to the next server in turn
(and, inside a server, to whichever of its workers accepts it), so nothing may live in one process's memory.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections import Counter

import psycopg
import pytest

from tests.conftest import SENDERS, make_csv, store_rows, upload, wait_for

pytestmark = pytest.mark.usefixtures("clean")

COUNTS = ("total", "pending", "sent", "failed", "cancelled", "unknown", "retries")
# What two reads of a campaign that does not move must agree on (the rate and the ETA follow the clock).
STABLE = (*COUNTS, "status", "motivo", "progress", "errores", "created_at", "started_at", "finished_at", "creado_por")


class RoundRobin:
    """One client over several servers: each request goes to the next one; every status read is checked."""

    def __init__(self, servers):
        self.servers = servers
        self._turn = itertools.count()
        self.answered: Counter = Counter()
        self.sent_seen: dict[str, int] = {}

    def next(self):
        """The server whose turn it is."""
        server = self.servers[next(self._turn) % len(self.servers)]
        self.answered[server.url] += 1
        return server

    def get(self, path: str, **kwargs):
        """GET on the next server."""
        return self.next().get(path, **kwargs)

    def post(self, path: str, **kwargs):
        """POST to the next server."""
        return self.next().post(path, **kwargs)

    def status(self, campaign_id: str) -> dict:
        """estado-cola from the next server, checked to add up, with `sent` never going back."""
        response = self.get(f"/api/estado-cola/{campaign_id}")
        assert response.status_code == 200, response.text
        body = response.json()
        settled = sum(body[k] for k in ("sent", "failed", "cancelled", "unknown"))
        assert body["pending"] == body["total"] - settled >= 0, body
        assert body["status"] in {"queued", "running", "paused", "completed"}, body
        assert body["sent"] >= self.sent_seen.get(campaign_id, 0), "a later read, on any server, never sends less"
        self.sent_seen[campaign_id] = body["sent"]
        return body

    def wait_status(self, campaign_id: str, wanted: set[str], timeout: float = 120) -> dict:
        """Poll estado-cola, server after server, until the campaign reaches one of `wanted`."""
        return wait_for(
            lambda: (s := self.status(campaign_id))["status"] in wanted and s,
            timeout,
            message=f"{campaign_id} to become {wanted}",
        )


def stable(body: dict) -> dict:
    """The fields of a status read that do not follow the clock."""
    return {k: body[k] for k in STABLE}


def campaigns_titled(title: str) -> int:
    """How many stored campaigns have this title."""
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        return conn.execute("SELECT count(*) FROM instancia_sofia.campaigns WHERE title = %s", (title,)).fetchone()[0]


def waiting_on_locks(conn) -> int:
    """Sessions of the test database waiting for a lock."""
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    ).fetchone()
    conn.commit()  # a fresh snapshot of the statistics next time
    return row[0]


def test_campaigns_end_the_same_whichever_server_answers(make_stack, sandbox):
    stack = make_stack(apis=2, gunicorn_workers=2)
    first, second = stack.apis
    stack.start_worker("a", concurrency=50)
    stack.start_worker("b", concurrency=50)
    client = RoundRobin(stack.apis)
    csv = make_csv(1200)
    refused = [f"58{4141000000 + i}" for i in range(0, 1200, 120)]  # ten numbers WhatsApp refuses at first
    sandbox.configure(recipient_errors={phone: 131026 for phone in refused})

    # The same upload on both servers at once (a client that gave up waiting and tried the other one): the
    # test holds a lock that keeps both inside their transactions until each has reached its INSERT.
    answers: dict[str, dict] = {}

    def send_to(server, name: str) -> None:
        response = upload(
            server, make_csv(300, start=4241000000), title="Doble", buzon="soporte", headers={"Idempotency-Key": "d-1"}
        )
        assert response.status_code == 201, response.text
        answers[name] = response.json()

    threads = [threading.Thread(target=send_to, args=(s, n)) for s, n in ((first, "first"), (second, "second"))]
    with psycopg.connect(os.environ["DATABASE_URL"]) as lock, psycopg.connect(os.environ["DATABASE_URL"]) as watch:
        lock.execute("LOCK TABLE instancia_sofia.campaigns IN SHARE MODE")  # no INSERT gets through
        for thread in threads:
            thread.start()
        wait_for(lambda: waiting_on_locks(watch) >= 2, 30, message="both uploads inside their transactions")
        lock.commit()
    for thread in threads:
        thread.join(60)
    assert sorted(a["duplicate_request"] for a in answers.values()) == [False, True]
    assert {a["campaign_id"] for a in answers.values()} == {"doble"} and campaigns_titled("Doble") == 1
    assert {a["total_messages"] for a in answers.values()} == {300}

    # An upload retried on the other server (after the first answered) with the same key: the same campaign.
    created = upload(first, csv, title="Reparto", buzon="medio", headers={"Idempotency-Key": "reparto-1"})
    assert created.status_code == 201, created.text
    retried = upload(second, csv, title="Reparto", buzon="medio", headers={"Idempotency-Key": "reparto-1"})
    assert retried.status_code == 201, retried.text
    assert (created.json()["duplicate_request"], retried.json()["duplicate_request"]) == (False, True)
    assert retried.json()["campaign_id"] == created.json()["campaign_id"] == "reparto"
    assert retried.json()["total_messages"] == created.json()["total_messages"] == 1200
    assert campaigns_titled("Reparto") == 1

    # Pause on one server, watch it settle through both, resume on the other.
    wait_for(lambda: client.status("reparto")["sent"] >= 200, 60, message="part of the campaign sent")
    paused = first.post("/api/pausar-campana/reparto")
    assert (paused.status_code, paused.json()["status"]) == (200, "paused")
    wait_for(lambda: client.status("reparto")["batches_in_flight"] == 0, 30, message="the pause to settle")
    reads = [client.status("reparto") for _ in range(4)]  # two per server, one per gunicorn worker at best
    assert all(r["status"] == "paused" for r in reads)
    assert all(stable(r) == stable(reads[0]) for r in reads), "every process reads the same"
    assert 0 < reads[0]["pending"] < 1200
    resumed = second.post("/api/reanudar-campana/reparto")
    assert (resumed.status_code, resumed.json()["status"]) == (200, "running")

    done = client.wait_status("reparto", {"completed"}, timeout=120)
    assert (done["sent"], done["failed"]) == (1190, 10)
    client.wait_status("doble", {"completed"}, timeout=60)

    # WhatsApp accepts the ten numbers now; the retry goes through one server, the reads through both.
    sandbox.configure(recipient_errors={})
    retry = client.post("/api/reintentar-campana/reparto", json={"estados": ["failed"]})
    assert (retry.status_code, retry.json()["reencolados"]) == (200, 10), retry.text
    final = client.wait_status("reparto", {"completed"}, timeout=60)
    assert (final["sent"], final["failed"], final["pending"], final["progress"]) == (1200, 0, 0, 100.0)

    # The counters every server shows are the store's.
    for campaign_id, total in (("reparto", 1200), ("doble", 300)):
        by_status = Counter(row[1] for row in store_rows(campaign_id))
        assert by_status == {"sent": total}
        reads = [client.status(campaign_id) for _ in range(4)]
        assert all(stable(r) == stable(reads[0]) for r in reads)
        assert {k: reads[0][k] for k in ("sent", "failed", "unknown", "cancelled", "pending")} == {
            "sent": by_status["sent"],
            "failed": 0,
            "unknown": 0,
            "cancelled": 0,
            "pending": 0,
        }
    # Each number reached WhatsApp once: neither the retried upload nor the double one sent anything twice.
    for buzon, count in (("medio", 1200), ("soporte", 300)):
        per_phone = Counter(m["to"] for m in sandbox.messages(phone_number_id=SENDERS[buzon][0]))
        assert len(per_phone) == count and set(per_phone.values()) == {1}

    # Lists and system status agree too.
    one, other = (client.get("/api/listar-campanas").json()["campaigns"] for _ in range(2))
    assert [c["id"] for c in one] == [c["id"] for c in other] == ["reparto", "doble"]  # newest first
    assert [stable(c) for c in one] == [stable(c) for c in other]
    one, other = (client.get("/api/estado-sistema").json() for _ in range(2))
    assert sorted(w["id"] for w in one["worker_details"]) == sorted(w["id"] for w in other["worker_details"])
    assert all(s["workers"] == 2 and s["beat"]["running"] and s["advertencias"] == [] for s in (one, other))
    assert set(client.answered) == {first.url, second.url} and min(client.answered.values()) >= 10
