"""Operator commands: `flask --app webapi db upgrade`, `buzon add ...`, `portfolio set ...`, `apikey create ...`,
`user set ...`."""

from __future__ import annotations

import getpass

import click
from flask import Blueprint

from tasks.store import StoreError
from tasks.store.migrate import apply_migrations
from webapi import apikeys
from webapi.audit import record_command
from webapi.context import runtime

bp = Blueprint("cli", __name__, cli_group=None)


@bp.cli.group("db")
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
def upgrade() -> None:
    """Apply the SQL migrations, then the changed function files (needs DATABASE_URL; with Supabase use its
    connection string)."""
    settings = runtime().settings
    if not settings.database_url:
        raise click.ClickException(
            "DATABASE_URL is not set: migrations need a direct Postgres connection "
            "(Supabase: Project Settings > Database > Connection string)."
        )
    applied = apply_migrations(settings.database_url)
    click.echo(f"Applied: {', '.join(applied)}" if applied else "Schema already up to date.")


@bp.cli.group("buzon")
def buzon() -> None:
    """Sender (buzón) credentials."""


@buzon.command("add")
@click.argument("name")
@click.option("--phone-number-id", required=True, help="WhatsApp phone number id of the sender.")
@click.option(
    "--token",
    envvar="WHATSAPP_ACCESS_TOKEN",
    prompt=True,
    hide_input=True,
    help="Access token (or WHATSAPP_ACCESS_TOKEN; prompted when absent, so it stays out of shell history).",
)
@click.option("--mps", type=click.IntRange(min=1), default=None, help="Messages per second allowed for this number.")
@click.option(
    "--waba-id",
    default=None,
    help="WhatsApp Business Account id of the number: uploads then check their template against it.",
)
def add_buzon(name: str, phone_number_id: str, token: str, mps: int | None, waba_id: str | None) -> None:
    """Register or update a buzón's credentials."""
    store = runtime().store
    row = store.upsert_sender(name, phone_number_id, token, mps, waba_id)
    details = {"phone_number_id": phone_number_id, "mps": mps, "waba_id": waba_id}
    record_command(store, _operator(), "buzon.add", details, buzon=name)
    click.echo(f"Buzón '{row['buzon']}' registered for phone number id {row['phone_number_id']}.")


@buzon.command("list")
def list_buzones() -> None:
    """List registered buzones (without tokens)."""
    for row in runtime().store.list_senders():
        mps = row["messages_per_second"] or "default"
        click.echo(f"{row['buzon']}\t{row['phone_number_id']}\t{mps} msg/s\t{row.get('waba_id') or '-'}")


@bp.cli.group("portfolio")
def portfolio() -> None:
    """Business portfolios: the daily messaging limit their buzones share."""


@portfolio.command("set")
@click.argument("portfolio_id")
@click.option(
    "--limit",
    "limit",
    required=True,
    help="Unique recipients per moving 24 h: one of MESSAGING_LIMIT_TIERS (250, 2000, 10000, 100000) or unlimited.",
)
@click.option("--waba", "waba_ids", multiple=True, help="A WhatsApp Business Account id of the portfolio (repeat).")
@click.option("--buzon", "buzones", multiple=True, help="Put this buzón in the portfolio (repeat for several).")
def set_portfolio(portfolio_id: str, limit: str, waba_ids: tuple[str, ...], buzones: tuple[str, ...]) -> None:
    """Register or change a portfolio, its limit and its accounts, and put buzones in it."""
    rt = runtime()
    tiers = rt.settings.messaging_limit_tiers
    value = 0 if limit.strip().lower() in ("unlimited", "ilimitado", "-1") else None
    if value is None:
        try:
            value = int(limit)
        except ValueError:
            raise click.BadParameter(f"{limit!r} is not a number or 'unlimited'", param_hint="--limit") from None
    if value not in tiers:
        shown = ", ".join("unlimited" if t == 0 else str(t) for t in tiers)
        raise click.BadParameter(f"{limit} is not a tier; use one of {shown}", param_hint="--limit")
    store = rt.store
    row = store.upsert_portfolio(portfolio_id, value or None, list(waba_ids) or None)
    for name in buzones:
        if not store.set_sender_portfolio(name, portfolio_id):
            raise click.ClickException(f"Buzón '{name}' is not registered; add it with `buzon add` first.")
    details = {"limit": row["messaging_limit"], "waba_ids": row["waba_ids"], "buzones": list(buzones)}
    record_command(store, _operator(), "portfolio.set", details)
    shown_limit = row["messaging_limit"] or "unlimited"
    click.echo(f"Portfolio '{row['id']}': {shown_limit} unique recipients per 24 h.")


@portfolio.command("list")
def list_portfolios() -> None:
    """List portfolios with their limit, accounts and buzones."""
    for row in runtime().store.list_portfolios():
        limit = row["messaging_limit"] or "unlimited"
        click.echo(f"{row['id']}\t{limit}\t{','.join(row['waba_ids'])}\t{','.join(row['buzones'])}")


def _operator() -> str:
    """Who ran the command, for the audit log."""
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def _store():
    """The configured store."""
    return runtime().store


_ROLE = click.Choice(apikeys.ROLES)


@bp.cli.group("apikey")
def apikey() -> None:
    """API keys for server-to-server callers."""


@apikey.command("create")
@click.argument("name")
@click.option("--role", type=_ROLE, required=True, help="viewer, operator or admin.")
@click.option("--buzon", "buzones", multiple=True, help="Limit the key to this buzón (repeat for several).")
def create_apikey(name: str, role: str, buzones: tuple[str, ...]) -> None:
    """Create a key and print it once; only its hash is stored. The last line of the output is the key alone."""
    store = _store()
    try:
        key, row = apikeys.create_key(store, name, role, list(buzones))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    except StoreError as exc:
        if "duplicate key" in str(exc):
            raise click.ClickException(f"A key named '{name}' already exists; pick another name.") from None
        raise
    record_command(store, _operator(), "apikey.create", {"name": name, "role": role, "buzones": list(buzones)})
    scope = ", ".join(row["buzones"]) if row["buzones"] else "every buzón"
    click.echo(f"Key '{name}' created with role {role} ({scope}). Keep it now: it is not shown again.", err=True)
    click.echo("Send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'.", err=True)
    click.echo(key)


@apikey.command("list")
def list_apikeys() -> None:
    """List keys (never the keys themselves): name, role, buzones, created, last used, revoked."""
    for row in _store().list_api_keys():
        click.echo(
            "\t".join(
                [
                    row["name"],
                    row["role"],
                    ",".join(row["buzones"] or []) or "*",
                    f"created {row['created_at']}",
                    f"last used {row['last_used_at'] or 'never'}",
                    f"revoked {row['revoked_at']}" if row["revoked_at"] else "active",
                ]
            )
        )


@apikey.command("revoke")
@click.argument("name")
def revoke_apikey(name: str) -> None:
    """Revoke a key at once: the next request with it gets 401."""
    store = _store()
    if not store.revoke_api_key(name):
        raise click.ClickException(f"No active key named '{name}' (see 'apikey list').")
    record_command(store, _operator(), "apikey.revoke", {"name": name})
    click.echo(f"Key '{name}' revoked.")


@bp.cli.group("user")
def user() -> None:
    """Roles of Supabase users whose token carries none in app_metadata."""


@user.command("set")
@click.argument("user_id")
@click.option("--role", type=_ROLE, required=True, help="viewer, operator or admin.")
@click.option("--buzon", "buzones", multiple=True, help="Limit the user to this buzón (repeat for several).")
@click.option("--email", default=None, help="The user's email, to read the audit log more easily.")
def set_user(user_id: str, role: str, buzones: tuple[str, ...], email: str | None) -> None:
    """Give a Supabase user (its id, the token's `sub`) a role."""
    store = _store()
    store.upsert_api_user(user_id, role, list(buzones), email)
    record_command(store, _operator(), "user.set", {"user_id": user_id, "role": role, "buzones": list(buzones)})
    click.echo(f"User {user_id} now has role {role}.")
