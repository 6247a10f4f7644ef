"""A real campaign through the real API, workers and Flower leaves no token and no whole phone number behind.

Searched: every log line (DEBUG level, tracebacks included), every Redis key and value, Flower's task list and
every API response of the run. `GET /api/destinatarios/<id>` is the one place phones are shown whole (to
operators), so the run does not call it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time

import psycopg
import pytest
import redis
import requests

from tests.conftest import ROOT, SENDERS, free_port, make_csv, wait_for
from tests.fast.conftest import FAST_REDIS_URL

# The fast lane's Redis db: its tests flush it per test and are done before this file runs.
STACK_REDIS_URL = FAST_REDIS_URL
FLOWER_LOGIN = ("operador", "flower-test-password")
WRONG_TOKEN = "EAAGwrongTokenForTheLeakTest987"
REFUSED_PHONE = "584141000007"
FAILING_PHONE = "584141000003"


class Flower:
    """A real `celery -A tasks flower` process with basic auth."""

    def __init__(self, env: dict[str, str], log_dir):
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log_path = log_dir / "flower.log"
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tasks",
                "flower",
                f"--port={self.url.rsplit(':', 1)[1]}",
                "--address=127.0.0.1",
                f"--basic-auth={':'.join(FLOWER_LOGIN)}",
            ],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_for(self._up, 60, message="Flower to answer")

    def _up(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"Flower stopped:\n{self.log_path.read_text()[-3000:]}")
        try:
            return requests.get(self.url + "/api/tasks", auth=FLOWER_LOGIN, timeout=2).ok
        except requests.ConnectionError:
            return False

    def tasks(self) -> dict:
        """Flower's task list, arguments and results included."""
        response = requests.get(self.url + "/api/tasks", auth=FLOWER_LOGIN, timeout=10)
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(15)
        self._log.close()


def _redis_dump(client) -> str:
    """Every key and value of the db, all types, with Celery's base64 message bodies decoded."""
    parts = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        if kind == "string":
            values = [client.get(key)]
        elif kind == "hash":
            values = [x for pair in client.hgetall(key).items() for x in pair]
        elif kind == "list":
            values = client.lrange(key, 0, -1)
        elif kind == "set":
            values = list(client.smembers(key))
        elif kind == "zset":
            values = [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == "stream":
            values = [x for _, fields in client.xrange(key) for pair in fields.items() for x in pair]
        else:
            values = []
        parts.append(key)
        parts.extend(values)
    text = "\n".join(p.decode("utf-8", "replace") if isinstance(p, bytes) else str(p) for p in parts)
    for body in re.findall(r'"body": "([A-Za-z0-9+/=]+)"', text):
        text += "\n" + base64.b64decode(body).decode("utf-8", "replace")
    return text


@pytest.mark.usefixtures("clean")
def test_no_token_and_no_whole_phone_number_leaks(make_stack, store, sandbox, service_env):
    stack = make_stack(STACK_REDIS_URL, loglevel="DEBUG", DEBUG="true")
    stack.start_worker("fuga")
    flower = Flower(stack.env, stack.log_dir)
    responses: list[str] = []

    def call(method: str, path: str, **kwargs) -> requests.Response:
        response = getattr(stack.api, method)(path, **kwargs)
        responses.append(response.text)
        return response

    try:
        # A buzón whose stored token the sandbox refuses: a campaign-level send error (code 190).
        ventas_pnid = SENDERS["ventas"][0]
        store.upsert_sender("roto", ventas_pnid, WRONG_TOKEN, 100)
        sandbox.configure(recipient_errors={FAILING_PHONE: 131026})
        form = {"plantilla": "promo_enero", "buzon": "ventas", "idioma": "es"}
        csv = make_csv(40) + b"12345,Corto,Plan\n"
        ok = call(
            "post",
            "/api/crear-campana",
            data={**form, "titulo_campana": "Fuga"},
            files={"archivo_csv": ("c.csv", csv, "text/csv")},
        )
        assert ok.status_code == 201, ok.text
        bad_token = call(
            "post",
            "/api/crear-campana",
            data={**form, "buzon": "roto", "titulo_campana": "Token"},
            files={"archivo_csv": ("c.csv", make_csv(5), "text/csv")},
        )
        assert bad_token.status_code == 201, bad_token.text
        wait_for(
            lambda: call("get", "/api/estado-cola/fuga").json()["status"] == "completed",
            90,
            message="the campaign to complete",
        )
        wait_for(
            lambda: call("get", "/api/estado-cola/token").json()["status"] in {"paused", "failed"},
            60,
            message="the campaign with a refused token to stop",
        )
        assert call("get", "/api/estado-cola/fuga").json()["failed"] == 1
        call("get", "/api/listar-campanas")
        assert call("get", "/api/estado-sistema").json()["worker_details"], "the worker's published activity"
        call("post", "/api/reintentar-campana/fuga", json={"estados": ["failed"]})

        # A database error whose text quotes the failing row, phone included, logged with its traceback.
        with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
            conn.execute(
                f"ALTER TABLE instancia_sofia.leads_activos ADD CONSTRAINT refuse_one_number "
                f"CHECK (phone <> '{REFUSED_PHONE}') NOT VALID"
            )
        try:
            broken = call(
                "post",
                "/api/crear-campana",
                data={**form, "titulo_campana": "Rota"},
                files={"archivo_csv": ("c.csv", make_csv(10), "text/csv")},
            )
        finally:
            with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
                conn.execute("ALTER TABLE instancia_sofia.leads_activos DROP CONSTRAINT refuse_one_number")
        assert broken.status_code == 500
        assert requests.get(flower.url + "/api/tasks", timeout=5).status_code == 401
        time.sleep(2)  # Flower receives task events asynchronously
        tasks = flower.tasks()
        running = _redis_dump(redis.Redis.from_url(STACK_REDIS_URL))  # with the worker's activity hash
    finally:
        flower.stop()
        stack.stop()

    chunks = [t for t in tasks.values() if t["name"] in {"campaigns.send_chunk", "campaigns.send_batch"}]
    # Flower shows each chunk's result (its report), so the check below reads what operators see there.
    assert chunks and any("handed_back" in str(t.get("result")) for t in chunks), list(tasks.values())[:3]
    logs = {p.name: p.read_text(errors="replace") for p in stack.log_dir.glob("*.log")}
    api_log = next(text for name, text in logs.items() if name.startswith("api"))
    assert "Traceback" in api_log and "refuse_one_number" in api_log, api_log[-3000:]

    places = {
        **logs,
        "redis": _redis_dump(redis.Redis.from_url(STACK_REDIS_URL)),
        "redis while running": running,
        "flower tasks": json.dumps(tasks),
        "api responses": "\n".join(responses),
    }
    phones = [f"58{4141000000 + i}" for i in range(40)]
    secrets = [WRONG_TOKEN, *(token for _, token, _ in SENDERS.values()), *phones, *(p[2:] for p in phones)]
    hits = {place: sorted({s for s in secrets if s in text}) for place, text in places.items()}
    assert {place: found for place, found in hits.items() if found} == {}
