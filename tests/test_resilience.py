"""Crashes, restarts, outages and limits: campaigns finish, nothing is lost, nothing is sent twice."""

from __future__ import annotations

import signal
import time
from collections import Counter

import pytest

from demo.services import EmbeddedPostgres, EmbeddedRedis
from tasks.store.migrate import apply_migrations
from tasks.store.postgres import PostgresStore
from tests.conftest import SENDERS, make_csv, status, store_rows, upload, wait_for, wait_status
from webapi.apikeys import hash_key

pytestmark = pytest.mark.usefixtures("clean")


def sustained_rate(messages: list[dict]) -> float:
    """Messages per second between the first and the last message the sandbox accepted."""
    times = sorted(m["received_at"] for m in messages)
    return (len(times) - 1) / (times[-1] - times[0])


def assert_each_recipient_at_most_once(sandbox, pnid: str) -> Counter:
    """The sandbox never received the same recipient twice from this number."""
    per_phone = Counter(m["to"] for m in sandbox.messages(phone_number_id=pnid))
    assert not per_phone or per_phone.most_common(1)[0][1] == 1, per_phone.most_common(3)
    return per_phone


def test_two_workers_share_the_numbers_cap_without_throttling_errors(make_stack, sandbox):
    stack = make_stack()
    stack.start_worker("a")
    stack.start_worker("b")
    pnid = SENDERS["ventas"][0]  # buzón and sandbox both at 400 msg/s
    assert upload(stack.api, make_csv(10_000), title="Diez mil", buzon="ventas").status_code == 201
    final = wait_status(stack.api, "diez-mil", {"completed"}, timeout=120)
    assert final["sent"] == 10_000
    stats = sandbox.stats()["by_phone_number_id"][pnid]
    assert stats["rejected"].get("130429", 0) == 0, stats
    rate = sustained_rate(sandbox.messages(phone_number_id=pnid))
    assert rate >= 0.9 * 400, f"{rate:.0f} msg/s is under 90% of the 400 msg/s cap"
    assert_each_recipient_at_most_once(sandbox, pnid)


@pytest.mark.parametrize(
    "layout",
    [{}, {"BATCH_SIZE": "50", "CHUNK_SIZE": "50"}],
    ids=["chords of chunks", "one-chunk batches"],
)
def test_killed_workers_lose_nothing_and_send_nothing_twice(make_stack, sandbox, layout):
    stack = make_stack(**layout)
    stack.start_worker("steady")
    stack.start_worker("victim")
    pnid = SENDERS["medio"][0]
    assert upload(stack.api, make_csv(5_000), title="Kill", buzon="medio").status_code == 201
    for _ in range(3):
        wait_for(lambda: status(stack.api, "kill")["sent"] > 0, 30, message="sending")
        time.sleep(2)
        stack.workers["victim"].stop(sig=signal.SIGKILL)
        time.sleep(1)
        stack.start_worker("victim")
    final = wait_status(stack.api, "kill", {"completed"}, timeout=240)

    per_phone = assert_each_recipient_at_most_once(sandbox, pnid)
    rows = store_rows("kill")
    by_status = Counter(r[1] for r in rows)
    assert set(by_status) <= {"sent", "failed", "unknown"} and sum(by_status.values()) == 5_000
    assert (final["sent"], final["failed"], final["unknown"]) == (
        by_status["sent"],
        by_status["failed"],
        by_status["unknown"],
    )
    sent_phones = {r[0] for r in rows if r[1] == "sent"}
    unknown_phones = {r[0] for r in rows if r[1] == "unknown"}
    assert sent_phones <= set(per_phone), "every message marked sent reached WhatsApp"
    assert set(per_phone) <= sent_phones | unknown_phones, "WhatsApp got nothing we did not account for"
    listed = stack.api.get("/api/destinatarios/kill", params={"estado": "unknown"}).json()
    assert listed["total"] == by_status["unknown"]


def test_workers_stopped_with_sigterm_mid_campaign_cost_nothing(make_stack, sandbox):
    """A graceful stop (a deploy, a scale-down) lets each chunk in hand finish and record: zero unknown."""
    stack = make_stack()
    for name in ("a", "b", "c"):
        stack.start_worker(name)
    pnid = SENDERS["ventas"][0]
    assert upload(stack.api, make_csv(3_000), title="Termino", buzon="ventas").status_code == 201
    wait_for(lambda: status(stack.api, "termino")["sent"] >= 600, 30, message="sending")
    for name in ("b", "c"):
        stack.workers[name].ask_to_stop(signal.SIGTERM)
    assert status(stack.api, "termino")["pending"] > 0, "the stop came mid-campaign"
    for name in ("b", "c"):
        stack.workers[name].stop(timeout=90)  # already asked: waits for the warm shutdown
    final = wait_status(stack.api, "termino", {"completed"}, timeout=120)
    assert (final["sent"], final["failed"], final["unknown"]) == (3_000, 0, 0)
    assert Counter(r[1] for r in store_rows("termino")) == {"sent": 3_000}
    assert len(assert_each_recipient_at_most_once(sandbox, pnid)) == 3_000


def test_redis_restart_mid_campaign_loses_nothing(make_stack, sandbox, tmp_path):
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.start()
    try:
        stack = make_stack(redis_url=url, STUCK_CLAIM_S="20")
        stack.start_worker("a")
        pnid = SENDERS["ventas"][0]
        assert upload(stack.api, make_csv(3_000), title="Redis", buzon="ventas").status_code == 201
        wait_for(lambda: status(stack.api, "redis")["sent"] >= 300, 30, message="sending")
        server.stop()
        time.sleep(1)
        server.start()
        final = wait_status(stack.api, "redis", {"completed"}, timeout=180)
        per_phone = assert_each_recipient_at_most_once(sandbox, pnid)
        rows = store_rows("redis")
        by_status = Counter(r[1] for r in rows)
        assert by_status["sent"] + by_status["unknown"] == 3_000 and by_status["failed"] == 0
        assert {r[0] for r in rows if r[1] == "sent"} <= set(per_phone)
        assert final["sent"] == by_status["sent"]
    finally:
        server.stop()


def private_database(server: EmbeddedPostgres, operator_key: str) -> str:
    """Start `server` with the migrations applied, the test senders and the stack's operator key; returns its URL."""
    url = server.start()
    apply_migrations(url)
    store = PostgresStore(url)
    try:
        for buzon, (pnid, token, mps) in SENDERS.items():
            store.upsert_sender(buzon, pnid, token, mps)
        # The stack calls with the key made in the shared test database: the same key, stored here too.
        store.create_api_key("tests-operator", hash_key(operator_key), "operator")
    finally:
        store.close()
    return url


def answer_while_away(api, method: str, path: str, **kwargs) -> tuple[int, dict, float]:
    """Status, JSON body and seconds taken of one request made while the database is away."""
    started = time.monotonic()
    response = api.request(method, path, **kwargs)
    took = time.monotonic() - started
    assert response.headers.get("Content-Type", "").startswith("application/json"), response.text[:300]
    return response.status_code, response.json(), took


def test_postgres_restart_mid_campaign_loses_nothing(make_stack, sandbox, api_keys, tmp_path):
    server = EmbeddedPostgres(tmp_path / "postgres")
    try:
        url = private_database(server, api_keys["operator"])
        # Every request looks its key up in the database (a key trusted from the cache would let a status
        # read answer from Redis for up to API_KEY_CACHE_S, which is fine but not what this checks).
        stack = make_stack(DATABASE_URL=url, API_KEY_CACHE_S="0")
        stack.start_worker("a")
        pnid = SENDERS["medio"][0]
        # 3,000 messages at 150/s: the database goes away two seconds in and stays away for six.
        assert upload(stack.api, make_csv(3_000), title="Postgres", buzon="medio").status_code == 201
        wait_for(lambda: status(stack.api, "postgres")["sent"] >= 300, 30, message="sending")
        server.stop()
        away_since = time.monotonic()

        # The API says the database is away, in Spanish and at once: no 500, no request left hanging.
        read = answer_while_away(stack.api, "GET", "/api/estado-cola/postgres")
        created = answer_while_away(
            stack.api,
            "POST",
            "/api/crear-campana",
            data={"titulo_campana": "Durante", "plantilla": "promo_enero", "buzon": "medio", "idioma": "es"},
            files={"archivo_csv": ("contactos.csv", make_csv(10, start=4241000000), "text/csv")},
        )
        for code, body, took in (read, created):
            assert code == 503, body
            assert body["success"] is False and "base de datos" in body["message"], body
            assert took < 5, f"the answer took {took:.1f}s"
        ready = answer_while_away(stack.api, "GET", "/readyz")
        assert ready[0] == 503 and ready[1]["database_connected"] is False and ready[1]["redis_connected"] is True
        assert ready[2] < 5, f"/readyz took {ready[2]:.1f}s"

        time.sleep(max(0.0, 6 - (time.monotonic() - away_since)))
        server.start()
        final = wait_status(stack.api, "postgres", {"completed"}, timeout=180)

        per_phone = assert_each_recipient_at_most_once(sandbox, pnid)
        rows = store_rows("postgres", url)
        by_status = Counter(r[1] for r in rows)
        assert by_status == {"sent": 3_000}, by_status  # every row settled, none left unknown
        assert (final["sent"], final["failed"], final["unknown"], final["pending"]) == (3_000, 0, 0, 0)
        assert {r[0] for r in rows} == set(per_phone), "each recipient reached WhatsApp exactly once"
        assert store_rows("durante", url) == [], "the upload refused during the outage left nothing behind"
    finally:
        server.stop()


def test_whatsapp_outage_of_30_seconds_is_waited_out(make_stack, sandbox):
    stack = make_stack()
    stack.start_worker("a")
    pnid = SENDERS["medio"][0]
    # 1,500 messages at 150/s: the outage starts with about two thirds still to send.
    assert upload(stack.api, make_csv(1_500), title="Caida", buzon="medio").status_code == 201
    wait_for(lambda: status(stack.api, "caida")["sent"] >= 500, 30, message="sending")
    sandbox.configure(down=True)
    time.sleep(30)
    during = status(stack.api, "caida")
    assert during["failed"] == 0 and during["status"] == "running"
    sandbox.configure(down=False)
    final = wait_status(stack.api, "caida", {"completed"}, timeout=120)
    assert (final["sent"], final["failed"], final["unknown"]) == (1_500, 0, 0)
    assert len(assert_each_recipient_at_most_once(sandbox, pnid)) == 1_500


def test_campaigns_on_different_numbers_run_at_their_own_caps(make_stack, sandbox):
    stack = make_stack()
    stack.start_worker("a")
    stack.start_worker("b")
    assert upload(stack.api, make_csv(1_500, start=4141000000), title="Rapida", buzon="ventas").status_code == 201
    upload(stack.api, make_csv(600, start=4241000000), title="Media", buzon="medio")
    wait_status(stack.api, "rapida", {"completed"}, timeout=60)
    wait_status(stack.api, "media", {"completed"}, timeout=60)
    for buzon, cap in (("ventas", 400), ("medio", 150)):
        accepted = sandbox.messages(phone_number_id=SENDERS[buzon][0])
        # Each number at its own cap, not held back by the other campaign (which would halve it). The sandbox
        # stamps arrivals when its event loop gets to them, so on a busy machine the measured rate wobbles
        # around the cap (CI's parallel test processes took ventas to 310/s once); going over it for real
        # would show as 130429 answers, checked below. The 90 % bound is test_two_workers_share_the_numbers_cap.
        assert 0.7 * cap <= sustained_rate(accepted) <= 1.15 * cap, buzon
    assert sum(sandbox.stats()["rejected"].values()) == 0


def test_a_small_campaign_is_not_starved_by_a_big_one_on_the_same_number(make_stack, sandbox):
    stack = make_stack()
    stack.start_worker("a")
    assert upload(stack.api, make_csv(4_000, start=4141000000), title="Enorme", buzon="medio").status_code == 201
    wait_for(lambda: status(stack.api, "enorme")["sent"] >= 300, 30, message="the big campaign sending")
    started = time.monotonic()
    assert upload(stack.api, make_csv(100, start=4241000000), title="Pequena", buzon="medio").status_code == 201
    wait_status(stack.api, "pequena", {"completed"}, timeout=60)
    took = time.monotonic() - started
    # Alone, 100 messages at 150 msg/s take under a second; sharing the number it may take a few more.
    assert took < 10, f"the small campaign took {took:.1f}s"
    assert status(stack.api, "enorme")["pending"] > 1_000, "it finished long before the big one"
    assert sandbox.stats()["by_phone_number_id"][SENDERS["medio"][0]]["rejected"].get("130429", 0) == 0
