"""Checks that the PostgREST stand-in answers the real supabase client the way Supabase would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import httpx
import psycopg
import pytest
from postgrest.exceptions import APIError
from supabase import ClientOptions, create_client

from tests.support.postgrest import make_api_key, start_postgrest

DSN = os.environ.get("PGRST_SELFTEST_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=test")
# One schema per test process, so parallel runs on the shared database never collide.
SCHEMA = f"pgrst_selftest_{os.getpid()}"
REPO_ROOT = Path(__file__).resolve().parents[1]

SETUP_SQL = """
CREATE SCHEMA {s};
CREATE TABLE {s}.messages (
    id bigserial PRIMARY KEY,
    phone text NOT NULL UNIQUE,
    payload jsonb NOT NULL DEFAULT '{{}}',
    status text NOT NULL DEFAULT 'queued',
    created_at timestamptz NOT NULL DEFAULT '2024-05-06 07:08:09.5+00'
);
CREATE TABLE {s}.counter (n int NOT NULL);
INSERT INTO {s}.counter VALUES (0);

CREATE FUNCTION {s}.add_them(a int, b int DEFAULT 10) RETURNS int
    LANGUAGE sql AS 'SELECT a + b';
CREATE FUNCTION {s}.greet(name text) RETURNS text
    LANGUAGE sql AS $$SELECT 'olá ' || name$$;
CREATE FUNCTION {s}.is_even(n int) RETURNS boolean
    LANGUAGE sql AS 'SELECT n % 2 = 0';
CREATE FUNCTION {s}.nothing_found() RETURNS int
    LANGUAGE sql AS 'SELECT NULL::int';
CREATE FUNCTION {s}.countdown(n int) RETURNS SETOF int
    LANGUAGE sql AS 'SELECT generate_series(n, 1, -1)';
CREATE FUNCTION {s}.echo_json(payload jsonb) RETURNS jsonb
    LANGUAGE sql AS 'SELECT payload';
CREATE FUNCTION {s}.whole_body(jsonb) RETURNS jsonb
    LANGUAGE sql AS $$SELECT $1 || '{{"seen": true}}'$$;
CREATE FUNCTION {s}.enqueue(p_phone text, p_payload jsonb DEFAULT '{{}}') RETURNS SETOF {s}.messages
    LANGUAGE sql AS $$
        INSERT INTO {s}.messages (phone, payload) VALUES (p_phone, p_payload) RETURNING *
    $$;
CREATE FUNCTION {s}.list_messages(p_status text)
    RETURNS TABLE (id bigint, phone text, payload jsonb, created_at timestamptz)
    LANGUAGE sql STABLE AS $$
        SELECT m.id, m.phone, m.payload, m.created_at FROM {s}.messages m
         WHERE m.status = p_status ORDER BY m.id
    $$;
CREATE FUNCTION {s}.get_message(p_id bigint) RETURNS {s}.messages
    LANGUAGE sql STABLE AS 'SELECT * FROM {s}.messages WHERE id = p_id';
CREATE FUNCTION {s}.doubled(p int, OUT twice int)
    LANGUAGE sql AS 'SELECT p * 2';
CREATE FUNCTION {s}.mark_sent(p_id bigint) RETURNS void
    LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE {s}.messages SET status = 'sent' WHERE id = p_id;
    END
    $$;
CREATE FUNCTION {s}.fail_loudly(p_reason text) RETURNS int
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'refused: %', p_reason USING DETAIL = 'some detail', HINT = 'some hint';
    END
    $$;
CREATE FUNCTION {s}.enqueue_then_fail(p_phone text) RETURNS void
    LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO {s}.messages (phone) VALUES (p_phone);
        RAISE EXCEPTION 'after insert';
    END
    $$;
CREATE FUNCTION {s}.describe(p_when timestamptz, p_day date, p_id uuid, p_tags text[], p_amount numeric)
    RETURNS TABLE (w timestamptz, d date, u uuid, tags text[], amount numeric, plain timestamp)
    LANGUAGE sql AS $$
        SELECT p_when, p_day, p_id, p_tags, p_amount, p_when AT TIME ZONE 'UTC'
    $$;
CREATE FUNCTION {s}.bump() RETURNS int
    LANGUAGE sql AS $$
        SELECT pg_sleep(0.01);
        UPDATE {s}.counter SET n = n + 1 RETURNING n;
    $$;
"""


def _reachable() -> bool:
    """Whether the test database accepts connections."""
    try:
        psycopg.connect(DSN, connect_timeout=3).close()
    except psycopg.OperationalError:
        return False
    return True


pytestmark = pytest.mark.skipif(not _reachable(), reason="PostgreSQL test database is not reachable")


def sql(statement: str, *params: object) -> list[tuple]:
    """Run one statement directly in Postgres (autocommit) and return its rows."""
    with psycopg.connect(DSN, autocommit=True) as conn:
        cur = conn.execute(statement, params or None)
        return cur.fetchall() if cur.description else []


@pytest.fixture(scope="module", autouse=True)
def schema():
    """Create the throwaway schema with its tables and functions, and drop it afterwards."""
    sql(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    sql(SETUP_SQL.format(s=SCHEMA))
    yield SCHEMA
    sql(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")


@pytest.fixture(autouse=True)
def clean_tables(schema):
    """Start every test with empty tables."""
    sql(f"TRUNCATE {SCHEMA}.messages RESTART IDENTITY; UPDATE {SCHEMA}.counter SET n = 0")


@pytest.fixture(scope="module")
def server(schema):
    """A stand-in server running in a background thread for the whole module."""
    with start_postgrest(DSN) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    """A real supabase client pointed at the stand-in, with the test schema as default."""
    return create_client(server.url, make_api_key(), ClientOptions(schema=SCHEMA))


def raw(server, method: str, path: str, **kwargs) -> httpx.Response:
    """Send a hand-made request, with Supabase's usual headers unless overridden."""
    key = make_api_key()
    headers = {"apikey": key, "Authorization": f"Bearer {key}", "Content-Profile": SCHEMA, "Accept-Profile": SCHEMA}
    headers.update(kwargs.pop("headers", {}))
    return httpx.request(method, f"{server.url}/rest/v1{path}", headers=headers, **kwargs)


def test_scalar_functions_answer_bare_json_values(client):
    """Scalars come back as the JSON value itself, by POST and by GET, with defaults applied."""
    assert client.rpc("add_them", {"a": 2, "b": 3}).execute().data == 5
    assert client.rpc("add_them", {"a": 2}).execute().data == 12
    assert client.rpc("add_them", {"a": 2, "b": 3}, get=True).execute().data == 5
    assert client.rpc("greet", {"name": "Sofia"}).execute().data == "olá Sofia"
    assert client.rpc("is_even", {"n": 4}).execute().data is True
    assert client.rpc("nothing_found", {}).execute().data is None
    assert client.rpc("countdown", {"n": 3}).execute().data == [3, 2, 1]
    assert client.rpc("countdown", {"n": 0}).execute().data == []


def test_jsonb_arguments_and_results_round_trip(client):
    """A jsonb argument receives the JSON as sent, and a jsonb result comes back as JSON."""
    payload = {"template": "promo", "vars": ["Ana", 3, 2.5, None, True], "nested": {"ç": "ü"}}
    assert client.rpc("echo_json", {"payload": payload}).execute().data == payload
    assert client.rpc("echo_json", {"payload": payload}, get=True).execute().data == payload
    assert client.rpc("echo_json", {"payload": "just text"}).execute().data == "just text"
    assert client.rpc("whole_body", {"x": 1}).execute().data == {"x": 1, "seen": True}


def test_setof_composite_answers_rows_and_writes_to_postgres(client):
    """A SETOF-table function answers a list of row objects, and its insert is committed."""
    data = client.rpc("enqueue", {"p_phone": "+5511999990001", "p_payload": {"k": 1}}).execute().data
    assert data == [
        {
            "id": 1,
            "phone": "+5511999990001",
            "payload": {"k": 1},
            "status": "queued",
            "created_at": "2024-05-06T07:08:09.5+00:00",
        }
    ]
    assert sql(f"SELECT phone, payload FROM {SCHEMA}.messages") == [("+5511999990001", {"k": 1})]


def test_returns_table_supports_filters_order_limit_and_count(client):
    """RETURNS TABLE answers a list of objects, filterable like PostgREST, with an exact count on request."""
    for n in range(3):
        client.rpc("enqueue", {"p_phone": f"+55{n}"}).execute()
    data = client.rpc("list_messages", {"p_status": "queued"}).execute().data
    assert [row["phone"] for row in data] == ["+550", "+551", "+552"]
    assert set(data[0]) == {"id", "phone", "payload", "created_at"}

    page = client.rpc("list_messages", {"p_status": "queued"}, count="exact").order("id", desc=True).limit(2).execute()
    assert [row["phone"] for row in page.data] == ["+552", "+551"]
    assert page.count == 3
    assert client.rpc("list_messages", {"p_status": "queued"}).eq("phone", "+551").execute().data[0]["id"] == 2
    assert client.rpc("list_messages", {"p_status": "queued"}).in_("id", [1, 3]).execute().data[1]["id"] == 3
    assert client.rpc("list_messages", {"p_status": "sent"}).execute().data == []


def test_single_composite_and_out_parameter_answer_objects(client):
    """A function returning one row, or with one OUT parameter, answers a single object."""
    client.rpc("enqueue", {"p_phone": "+551"}).execute()
    row = client.rpc("get_message", {"p_id": 1}).execute().data
    assert row["phone"] == "+551" and row["status"] == "queued"
    assert client.rpc("doubled", {"p": 4}).execute().data == {"twice": 8}


def test_void_function_answers_204_and_commits(client, server):
    """A void function answers 204 No Content (``.data == []`` in postgrest-py), and its update lands."""
    client.rpc("enqueue", {"p_phone": "+551"}).execute()
    assert client.rpc("mark_sent", {"p_id": 1}).execute().data == []
    assert sql(f"SELECT status FROM {SCHEMA}.messages") == [("sent",)]

    response = raw(server, "POST", "/rpc/mark_sent", json={"p_id": 1})
    assert response.status_code == 204 and response.content == b""


def test_postgres_values_are_rendered_like_postgrest(client):
    """Timestamps, dates, uuids, arrays and numerics come out as Postgres renders them in JSON."""
    args = {
        "p_when": "2024-01-02T03:04:05.123456Z",
        "p_day": "2024-01-02",
        "p_id": "6f1c1bde-1a0b-4a61-9a3b-3f0d2b9c1e77",
        "p_tags": ["a,b", "c"],
        "p_amount": 12.50,
    }
    (row,) = client.rpc("describe", args).execute().data
    assert row == {
        "w": "2024-01-02T03:04:05.123456+00:00",
        "d": "2024-01-02",
        "u": "6f1c1bde-1a0b-4a61-9a3b-3f0d2b9c1e77",
        "tags": ["a,b", "c"],
        "amount": 12.5,
        "plain": "2024-01-02T03:04:05.123456",
    }
    (by_get,) = client.rpc("describe", args, get=True).execute().data
    assert by_get == row


def test_raise_exception_becomes_api_error_with_400(client, server):
    """RAISE EXCEPTION surfaces as APIError P0001 with message, details and hint, over HTTP 400."""
    with pytest.raises(APIError) as caught:
        client.rpc("fail_loudly", {"p_reason": "quota"}).execute()
    error = caught.value
    assert (error.code, error.message) == ("P0001", "refused: quota")
    assert (error.details, error.hint) == ("some detail", "some hint")
    assert raw(server, "POST", "/rpc/fail_loudly", json={"p_reason": "x"}).status_code == 400


def test_unique_violation_becomes_api_error_with_409(client, server):
    """A unique violation surfaces as APIError 23505 over HTTP 409, and only the first row exists."""
    client.rpc("enqueue", {"p_phone": "+551"}).execute()
    with pytest.raises(APIError) as caught:
        client.rpc("enqueue", {"p_phone": "+551"}).execute()
    assert caught.value.code == "23505"
    assert caught.value.details == "Key (phone)=(+551) already exists."
    assert raw(server, "POST", "/rpc/enqueue", json={"p_phone": "+551"}).status_code == 409
    assert sql(f"SELECT count(*) FROM {SCHEMA}.messages") == [(1,)]


def test_failed_call_rolls_back_its_writes(client):
    """Writes made before an error in the same call are rolled back."""
    with pytest.raises(APIError):
        client.rpc("enqueue_then_fail", {"p_phone": "+559"}).execute()
    assert sql(f"SELECT count(*) FROM {SCHEMA}.messages") == [(0,)]


def test_bad_argument_value_is_a_400_data_error(client):
    """A value Postgres cannot convert is reported with its SQLSTATE, like PostgREST."""
    with pytest.raises(APIError) as caught:
        client.rpc("add_them", {"a": "not a number"}).execute()
    assert caught.value.code == "22P02"


def test_unknown_function_is_pgrst202_with_404(client, server):
    """Unknown functions or argument names give PostgREST's PGRST202 error over HTTP 404."""
    with pytest.raises(APIError) as caught:
        client.rpc("add_themm", {"a": 1}).execute()
    error = caught.value
    assert error.code == "PGRST202"
    assert error.message == f"Could not find the function {SCHEMA}.add_themm(a) in the schema cache"
    assert error.hint == f"Perhaps you meant to call the function {SCHEMA}.add_them"

    with pytest.raises(APIError) as caught:
        client.rpc("add_them", {"x": 1}).execute()
    assert caught.value.code == "PGRST202"
    assert caught.value.hint == f"Perhaps you meant to call the function {SCHEMA}.add_them(a, b)"

    response = raw(server, "POST", "/rpc/nope", json={})
    assert response.status_code == 404
    assert set(response.json()) == {"code", "message", "details", "hint"}


def test_functions_created_after_start_are_found(client):
    """A function created while the server runs is found on its first call (the cache refreshes on a miss)."""
    with pytest.raises(APIError):
        client.rpc("late_arrival", {}).execute()
    sql(f"CREATE FUNCTION {SCHEMA}.late_arrival() RETURNS text LANGUAGE sql AS $$SELECT 'here'$$")
    assert client.rpc("late_arrival", {}).execute().data == "here"


def test_get_calls_run_read_only(client):
    """Like PostgREST, GET calls run in a read-only transaction, so writes fail with 25006."""
    with pytest.raises(APIError) as caught:
        client.rpc("enqueue", {"p_phone": "+551"}, get=True).execute()
    assert caught.value.code == "25006"
    assert sql(f"SELECT count(*) FROM {SCHEMA}.messages") == [(0,)]


def test_requests_without_api_key_are_rejected(server):
    """Requests without an apikey get 401, like Supabase's gateway answers."""
    response = httpx.post(f"{server.url}/rest/v1/rpc/add_them", json={"a": 1}, headers={"Content-Profile": SCHEMA})
    assert response.status_code == 401


def test_schema_switch_and_table_reads(server, client):
    """``client.schema(...)`` selects the schema per call, and table reads filter, order and limit."""
    for phone in ("+551", "+552", "+553"):
        client.rpc("enqueue", {"p_phone": phone}).execute()
    public_client = create_client(server.url, make_api_key())
    assert public_client.schema(SCHEMA).rpc("add_them", {"a": 1, "b": 1}).execute().data == 2
    with pytest.raises(APIError) as caught:
        public_client.rpc("add_them", {"a": 1}).execute()
    assert caught.value.code == "PGRST202"

    messages = public_client.schema(SCHEMA).table("messages")
    rows = messages.select("*").neq("phone", "+553").order("id", desc=True).limit(1).execute()
    assert [r["phone"] for r in rows.data] == ["+552"]
    one = client.table("messages").select("id,phone").eq("phone", "+553").single().execute()
    assert one.data == {"id": 3, "phone": "+553"}
    with pytest.raises(APIError) as caught:
        client.table("no_such_table").select("*").execute()
    assert caught.value.code == "PGRST205"


def test_fifty_concurrent_calls_from_threads(client):
    """Fifty simultaneous calls each run in their own transaction and all commit."""
    results: list[int] = []
    lock = threading.Lock()

    def call() -> None:
        """Make one call and record its result."""
        value = client.rpc("bump", {}).execute().data
        with lock:
            results.append(value)

    threads = [threading.Thread(target=call) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(results) == list(range(1, 51))
    assert sql(f"SELECT n FROM {SCHEMA}.counter") == [(50,)]


GEVENT_CLIENT = """
from gevent import monkey; monkey.patch_all()
import json, sys
from gevent.pool import Pool
from supabase import ClientOptions, create_client
from tests.support.postgrest import make_api_key

url, schema = sys.argv[1], sys.argv[2]
client = create_client(url, make_api_key(), ClientOptions(schema=schema))
print(json.dumps(Pool(50).map(lambda _: client.rpc("bump", {}).execute().data, range(50))))
"""


def test_command_line_server_serves_gevent_workers(schema):
    """The ``python -m`` server answers fifty concurrent calls from gevent greenlets."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.support.postgrest", "--dsn", DSN, "--port", "0", "--quiet"],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = server.stdout.readline()
        assert line.startswith("postgrest listening on http://"), line
        url = line.split()[-1]
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(GEVENT_CLIENT), url, SCHEMA],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert sorted(json.loads(done.stdout)) == list(range(1, 51))
    finally:
        server.terminate()
        assert server.wait(timeout=30) == 0
    assert sql(f"SELECT n FROM {SCHEMA}.counter") == [(50,)]
