"""Check docker-compose.yml statically: Compose accepts it, and it keeps what operators rely on."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from tasks.config import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"

APP_SERVICES = {"web", "worker", "beat", "flower", "whatsapp-sandbox"}
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
    "CORS_ORIGINS",
    "SUPABASE_JWT_SECRET",
    "JWKS_CACHE_S",
    "DEFAULT_ROLE",
    "AUTH_DISABLED",
    "RATE_LIMIT_UPLOADS",
    "RATE_LIMIT_ACTIONS",
    "RATE_LIMIT_READS",
)


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


def compose_default(value: str) -> str | None:
    """Return the default of a ${VAR:-default} reference, or None if value is not one."""
    match = re.fullmatch(r"\$\{(\w+):?-(.*)\}", value)
    return match.group(2) if match else None


@needs_compose
@pytest.mark.parametrize("profile_args", [[], ["--profile", "sandbox"]], ids=["default", "sandbox"])
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
    """Redis, the app services and the sandbox are all defined, the sandbox only under its profile."""
    assert {"redis"} | APP_SERVICES <= set(services)
    assert services["whatsapp-sandbox"]["profiles"] == ["sandbox"]
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


def test_dockerfile_runs_as_non_root():
    """The image is python:3.11-slim, installs the project with pip and ends as an unprivileged user."""
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert re.search(r"pip install \.", text)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in {"root", "0"}
