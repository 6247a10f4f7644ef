"""estado-sistema with real worker and beat processes: what each worker publishes, and beat's last pass."""

from __future__ import annotations

import signal
import socket

import pytest

from tests.conftest import make_csv, upload, wait_for, wait_status

pytestmark = pytest.mark.usefixtures("clean")


def system(api) -> dict:
    """The estado-sistema answer."""
    response = api.get("/api/estado-sistema")
    assert response.status_code == 200, response.text
    return response.json()


def details_of(body: dict, worker) -> dict | None:
    """The entry of one worker process (its id holds its pid), or None when it is not listed."""
    found = [w for w in body["worker_details"] if f":{worker.process.pid}:" in w["id"]]
    assert len(found) <= 1
    return found[0] if found else None


def test_each_worker_reports_its_tasks_and_messages_and_beat_its_last_pass(make_stack):
    stack = make_stack()
    workers = [stack.start_worker("uno", concurrency=50), stack.start_worker("dos", concurrency=50)]
    body = wait_for(lambda: (b := system(stack.api))["beat"]["running"] and b, 20, message="a sweeper pass")
    assert body["advertencias"] == [] and body["beat"]["seconds_since_last_pass"] < 5
    assert body["beat"]["interval_seconds"] == 1.0
    for worker in workers:
        entry = details_of(body, worker)
        assert entry is not None and entry["alive"] is True
        assert entry["id"].startswith(socket.gethostname() + ":")
        assert entry["seconds_since_heartbeat"] < 4

    assert upload(stack.api, make_csv(1500), title="Actividad", buzon="medio").status_code == 201  # 150 msg/s
    busy = wait_for(
        lambda: (b := system(stack.api)) and sum(w["tasks_in_progress"] for w in b["worker_details"]) > 0 and b,
        30,
        interval=0.5,
        message="a worker reporting tasks in progress",
    )
    assert busy["queue_depth"] >= 0 and busy["active_campaigns"] == 1
    wait_status(stack.api, "actividad", {"completed"}, timeout=90)

    # Within a minute of the first send, every message sent is in some worker's last minute, once.
    def settled():
        b = system(stack.api)
        entries = [details_of(b, w) for w in workers]
        return (
            all(e is not None for e in entries)
            and sum(e["sent_last_minute"] for e in entries) == 1500
            and all(e["tasks_in_progress"] == 0 for e in entries)
            and entries
        )

    entries = wait_for(settled, 10, interval=0.5, message="the workers to publish 1,500 messages sent")
    assert all(e["sent_last_minute"] > 0 for e in entries), "both workers sent part of the campaign"

    # A killed worker stops beating: listed as not alive, then forgotten once the sweeper recovered it.
    victim, survivor = workers[1], workers[0]
    victim.stop(sig=signal.SIGKILL)
    gone = wait_for(
        lambda: (e := details_of(system(stack.api), victim)) is not None and not e["alive"] and e,
        15,
        message="the killed worker to show as not alive",
    )
    assert gone["seconds_since_heartbeat"] >= 3  # WORKER_HEARTBEAT_TTL_S is 4 in a stack
    wait_for(lambda: details_of(system(stack.api), victim) is None, 30, message="the sweeper to forget it")
    body = system(stack.api)
    assert body["workers"] == 1 and details_of(body, survivor)["alive"] is True

    # A clean shutdown leaves the list at once.
    survivor.stop()
    body = system(stack.api)
    assert (body["workers"], body["worker_running"], body["worker_details"]) == (0, False, [])
