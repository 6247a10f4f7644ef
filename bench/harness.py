"""Shared machinery of the benchmarks: bench database and Redis db, sandbox, workers, API, and measurements."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis
import requests

from sandbox.process import SandboxHandle, start_sandbox
from tasks import keys
from tasks.config import Settings
from tasks.store.migrate import apply_migrations

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BENCH_DB = os.environ.get("BENCH_DB_NAME", "wcq_bench")
BENCH_REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
# The shared Redis server also holds the default db and the test suite's db; the bench empties its own
# db at start and end, so it must never be pointed at those.
PROTECTED_REDIS_DBS = frozenset({0, 9})

BUZON = "bench"
PHONE_NUMBER_ID = "100000000009001"
TOKEN = "bench-token"
TEMPLATE = "promo_bench"
LANGUAGE = "es"
API_VERSION = "v23.0"
DEFAULT_LATENCY_MS = 100.0
# One sandbox keeps every accepted message for the rate computation; 100k full-size runs must fit.
SANDBOX_LOG_LIMIT = 250_000
FINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
RATE_LIMIT_CODE = "130429"

_CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """A benchmark could not run as planned; the message says which process and shows its log."""


# ---- /proc readings -------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of one process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    # The command name may hold spaces and parentheses, so fields are counted from the last ")".
    fields = data[data.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all cores, anything but idle and iowait) since boot."""
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK


def _parent_pid(pid: int) -> int | None:
    """The parent of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    return int(data[data.rindex(b")") + 2 :].split()[1])


def status_kb(pid: int, key: str) -> int | None:
    """A kB figure (VmRSS, VmHWM ...) from /proc/<pid>/status, or None when the process is gone."""
    prefix = key + ":"
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(prefix):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def process_tree(pid: int) -> list[int]:
    """The process and all its descendants that are alive now."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            parent = _parent_pid(int(entry))
            if parent is not None:
                parents.setdefault(parent, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(parents.get(current, []))
    return tree


class CpuMeter:
    """CPU time a changing set of processes spends between start() and stop()."""

    def __init__(self, pids: Callable[[], Iterable[int]]):
        """Remember how to find the processes; they are looked up again at stop()."""
        self._pids = pids
        self._before: dict[int, float] = {}

    def start(self) -> None:
        """Take the starting readings."""
        self._before = {pid: cpu for pid in self._pids() if (cpu := cpu_seconds(pid)) is not None}

    def stop(self) -> float:
        """Seconds of CPU used since start(); a process that appeared meanwhile counts from zero."""
        total = 0.0
        for pid in self._pids():
            cpu = cpu_seconds(pid)
            if cpu is not None:
                total += cpu - self._before.get(pid, 0.0)
        return total


class RssSampler:
    """Samples the resident memory of some processes on a background thread."""

    def __init__(self, pids: Callable[[], Iterable[int]], interval_s: float = 0.5):
        """Sample the processes pids() returns every interval_s seconds once started."""
        self._pids = pids
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        # (monotonic time, {pid: VmRSS kB})
        self.samples: list[tuple[float, dict[int, int]]] = []

    def _sample(self) -> None:
        """Record one reading of every process."""
        reading = {pid: kb for pid in self._pids() if (kb := status_kb(pid, "VmRSS")) is not None}
        self.samples.append((time.monotonic(), reading))

    def _run(self) -> None:
        """Sample until stopped."""
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self._interval)

    def start(self) -> RssSampler:
        """Begin sampling."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling, with one last reading so short runs still get an end value."""
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def peak_kb(self) -> int:
        """Largest resident size any single sampled process reached."""
        return max((kb for _, reading in self.samples for kb in reading.values()), default=0)

    def per_process(self) -> dict[int, list[int]]:
        """Each process's readings in order."""
        series: dict[int, list[int]] = {}
        for _, reading in self.samples:
            for pid, kb in reading.items():
                series.setdefault(pid, []).append(kb)
        return series

    def first_last_kb(self) -> tuple[int, int]:
        """Largest per-process resident size at the first and at the last sample."""
        series = self.per_process().values()
        if not series:
            return 0, 0
        return max(s[0] for s in series), max(s[-1] for s in series)


# ---- service processes ----------------------------------------------------------------------------


class ServiceProcess:
    """One service process (worker, API) with its own log file and its own session."""

    def __init__(
        self, name: str, command: Sequence[str], env: dict[str, str], log_dir: Path, hostname: str | None = None
    ):
        """Start the command; its own session keeps the operator's Ctrl-C for the harness to handle."""
        self.name = name
        self.hostname = hostname
        self.log_path = log_dir / f"{name}.log"
        # Open for as long as the process runs; stop() closes it.
        self._log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(
            list(command),
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        """The process id."""
        return self.popen.pid

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.popen.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the process's log."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def check(self) -> None:
        """Raise with the log's end when the process died."""
        if not self.alive():
            raise BenchError(f"{self.name} exited with status {self.popen.returncode}:\n{self.log_tail()}")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (a worker's warm shutdown), then SIGKILL to the whole session if it lingers; safe twice."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        if not self._log.closed:
            self._log.close()


@dataclass(frozen=True)
class ServiceOptions:
    """Settings of the service under test that the benchmarks vary; by default the product's own."""

    batch_size: int = Settings.batch_size
    chunk_size: int = Settings.chunk_size
    max_concurrent_batches: int = Settings.max_concurrent_batches
    concurrency: int = 200
    extra_env: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        """The command-line options that set these, shared by the scripts that run workers."""
        parser.add_argument(
            "--concurrency",
            type=int,
            default=ServiceOptions.concurrency,
            help="gevent pool size per worker (default %(default)s)",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=ServiceOptions.batch_size,
            help="BATCH_SIZE (default %(default)s, the product's)",
        )
        parser.add_argument(
            "--chunk-size",
            type=int,
            default=ServiceOptions.chunk_size,
            help="CHUNK_SIZE (default %(default)s, the product's)",
        )
        parser.add_argument(
            "--max-concurrent-batches",
            type=int,
            default=ServiceOptions.max_concurrent_batches,
            help="MAX_CONCURRENT_BATCHES (default %(default)s, the product's)",
        )

    @classmethod
    def from_arguments(cls, args: argparse.Namespace) -> ServiceOptions:
        """The options `add_arguments` parsed."""
        return cls(
            batch_size=args.batch_size,
            chunk_size=args.chunk_size,
            max_concurrent_batches=args.max_concurrent_batches,
            concurrency=args.concurrency,
        )


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ApiClient:
    """The HTTP API of a running web process, with the calls the benchmarks make."""

    def __init__(self, url: str, process: ServiceProcess | None = None, key: str | None = None):
        """Talk to the API at url with an API key; process is the server, checked when a call fails."""
        self.url = url
        self.process = process
        self.key = key
        self.session = requests.Session()
        if key:
            self.session.headers["X-API-Key"] = key

    @property
    def auth_headers(self) -> dict[str, str]:
        """The credentials every request of a load generator must carry too."""
        return {"X-API-Key": self.key} if self.key else {}

    def worker_pid(self) -> int | None:
        """The pid of the process that answers requests (gunicorn's worker, not its arbiter)."""
        if self.process is None:
            return None
        tree = process_tree(self.process.pid)
        return tree[1] if len(tree) > 1 else tree[0]

    def create_campaign(
        self,
        csv_bytes: bytes,
        title: str,
        *,
        buzon: str = BUZON,
        template: str = TEMPLATE,
        language: str = LANGUAGE,
        timeout: float = 600,
    ) -> tuple[float, dict[str, Any]]:
        """Upload a CSV through POST /api/crear-campana; returns the answer time in seconds and the body."""
        files = {"archivo_csv": ("contactos.csv", csv_bytes, "text/csv")}
        data = {"titulo_campana": title, "plantilla": template, "buzon": buzon, "idioma": language}
        started = time.perf_counter()
        try:
            response = self.session.post(f"{self.url}/api/crear-campana", files=files, data=data, timeout=timeout)
        except requests.RequestException as exc:
            raise BenchError(f"crear-campana failed: {exc}\n{self.process.log_tail() if self.process else ''}") from exc
        elapsed = time.perf_counter() - started
        if response.status_code != 201:
            raise BenchError(f"crear-campana answered {response.status_code}: {response.text[:2000]}")
        return elapsed, response.json()

    def status(self, campaign_id: str) -> dict[str, Any]:
        """GET /api/estado-cola/<id>."""
        response = self.session.get(f"{self.url}/api/estado-cola/{campaign_id}", timeout=30)
        response.raise_for_status()
        return response.json()

    def cancel(self, campaign_id: str) -> dict[str, Any]:
        """POST /api/cancelar-campana/<id>; a campaign already finished is not an error here."""
        response = self.session.post(f"{self.url}/api/cancelar-campana/{campaign_id}", timeout=60)
        if response.status_code not in (200, 409):
            response.raise_for_status()
        return response.json()

    def wait_finished(
        self,
        campaign_id: str,
        timeout: float,
        *,
        interval_s: float = 0.5,
        watch: Sequence[ServiceProcess] = (),
        stall_s: float = 90.0,
    ) -> dict[str, Any]:
        """Poll estado-cola until the campaign reaches a final status; fail on timeout, stall or a dead process."""
        deadline = time.monotonic() + timeout
        last_done, last_change = -1, time.monotonic()
        while True:
            state = self.status(campaign_id)
            if state["status"] in FINAL_STATUSES:
                return state
            if state["status"] == "paused":
                raise BenchError(f"campaign {campaign_id} paused: {state.get('motivo')}")
            done = state["total"] - state["pending"]
            now = time.monotonic()
            if done != last_done:
                last_done, last_change = done, now
            for process in watch:
                process.check()
            if now - last_change > stall_s:
                tails = "\n".join(f"--- {p.name}\n{p.log_tail(1500)}" for p in watch)
                raise BenchError(f"campaign {campaign_id} made no progress for {stall_s:g} s at {state}\n{tails}")
            if now > deadline:
                raise BenchError(f"campaign {campaign_id} not finished after {timeout:g} s: {state}")
            time.sleep(interval_s)


# ---- the bench environment ------------------------------------------------------------------------


def _raise_interrupt(signum: int, _frame: Any) -> None:
    """Turn SIGTERM into the same unwinding as Ctrl-C, so cleanup runs."""
    raise KeyboardInterrupt(f"signal {signum}")


def _dsn(database: str) -> str:
    """The admin URL pointed at another database."""
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{database}"


class Bench:
    """Everything one benchmark script starts; leaving the with block stops all of it, also on Ctrl-C or error."""

    def __init__(
        self, *, keep_logs: bool = False, keep_db: bool = False, verbose: bool = True, needs_store: bool = True
    ):
        """Prepare nothing yet; __enter__ creates the database and empties the Redis db (unless needs_store is off)."""
        self.needs_store = needs_store
        self.keep_logs = keep_logs
        self.keep_db = keep_db
        self.verbose = verbose
        self.redis_url = BENCH_REDIS_URL
        self.dsn = _dsn(BENCH_DB)
        self.sandbox: SandboxHandle | None = None
        self.workers: list[ServiceProcess] = []
        self.others: list[ServiceProcess] = []  # started here and stopped with the services (beat)
        self.api: ApiClient | None = None
        self._previous_sigterm: Any = None
        self._redis = redis.Redis.from_url(self.redis_url, decode_responses=True)
        # Checked before anything runs, since both the start and the cleanup empty this db.
        db = int(self._redis.connection_pool.connection_kwargs.get("db", 0))
        if db in PROTECTED_REDIS_DBS:
            raise BenchError(f"BENCH_REDIS_URL points at Redis db {db}, which other processes use; pick another")
        self.log_dir = Path(tempfile.mkdtemp(prefix="wcq-bench-"))
        self._worker_seq = 0
        self._api_key: str | None = None

    def say(self, text: str) -> None:
        """Progress line on stderr, so stdout carries only the results."""
        if self.verbose:
            print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    # -- lifecycle --

    def __enter__(self) -> Bench:
        """Create the bench database with the migrations and empty the bench Redis db."""
        self._previous_sigterm = signal.signal(signal.SIGTERM, _raise_interrupt)
        if not self.needs_store:
            return self
        try:
            self._redis.flushdb()
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
                conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
            apply_migrations(self.dsn)
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        """Stop every process started here and remove the bench data; a second Ctrl-C cannot cut this short."""
        previous_sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            self.stop_services()
            if self.sandbox is not None:
                self.sandbox.stop()
                self.sandbox = None
            if self.needs_store:
                with contextlib.suppress(redis.RedisError):
                    self._redis.flushdb()
            self._redis.close()
            if self.needs_store and not self.keep_db:
                with contextlib.suppress(psycopg.Error), psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
            failed = exc_type is not None and not issubclass(exc_type, KeyboardInterrupt)
            if self.keep_logs or failed:
                print(f"service logs kept in {self.log_dir}", file=sys.stderr)
            else:
                shutil.rmtree(self.log_dir, ignore_errors=True)
        finally:
            signal.signal(signal.SIGINT, previous_sigint)
            if self._previous_sigterm is not None:
                signal.signal(signal.SIGTERM, self._previous_sigterm)

    # -- sandbox --

    def start_sandbox(self, cap: float, latency_ms: float = DEFAULT_LATENCY_MS) -> SandboxHandle:
        """Start the WhatsApp sandbox with the bench number's token, its cap and a fixed latency."""
        self.sandbox = start_sandbox(
            tokens={PHONE_NUMBER_ID: TOKEN},
            mps={PHONE_NUMBER_ID: float(cap)},
            default_mps=float(cap),
            latency_min_ms=latency_ms,
            latency_max_ms=latency_ms,
            message_log_limit=SANDBOX_LOG_LIMIT,
        )
        self.say(f"sandbox at {self.sandbox.url} (cap {cap:g}/s, latency {latency_ms:g} ms)")
        return self.sandbox

    def configure_sandbox(self, cap: float, latency_ms: float = DEFAULT_LATENCY_MS) -> SandboxHandle:
        """Set the cap and latency for the next run and clear the message log, counters and rate buckets."""
        if self.sandbox is None:
            return self.start_sandbox(cap, latency_ms)
        self.sandbox.configure(
            mps={PHONE_NUMBER_ID: float(cap)},
            default_mps=float(cap),
            latency_min_ms=latency_ms,
            latency_max_ms=latency_ms,
        )
        self.sandbox.reset()
        return self.sandbox

    # -- store and Redis --

    def reset_state(self) -> None:
        """Empty campaigns, recipients and the bench Redis db; only safe with no service process running."""
        if self.workers or self.api:
            raise BenchError("reset_state() needs the workers and the API stopped")
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("TRUNCATE instancia_sofia.campaigns, instancia_sofia.leads_activos")
        self._redis.flushdb()

    def register_buzon(
        self, mps: int, buzon: str = BUZON, phone_number_id: str = PHONE_NUMBER_ID, token: str = TOKEN
    ) -> None:
        """Register (or update) a bench buzón (by default the bench number's) with the given messages/s."""
        from tasks.store.postgres import PostgresStore

        store = PostgresStore(self.dsn, max_size=1)
        try:
            store.upsert_sender(buzon, phone_number_id, token, int(mps))
        finally:
            store.close()

    def failures_by_code(self, campaign_id: str) -> dict[str, int]:
        """Failed recipients of a campaign counted per error code (empty when the schema has changed)."""
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                rows = conn.execute(
                    "SELECT coalesce(error_code::text, 'none'), count(*) FROM instancia_sofia.leads_activos "
                    "WHERE campaign_id = %s AND status = 'failed' GROUP BY 1",
                    (campaign_id,),
                ).fetchall()
        except psycopg.Error:
            return {}
        return {code: n for code, n in rows}

    def db_backend_pids(self) -> list[int]:
        """Postgres server processes serving the bench database right now."""
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (BENCH_DB,)).fetchall()
        return [pid for (pid,) in rows]

    def redis_server_pid(self) -> int | None:
        """The shared Redis server's pid, when it runs on this machine."""
        try:
            pid = int(self._redis.info("server")["process_id"])
        except (redis.RedisError, KeyError, ValueError):
            return None
        return pid if os.path.exists(f"/proc/{pid}") else None

    # -- service processes --

    def service_env(self, options: ServiceOptions = ServiceOptions()) -> dict[str, str]:
        """The environment of the API and the workers: bench database, Redis db and sandbox."""
        if self.sandbox is None:
            raise BenchError("start the sandbox before the services")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SUPABASE_", "WHATSAPP_", "SANDBOX_"))}
        # Campaigns above the product's 100,000-recipient limit are allowed, for long memory runs.
        env.update(
            DATABASE_URL=self.dsn,
            REDIS_URL=self.redis_url,
            API_WHATSAPP_URL=self.sandbox.url,
            WHATSAPP_API_VERSION=API_VERSION,
            BATCH_SIZE=str(options.batch_size),
            CHUNK_SIZE=str(options.chunk_size),
            MAX_CONCURRENT_BATCHES=str(options.max_concurrent_batches),
            MAX_MESSAGES_PER_CAMPAIGN="1000000",
            MAX_CSV_SIZE_MB="50",
            INSTANCE_ID="bench",
            PYTHONUNBUFFERED="1",
            # The benches upload and cancel far more often than a person; status reads are never limited.
            RATE_LIMIT_UPLOADS="100000/minute",
            RATE_LIMIT_ACTIONS="100000/minute",
        )
        env.update(options.extra_env)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        return env

    def start_workers(
        self, count: int, env: dict[str, str], concurrency: int = 200, timeout: float = 60, queues: str | None = None
    ) -> list[ServiceProcess]:
        """Start count gevent worker processes, as deployed, and wait until each one consumes (`queues`: -Q)."""
        host = socket.gethostname()
        started = []
        for _ in range(count):
            self._worker_seq += 1
            name = f"bench{self._worker_seq}@{host}"
            command = [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tasks",
                "worker",
                "-P",
                "gevent",
                "-c",
                str(concurrency),
                *(["-Q", queues] if queues else []),
                "-E",
                "-n",
                name,
                "--loglevel=INFO",
            ]
            process = ServiceProcess(f"worker-{self._worker_seq}", command, env, self.log_dir, hostname=name)
            self.workers.append(process)
            started.append(process)
        deadline = time.monotonic() + timeout
        for process in started:
            while not self._worker_ready(process):
                process.check()
                if time.monotonic() > deadline:
                    raise BenchError(f"{process.name} not ready after {timeout:g} s:\n{process.log_tail()}")
                time.sleep(0.2)
        self.say(f"{count} worker(s) ready (gevent, -c {concurrency})")
        return started

    def start_beat(self, env: dict[str, str]) -> ServiceProcess:
        """Start `celery -A tasks beat` (the sweeper) with a schedule file in the log folder; stop it yourself
        (it is stopped with the services otherwise, also when a bench fails)."""
        command = [sys.executable, "-m", "celery", "-A", "tasks", "beat", "-s", str(self.log_dir / "beat-schedule")]
        process = ServiceProcess("beat", command, env, self.log_dir)
        self.others.append(process)
        return process

    def _worker_ready(self, process: ServiceProcess) -> bool:
        """A worker is ready once its heartbeat is in Redis or Celery has logged that it is ready."""
        if self._redis.exists(keys.WORKER + process.hostname):
            return True
        return " ready." in process.log_tail(20000)

    def start_api(self, env: dict[str, str], timeout: float = 60, workers: int = 1) -> ApiClient:
        """Start the API as deployed (gunicorn, `workers` gevent workers) on a free loopback port."""
        port = free_port()
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "-k",
            "gevent",
            "-w",
            str(workers),
            "-b",
            f"127.0.0.1:{port}",
            "webapi:create_app()",
        ]
        key = self.api_key()  # before the process: a store that fails here leaves nothing running
        process = ServiceProcess("api", command, env, self.log_dir)
        self.api = ApiClient(f"http://127.0.0.1:{port}", process, key)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.api.session.get(f"{self.api.url}/api/estado-sistema", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            process.check()
            if time.monotonic() > deadline:
                raise BenchError(f"API not answering after {timeout:g} s:\n{process.log_tail()}")
            time.sleep(0.2)
        return self.api

    def api_key(self) -> str:
        """An operator key for the benches, made once per run the way `flask --app webapi apikey create` does."""
        if self._api_key is None:
            from tasks.store.postgres import PostgresStore
            from webapi.apikeys import create_key

            store = PostgresStore(self.dsn, max_size=1)
            try:
                self._api_key = create_key(store, f"bench-{time.time_ns()}", "operator")[0]
            finally:
                store.close()
        return self._api_key

    def worker_pids(self) -> list[int]:
        """Every process of every running worker."""
        return [pid for w in self.workers if w.alive() for pid in process_tree(w.pid)]

    def stop_services(self) -> None:
        """Stop the API, the workers and the other services started here (in parallel: a warm shutdown can
        take seconds each)."""
        processes = list(self.workers) + ([self.api.process] if self.api and self.api.process else [])
        processes += [p for p in self.others if p.alive()]
        self.others = []
        threads = [threading.Thread(target=p.stop) for p in processes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self.api is not None:
            self.api.session.close()
        self.workers, self.api = [], None


# ---- data -----------------------------------------------------------------------------------------


def phone(i: int) -> str:
    """The i-th bench recipient: a valid Venezuelan mobile number in E.164 digits."""
    return f"58{4140000000 + i}"


def recipient_parameters(i: int) -> list[str]:
    """The template parameters of the i-th recipient, as the CSV's nombre and plan columns give them."""
    return [f"Cliente {i}", f"Plan {i % 7}"]


def store_recipients(store: Any, campaign_id: str, rows: int, chunk_size: int = 100) -> dict:
    """Store a campaign of `rows` bench recipients directly, as an upload would (no API); returns its summary."""
    campaign = {
        "id": campaign_id,
        "title": campaign_id,
        "template": TEMPLATE,
        "language": LANGUAGE,
        "buzon": BUZON,
        "named_params": False,
        "batch_size": chunk_size,
        "chunk_size": chunk_size,
        "idempotency_key": None,
    }
    leads = ({"phone": phone(i), "parameters": recipient_parameters(i)} for i in range(rows))
    stored = store.create_campaign(campaign, leads, lambda: {"rejected_rows": []})
    if stored["total"] != rows:
        raise BenchError(f"stored {stored['total']} of {rows} recipients")
    return stored


def contacts_csv(rows: int, *, extra_columns: int = 0, width: int = 8) -> bytes:
    """A CSV of rows valid contacts (telefono, nombre, plan) plus extra_columns text columns of width chars."""
    filler = "abcdefghijklmnopqrstuvwxyz" * (width // 26 + 1)
    header = ["telefono", "nombre", "plan"] + [f"dato{j + 1}" for j in range(extra_columns)]
    lines = [",".join(header)]
    for i in range(rows):
        cells = [phone(i), *recipient_parameters(i)]
        # Distinct text per cell keeps compression or caching anywhere from making the file look cheaper.
        cells.extend((f"{j}-{i}-" + filler)[:width] for j in range(extra_columns))
        lines.append(",".join(cells))
    return ("\n".join(lines) + "\n").encode()


def contacts_csv_of_size(rows: int, target_bytes: int, extra_columns: int = 10) -> bytes:
    """A CSV of rows contacts padded with extra columns so that its size is close to, but under, target_bytes."""
    base = len(contacts_csv(rows))
    width = max(1, (target_bytes - base) // (rows * extra_columns) - 1)
    data = contacts_csv(rows, extra_columns=extra_columns, width=width)
    while len(data) > target_bytes:
        width -= 1
        data = contacts_csv(rows, extra_columns=extra_columns, width=width)
    return data


# ---- what the sandbox saw -------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """Accepted messages of one number as the sandbox logged them, and its rejections by code."""

    accepted: int
    distinct: int
    first_at: float | None
    last_at: float | None
    rejected: dict[str, int]

    @property
    def rate(self) -> float:
        """Sustained messages/s: (n - 1) / (last - first) over the accepted messages' arrival times."""
        if self.accepted < 2 or not self.last_at or self.last_at <= (self.first_at or 0):
            return 0.0
        return (self.accepted - 1) / (self.last_at - self.first_at)

    @property
    def rate_limited(self) -> int:
        """How many requests the sandbox refused with 130429."""
        return self.rejected.get(RATE_LIMIT_CODE, 0)


def sandbox_delivery(sandbox: SandboxHandle, phone_number_id: str = PHONE_NUMBER_ID) -> Delivery:
    """Read the sandbox's log and counters for one number since its last reset."""
    times: list[float] = []
    recipients: set[str] = set()
    for message in sandbox.messages(phone_number_id):
        times.append(message["received_at"])
        recipients.add(message["to"])
    stats = sandbox.stats().get("by_phone_number_id", {}).get(phone_number_id, {})
    return Delivery(
        accepted=len(times),
        distinct=len(recipients),
        first_at=min(times, default=None),
        last_at=max(times, default=None),
        rejected=dict(stats.get("rejected", {})),
    )


# ---- one campaign through the system --------------------------------------------------------------


@dataclass
class QueueRun:
    """The figures of one campaign sent by the system (API + Celery workers)."""

    workers: int
    cap: float
    messages: int
    status: str
    sent: int
    failed: int
    wall_s: float
    upload_s: float
    delivery: Delivery
    failed_by_code: dict[str, int]
    worker_cpu_s: float
    worker_peak_rss_kb: int
    worker_rss_first_kb: int
    worker_rss_last_kb: int
    sandbox_cpu_s: float
    db_cpu_s: float
    redis_cpu_s: float | None
    machine_busy_s: float = 0.0
    rss_series: list[tuple[float, int]] = field(default_factory=list)

    @property
    def busy_cores(self) -> float:
        """Average number of cores the whole machine kept busy during the run (others' load included)."""
        return self.machine_busy_s / self.wall_s if self.wall_s else 0.0

    @property
    def processed(self) -> int:
        """Recipients that reached a final state (sent or failed)."""
        return self.sent + self.failed

    @property
    def cpu_ms_per_msg(self) -> float:
        """Worker CPU milliseconds per processed message."""
        return 1000 * self.worker_cpu_s / max(1, self.processed)

    @property
    def rate_limit_failures(self) -> int:
        """Recipients that ended failed because of 130429."""
        return self.failed_by_code.get(RATE_LIMIT_CODE, 0)

    @property
    def duplicates(self) -> int:
        """Messages the sandbox accepted more than once for the same recipient."""
        return self.delivery.accepted - self.delivery.distinct


def run_queue_campaign(
    bench: Bench,
    *,
    cap: float,
    messages: int,
    workers: int,
    options: ServiceOptions = ServiceOptions(),
    latency_ms: float = DEFAULT_LATENCY_MS,
    label: str = "run",
) -> QueueRun:
    """Start fresh workers and API, upload a campaign of messages contacts at the given cap, wait, measure."""
    bench.stop_services()
    bench.reset_state()
    sandbox = bench.configure_sandbox(cap, latency_ms)
    # The buzón's mps column is an integer; an "uncapped" sandbox still gets a finite, very high limit.
    bench.register_buzon(int(min(cap, 2_000_000_000)))
    env = bench.service_env(options)
    worker_procs = bench.start_workers(workers, env, options.concurrency)
    api = bench.start_api(env)
    csv_bytes = contacts_csv(messages)
    redis_pid = bench.redis_server_pid()

    worker_cpu = CpuMeter(bench.worker_pids)
    sandbox_cpu = CpuMeter(lambda: [sandbox.process.pid])
    db_cpu = CpuMeter(bench.db_backend_pids)
    redis_cpu = CpuMeter(lambda: [redis_pid] if redis_pid else [])
    meters = (worker_cpu, sandbox_cpu, db_cpu, redis_cpu)
    rss = RssSampler(bench.worker_pids)
    for meter in meters:
        meter.start()
    rss.start()
    busy_before = machine_busy_seconds()
    started = time.perf_counter()
    try:
        bench.say(f"{label}: uploading {messages} contacts (cap {cap:g}/s, {workers} worker(s))")
        upload_s, created = api.create_campaign(csv_bytes, f"bench {label} {time.time_ns()}")
        campaign_id = created["campaign_id"]
        timeout = max(180.0, 3 * messages / max(1.0, min(cap, 2000.0)) + 120)
        final = api.wait_finished(campaign_id, timeout, watch=worker_procs)
        wall_s = time.perf_counter() - started
        machine_busy_s = machine_busy_seconds() - busy_before
    finally:
        rss.stop()
    worker_cpu_s, sandbox_cpu_s, db_cpu_s, redis_cpu_s = (m.stop() for m in meters)
    delivery = sandbox_delivery(sandbox)
    first_kb, last_kb = rss.first_last_kb()
    series = [(t, max(r.values(), default=0)) for t, r in rss.samples]
    run = QueueRun(
        workers=workers,
        cap=cap,
        messages=messages,
        status=final["status"],
        sent=final["sent"],
        failed=final["failed"],
        wall_s=wall_s,
        upload_s=upload_s,
        delivery=delivery,
        failed_by_code=bench.failures_by_code(campaign_id),
        worker_cpu_s=worker_cpu_s,
        worker_peak_rss_kb=rss.peak_kb,
        worker_rss_first_kb=first_kb,
        worker_rss_last_kb=last_kb,
        sandbox_cpu_s=sandbox_cpu_s,
        db_cpu_s=db_cpu_s,
        redis_cpu_s=redis_cpu_s if redis_pid else None,
        machine_busy_s=machine_busy_s,
        rss_series=series,
    )
    bench.stop_services()
    bench.say(
        f"{label}: {run.status}, {run.sent} sent, {run.failed} failed, {delivery.rate:.1f} msg/s, "
        f"{run.cpu_ms_per_msg:.2f} ms CPU/msg"
    )
    return run


# ---- reporting ------------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank p-th percentile of values (nan when there are none)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table with columns padded for reading in a terminal."""
    text_rows = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in text_rows)) if text_rows else len(h) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        """One table line."""
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, text_rows)])


def mb(kb: int | None) -> str:
    """A size in kB shown in MB with one decimal, or a dash when unknown."""
    return "–" if not kb else f"{kb / 1024:.1f}"


def _git(*args: str) -> str:
    """Output of a git command in the project, or an empty string."""
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info() -> dict[str, str]:
    """What the figures depend on: CPUs, memory, Python, kernel, code version."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_kb = 0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kb = int(line.split()[1])
    dirty = [
        line
        for line in _git(
            "status", "--porcelain", "--", "tasks", "webapi", "migrations", "sandbox", "celeryconfig.py"
        ).splitlines()
        if line.strip()
    ]
    return {
        "cpus": str(os.cpu_count()),
        "cpu_model": model,
        "memory": f"{memory_kb / 1024 / 1024:.1f} GiB",
        "python": platform.python_version(),
        "kernel": platform.release(),
        "commit": _git("rev-parse", "--short", "HEAD") or "unknown",
        "uncommitted_service_files": str(len(dirty)),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def print_machine_info(stream: Any = sys.stdout) -> None:
    """One line describing the machine and the code measured."""
    info = machine_info()
    print(
        f"# {info['date']} | commit {info['commit']} ({info['uncommitted_service_files']} uncommitted service "
        f"files) | {info['cpus']} CPU {info['cpu_model']} | {info['memory']} | Python {info['python']} | "
        f"load {info['load_before']}",
        file=stream,
    )


def run_cli(main: Callable[[list[str] | None], int]) -> None:
    """Run a script's main and exit with its status; Ctrl-C and harness errors end with one line, not a traceback."""
    try:
        status = main(None)
    except KeyboardInterrupt:
        print("interrupted; every process the benchmark started has been stopped", file=sys.stderr)
        status = 130
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        status = 1
    sys.exit(status)
