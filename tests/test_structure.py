"""The code's structure: every module imports on its own, and importing builds nothing."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
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


# Forked from one interpreter that has loaded only these libraries, each child imports one module of ours
# first: an import cycle or an import-time side effect among our modules still shows, and the libraries'
# own import time (most of a fresh interpreter's) is paid once.
_LIBRARIES = [
    "flask",
    "marshmallow",
    "apispec",
    "celery",
    "kombu",
    "redis",
    "requests",
    "urllib3",
    "psycopg",
    "psycopg_pool",
    "phonenumbers",
    "jwt",
    "flask_cors",
    "flask_limiter",
    "dotenv",
    "click",
    "gevent",
]
_IMPORT_EACH_ALONE = """
import importlib, json, os, sys, traceback
for library in sys.argv[2:]:
    importlib.import_module(library)
failures = {}
for name in json.loads(sys.argv[1]):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            importlib.import_module(name)
            code = 0
        except BaseException:
            os.write(write, traceback.format_exc().strip().splitlines()[-1].encode())
            code = 1
        os._exit(code)
    os.close(write)
    error = b""
    while chunk := os.read(read, 65536):
        error += chunk
    os.close(read)
    if os.waitpid(pid, 0)[1]:
        failures[name] = error.decode() or "import failed"
print(json.dumps(failures))
"""


def test_every_module_imports_alone():
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_EACH_ALONE, json.dumps(modules()), *_LIBRARIES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {}


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


# Letters that only a Spanish sentence needs; an English identifier, log line or CLI output never holds them.
_SPANISH_LETTERS = frozenset("áéíóúüñÁÉÍÓÚÜÑ¿¡")
# Keyword arguments and dict keys whose strings document the API (OpenAPI, marshmallow metadata, CLI help).
_DOC_KEYWORDS = {"description", "metadata", "help"}
# Strings that may keep Spanish letters outside the catalogue, each with the reason.
_SPANISH_ALLOWED = {
    # The OpenAPI document itself: its summaries and descriptions are documentation, not messages.
    "webapi/openapi.py": None,
    # "sí" is a spelling of yes accepted by boolean settings (_bool), not a message.
    "tasks/config.py": {"sí"},
    # English CLI output that names the Spanish domain word (a sender is a "buzón" everywhere in the API).
    "webapi/cli.py": {"Buzón '", "every buzón"},
    # A UTF-8 byte-order mark as it reads in Windows-1252, stripped from a header: bytes, not a message.
    "webapi/contacts/columns.py": {"ï»¿"},
}


def _spanish_literals(path: Path) -> list[str]:
    """The string constants of a module holding Spanish letters, except docstrings and API documentation."""
    tree = ast.parse(path.read_text(), str(path))
    skipped: set[int] = set()

    def skip(node: ast.AST) -> None:
        skipped.update(id(n) for n in ast.walk(node))

    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            skip(node)  # a docstring (or another bare string statement, which no one reads either)
        elif isinstance(node, ast.keyword) and node.arg in _DOC_KEYWORDS:
            skip(node.value)
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "description":
                    skip(value)
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in skipped
        and _SPANISH_LETTERS.intersection(node.value)
    ]


def test_spanish_texts_live_only_in_the_catalogue():
    found = {}
    for package in ("tasks", "webapi"):
        for path in sorted((ROOT / package).rglob("*.py")):
            name = path.relative_to(ROOT).as_posix()
            if name == "tasks/texts.py" or (name in _SPANISH_ALLOWED and _SPANISH_ALLOWED[name] is None):
                continue
            literals = [s for s in _spanish_literals(path) if s not in (_SPANISH_ALLOWED.get(name) or set())]
            if literals:
                found[name] = literals
    assert found == {}, "move these texts to tasks/texts.py"
