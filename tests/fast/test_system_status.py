"""GET /api/estado-sistema in process: each worker's published activity and beat's last sweeper pass."""

from __future__ import annotations

import time
from dataclasses import replace

from tasks import keys, texts
from tasks.heartbeat import PREFIX, SENT_WINDOW_S, Activity, Heartbeat, forget_worker
from tasks.queue import FINISH_BATCH, SEND_BATCH, SEND_CHUNK
from tasks.worker import messages_sent
from tests.fast.inline import InlineQueue
from webapi import create_app

OWNER = "worker-host:4242:ab12cd34"


def system(client) -> dict:
    """The estado-sistema answer, checked for a 200."""
    response = client.get("/api/estado-sistema")
    assert response.status_code == 200, response.json
    return response.json


def test_each_worker_reports_its_heartbeat_tasks_in_progress_and_messages_sent(client, fast_redis):
    activity = Activity()
    for _ in range(3):
        activity.task_started()
    activity.task_finished(sent=7)
    heartbeat = Heartbeat(fast_redis, OWNER, ttl_s=3, activity=activity)
    heartbeat.beat()

    body = system(client)
    assert (body["worker_running"], body["workers"]) == (True, 1)
    [worker] = body["worker_details"]
    assert worker["id"] == OWNER, "shown as the worker wrote it, hostname included"
    assert worker["alive"] is True
    assert (worker["tasks_in_progress"], worker["sent_last_minute"]) == (2, 7)
    assert 0 <= worker["seconds_since_heartbeat"] < 2
    assert worker["last_heartbeat_at"] is not None and worker["started_at"] is not None

    activity.task_finished(sent=5)
    time.sleep(1.1)
    heartbeat.beat()
    [again] = system(client)["worker_details"]
    assert (again["tasks_in_progress"], again["sent_last_minute"]) == (1, 12)
    assert again["started_at"] == worker["started_at"], "the first beat's time stays"
    assert again["last_heartbeat_at"] >= worker["last_heartbeat_at"]

    heartbeat.stop()  # a clean shutdown leaves at once
    body = system(client)
    assert (body["workers"], body["worker_details"]) == (0, [])


def test_a_worker_whose_heartbeat_expired_is_shown_until_the_sweeper_forgets_it(client, fast_redis):
    Heartbeat(fast_redis, OWNER, ttl_s=3).beat()
    fast_redis.delete(PREFIX + OWNER)  # as if its heartbeat expired: the process died
    body = system(client)
    assert (body["worker_running"], body["workers"]) == (False, 0)
    [worker] = body["worker_details"]
    assert worker["id"] == OWNER and worker["alive"] is False and worker["seconds_since_heartbeat"] is not None
    forget_worker(fast_redis, OWNER)  # what the sweeper does once it recovered the worker's claims
    assert system(client)["worker_details"] == []
    assert not fast_redis.exists(keys.WORKER_ACTIVITY + OWNER)


def test_messages_sent_count_over_the_last_minute_only():
    now = [1_000_000.0]
    activity = Activity(clock=lambda: now[0])
    activity.task_started()
    activity.task_finished(sent=4)
    now[0] += SENT_WINDOW_S - 1
    activity.task_started()
    activity.task_finished(sent=6)
    assert activity.snapshot() == (0, 10)
    now[0] += 1
    assert activity.snapshot() == (0, 6), "the first task's second left the window"
    activity.task_finished()  # an end without a start (a signal connected mid-task) never goes below zero
    assert activity.snapshot()[0] == 0


def test_only_chunks_that_succeeded_count_their_sent_messages():
    report = {"claimed": 4, "handed_back": 1, "sent": 2, "failed": 1}
    assert messages_sent(SEND_CHUNK, "SUCCESS", report) == 2
    assert messages_sent(SEND_BATCH, "SUCCESS", report) == 2
    assert messages_sent(SEND_CHUNK, "FAILURE", report) == 0
    assert messages_sent(FINISH_BATCH, "SUCCESS", None) == 0
    assert messages_sent(SEND_CHUNK, "SUCCESS", {"claimed": 0, "handed_back": 0, "sent": 0, "failed": 0}) == 0


def test_beat_is_reported_with_its_last_pass_and_a_warning_when_it_is_late(client, app, fast_redis):
    body = system(client)
    assert body["beat"]["running"] is False and body["beat"]["last_pass_at"] is None
    assert body["advertencias"] == [texts.BEAT_NEVER_RAN]

    app.extensions["campaigns"].sweeper.sweep()
    body = system(client)
    beat = body["beat"]
    assert beat["running"] is True and beat["last_pass_at"] is not None
    assert 0 <= beat["seconds_since_last_pass"] < 2
    assert (beat["interval_seconds"], beat["late_after_seconds"]) == (10.0, 30.0)
    assert body["advertencias"] == []

    fast_redis.set(keys.SWEEP_LAST_PASS, int(fast_redis.time()[0]) - 95)
    body = system(client)
    assert body["beat"]["running"] is False and body["beat"]["seconds_since_last_pass"] >= 95
    assert body["advertencias"] == [
        texts.BEAT_LATE.format(seconds=body["beat"]["seconds_since_last_pass"], interval=10.0)
    ]
    assert "cada 10 s" in body["advertencias"][0]


def test_a_sweeper_pass_skipped_for_the_lock_still_shows_that_beat_runs(client, app, fast_redis):
    fast_redis.set(keys.SWEEP_LOCK, "another-sweeper", ex=30)
    assert app.extensions["campaigns"].sweeper.sweep() == {"skipped": True}
    assert system(client)["beat"]["running"] is True


def test_a_dead_redis_is_reported_at_once_without_workers_or_warnings(fast_settings, fast_keys, clean_slate):
    app = create_app(
        {"TESTING": True}, settings=replace(fast_settings, redis_url="redis://127.0.0.1:1/0"), queue=InlineQueue()
    )
    try:
        started = time.monotonic()
        response = app.test_client().get("/api/estado-sistema", headers={"X-API-Key": fast_keys["viewer"]})
        assert time.monotonic() - started < 5
    finally:
        app.extensions["campaigns"].close()
    body = response.json
    assert response.status_code == 200 and body["redis_connected"] is False and body["database_connected"] is True
    assert (body["worker_running"], body["worker_details"], body["advertencias"]) == (False, [], [])
    assert body["beat"]["running"] is False and body["beat"]["last_pass_at"] is None


def test_the_answer_holds_no_phone_number_or_token(client, app, fast_redis):
    Heartbeat(fast_redis, OWNER, ttl_s=3).beat()
    app.extensions["campaigns"].sweeper.sweep()
    text = client.get("/api/estado-sistema").get_data(as_text=True)
    assert "token-" not in text and "58414" not in text
    assert fast_redis.hgetall(keys.WORKER_ACTIVITY + OWNER).keys() == {
        "beat_at",
        "started_at",
        "tasks_in_progress",
        "sent_last_minute",
    }
