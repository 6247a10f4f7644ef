"""A small PostgREST-compatible HTTP server over a real Postgres, for testing code that uses the supabase client.

It answers what the supabase Python client sends under ``/rest/v1``: RPC calls
(``POST``/``GET``/``HEAD /rest/v1/rpc/<fn>``) and plain table reads, with the
schema taken from the ``Content-Profile``/``Accept-Profile`` headers. Result
shapes, error bodies and HTTP statuses follow PostgREST, and the JSON is
rendered by Postgres itself (as PostgREST does), so timestamps, numerics and
uuids look exactly as they would against Supabase.

Run it in-process with :func:`start_postgrest`, or as a process with
``python -m tests.support.postgrest --dsn ... --port ...``.
"""

from __future__ import annotations

import argparse
import base64
import difflib
import json
import re
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

__all__ = [
    "PostgrestApp",
    "PostgrestError",
    "PostgrestServer",
    "make_api_key",
    "start_postgrest",
]

JSON_TYPE = "application/json; charset=utf-8"
SINGLE_OBJECT_TYPE = "application/vnd.pgrst.object+json"
REST_PREFIX = "/rest/v1"
# Query parameters that are never filters nor function arguments.
RESERVED_PARAMS = frozenset({"select", "order", "limit", "offset", "columns", "on_conflict", "apikey"})
COMPARISONS = {
    "eq": "=",
    "neq": "<>",
    "gt": ">",
    "gte": ">=",
    "lt": "<",
    "lte": "<=",
    "like": "LIKE",
    "ilike": "ILIKE",
}
IS_VALUES = {"null": "NULL", "true": "TRUE", "false": "FALSE", "unknown": "UNKNOWN"}
# PostgREST's documented SQLSTATE -> HTTP status table; anything unlisted is 400.
EXACT_STATUS = {
    "23503": 409,
    "23505": 409,
    "25006": 405,
    "53400": 500,
    "P0001": 400,
    "42883": 404,
    "42P01": 404,
    "42P17": 500,
}
CLASS_STATUS = {
    **dict.fromkeys(["08", "53"], 503),
    **dict.fromkeys(["0L", "0P", "28"], 403),
    **dict.fromkeys(["09", "25", "2D", "38", "39", "3B", "40", "54", "55", "57", "58", "F0", "HV", "P0", "XX"], 500),
}

ROUTINES_SQL = """
SELECT p.proretset,
       p.provolatile = 'v',
       p.prorettype = 'void'::regtype,
       t.typtype = 'c' OR coalesce(p.proargmodes::text[] && '{o,b,t}', false),
       p.pronargdefaults,
       coalesce((
           SELECT json_agg(json_build_object(
                      'name', coalesce(a.name, ''),
                      'type', format_type(a.type, NULL),
                      'mode', coalesce(a.mode, 'i'))
                  ORDER BY a.ord)
             FROM unnest(coalesce(p.proallargtypes, p.proargtypes::oid[]),
                         p.proargmodes::text[], p.proargnames)
                  WITH ORDINALITY AS a(type, mode, name, ord)
       ), '[]')
  FROM pg_proc p
  JOIN pg_namespace n ON n.oid = p.pronamespace
  JOIN pg_type t ON t.oid = p.prorettype
 WHERE n.nspname = %s AND p.proname = %s AND p.prokind = 'f'
"""
FUNCTION_NAMES_SQL = """
SELECT DISTINCT p.proname
  FROM pg_proc p
  JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = %s AND p.prokind = 'f'
"""


class PostgrestError(Exception):
    """An error answered with PostgREST's JSON body and HTTP status."""

    def __init__(
        self,
        status: int,
        code: str | None,
        message: str,
        details: str | None = None,
        hint: str | None = None,
    ) -> None:
        """Keep the HTTP status and the four fields PostgREST puts in error bodies."""
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.hint = hint

    def response(self) -> Response:
        """Render the error the way PostgREST does, including its Proxy-Status header."""
        body = {"code": self.code, "details": self.details, "hint": self.hint, "message": self.message}
        # postgrest-py reads the code from this header when there is no body (HEAD).
        headers = {"Proxy-Status": f"PostgREST; error={self.code}"} if self.code else {}
        return Response(json.dumps(body), status=self.status, content_type=JSON_TYPE, headers=headers)


@dataclass(frozen=True)
class Param:
    """One input argument of a database function."""

    name: str
    type: str
    required: bool
    variadic: bool


@dataclass(frozen=True)
class Routine:
    """What PostgREST needs to know about one database function to call it and shape its result."""

    schema: str
    name: str
    params: tuple[Param, ...]
    returns_set: bool
    returns_composite: bool
    returns_void: bool
    volatile: bool

    @property
    def names(self) -> frozenset[str]:
        """Names of the arguments that can be passed by name."""
        return frozenset(p.name for p in self.params if p.name)

    @property
    def required(self) -> frozenset[str]:
        """Names of the arguments without a default value."""
        return frozenset(p.name for p in self.params if p.required)

    @property
    def takes_whole_body(self) -> bool:
        """Whether this function has a single unnamed json/jsonb argument that receives the whole body."""
        return len(self.params) == 1 and not self.params[0].name and self.params[0].type in ("json", "jsonb")

    def signature(self) -> str:
        """Describe the function like PostgREST does in ambiguity errors."""
        args = ", ".join(f"{p.name} => {p.type}" for p in self.params)
        return f"{self.schema}.{self.name}({args})"


def load_routines(conn: psycopg.Connection, schema: str, name: str) -> tuple[Routine, ...]:
    """Read every overload of ``schema.name`` from pg_proc."""
    routines = []
    for returns_set, volatile, void, composite, ndefaults, args in conn.execute(ROUTINES_SQL, (schema, name)):
        inputs = [a for a in args if a["mode"] in ("i", "b", "v")]
        params = tuple(
            Param(
                name=a["name"],
                type=a["type"],
                # Postgres only allows defaults on the trailing input arguments.
                required=i < len(inputs) - ndefaults,
                variadic=a["mode"] == "v",
            )
            for i, a in enumerate(inputs)
        )
        routines.append(Routine(schema, name, params, returns_set, composite, void, volatile))
    return tuple(routines)


class RoutineCache:
    """Remembers function descriptions per (schema, name), like PostgREST's schema cache."""

    def __init__(self) -> None:
        """Start with an empty cache."""
        self._lock = threading.Lock()
        self._routines: dict[tuple[str, str], tuple[Routine, ...]] = {}

    def get(self, conn: psycopg.Connection, schema: str, name: str, refresh: bool = False) -> tuple[Routine, ...]:
        """Return the overloads of a function, reading pg_proc when unknown or when asked to refresh."""
        key = (schema, name)
        with self._lock:
            routines = self._routines.get(key)
        if routines is None or refresh:
            routines = load_routines(conn, schema, name)
            with self._lock:
                self._routines[key] = routines
        return routines

    def forget(self, schema: str | None = None, name: str | None = None) -> None:
        """Drop one function's entry, or everything when no name is given."""
        with self._lock:
            if name is None:
                self._routines.clear()
            else:
                self._routines.pop((schema or "", name), None)


def make_api_key(role: str = "service_role") -> str:
    """Build a JWT-shaped key (unsigned, never verified here) carrying a Supabase role claim."""

    def part(data: bytes) -> str:
        """Encode one JWT segment as unpadded base64url."""
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = json.dumps({"alg": "HS256", "typ": "JWT"}).encode()
    payload = json.dumps({"iss": "supabase-test", "role": role, "exp": 4102444800}).encode()
    return f"{part(header)}.{part(payload)}.{part(b'test-signature')}"


def _jwt_role(request: Request) -> str | None:
    """Read the role claim of the bearer token without verifying it."""
    token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return claims.get("role")
    except (IndexError, ValueError, AttributeError):
        return None


def status_for_sqlstate(code: str, authenticated: bool) -> int:
    """Map a SQLSTATE to the HTTP status PostgREST answers with."""
    if code.startswith("PT") and code[2:].isdigit():
        return int(code[2:])
    if code == "42501":
        return 403 if authenticated else 401
    return EXACT_STATUS.get(code) or CLASS_STATUS.get(code[:2], 400)


def _prefer(request: Request) -> dict[str, str]:
    """Parse every Prefer header into a dict of preferences."""
    tokens = ",".join(request.headers.getlist("Prefer")).split(",")
    return dict(t.strip().partition("=")[::2] for t in tokens if t.strip())


def _unquote(name: str) -> str:
    """Undo the double quoting postgrest-py applies to names with reserved characters."""
    if len(name) >= 2 and name[0] == name[-1] == '"':
        return re.sub(r"\\(.)", r"\1", name[1:-1])
    return name


def _parse_error(text: str) -> PostgrestError:
    """Build PostgREST's query-string parsing error."""
    return PostgrestError(400, "PGRST100", f"failed to parse {text}")


def _in_list(value: str) -> list[str]:
    """Split an ``in.(a,"b,c")`` operand into its items."""
    if not (value.startswith("(") and value.endswith(")")):
        raise _parse_error(f"filter (in.{value})")
    items = re.findall(r'\s*("(?:[^"\\]|\\.)*"|[^,]*)\s*(?:,|$)', value[1:-1])
    return [_unquote(item) for item in items[:-1] if item] if value[1:-1] else []


class Query:
    """The read part of a request (select, filters, order, limit, offset) turned into SQL on alias ``_c``."""

    def __init__(self, request: Request, skip: Iterable[str] = ()) -> None:
        """Parse the query string, ignoring parameters in ``skip`` (function arguments)."""
        args = request.args
        skipped = RESERVED_PARAMS | set(skip)
        self.columns = self._columns(args.get("select", "*"))
        self.filters: list[sql.Composable] = []
        self.values: list[str] = []
        for column, expr in args.items(multi=True):
            if column not in skipped:
                self._add_filter(_unquote(column), expr)
        self.order = [self._order_item(item) for item in args.get("order", "").split(",") if item]
        self.limit = self._number(args, "limit")
        self.offset = self._number(args, "offset") or 0

    @property
    def shapes_rows(self) -> bool:
        """Whether the request asks for anything besides the plain rows."""
        return bool(self.columns or self.filters or self.order)

    @staticmethod
    def _columns(select: str) -> list[str] | None:
        """Parse ``select``: None means every column."""
        names = [c.strip() for c in select.split(",") if c.strip()]
        if not names or "*" in names:
            return None
        for name in names:
            if not re.fullmatch(r'[^:()!.]+|"(?:[^"\\]|\\.)*"', name):
                raise _parse_error(f"select ({select})")
        return [_unquote(name) for name in names]

    @staticmethod
    def _number(args: Any, key: str) -> int | None:
        """Read a non-negative integer parameter."""
        value = args.get(key)
        if value is None:
            return None
        if not value.isdigit():
            raise _parse_error(f"{key} ({value})")
        return int(value)

    def _add_filter(self, column: str, expr: str) -> None:
        """Translate one ``column=op.value`` filter into SQL."""
        negate = expr.startswith("not.")
        op, dot, value = expr.removeprefix("not.").partition(".")
        target = sql.Identifier("_c", column)
        if not dot:
            raise _parse_error(f"filter ({column}={expr})")
        if op in COMPARISONS:
            clause = sql.SQL("{} {} %s").format(target, sql.SQL(COMPARISONS[op]))
            self.values.append(value.replace("*", "%") if op in ("like", "ilike") else value)
        elif op == "is" and value.lower() in IS_VALUES:
            clause = sql.SQL("{} IS {}").format(target, sql.SQL(IS_VALUES[value.lower()]))
        elif op == "in":
            items = _in_list(value)
            placeholders = sql.SQL(", ").join(sql.Placeholder() * len(items))
            clause = sql.SQL("{} IN ({})").format(target, placeholders) if items else sql.SQL("FALSE")
            self.values.extend(items)
        else:
            raise _parse_error(f"filter ({column}={expr})")
        self.filters.append(sql.SQL("NOT ({})").format(clause) if negate else clause)

    @staticmethod
    def _order_item(item: str) -> sql.Composable:
        """Translate one ``column.desc.nullslast`` ordering term into SQL."""
        column, *modifiers = item.strip().split(".")
        words = {"asc": "ASC", "desc": "DESC", "nullsfirst": "NULLS FIRST", "nullslast": "NULLS LAST"}
        if any(m not in words for m in modifiers):
            raise _parse_error(f"order ({item})")
        suffix = "".join(f" {words[m]}" for m in modifiers)
        return sql.SQL("{}{}").format(sql.Identifier("_c", _unquote(column)), sql.SQL(suffix))

    def row_expression(self) -> sql.Composable:
        """The JSON-able expression for one row of ``_c``."""
        if self.columns is None:
            # A plain ``_c`` would be the bare value for a function with a single OUT column;
            # re-selecting its columns always gives a record that keeps the column names.
            return sql.SQL("(SELECT _x FROM (SELECT _c.*) AS _x)")
        pairs = (sql.SQL("{}, {}").format(sql.Literal(c), sql.Identifier("_c", c)) for c in self.columns)
        return sql.SQL("json_build_object({})").format(sql.SQL(", ").join(pairs))

    def tail(self) -> sql.Composable:
        """WHERE, ORDER BY, LIMIT and OFFSET clauses."""
        parts = []
        if self.filters:
            parts.append(sql.SQL(" WHERE ") + sql.SQL(" AND ").join(self.filters))
        if self.order:
            parts.append(sql.SQL(" ORDER BY ") + sql.SQL(", ").join(self.order))
        return sql.Composed(parts) + self.paging()

    def paging(self) -> sql.Composable:
        """LIMIT and OFFSET clauses."""
        limit = sql.SQL(" LIMIT {}").format(self.limit) if self.limit is not None else sql.SQL("")
        return limit + sql.SQL(" OFFSET {}").format(self.offset)


def _aggregate(single: bool) -> sql.Composable:
    """How rows ``_t.r`` become the response body: one JSON value, or a JSON array."""
    if single:
        return sql.SQL("coalesce((json_agg(_t.r) -> 0)::text, 'null')")
    return sql.SQL("coalesce(json_agg(_t.r), '[]')::text")


class PostgrestApp:
    """WSGI application that answers PostgREST requests with one pooled transaction each."""

    def __init__(self, pool: ConnectionPool, schemas: Iterable[str] | None = None) -> None:
        """Serve from ``pool``; when ``schemas`` is given, only those schemas are exposed, as in Supabase."""
        self.pool = pool
        self.schemas = tuple(schemas) if schemas else None
        self.cache = RoutineCache()

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        """Handle one WSGI request."""
        request = Request(environ)
        try:
            response = self.handle(request)
        except PostgrestError as exc:
            response = exc.response()
        except Exception as exc:
            # A bug here should still reach the client as a PostgREST-shaped error it can report.
            traceback.print_exc()
            response = PostgrestError(500, "PGRSTX00", f"{type(exc).__name__}: {exc}").response()
        return response(environ, start_response)

    def handle(self, request: Request) -> Response:
        """Authenticate, route and answer one request."""
        if not (request.headers.get("apikey") or request.args.get("apikey")):
            # Supabase's gateway rejects key-less requests before they reach PostgREST.
            body = {
                "message": "No API key found in request",
                "hint": "No `apikey` request header or url param was found.",
            }
            return Response(json.dumps(body), status=401, content_type=JSON_TYPE)
        path = request.path.removeprefix(REST_PREFIX)
        parts = [p for p in path.split("/") if p]
        schema = self._schema(request)
        if len(parts) == 2 and parts[0] == "rpc":
            return self._transaction(request, lambda conn: self._call(conn, request, schema, parts[1]))
        if len(parts) == 1:
            return self._transaction(request, lambda conn: self._read_table(conn, request, schema, parts[0]))
        raise PostgrestError(404, None, f"Not found: {request.path}")

    def _schema(self, request: Request) -> str:
        """Pick the schema from the profile header, as PostgREST does for each verb."""
        header = "Accept-Profile" if request.method in ("GET", "HEAD") else "Content-Profile"
        schema = request.headers.get(header) or (self.schemas[0] if self.schemas else "public")
        if self.schemas and schema not in self.schemas:
            exposed = ", ".join(self.schemas)
            raise PostgrestError(
                406, "PGRST106", f"Invalid schema: {schema}", hint=f"Only the following schemas are exposed: {exposed}"
            )
        return schema

    def _transaction(self, request: Request, work: Callable[[psycopg.Connection], Response]) -> Response:
        """Run ``work`` in its own transaction: committed on success, rolled back on any error."""
        try:
            with self.pool.connection() as conn:
                return work(conn)
        except PoolTimeout:
            raise PostgrestError(504, "PGRST003", "Timed out acquiring connection from connection pool.") from None
        except psycopg.Error as exc:
            raise self._database_error(exc, request) from None

    @staticmethod
    def _database_error(exc: psycopg.Error, request: Request) -> PostgrestError:
        """Turn a psycopg error into PostgREST's error body and status."""
        if exc.sqlstate is None:
            return PostgrestError(503, "PGRST000", "Database connection error. Retrying the connection.", str(exc))
        diag = exc.diag
        authenticated = _jwt_role(request) not in (None, "anon")
        return PostgrestError(
            status_for_sqlstate(exc.sqlstate, authenticated),
            exc.sqlstate,
            diag.message_primary or str(exc),
            diag.message_detail,
            diag.message_hint,
        )

    def _call(self, conn: psycopg.Connection, request: Request, schema: str, name: str) -> Response:
        """Call a database function the way PostgREST's /rpc endpoint does."""
        if request.method == "POST":
            raw = request.get_data(as_text=True)
            try:
                body = json.loads(raw) if raw.strip() else {}
            except ValueError:
                raise PostgrestError(400, "PGRST102", "Empty or invalid json") from None
            keys = set(body) if isinstance(body, dict) else None
        elif request.method in ("GET", "HEAD"):
            keys = {k for k in request.args if k not in RESERVED_PARAMS}
        else:
            raise PostgrestError(405, "PGRST101", "Only GET and POST verbs are allowed")

        routine, whole_body = self._resolve(conn, schema, name, keys, request.method == "POST")
        if request.method == "POST":
            used = keys or set()
            payload = raw if raw.strip() else "{}"
            query = Query(request)
        else:
            used = keys & routine.names
            payload = json.dumps({p.name: self._query_arg(request, p) for p in routine.params if p.name in used})
            query = Query(request, skip=used)
        # End the catalog read so the function call can start its own transaction with the right access mode.
        conn.commit()
        if request.method != "POST" or not routine.volatile:
            conn.execute("SET TRANSACTION READ ONLY")

        call, args = self._call_sql(routine, used, whole_body)
        try:
            if routine.returns_void:
                conn.execute(sql.SQL("SELECT {} FROM {}").format(call, args), [payload])
                return Response(status=204)
            return self._select(conn, request, routine, query, call, args, payload)
        except psycopg.errors.UndefinedFunction:
            # The function changed under a cached description: re-read it next time.
            self.cache.forget(schema, name)
            raise

    @staticmethod
    def _query_arg(request: Request, param: Param) -> Any:
        """Turn a query-string argument into the JSON value the function call unpacks."""
        if param.variadic:
            return request.args.getlist(param.name)
        value = request.args[param.name]
        if param.type in ("json", "jsonb"):
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value

    def _resolve(
        self, conn: psycopg.Connection, schema: str, name: str, keys: set[str] | None, is_post: bool
    ) -> tuple[Routine, bool]:
        """Pick the overload matching the argument names; the flag says it takes the whole body."""
        for refresh in (False, True):
            routines = self.cache.get(conn, schema, name, refresh=refresh)
            if keys is None:
                matches = []
            elif is_post:
                matches = [r for r in routines if keys <= r.names and r.required <= keys]
            else:
                candidates = [r for r in routines if r.required <= keys]
                best = max((len(keys & r.names) for r in candidates), default=0)
                matches = [r for r in candidates if len(keys & r.names) == best]
            whole_body = is_post and not matches
            if whole_body:
                matches = [r for r in routines if r.takes_whole_body]
            if len(matches) == 1:
                return matches[0], whole_body
            if len(matches) > 1:
                listed = ", ".join(r.signature() for r in matches)
                raise PostgrestError(
                    300,
                    "PGRST203",
                    f"Could not choose the best candidate function between: {listed}",
                    hint="Try renaming the parameters or the function itself in the database"
                    " so function overloading can be resolved",
                )
        raise self._not_found(conn, schema, name, sorted(keys or ()), routines, is_post)

    @staticmethod
    def _not_found(
        conn: psycopg.Connection,
        schema: str,
        name: str,
        keys: list[str],
        routines: tuple[Routine, ...],
        is_post: bool,
    ) -> PostgrestError:
        """Build PostgREST's PGRST202 error, with its "perhaps you meant" hint."""
        func = f"{schema}.{name}"
        listed = ", ".join(keys)
        searched = f" with parameter{'s' if len(keys) > 1 else ''} {listed}" if keys else " without parameters"
        if is_post:
            searched += " or with a single unnamed json/jsonb parameter"
        if routines:
            options = ["(" + ", ".join(sorted(r.names)) + ")" for r in routines]
            close = difflib.get_close_matches(f"({listed})", options, n=1, cutoff=0.0)
            hint = f"Perhaps you meant to call the function {func}{close[0]}" if close else None
        else:
            names = [row[0] for row in conn.execute(FUNCTION_NAMES_SQL, (schema,))]
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"Perhaps you meant to call the function {schema}.{close[0]}" if close else None
        return PostgrestError(
            404,
            "PGRST202",
            f"Could not find the function {func}({listed}) in the schema cache"
            if keys
            else f"Could not find the function {func} without parameters in the schema cache",
            f"Searched for the function {func}{searched}, but no matches were found in the schema cache.",
            hint,
        )

    @staticmethod
    def _call_sql(routine: Routine, used: set[str], whole_body: bool) -> tuple[sql.Composable, sql.Composable]:
        """Build the function call and the FROM item ``_a`` that carries its JSON arguments (the only parameter)."""
        function = sql.Identifier(routine.schema, routine.name)
        params = [p for p in routine.params if p.name in used]
        if whole_body or not params:
            body = sql.SQL("(SELECT %s::json AS body) AS _a")
            if whole_body:
                return sql.SQL("{}(_a.body::{})").format(function, sql.SQL(routine.params[0].type)), body
            return sql.SQL("{}()").format(function), body
        # Unpacking with json_to_record, as PostgREST does, gives Postgres' own JSON-to-type conversions.
        args = sql.SQL(", ").join(
            sql.SQL("{}{} => {}").format(
                sql.SQL("VARIADIC " if p.variadic else ""), sql.Identifier(p.name), sql.Identifier("_a", p.name)
            )
            for p in params
        )
        # Types come from format_type() in the catalog, so they are valid SQL as they are.
        columns = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(p.name), sql.SQL(p.type)) for p in params)
        return (
            sql.SQL("{}({})").format(function, args),
            sql.SQL("json_to_record(%s::json) AS _a({})").format(columns),
        )

    def _select(
        self,
        conn: psycopg.Connection,
        request: Request,
        routine: Routine,
        query: Query,
        call: sql.Composable,
        args: sql.Composable,
        payload: str,
    ) -> Response:
        """Run a value-returning function and shape its rows like PostgREST."""
        if routine.returns_composite:
            # A function in FROM is implicitly lateral, so the call can read the unpacked arguments.
            rows = sql.SQL("SELECT {} AS r, count(*) OVER () AS total FROM {}, {} AS _c{}").format(
                query.row_expression(), args, call, query.tail()
            )
        else:
            if query.shapes_rows:
                raise _parse_error("query: only limit and offset apply to scalar functions")
            # The window runs outside the call: set-returning calls in a select list expand after windows.
            rows = sql.SQL("SELECT _s.r, count(*) OVER () AS total FROM (SELECT {} AS r FROM {}) AS _s{}").format(
                call, args, query.paging()
            )
        return self._respond(conn, request, rows, [payload, *query.values], routine.returns_set, query.offset)

    def _read_table(self, conn: psycopg.Connection, request: Request, schema: str, table: str) -> Response:
        """Answer a table or view read: select, filters, order, limit and offset."""
        if request.method not in ("GET", "HEAD"):
            raise PostgrestError(405, "PGRST117", f"Unsupported HTTP method: {request.method}")
        relation = sql.Identifier(schema, table)
        if conn.execute("SELECT to_regclass(%s)", [relation.as_string(conn)]).fetchone()[0] is None:
            raise PostgrestError(404, "PGRST205", f"Could not find the table '{schema}.{table}' in the schema cache")
        conn.execute("SET TRANSACTION READ ONLY")
        query = Query(request)
        rows = sql.SQL("SELECT {} AS r, count(*) OVER () AS total FROM {} AS _c{}").format(
            query.row_expression(), relation, query.tail()
        )
        return self._respond(conn, request, rows, query.values, True, query.offset)

    @staticmethod
    def _respond(
        conn: psycopg.Connection, request: Request, rows: sql.Composable, values: list, is_set: bool, offset: int
    ) -> Response:
        """Aggregate the rows to JSON in Postgres and build the 200 response with its Content-Range."""
        singular = is_set and SINGLE_OBJECT_TYPE in request.headers.get("Accept", "")
        statement = sql.SQL("SELECT {}, count(*), max(_t.total) FROM ({}) AS _t").format(
            _aggregate(single=not is_set or singular), rows
        )
        body, count, total = conn.execute(statement, values).fetchone()
        if singular and count != 1:
            # Raised inside the transaction so it rolls back, as PostgREST does.
            message = "JSON object requested, multiple (or no) rows returned"
            raise PostgrestError(406, "PGRST116", message, f"The result contains {count} rows")
        wants_count = _prefer(request).get("count") in ("exact", "planned", "estimated")
        size = str(total or 0) if wants_count else "*"
        span = f"{offset}-{offset + count - 1}" if count else "*"
        headers = {"Content-Range": f"{span}/{size}"}
        content_type = f"{SINGLE_OBJECT_TYPE}; charset=utf-8" if singular else JSON_TYPE
        return Response(body, status=200, content_type=content_type, headers=headers)


class _QuietHandler(WSGIRequestHandler):
    """Request handler that does not log every request line."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Skip per-request access logs; errors are still logged."""


class PostgrestServer:
    """A running PostgREST-compatible server with its own connection pool."""

    def __init__(
        self,
        dsn: str,
        host: str = "127.0.0.1",
        port: int = 0,
        pool_size: int = 10,
        schemas: Iterable[str] | None = None,
        quiet: bool = True,
    ) -> None:
        """Open the pool (failing fast if Postgres is unreachable) and bind the HTTP socket."""
        self.pool = ConnectionPool(
            dsn,
            min_size=1,
            max_size=pool_size,
            open=False,
            name="postgrest-test",
            kwargs={"application_name": "postgrest-test"},
        )
        self.pool.open(wait=True, timeout=10)
        self.app = PostgrestApp(self.pool, schemas)
        try:
            self.server: BaseWSGIServer = make_server(
                host, port, self.app, threaded=True, request_handler=_QuietHandler if quiet else None
            )
        except BaseException:
            self.pool.close()
            raise
        self._thread: threading.Thread | None = None
        self._stopped = False

    @property
    def url(self) -> str:
        """Base URL to give to ``create_client``, e.g. ``http://127.0.0.1:54321``."""
        return f"http://{self.server.host}:{self.server.port}"

    def start(self) -> PostgrestServer:
        """Serve in a background daemon thread."""
        self._thread = threading.Thread(target=self.server.serve_forever, name="postgrest-test", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted, then clean up."""
        try:
            self.server.serve_forever()
        finally:
            self.stop()

    def reload_schema(self) -> None:
        """Forget every cached function description, like ``NOTIFY pgrst, 'reload schema'``."""
        self.app.cache.forget()

    def stop(self) -> None:
        """Stop serving and close the pool; safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join(timeout=10)
        self.server.server_close()
        self.pool.close()

    def __enter__(self) -> PostgrestServer:
        """Return the already started server."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop the server."""
        self.stop()


def start_postgrest(
    dsn: str,
    port: int | None = None,
    *,
    host: str = "127.0.0.1",
    pool_size: int = 10,
    schemas: Iterable[str] | None = None,
) -> PostgrestServer:
    """Start a server in a background thread; ``port=None`` picks a free port (see ``.url``)."""
    return PostgrestServer(dsn, host=host, port=port or 0, pool_size=pool_size, schemas=schemas).start()


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: serve until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True, help="libpq connection string of the database to serve")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=54321, help="0 picks a free port")
    parser.add_argument("--pool-size", type=int, default=10)
    parser.add_argument("--schemas", help="comma-separated exposed schemas (default: any)")
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    options = parser.parse_args(argv)

    schemas = [s.strip() for s in options.schemas.split(",")] if options.schemas else None
    server = PostgrestServer(options.dsn, options.host, options.port, options.pool_size, schemas, options.quiet)
    # Turn SIGTERM into a normal exit so the pool is closed on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # Parents wait for this line to know the server accepts connections.
    print(f"postgrest listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
