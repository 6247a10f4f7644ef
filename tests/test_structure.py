"""The code's structure: every module imports on its own, and importing builds nothing."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def modules() -> list[str]:
    """Every module of tasks/ and webapi/, and celeryconfig."""
    found = ["celeryconfig"]
    for package in ("tasks", "webapi"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


def test_every_module_imports_alone_in_a_fresh_interpreter():
    def try_import(name: str) -> tuple[str, str]:
        done = subprocess.run(
            [sys.executable, "-c", f"import {name}"], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        return name, done.stderr.strip().splitlines()[-1] if done.returncode else ""

    with ThreadPoolExecutor(4) as pool:
        failures = {name: error for name, error in pool.map(try_import, modules()) if error}
    assert failures == {}


def test_importing_the_code_creates_no_celery_app_and_no_runtime():
    # Everything but the `celery -A tasks` entry module, in reverse order for good measure.
    names = [m for m in reversed(modules()) if m != "tasks.celery"]
    script = (
        "import importlib, celery._state as s\n"
        f"for name in {names!r}: importlib.import_module(name)\n"
        "import tasks.worker as w\n"
        "print(len(s._apps), w._current is None)"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "True"]


@pytest.mark.parametrize("spelling", ['"wcq:campaign:', "'wcq:campaign:", '"wcq:campaigns:active"'])
def test_only_the_keys_module_spells_campaign_keys(spelling):
    hits = [
        str(p.relative_to(ROOT))
        for folder in ("tasks", "webapi", "bench", "demo")
        for p in (ROOT / folder).rglob("*.py")
        if spelling in p.read_text()
    ]
    assert hits == []
