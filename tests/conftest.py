"""Real services for the tests: a test database, a Redis db, the sandbox, gevent workers and the API server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import redis
import requests

from sandbox.process import start_sandbox
from tasks.store.migrate import apply_migrations

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
# `make test` runs the suite in parallel processes (pytest-xdist): each gets a database and Redis dbs of
# its own, from its index. The variables below override them (one run at a time then).
_LANE = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ... or "" when not parallel
_LANE_INDEX = int(_LANE[2:]) if _LANE.startswith("gw") else 0
# (run, fast lane, breaking stacks) Redis dbs per parallel process; 0 and 12 belong to others.
_LANE_REDIS_DBS = [(9, 8, 10), (4, 5, 6), (1, 2, 3), (13, 14, 15)]
if len(_LANE_REDIS_DBS) <= _LANE_INDEX:
    raise RuntimeError(f"at most {len(_LANE_REDIS_DBS)} parallel test processes (pytest -n) are supported")
_RUN_DB, _FAST_DB, _STACK_DB = _LANE_REDIS_DBS[_LANE_INDEX]
_OVERRIDE_NAMES = ("TEST_DB_NAME", "TEST_REDIS_URL", "TEST_FAST_REDIS_URL", "TEST_STACK_REDIS_URL")
_OVERRIDES = [name for name in _OVERRIDE_NAMES if name in os.environ]
if _OVERRIDES and int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    raise RuntimeError(
        f"{', '.join(_OVERRIDES)} name one database or Redis db for the whole run, which parallel test processes "
        "would share and flush under each other: unset them, or run in one process (TEST_PROCESSES=0, pytest -n 0)"
    )
TEST_DB = os.environ.get("TEST_DB_NAME", "wcq_test" + (f"_{_LANE}" if _LANE else ""))
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", f"redis://127.0.0.1:6379/{_RUN_DB}")
TEST_FAST_REDIS_URL = os.environ.get("TEST_FAST_REDIS_URL", f"redis://127.0.0.1:6379/{_FAST_DB}")
# Stacks that break things get a Redis db of their own.
TEST_STACK_REDIS_URL = os.environ.get("TEST_STACK_REDIS_URL", f"redis://127.0.0.1:6379/{_STACK_DB}")

APP_SECRET = "test-app-secret"
FRONT_END_ORIGIN = "https://panel.example.test"

# Sender numbers registered in the sandbox and in the store; each test module may pick its own.
SENDERS = {
    "ventas": ("100000000000001", "token-ventas", 400),
    "soporte": ("100000000000002", "token-soporte", 400),
    "lento": ("100000000000003", "token-lento", 40),
    "malo": ("100000000000004", "token-malo", 200),
    "medio": ("100000000000005", "token-medio", 150),
}


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dsn(database: str) -> str:
    """The admin URL pointed at another database."""
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{database}"


def fresh_database(name: str) -> str:
    """Create database `name` anew with the migrations applied; returns its URL."""
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _dsn(name)
    apply_migrations(url)
    return url


def empty_redis(url: str) -> redis.Redis:
    """A client of the Redis db at `url`, emptied first."""
    client = redis.Redis.from_url(url, decode_responses=True)
    client.flushdb()
    return client


def start_test_sandbox(latency_min_ms: float, latency_max_ms: float):
    """The WhatsApp sandbox with every test sender's token and throughput cap."""
    return start_sandbox(
        latency_min_ms=latency_min_ms,
        latency_max_ms=latency_max_ms,
        tokens={pnid: token for pnid, token, _ in SENDERS.values()},
        mps={pnid: mps for pnid, _, mps in SENDERS.values()},
    )


@pytest.fixture(scope="session")
def database_url() -> str:
    """A fresh database with the migrations applied, shared by every test of the run."""
    return fresh_database(TEST_DB)


@pytest.fixture(scope="session")
def redis_client() -> redis.Redis:
    """The test run's own Redis database, emptied once at the start."""
    return empty_redis(TEST_REDIS_URL)


@pytest.fixture(scope="session")
def sandbox():
    """The sandbox of the run, with a latency like WhatsApp's."""
    handle = start_test_sandbox(10, 60)
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def service_env(database_url, redis_client, sandbox) -> dict[str, str]:
    """The environment every process of the service (API, workers) runs with."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUPABASE_", "WHATSAPP_"))}
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=TEST_REDIS_URL,
        API_WHATSAPP_URL=sandbox.url,
        WHATSAPP_API_VERSION="v21.0",
        BATCH_SIZE="100",
        CHUNK_SIZE="20",
        MAX_CONCURRENT_BATCHES="5",
        INTERVALO_ENVIO_MS="0",
        MAX_CSV_SIZE_MB="1",
        MAX_MESSAGES_PER_CAMPAIGN="5000",
        DEFAULT_REGION="VE",
        INSTANCE_ID="test-instance",
        MAX_RETRIES="3",
        HTTP_TIMEOUT_S="3",
        ERROR_RATE_WINDOW="100",
        WHATSAPP_APP_SECRET=APP_SECRET,
        WHATSAPP_VERIFY_TOKEN="verify-me",
        WEBHOOK_MAX_BODY_KB="1024",
        PYTHONUNBUFFERED="1",
        CORS_ORIGINS=FRONT_END_ORIGIN,
        RATE_LIMIT_UPLOADS="1000/minute",
        RATE_LIMIT_ACTIONS="1000/minute",
        AUTH_DISABLED="false",
    )
    env.pop("SUPABASE_URL", None)
    os.environ.update(env)
    return env


@pytest.fixture(scope="session")
def store(service_env):
    """The Postgres store the service uses, with the test senders registered."""
    from tasks.store.postgres import PostgresStore

    s = PostgresStore(service_env["DATABASE_URL"])
    for buzon, (pnid, token, mps) in SENDERS.items():
        s.upsert_sender(buzon, pnid, token, mps)
    yield s
    s.close()


@pytest.fixture(scope="session")
def api_keys(store) -> dict[str, str]:
    """One API key per role, made the way `flask --app webapi apikey create` makes them."""
    from webapi.apikeys import create_key

    return {role: create_key(store, f"tests-{role}", role)[0] for role in ("viewer", "operator", "admin")}


class Worker:
    """A real `celery -A tasks worker -P gevent` process (or `celery -A tasks beat` with beat=True)."""

    def __init__(
        self,
        env: dict[str, str],
        name: str,
        concurrency: int = 200,
        log_dir: Path | None = None,
        beat: bool = False,
        loglevel: str = "INFO",
    ):
        self.name = f"{name}@{socket.gethostname()}"
        self.log_path = (log_dir or Path("/tmp")) / f"{'beat' if beat else 'worker'}-{name}.log"
        self._log = open(self.log_path, "ab")
        if beat:
            command = ["beat", f"--loglevel={loglevel}", "-s", str(self.log_path.with_suffix(".schedule"))]
        else:
            command = [
                "worker",
                "-P",
                "gevent",
                "-c",
                str(concurrency),
                "-E",
                "-n",
                self.name,
                f"--loglevel={loglevel}",
                "--without-mingle",
                "--without-gossip",
            ]
        self._signalled = False
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tasks", *command],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, client: redis.Redis, timeout: float = 30) -> None:
        """Wait until the worker's heartbeat (its owner id holds its pid) shows up in Redis."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(f":{self.process.pid}:" in key for key in client.scan_iter(match="wcq:worker:*")):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"worker {self.name} did not start:\n{self.log_path.read_text()[-3000:]}")

    def log(self) -> str:
        """What the process has logged so far."""
        return self.log_path.read_text(errors="replace")

    def ask_to_stop(self, sig: int = signal.SIGTERM) -> None:
        """Send the stop signal (once), without waiting."""
        if self.process.poll() is None and not self._signalled:
            self._signalled = True
            self.process.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        """Stop the worker (warm shutdown by default) and wait for it."""
        self.ask_to_stop(sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


@pytest.fixture(scope="session")
def worker(service_env, store, redis_client, tmp_path_factory):
    """One gevent worker process for the whole run."""
    w = Worker(service_env, "main", log_dir=tmp_path_factory.mktemp("logs"))
    w.wait_ready(redis_client)
    yield w
    w.stop()


class Api:
    """The Flask API served by a real HTTP server process; requests carry `key` unless they bring credentials.

    By default `flask run` (threads, one process); with `gunicorn_workers` the API as deployed: gunicorn with
    that many gevent worker processes behind one port.
    """

    def __init__(
        self,
        env: dict[str, str],
        log_dir: Path,
        key: str | None = None,
        *,
        gunicorn_workers: int | None = None,
        name: str = "api",
        wait: bool = True,
    ):
        self.key = key
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "ab")
        if gunicorn_workers:
            server = ["gunicorn", "-k", "gevent", "-w", str(gunicorn_workers), "-b", f"127.0.0.1:{port}"]
            command = [*server, "--graceful-timeout", "5", "webapi:create_app()"]
        else:
            command = ["flask", "--app", "webapi", "run", "--port", str(port), "--no-reload", "--with-threads"]
        self.process = subprocess.Popen(
            [sys.executable, "-m", *command],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 30) -> None:
        """Wait until the server answers /healthz."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                requests.get(self.url + "/healthz", timeout=2)
                return
            except (requests.ConnectionError, requests.Timeout):  # gunicorn listens before its workers answer
                if self.process.poll() is not None:
                    break
                time.sleep(0.2)
        raise RuntimeError(f"API did not start:\n{self.log_path.read_text()[-3000:]}")

    def _headers(self, headers: dict | None) -> dict:
        """The request's headers, with the API key unless it sends credentials of its own."""
        headers = dict(headers or {})
        if self.key and not {"authorization", "x-api-key"} & {h.lower() for h in headers}:
            headers["X-API-Key"] = self.key
        return headers

    def get(self, path: str, headers: dict | None = None, **kwargs) -> requests.Response:
        """GET a path of the API."""
        return requests.get(self.url + path, timeout=30, headers=self._headers(headers), **kwargs)

    def post(self, path: str, headers: dict | None = None, **kwargs) -> requests.Response:
        """POST to a path of the API."""
        return requests.post(self.url + path, timeout=60, headers=self._headers(headers), **kwargs)

    def request(self, method: str, path: str, headers: dict | None = None, **kwargs) -> requests.Response:
        """Any method on a path of the API."""
        return requests.request(method, self.url + path, timeout=60, headers=self._headers(headers), **kwargs)

    def stop(self) -> None:
        """Stop the server (and kill it if it has not finished in 10 s)."""
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


@pytest.fixture(scope="session")
def api(service_env, store, api_keys, tmp_path_factory):
    """The API server for the whole run, called with the operator key."""
    server = Api(service_env, tmp_path_factory.mktemp("api"), api_keys["operator"])
    yield server
    server.stop()


class Stack:
    """Workers, beat and an API of their own, on a Redis of their own, for tests that break things.

    `apis` API servers share the stack's Redis and the test database (`api` is the first); with
    `gunicorn_workers` each is gunicorn with that many gevent workers, as deployed.
    """

    def __init__(
        self,
        base_env: dict[str, str],
        redis_url: str,
        log_dir: Path,
        key: str | None = None,
        loglevel: str = "INFO",
        *,
        apis: int = 1,
        gunicorn_workers: int | None = None,
        **overrides: str,
    ):
        self.env = {
            **base_env,
            "REDIS_URL": redis_url,
            "SWEEP_INTERVAL_S": "1",
            "STALE_BATCH_S": "5",
            "MAX_MESSAGES_PER_CAMPAIGN": "100000",
            "MAX_CSV_SIZE_MB": "50",
            "WORKER_HEARTBEAT_TTL_S": "4",
            **overrides,
        }
        self.redis = redis.Redis.from_url(redis_url, decode_responses=True)
        self.log_dir = log_dir
        self.workers: dict[str, Worker] = {}
        self.loglevel = loglevel
        self.beat = Worker(self.env, "beat", log_dir=log_dir, beat=True, loglevel=loglevel)
        names = ["api"] if apis == 1 else [f"api-{i + 1}" for i in range(apis)]
        self.apis = [
            Api(self.env, log_dir, key, gunicorn_workers=gunicorn_workers, name=name, wait=False) for name in names
        ]
        try:
            for api in self.apis:
                api.wait_ready()
        except Exception:
            self.stop()  # the test never gets the stack, so nothing else would stop these processes
            raise
        self.api = self.apis[0]

    def start_worker(self, name: str, concurrency: int = 200) -> Worker:
        """Start (or restart) a named worker and wait for its heartbeat."""
        worker = Worker(self.env, name, concurrency=concurrency, log_dir=self.log_dir, loglevel=self.loglevel)
        worker.wait_ready(self.redis)
        self.workers[name] = worker
        return worker

    def stop(self) -> None:
        """Stop every process of the stack, all at once (each warm shutdown takes seconds)."""
        processes = [*self.workers.values(), self.beat]
        for worker in processes:
            worker.ask_to_stop()
        for worker in processes:
            worker.stop(timeout=10)  # already asked: this waits, and kills what does not finish in time
        for api in self.apis:
            api.stop()


STACK_LOGS = pytest.StashKey[Path]()
_LOG_TAIL_LINES = 40


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """When a test that built a stack fails, its report ends with the tail of each process's log."""
    report = yield
    log_dir = item.stash.get(STACK_LOGS, None)
    if report.when == "call" and report.failed and log_dir is not None:
        for log in sorted(log_dir.glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:]
            report.sections.append((f"last lines of {log.name}", "\n".join(tail)))
    return report


@pytest.fixture
def make_stack(service_env, api_keys, tmp_path, request):
    """Build stacks that are stopped when the test ends; each gets a Redis db (or server) of its own."""
    stacks = []
    request.node.stash[STACK_LOGS] = tmp_path

    def build(
        redis_url: str = TEST_STACK_REDIS_URL, *, apis: int = 1, gunicorn_workers: int | None = None, **overrides: str
    ) -> Stack:
        client = redis.Redis.from_url(redis_url)
        client.flushdb()
        stack = Stack(
            service_env,
            redis_url,
            tmp_path,
            api_keys["operator"],
            apis=apis,
            gunicorn_workers=gunicorn_workers,
            **overrides,
        )
        stacks.append(stack)
        return stack

    yield build
    for stack in stacks:
        stack.stop()


@pytest.fixture
def clean(store, redis_client, sandbox):
    """Start a test with no campaigns, no live state and an empty sandbox log, keeping the senders."""
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        conn.execute(
            "TRUNCATE instancia_sofia.campaigns, instancia_sofia.leads_activos, instancia_sofia.suppressions, "
            "instancia_sofia.template_statuses, instancia_sofia.whatsapp_signals"
        )
    keys = [k for pattern in ("wcq:campaign*", "wcq:rate:*") for k in redis_client.scan_iter(match=pattern)]
    if keys:
        redis_client.delete(*keys)
    sandbox.reset(config=True)
    yield


def make_csv(
    rows: int, *, start: int = 4141000000, header: str = "telefono,nombre,plan", delimiter: str = ","
) -> bytes:
    """A contacts CSV of `rows` valid Venezuelan mobile numbers with two parameters each."""
    lines = [header.replace(",", delimiter)]
    for i in range(rows):
        lines.append(delimiter.join([f"58{start + i}", f"Cliente {i}", f"Plan {i % 7}"]))
    return ("\n".join(lines) + "\n").encode()


def wait_for(predicate, timeout: float, interval: float = 0.25, message: str = "condition"):
    """Poll until `predicate()` returns something truthy, or fail saying what was awaited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


def upload(
    api,
    csv: bytes,
    *,
    title: str,
    buzon: str = "ventas",
    template: str = "promo_enero",
    language: str = "es",
    headers: dict | None = None,
    **fields,
):
    """POST a CSV to crear-campana the way the front end does."""
    data = {"titulo_campana": title, "plantilla": template, "buzon": buzon, "idioma": language, **fields}
    return api.post(
        "/api/crear-campana",
        data=data,
        files={"archivo_csv": ("contactos.csv", csv, "text/csv")},
        headers=headers or {},
    )


def status(api, campaign_id: str) -> dict:
    """GET estado-cola for a campaign."""
    response = api.get(f"/api/estado-cola/{campaign_id}")
    assert response.status_code == 200, response.text
    return response.json()


def wait_status(api, campaign_id: str, wanted: set[str], timeout: float = 120) -> dict:
    """Poll estado-cola until the campaign reaches one of `wanted`."""
    return wait_for(
        lambda: (s := status(api, campaign_id))["status"] in wanted and s,
        timeout,
        message=f"{campaign_id} to become {wanted}",
    )


def store_rows(campaign_id: str, database_url: str | None = None) -> list[tuple]:
    """The campaign's recipient rows: (phone, status, wamid, parameters), from the test database or another."""
    with psycopg.connect(database_url or os.environ["DATABASE_URL"]) as conn:
        return conn.execute(
            "SELECT phone, status, wamid, parameters FROM instancia_sofia.leads_activos "
            "WHERE campaign_id = %s ORDER BY seq",
            (campaign_id,),
        ).fetchall()
