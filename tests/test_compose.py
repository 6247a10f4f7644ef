"""Check docker-compose.yml statically: Compose accepts it, and it keeps what operators rely on."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

import celeryconfig
from tasks.config import Settings
from tasks.queue import PROCESS_WEBHOOKS
from tasks.sending import SendPolicy
from tasks.vocabulary import CAMPAIGNS_QUEUE, WEBHOOKS_QUEUE

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
RAILWAY_DOC = ROOT / "docs" / "deploy-railway.md"

APP_SERVICES = {"web", "worker", "webhook-worker", "receiver", "beat", "flower", "whatsapp-sandbox"}
DOCUMENTED = (
    "API_WHATSAPP_URL",
    "WHATSAPP_API_VERSION",
    "BATCH_SIZE",
    "MAX_CONCURRENT_BATCHES",
    "INTERVALO_ENVIO_MS",
    "SUPABASE_URL",
    "SUPABASE_KEY",
    "DATABASE_URL",
    "DATABASE_CONNECT_TIMEOUT_S",
    "DATABASE_STATEMENT_TIMEOUT_S",
    "DATABASE_RETRY_S",
    "REDIS_URL",
    "DEBUG",
    "INSTANCE_ID",
    "MAX_CSV_SIZE_MB",
    "MAX_MESSAGES_PER_CAMPAIGN",
    "DEFAULT_REGION",
    "CHUNK_SIZE",
    "WHATSAPP_MPS",
    "MAX_RETRIES",
    "HTTP_TIMEOUT_S",
    "MAX_ERROR_RATE",
    "ERROR_RATE_WINDOW",
    "SWEEP_INTERVAL_S",
    "WORKER_HEARTBEAT_TTL_S",
    "WHATSAPP_VERIFY_TOKEN",
    "WHATSAPP_APP_SECRET",
    "WEBHOOK_MAX_BODY_KB",
    "WEBHOOK_RECEIVER_PORT",
    "WEBHOOK_BATCH_MAX",
    "WEBHOOK_GATHER_MS",
    "CORS_ORIGINS",
    "SUPABASE_JWT_SECRET",
    "JWKS_CACHE_S",
    "API_KEY_CACHE_S",
    "DEFAULT_ROLE",
    "AUTH_DISABLED",
    "RATE_LIMIT_UPLOADS",
    "RATE_LIMIT_ACTIONS",
    "RATE_LIMIT_READS",
    "METRICS_TOKEN",
    "PAUSE_ON_LOW_QUALITY",
    "RATE_CARD_FILE",
    "OPTOUT_SCOPE",
    "OPTOUT_KEYWORDS",
    "MARKETING_LIMIT_RETRY_H",
)
MONITORING_SERVICES = {"prometheus", "grafana"}
MONITORING = ROOT / "monitoring"


def _as_env(value) -> str:
    """A settings default written the way it appears in an environment file."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# The defaults come from the one configuration module, so compose and .env.example cannot drift from it.
CONFIG_DEFAULTS = {name: _as_env(getattr(Settings(), name.lower())) for name in DOCUMENTED}

needs_compose = pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="docker-compose is not installed; install it with `apt-get install docker-compose`",
)


def run_compose(*args: str, flower_auth: str | None) -> subprocess.CompletedProcess:
    """Run docker-compose on the project's file with .env.example as its .env, as an operator's copy would be."""
    env = {key: value for key, value in os.environ.items() if key not in CONFIG_DEFAULTS}
    env.pop("FLOWER_BASIC_AUTH", None)
    if flower_auth is not None:
        env["FLOWER_BASIC_AUTH"] = flower_auth
    # --env-file keeps a developer's own .env out of the result.
    return subprocess.run(
        ["docker-compose", "--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE_FILE), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def services() -> dict:
    """Return the services mapping of docker-compose.yml, with YAML anchors merged."""
    return yaml.safe_load(COMPOSE_FILE.read_text())["services"]


def command_of(service: dict) -> list[str]:
    """Return a service's command as an argument list, whichever form the file uses."""
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else [str(arg) for arg in command]


def environment_of(service: dict) -> dict[str, str]:
    """Return a service's environment as a mapping, whichever form the file uses."""
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {key: "" if value is None else str(value) for key, value in environment.items()}


def seconds(duration: str | int | float) -> float:
    """A Compose duration (`90s`, `1m30s`, `1h`, or a bare number of seconds) in seconds."""
    if isinstance(duration, int | float):
        return float(duration)
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s|us)", duration)
    assert parts and "".join(number + unit for number, unit in parts) == duration, f"not a duration: {duration}"
    scale = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 0.000001}
    return sum(float(number) * scale[unit] for number, unit in parts)


def healthcheck_of(service: dict) -> tuple[str, list[str]]:
    """Return a service's healthcheck as (CMD or CMD-SHELL, its arguments)."""
    test = service["healthcheck"]["test"]
    if isinstance(test, str):
        return "CMD-SHELL", [test]
    return test[0], [str(arg) for arg in test[1:]]


def compose_default(value: str) -> str | None:
    """Return the default of a ${VAR:-default} reference, or None if value is not one."""
    match = re.fullmatch(r"\$\{(\w+):?-(.*)\}", value)
    return match.group(2) if match else None


@needs_compose
@pytest.mark.parametrize(
    "profile_args",
    [[], ["--profile", "sandbox"], ["--profile", "monitoring"]],
    ids=["default", "sandbox", "monitoring"],
)
def test_compose_accepts_the_file(profile_args):
    """docker-compose config validates the file, with and without the sandbox profile."""
    result = run_compose(*profile_args, "config", "-q", flower_auth="ops:secret")
    assert result.returncode == 0, result.stderr


@needs_compose
def test_compose_refuses_flower_without_password():
    """Flower must not come up unauthenticated: Compose stops when FLOWER_BASIC_AUTH is empty."""
    result = run_compose("config", "-q", flower_auth=None)
    assert result.returncode != 0
    assert "FLOWER_BASIC_AUTH" in result.stderr


def test_services_exist(services):
    """Redis, the app services, the sandbox and monitoring are all defined, the last two only under their profiles."""
    assert {"redis"} | APP_SERVICES | MONITORING_SERVICES <= set(services)
    assert services["whatsapp-sandbox"]["profiles"] == ["sandbox"]
    for name in MONITORING_SERVICES:
        assert services[name]["profiles"] == ["monitoring"], name
    for name in {"redis"} | APP_SERVICES - {"whatsapp-sandbox"}:
        assert not services[name].get("profiles"), f"{name} must start without a profile"


def test_app_services_share_one_image(services):
    """Every app service builds from the project's Dockerfile into the same image."""
    images = {services[name]["image"] for name in APP_SERVICES}
    assert len(images) == 1
    for name in APP_SERVICES:
        build = services[name]["build"]
        context = build if isinstance(build, str) else build.get("context", ".")
        assert (ROOT / context).resolve() == ROOT, name
        assert isinstance(build, str) or build.get("dockerfile", "Dockerfile") == "Dockerfile", name


def test_redis_persists_its_queue(services):
    """Redis runs 7-alpine with the append-only file on a named volume, and has a healthcheck."""
    redis = services["redis"]
    assert redis["image"].startswith("redis:7")
    command = command_of(redis)
    assert "--appendonly" in command and command[command.index("--appendonly") + 1] == "yes"
    # A full Redis must refuse writes, never evict queued tasks, chord results or campaign state.
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert any(str(volume).split(":")[1] == "/data" for volume in redis["volumes"])
    assert "redis-cli" in " ".join(redis["healthcheck"]["test"])
    assert not redis.get("ports"), "Redis has no password and must not be published"


def test_app_services_use_the_compose_redis(services):
    """Every app service gets REDIS_URL pointing at the redis service; those that use it wait until healthy."""
    for name in APP_SERVICES:
        url = urlparse(environment_of(services[name])["REDIS_URL"])
        assert (url.scheme, url.hostname, url.port or 6379) == ("redis", "redis", 6379), name
    for name in APP_SERVICES - {"whatsapp-sandbox"}:
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy", name


def test_worker_runs_gevent_with_events_and_scales(services):
    """The worker uses the gevent pool with task events, and nothing pins it to a single container."""
    worker = services["worker"]
    command = command_of(worker)
    assert command[:4] == ["celery", "-A", "tasks", "worker"]
    assert command[command.index("-P") + 1] == "gevent"
    assert "-E" in command
    assert int(command[command.index("-c") + 1]) > 1
    assert "container_name" not in worker
    assert not worker.get("ports")


def test_sending_and_notification_workers_take_their_own_queues(services):
    """Sending workers consume only the campaigns queue; the webhook workers only the drains', sized by a variable."""
    worker = command_of(services["worker"])
    assert worker[worker.index("-Q") + 1] == CAMPAIGNS_QUEUE
    kind, arguments = services["webhook-worker"]["command"][:2], services["webhook-worker"]["command"][2]
    assert kind == ["/bin/sh", "-c"] and arguments.startswith("exec celery -A tasks worker -P gevent ")
    drains = shlex.split(arguments[len("exec ") :])
    assert drains[drains.index("-Q") + 1] == WEBHOOKS_QUEUE
    assert drains[drains.index("-c") + 1] == "$${WEBHOOK_WORKER_CONCURRENCY:-4}"
    assert compose_default(environment_of(services["webhook-worker"])["WEBHOOK_WORKER_CONCURRENCY"]) == "4"
    assert celeryconfig.task_routes[PROCESS_WEBHOOKS]["queue"] == WEBHOOKS_QUEUE
    node = drains[drains.index("-n") + 1]
    assert f"-d {node.replace('%h', '$$HOSTNAME')} " in " ".join(services["webhook-worker"]["healthcheck"]["test"])


def test_the_receiver_takes_the_notifications_on_its_port(services):
    """The receiver runs webapi.receiver on all interfaces, published on WEBHOOK_RECEIVER_PORT, health on /healthz."""
    receiver = services["receiver"]
    command = command_of(receiver)
    assert command[:3] == ["python", "-m", "webapi.receiver"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert receiver["ports"] == ["${WEBHOOK_RECEIVER_PORT:-5001}:${WEBHOOK_RECEIVER_PORT:-5001}"]
    assert "/healthz" in " ".join(receiver["healthcheck"]["test"])
    assert "WEBHOOK_RECEIVER_PORT" in " ".join(receiver["healthcheck"]["test"])


def test_long_running_services_restart(services):
    """Redis and every app service but the sandbox come back after a crash or a host reboot."""
    for name in {"redis"} | APP_SERVICES - {"whatsapp-sandbox"}:
        assert services[name].get("restart") in {"always", "unless-stopped"}, name


def test_every_long_running_service_has_a_healthcheck(services):
    """Each service but the sandbox has a healthcheck that runs a real probe, with bounded timing."""
    for name in {"redis"} | APP_SERVICES - {"whatsapp-sandbox"}:
        healthcheck = services[name]["healthcheck"]
        kind, _ = healthcheck_of(services[name])
        assert kind in {"CMD", "CMD-SHELL"}, name
        assert seconds(healthcheck["timeout"]) < seconds(healthcheck["interval"]), name
        assert healthcheck.get("retries", 3) >= 1, name


def test_web_and_flower_healthchecks_ask_their_http_probes(services):
    """Web asks /healthz (the process answers; /readyz is for traffic), Flower its unauthenticated /healthcheck."""
    for name, url in (("web", "http://127.0.0.1:5000/healthz"), ("flower", "http://127.0.0.1:5555/healthcheck")):
        kind, arguments = healthcheck_of(services[name])
        assert kind == "CMD" and arguments[:2] == ["python", "-c"], name
        assert f"urlopen('{url}'" in arguments[2], name


def test_worker_healthcheck_pings_this_worker(services):
    """The worker's healthcheck pings its own node name through the broker, within the check's timeout."""
    worker = services["worker"]
    command = command_of(worker)
    node = command[command.index("-n") + 1]
    assert node == "celery@%h"
    kind, arguments = healthcheck_of(worker)
    assert kind == "CMD-SHELL"
    probe = shlex.split(arguments[0])
    assert probe[:5] == ["celery", "-A", "tasks", "inspect", "ping"]
    # %h is the container's hostname; $$ leaves $HOSTNAME for the container's shell to expand.
    assert probe[probe.index("-d") + 1] == "celery@$$HOSTNAME"
    assert float(probe[probe.index("--timeout") + 1]) < seconds(worker["healthcheck"]["timeout"])


def test_worker_stop_grace_period_lets_a_chunk_finish(services):
    """SIGTERM lets a worker finish its chunk: the deadline, the last request, its backoff and time to record."""
    settings = Settings()
    connect_timeout_s = min(5.0, settings.http_timeout_s)  # tasks/whatsapp.py: connect, then read
    last_request_s = connect_timeout_s + settings.http_timeout_s + SendPolicy().backoff_cap_s
    needed = settings.chunk_deadline_s + last_request_s + 5
    assert seconds(services["worker"]["stop_grace_period"]) >= needed


def beat_schedule_path(services) -> str:
    command = command_of(services["beat"])
    (option,) = [arg for arg in command if arg.startswith("--schedule=")]
    return option.partition("=")[2]


def test_beat_healthcheck_watches_the_schedule_file_beat_writes(services):
    """Beat writes its schedule file after every task it sends; the healthcheck reads that file's age."""
    assert celeryconfig.beat_sync_every == 1
    kind, arguments = healthcheck_of(services["beat"])
    assert kind == "CMD" and arguments[:2] == ["python", "-c"]
    assert f"glob.glob('{beat_schedule_path(services)}*')" in arguments[2]
    max_age = float(re.search(r"> (\d+(?:\.\d+)?)\)$", arguments[2]).group(1))
    # Beat sends the webhook drain every 5 s and the sweep every SWEEP_INTERVAL_S; allow for a slow Redis.
    schedule = celeryconfig.from_settings(Settings())["beat_schedule"]
    assert max_age >= 4 * min(entry["schedule"] for entry in schedule.values())


@pytest.mark.parametrize(
    ("age_s", "healthy"), [(None, False), (1, True), (120, False)], ids=["no file", "fresh", "stale"]
)
def test_beat_healthcheck_command_tells_fresh_from_stale(services, tmp_path, age_s, healthy):
    """The healthcheck's own code, pointed at a temporary schedule file: healthy only while the file is fresh."""
    path = beat_schedule_path(services)
    _, arguments = healthcheck_of(services["beat"])
    code = arguments[2].replace(f"'{path}*'", repr(str(tmp_path / "celerybeat-schedule") + "*"))
    assert code != arguments[2]
    if age_s is not None:
        for suffix in (".dat", ".dir"):  # what the pure-Python dbm writes
            schedule_file = tmp_path / f"celerybeat-schedule{suffix}"
            schedule_file.write_bytes(b"x")
            stamp = time.time() - age_s
            os.utime(schedule_file, (stamp, stamp))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30)
    assert (result.returncode == 0) == healthy, result.stderr


@needs_compose
def test_compose_keeps_the_healthchecks_and_grace_period():
    """docker-compose config resolves the file with the worker's grace period and every healthcheck intact."""
    result = run_compose("config", flower_auth="ops:secret")
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)["services"]
    assert seconds(resolved["worker"]["stop_grace_period"]) >= 100
    for name in ("redis", "web", "worker", "beat", "flower"):
        assert resolved[name]["healthcheck"]["test"], name
    assert "inspect ping" in " ".join(resolved["worker"]["healthcheck"]["test"])


def test_web_beat_flower_and_sandbox_commands(services):
    """Web is gunicorn with gevent workers, beat and Flower run from the tasks app, the sandbox on 8700."""
    web = command_of(services["web"])
    assert web[0] == "gunicorn"
    assert web[web.index("-k") + 1] == "gevent"
    assert web[web.index("-b") + 1] == "0.0.0.0:5000"
    assert web[-1] == "webapi:create_app()"
    assert command_of(services["beat"])[:4] == ["celery", "-A", "tasks", "beat"]
    flower = command_of(services["flower"])
    assert flower[:4] == ["celery", "-A", "tasks", "flower"] and "--port=5555" in flower
    assert environment_of(services["flower"])["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH")
    sandbox = command_of(services["whatsapp-sandbox"])
    assert sandbox[:3] == ["python", "-m", "sandbox"]
    assert sandbox[sandbox.index("--port") + 1] == "8700"


def test_configuration_reaches_every_app_service_with_the_documented_defaults(services):
    """Each configuration variable is passed to each app service, defaulting as .env.example says."""
    for name in APP_SERVICES:
        environment = environment_of(services[name])
        for variable, default in CONFIG_DEFAULTS.items():
            assert variable in environment, f"{variable} missing from {name}"
            if variable != "REDIS_URL":
                assert compose_default(environment[variable]) == default, f"{variable} in {name}"


def test_env_example_lists_every_variable_with_its_default():
    """.env.example names every configuration variable with its default value."""
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    for variable, default in CONFIG_DEFAULTS.items():
        assert values.get(variable) == default, variable
    assert "FLOWER_BASIC_AUTH" in values


def test_railway_doc_names_only_real_variables():
    """Every variable the Railway notes name is one the services read, Flower's, or one Railway documents."""
    ours = {field.upper() for field in vars(Settings())} | {"FLOWER_BASIC_AUTH"}
    railway = {"RAILWAY_REPLICA_ID", "RAILWAY_DEPLOYMENT_DRAINING_SECONDS", "RAILWAY_DEPLOYMENT_OVERLAP_SECONDS"}
    spans = re.findall(r"`([^`]+)`", RAILWAY_DOC.read_text())
    named = {name for span in spans for name in re.findall(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b", span)}
    assert named, "the notes name no variable"
    assert named <= ours | railway, sorted(named - ours - railway)


def test_railway_doc_matches_compose(services):
    """The Railway notes give the services compose's commands and the worker compose's grace period."""
    text = RAILWAY_DOC.read_text()
    beat = " ".join(command_of(services["beat"]))
    assert f"`{beat}`" in text
    worker = command_of(services["worker"])
    node = worker.index("-n")
    documented = re.search(r'`/bin/sh -c "exec (celery -A tasks worker [^"]*)"`', text)
    assert documented, "the worker's start command is missing"
    railway_worker = documented.group(1).split()
    railway_node = railway_worker.index("-n")
    assert railway_worker[:railway_node] + railway_worker[railway_node + 2 :] == worker[:node] + worker[node + 2 :]
    grace = int(seconds(services["worker"]["stop_grace_period"]))
    assert f"`RAILWAY_DEPLOYMENT_DRAINING_SECONDS={grace}`" in text
    assert f"`stop_grace_period: {grace}s`" in text
    assert "--appendonly yes --maxmemory-policy noeviction" in text


def test_dockerfile_runs_as_non_root():
    """The image is python:3.11-slim, installs the project with pip and ends as an unprivileged user."""
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert re.search(r"pip install (--[\w-]+ )*\.", text)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in {"root", "0"}


# ---- the monitoring profile ----------------------------------------------------------------------------


def _prometheus_config() -> dict:
    return yaml.safe_load((MONITORING / "prometheus.yml").read_text())


def _host_path(volume: str) -> Path:
    """The repository path a ./relative bind mount of the compose file names."""
    source = volume.split(":")[0]
    assert source.startswith("./"), volume
    return ROOT / source[2:]


def test_monitoring_mounts_files_of_the_repository_read_only(services):
    """Prometheus' scrape config and Grafana's provisioning and dashboard come from the repo, mounted read-only."""
    mounted = {}
    for name in MONITORING_SERVICES:
        for volume in services[name]["volumes"]:
            if str(volume).startswith("./"):
                assert str(volume).endswith(":ro"), volume
                assert _host_path(volume).exists(), volume
                mounted[str(volume).split(":")[1]] = _host_path(volume)
    assert mounted["/etc/prometheus/prometheus.yml"] == MONITORING / "prometheus.yml"
    assert (mounted["/etc/grafana/provisioning"] / "datasources").is_dir()
    assert (mounted["/var/lib/grafana/dashboards"] / "wcq.json").is_file()


def test_prometheus_scrapes_the_api_with_the_token_and_every_worker_on_its_port(services):
    """The API job sends METRICS_TOKEN from the file the service writes; the worker job finds every copy."""
    jobs = {job["job_name"]: job for job in _prometheus_config()["scrape_configs"]}
    api = jobs["wcq-api"]
    assert api["metrics_path"] == "/metrics"
    web_port = command_of(services["web"])[command_of(services["web"]).index("-b") + 1].rpartition(":")[2]
    assert api["static_configs"][0]["targets"] == [f"web:{web_port}"]
    token_file = api["authorization"]["credentials_file"]
    prometheus = services["prometheus"]
    (script,) = command_of(prometheus)[-1:]
    assert f'"$$METRICS_TOKEN" > {token_file}' in script and "umask 077" in script
    assert environment_of(prometheus)["METRICS_TOKEN"] == "${METRICS_TOKEN:-}"
    assert "--config.file=/etc/prometheus/prometheus.yml" in script
    (workers,) = jobs["wcq-workers"]["dns_sd_configs"]
    assert workers["names"] == ["worker"] and workers["type"] == "A"
    assert compose_default(environment_of(services["worker"])["METRICS_PORT"]) == str(workers["port"])


def test_metrics_settings_reach_the_services_that_read_them(services):
    """Web and workers get METRICS_TOKEN; the web its multiprocess directory; workers (only) METRICS_PORT."""
    assert Settings().metrics_port == 0  # off unless set: local workers do not fight over one port
    web = environment_of(services["web"])
    assert web["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/")
    assert "METRICS_PORT" not in web
    for name in APP_SERVICES - {"worker"}:
        assert "METRICS_PORT" not in environment_of(services[name]), name
    assert (ROOT / "gunicorn.conf.py").is_file()  # gunicorn reads it from /app, the image's working directory
    assert "METRICS_PORT=9100" in ENV_EXAMPLE.read_text()


def test_monitoring_ports_are_on_the_loopback_only(services):
    """Prometheus has no login and Grafana starts with a default one: neither is published beyond the host."""
    for name in MONITORING_SERVICES:
        for port in services[name]["ports"]:
            assert str(port).startswith("127.0.0.1:"), (name, port)
        assert services[name]["healthcheck"]["test"], name
    assert services["grafana"]["environment"]["GF_USERS_ALLOW_SIGN_UP"] == "false"


def _dashboard_metric_names() -> set[str]:
    dashboard = json.loads((MONITORING / "grafana" / "dashboards" / "wcq.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert exprs
    return {name for expr in exprs for name in re.findall(r"\b(wcq_[a-z_]+)", expr)}


def test_the_dashboard_uses_the_provisioned_datasource_and_only_real_metrics():
    """Every panel queries the datasource provisioned next to it, and every wcq_ series it names exists."""
    from prometheus_client import REGISTRY

    import tasks.metrics as metrics

    dashboard = json.loads((MONITORING / "grafana" / "dashboards" / "wcq.json").read_text())
    provisioning = MONITORING / "grafana" / "provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["url"] == "http://prometheus:9090"
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
    provider = yaml.safe_load((provisioning / "dashboards" / "wcq.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    # The live figures the API reads from Redis at scrape time, and every series the registry's families make
    # (a counter's _total, a histogram's _bucket, _sum and _count) whether or not anything was counted yet.
    known = {m.name for m in metrics.LiveCollector(_Queue(), _Queue()).collect()}
    derived = set()
    for family in REGISTRY.collect():
        if family.name.startswith("wcq_"):
            suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(family.type, [""])
            derived |= {family.name + suffix for suffix in suffixes}
    missing = _dashboard_metric_names() - known - derived
    assert not missing, sorted(missing)


class _Queue:
    """A live state and inbox answering like a Redis with one campaign in flight."""

    def queue_depth(self, _queue: str) -> int:
        return 3

    def active_campaigns(self) -> set[str]:
        return {"promo"}

    def in_flight(self, _campaign_id: str) -> int:
        return 2

    def size(self) -> int:
        return 0


def _series_labels() -> dict[str, set[str]]:
    """Every wcq_ series the code exports, with the labels a query may use on it (Prometheus adds job and instance)."""
    from prometheus_client.metrics import MetricWrapperBase

    import tasks.metrics as metrics

    target = {"job", "instance"}
    labels = {m.name: set(target) for m in metrics.LiveCollector(_Queue(), _Queue()).collect()}
    for metric in vars(metrics).values():
        if isinstance(metric, metrics.SendHistogram):  # the send loop's own histograms: what they expose
            for family in metric.collect():
                for sample in family.samples:
                    labels.setdefault(sample.name, set(target)).update(sample.labels)
            continue
        if not isinstance(metric, MetricWrapperBase):
            continue
        own = target | set(metric._labelnames)
        if metric._type == "counter":
            labels[metric._name + "_total"] = own
        elif metric._type == "histogram":
            labels |= {metric._name + "_bucket": own | {"le"}, metric._name + "_sum": own, metric._name + "_count": own}
        else:
            labels[metric._name] = own
    return labels


def test_the_dashboard_filters_and_groups_by_labels_its_metrics_carry():
    """A panel that groups or filters by a label the series lacks shows nothing: every label, and every value it
    matches (outcomes, jobs), is one the code and the scrape configuration produce."""
    from tasks.vocabulary import RecipientStatus

    labels = _series_labels()
    dashboard = json.loads((MONITORING / "grafana" / "dashboards" / "wcq.json").read_text())
    jobs = {job["job_name"] for job in _prometheus_config()["scrape_configs"]}
    outcomes = {s.value for s in RecipientStatus} | {"handed_back"}
    checked = 0
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            series = re.findall(r"\b(wcq_[a-z_]+)", expr)
            grouped = {label.strip() for group in re.findall(r"\bby \(([^)]*)\)", expr) for label in group.split(",")}
            for name in series:
                assert grouped <= labels[name], (panel["title"], expr, grouped - labels[name])
            for selector in re.findall(r"\{([^}]*)\}", expr):
                for label, _, value in re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"', selector):
                    for name in series:
                        assert label in labels[name], (panel["title"], expr, label)
                    wanted = set(value.split("|"))
                    if label == "outcome":
                        assert wanted <= outcomes, (panel["title"], wanted - outcomes)
                    if label == "job":
                        assert wanted <= jobs, (panel["title"], wanted - jobs)
                    checked += 1
    assert checked >= 2  # the failures panel's outcomes and the worker CPU panel's job
