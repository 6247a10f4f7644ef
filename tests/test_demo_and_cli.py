"""The newcomer's path: the demo runs end to end on embedded services, and the operator commands work."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

from tests.conftest import ROOT

SERVICE_VARIABLES = (
    "REDIS_URL",
    "DATABASE_URL",
    "API_WHATSAPP_URL",
    "SUPABASE_URL",
    "SUPABASE_KEY",
    "INSTANCE_ID",
    "MAX_CSV_SIZE_MB",
    "MAX_MESSAGES_PER_CAMPAIGN",
    "BATCH_SIZE",
    "CHUNK_SIZE",
)


def _clean_env() -> dict[str, str]:
    """The environment of a fresh shell: none of the service variables the other tests set."""
    return {k: v for k, v in os.environ.items() if k not in SERVICE_VARIABLES}


def _processes_using(path) -> list[str]:
    """Command lines of running processes that mention `path` (the embedded servers' data)."""
    out = subprocess.run(["ps", "-eo", "args="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if str(path) in line and "pytest" not in line]


def _port_open(port: int) -> bool:
    """Whether something still listens on a local port."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_demo_runs_a_campaign_end_to_end_and_stops_everything(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "demo", "--exit", "--data-dir", str(tmp_path)],
        cwd=ROOT,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "starting an embedded Redis" in output and "starting an embedded PostgreSQL" in output
    assert "Summary: status completed, 1000 sent, 0 failed, 3 rows rejected at upload" in output
    assert "the sandbox accepted 1000 messages" in output
    assert "Flower:" in output and "/api/docs" in output and "password in" in output
    ports = {int(p) for p in re.findall(r"http://127\.0\.0\.1:(\d+)", output)}
    assert len(ports) == 3, "API, Flower and sandbox URLs are printed"
    assert [p for p in ports if _port_open(p)] == [], "the demo left a server running"
    assert _processes_using(tmp_path) == [], "the demo left an embedded server running"


def test_cli_registers_a_buzon_without_echoing_its_token(service_env):
    env = {**service_env, "WHATSAPP_ACCESS_TOKEN": "EAAG-secret-token"}
    add = subprocess.run(
        [
            sys.executable,
            "-m",
            "flask",
            "--app",
            "webapi",
            "buzon",
            "add",
            "cobranzas",
            "--phone-number-id",
            "555000111",
            "--mps",
            "120",
            "--waba-id",
            "102290129340398",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert add.returncode == 0, add.stderr
    listing = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "webapi", "buzon", "list"],
        cwd=ROOT,
        env=service_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "cobranzas\t555000111\t120 msg/s\t102290129340398" in listing.stdout
    assert "EAAG-secret-token" not in add.stdout + add.stderr + listing.stdout


def test_migrations_apply_once_through_the_cli(service_env):
    run = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "webapi", "db", "upgrade"],
        cwd=ROOT,
        env=service_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0 and "already up to date" in run.stdout


def test_startup_refuses_a_bad_setting_naming_the_variable(service_env):
    env = {**service_env, "BATCH_SIZE": "abc"}
    run = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "webapi", "buzon", "list"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0 and "BATCH_SIZE='abc' is not a whole number" in run.stderr


def test_cli_puts_buzones_in_a_portfolio_with_a_tier_and_refuses_other_limits(service_env, store):
    def flask(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "flask", "--app", "webapi", "portfolio", *args],
            cwd=ROOT,
            env=service_env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    try:
        refused = flask("set", "pf-cli", "--limit", "300", "--buzon", "malo")
        assert refused.returncode != 0 and "250, 2000, 10000, 100000, unlimited" in refused.stderr
        made = flask("set", "pf-cli", "--limit", "2000", "--waba", "waba-cli", "--buzon", "malo")
        assert made.returncode == 0, made.stderr
        assert (store.get_sender("malo").portfolio_id, store.get_sender("malo").messaging_limit) == ("pf-cli", 2000)
        assert flask("set", "pf-cli", "--limit", "unlimited").returncode == 0
        assert "pf-cli\tunlimited\twaba-cli\tmalo" in flask("list").stdout
        unknown = flask("set", "pf-cli", "--limit", "250", "--buzon", "nadie")
        assert unknown.returncode != 0 and "not registered" in unknown.stderr
    finally:
        store.set_sender_portfolio("malo", None)
