"""The newcomer's path: the demo runs end to end on embedded services, and the operator commands work."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.conftest import ROOT

SERVICE_VARIABLES = ("REDIS_URL", "DATABASE_URL", "API_WHATSAPP_URL", "SUPABASE_URL", "SUPABASE_KEY",
                     "INSTANCE_ID", "MAX_CSV_SIZE_MB", "MAX_MESSAGES_PER_CAMPAIGN", "BATCH_SIZE", "CHUNK_SIZE")


def _clean_env() -> dict[str, str]:
    """The environment of a fresh shell: none of the service variables the other tests set."""
    return {k: v for k, v in os.environ.items() if k not in SERVICE_VARIABLES}


def _own_processes() -> set[int]:
    """Process ids of anything started from this checkout's interpreter or the embedded servers."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return {int(line.split()[0]) for line in out.splitlines()
            if re.search(r"redis-server|postgres -D|gunicorn|celery .*flower|demo@", line)}


def test_demo_runs_a_campaign_end_to_end_and_stops_everything(tmp_path):
    before = _own_processes()
    result = subprocess.run([sys.executable, "-m", "demo", "--exit", "--data-dir", str(tmp_path)], cwd=ROOT,
                            env=_clean_env(), capture_output=True, text=True, timeout=240)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "starting an embedded Redis" in output and "starting an embedded PostgreSQL" in output
    assert "Summary: status completed, 1000 sent, 0 failed, 3 rows rejected at upload" in output
    assert "the sandbox accepted 1000 messages" in output
    assert "Flower:" in output and "/api/docs" in output
    assert _own_processes() - before == set(), "the demo left processes running"


def test_cli_registers_a_buzon_without_echoing_its_token(service_env):
    env = {**service_env, "WHATSAPP_ACCESS_TOKEN": "EAAG-secret-token"}
    add = subprocess.run([sys.executable, "-m", "flask", "--app", "webapi", "buzon", "add", "cobranzas",
                          "--phone-number-id", "555000111", "--mps", "120"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert add.returncode == 0, add.stderr
    listing = subprocess.run([sys.executable, "-m", "flask", "--app", "webapi", "buzon", "list"], cwd=ROOT,
                             env=service_env, capture_output=True, text=True, timeout=60)
    assert "cobranzas\t555000111\t120 msg/s" in listing.stdout
    assert "EAAG-secret-token" not in add.stdout + add.stderr + listing.stdout


def test_migrations_apply_once_through_the_cli(service_env):
    run = subprocess.run([sys.executable, "-m", "flask", "--app", "webapi", "db", "upgrade"], cwd=ROOT,
                         env=service_env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "already up to date" in run.stdout


def test_startup_refuses_a_bad_setting_naming_the_variable(service_env):
    env = {**service_env, "BATCH_SIZE": "abc"}
    run = subprocess.run([sys.executable, "-m", "flask", "--app", "webapi", "buzon", "list"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "BATCH_SIZE='abc' is not a whole number" in run.stderr
